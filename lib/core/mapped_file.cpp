#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/error.h"

namespace lm {

std::string display_name(const std::string& path) { return path == "-" ? "<stdin>" : path; }

namespace {
std::vector<uint8_t> read_all(int fd, const std::string& name) {
  std::vector<uint8_t> buf;
  size_t used = 0;
  buf.resize(1 << 16);
  for (;;) {
    if (used == buf.size()) buf.resize(buf.size() * 2);
    const ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io("cannot read", name);
    }
    used += static_cast<size_t>(n);
  }
  buf.resize(used);
  return buf;
}
}  // namespace

int open_for_reading(const std::string& path, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_io("cannot open", path);
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail_io("cannot stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, cat("cannot read ", quote(path), ": is a directory"));
  }
  return fd;
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = display_name(path);
  if (path == "-") {
    file->buffer_ = read_all(STDIN_FILENO, file->path_);
    file->data_ = file->buffer_.data();
    file->size_ = file->buffer_.size();
    return file;
  }
  struct stat st {};
  const int fd = open_for_reading(path, st);
  if (!S_ISREG(st.st_mode)) {  // pipe, fifo, process substitution
    file->buffer_ = read_all(fd, path);
    ::close(fd);
    file->data_ = file->buffer_.data();
    file->size_ = file->buffer_.size();
    return file;
  }
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail_io("cannot map", path);
    }
    file->data_ = static_cast<const uint8_t*>(p);
    file->mapped_ = true;
  }
  ::close(fd);
  return file;
}

std::shared_ptr<MappedFile> MappedFile::from_bytes(std::vector<uint8_t> bytes, std::string name) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->buffer_ = std::move(bytes);
  file->data_ = file->buffer_.data();
  file->size_ = file->buffer_.size();
  file->path_ = std::move(name);
  return file;
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace lm
