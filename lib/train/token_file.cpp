#include "train/token_file.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/stream.h"

namespace lm::train {

namespace {

// Maps `size` bytes of `fd` read-only; null for an empty file.
const uint8_t* map_fd(int fd, size_t size, const std::string& what) {
  if (size == 0) return nullptr;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) fail_io("cannot map", what);
  return static_cast<const uint8_t*>(p);
}

// Copies `src` (decompressed) into an unlinked temporary file in $TMPDIR and returns its
// descriptor and size. Unlinked at once: nothing is left behind, whatever ends the process.
int spill(ByteSource& src, const std::string& name, size_t& size) {
  std::string dir;
  try {
    dir = std::filesystem::temp_directory_path().string();
  } catch (const std::filesystem::filesystem_error& e) {
    fail(ErrorKind::Io, cat("cannot find a temporary directory for the tokens of ", quote(name), ": ", e.what()),
         "set TMPDIR to a writable directory");
  }
  std::string templ = dir + "/lmkit-tokens.XXXXXX";
  const int fd = ::mkstemp(templ.data());
  if (fd < 0) fail_io("cannot create a temporary file in", dir);
  ::unlink(templ.c_str());
  std::vector<uint8_t> buf(size_t{1} << 20);
  size = 0;
  try {
    for (;;) {
      const size_t n = src.read_some(buf.data(), buf.size());
      if (n == 0) break;
      for (size_t done = 0; done < n;) {
        const ssize_t k = ::write(fd, buf.data() + done, n - done);
        if (k < 0) {
          if (errno == EINTR) continue;
          fail(ErrorKind::Io, cat("cannot write the tokens of ", quote(name), " to a temporary file in ", quote(dir),
                                  ": ", std::strerror(errno)),
               "set TMPDIR to a directory with room for the decompressed tokens");
        }
        done += static_cast<size_t>(k);
      }
      size += n;
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

bool is_zstd_file(int fd) {
  uint8_t head[4];
  const ssize_t n = ::pread(fd, head, sizeof head, 0);
  return n == static_cast<ssize_t>(sizeof head) && is_zstd_magic(head, sizeof head);
}

}  // namespace

std::shared_ptr<const TokenFile> TokenFile::open(const std::string& path) {
  std::shared_ptr<TokenFile> f(new TokenFile());
  f->name_ = display_name(path);
  if (path != "-") {
    struct stat st {};
    const int fd = open_for_reading(path, st);
    if (S_ISREG(st.st_mode) && !is_zstd_file(fd)) {  // the common case: the file as it is
      f->size_ = static_cast<size_t>(st.st_size);
      try {
        f->data_ = map_fd(fd, f->size_, path);
      } catch (...) {
        ::close(fd);
        throw;
      }
      ::close(fd);
      return f;
    }
    ::close(fd);
  }
  // A pipe, stdin or zstd: decompressed (when compressed) into a temporary file.
  auto raw = open_raw_input(path);
  std::vector<uint8_t> head(4);
  head.resize(raw->read_full(head.data(), head.size()));
  f->decompressed_ = is_zstd_magic(head.data(), head.size());
  std::unique_ptr<ByteSource> src = prefixed_source(std::move(head), std::move(raw));
  if (f->decompressed_) src = auto_decompress(std::move(src));
  const int fd = spill(*src, f->name_, f->size_);
  try {
    f->data_ = map_fd(fd, f->size_, f->name_);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return f;
}

TokenFile::~TokenFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void TokenFile::release(size_t begin, size_t end) const {
  if (!data_) return;
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t first = begin / page * page, last = std::min((std::min(end, size_) + page - 1) / page * page, size_);
  if (last > first) ::madvise(const_cast<uint8_t*>(data_) + first, last - first, MADV_DONTNEED);
}

}  // namespace lm::train
