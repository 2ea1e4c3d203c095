#include "io/stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lm {

size_t ByteSource::read_full(void* buf, size_t n) {
  size_t got = 0;
  auto* p = static_cast<uint8_t*>(buf);
  while (got < n) {
    const size_t k = read_some(p + got, n - got);
    if (k == 0) break;
    got += k;
  }
  return got;
}

bool is_zstd_magic(const uint8_t* p, size_t n) {
  return n >= 4 && p[0] == 0x28 && p[1] == 0xB5 && p[2] == 0x2F && p[3] == 0xFD;
}

namespace {

class FdSource final : public ByteSource {
 public:
  FdSource(int fd, std::string name, bool owned) : fd_(fd), name_(std::move(name)), owned_(owned) {}
  ~FdSource() override {
    if (owned_) ::close(fd_);
  }
  size_t read_some(void* buf, size_t n) override {
    for (;;) {
      const ssize_t k = ::read(fd_, buf, n);
      if (k >= 0) return static_cast<size_t>(k);
      if (errno != EINTR) fail_io("cannot read", name_);
    }
  }
  const std::string& name() const override { return name_; }

 private:
  int fd_;
  std::string name_;
  bool owned_;
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size, std::string name) : data_(data), size_(size), name_(std::move(name)) {}
  size_t read_some(void* buf, size_t n) override {
    const size_t k = std::min(n, size_ - pos_);
    if (k == 0) return 0;  // data_ may be null for an empty buffer
    std::memcpy(buf, data_ + pos_, k);
    pos_ += k;
    return k;
  }
  const std::string& name() const override { return name_; }

 private:
  const uint8_t* data_;
  size_t size_, pos_ = 0;
  std::string name_;
};

// Replays bytes already peeked from `inner` before reading on.
class PrefixedSource final : public ByteSource {
 public:
  PrefixedSource(std::vector<uint8_t> prefix, std::unique_ptr<ByteSource> inner)
      : prefix_(std::move(prefix)), inner_(std::move(inner)) {}
  size_t read_some(void* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      const size_t k = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, k);
      pos_ += k;
      return k;
    }
    return inner_->read_some(buf, n);
  }
  const std::string& name() const override { return inner_->name(); }

 private:
  std::vector<uint8_t> prefix_;
  size_t pos_ = 0;
  std::unique_ptr<ByteSource> inner_;
};

class ZstdSource final : public ByteSource {
 public:
  explicit ZstdSource(std::unique_ptr<ByteSource> inner) : inner_(std::move(inner)), in_buf_(ZSTD_DStreamInSize()) {
    ds_ = ZSTD_createDStream();
    if (!ds_) fail(ErrorKind::Runtime, "out of memory creating a zstd decoder");
  }
  ~ZstdSource() override { ZSTD_freeDStream(ds_); }

  size_t read_some(void* buf, size_t n) override {
    if (n == 0) return 0;
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (in_.pos == in_.size) {
        const size_t k = inner_->read_some(in_buf_.data(), in_buf_.size());
        if (k == 0) {
          if (frame_open_) fail_data(cat(quote(name()), ": truncated zstd stream"));
          return 0;
        }
        in_ = ZSTD_inBuffer{in_buf_.data(), k, 0};
      }
      const size_t ret = ZSTD_decompressStream(ds_, &out, &in_);
      if (ZSTD_isError(ret)) fail_data(cat(quote(name()), ": corrupt zstd stream: ", ZSTD_getErrorName(ret)));
      frame_open_ = ret != 0;  // 0 means a frame just ended; concatenated frames are fine
    }
    return out.pos;
  }
  const std::string& name() const override { return inner_->name(); }

 private:
  std::unique_ptr<ByteSource> inner_;
  std::vector<uint8_t> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  ZSTD_DStream* ds_;
  bool frame_open_ = false;
};

class FileSink final : public ByteSink {
 public:
  explicit FileSink(const std::string& path) : path_(path) {
    buf_.reserve(kBufSize);
    if (path == "-") {
      fd_ = STDOUT_FILENO;
      return;
    }
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) fail(ErrorKind::Io, cat("cannot write ", quote(path), ": is a directory"));
    if (exists && !S_ISREG(st.st_mode)) {
      // A device, FIFO or socket (/dev/null, a named pipe): written in place. Renaming a
      // temporary file over it would replace the device node with a regular file.
      fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd_ < 0) fail_io("cannot open", path);
      in_place_ = true;
      return;
    }
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    tmp_ = (dir == "/" ? "" : dir) + "/." + base + ".XXXXXX";
    if (dir == ".") tmp_ = "." + base + ".XXXXXX";
    std::vector<char> templ(tmp_.begin(), tmp_.end());
    templ.push_back('\0');
    fd_ = ::mkstemp(templ.data());
    if (fd_ < 0) fail_io("cannot create a temporary file for", path);
    tmp_ = templ.data();
    ::fchmod(fd_, 0644 & ~current_umask());
  }
  ~FileSink() override {
    if (in_place_ && fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) {
      if (fd_ >= 0) ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  void write(const void* data, size_t n) override {
    if (buf_.size() + n > kBufSize) {
      flush();
      if (n >= kBufSize) {
        write_fd(data, n);
        return;
      }
    }
    buf_.insert(buf_.end(), static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n);
  }
  void finish() override {
    flush();
    if (in_place_) {
      const int fd = fd_;
      fd_ = -1;
      if (::close(fd) != 0) fail_io("cannot write", path_);
      return;
    }
    if (tmp_.empty()) return;  // stdout
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail_io("cannot write", path_);
    }
    fd_ = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail_io("cannot rename the temporary file to", path_);
    tmp_.clear();
  }

 private:
  static constexpr size_t kBufSize = 1 << 20;
  static mode_t current_umask() {
    const mode_t m = ::umask(0);
    ::umask(m);
    return m;
  }
  void flush() {
    if (!buf_.empty()) write_fd(buf_.data(), buf_.size());
    buf_.clear();
  }
  void write_fd(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t k = ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        fail_io("cannot write", display_name_out());
      }
      p += k;
      n -= static_cast<size_t>(k);
    }
  }
  std::string display_name_out() const { return path_ == "-" ? "<stdout>" : path_; }

  std::string path_, tmp_;
  int fd_ = -1;
  bool in_place_ = false;  // a non-regular file, written directly
  std::vector<uint8_t> buf_;
};

class ZstdSink final : public ByteSink {
 public:
  ZstdSink(std::unique_ptr<ByteSink> inner, int level) : inner_(std::move(inner)), out_buf_(ZSTD_CStreamOutSize()) {
    cs_ = ZSTD_createCCtx();
    if (!cs_) fail(ErrorKind::Runtime, "out of memory creating a zstd encoder");
    ZSTD_CCtx_setParameter(cs_, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cs_, ZSTD_c_checksumFlag, 1);
  }
  ~ZstdSink() override { ZSTD_freeCCtx(cs_); }
  void write(const void* data, size_t n) override {
    ZSTD_inBuffer in{data, n, 0};
    while (in.pos < in.size) pump(&in, ZSTD_e_continue);
  }
  void finish() override {
    ZSTD_inBuffer in{nullptr, 0, 0};
    while (pump(&in, ZSTD_e_end) != 0) {
    }
    inner_->finish();
  }

 private:
  size_t pump(ZSTD_inBuffer* in, ZSTD_EndDirective mode) {
    ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
    const size_t ret = ZSTD_compressStream2(cs_, &out, in, mode);
    if (ZSTD_isError(ret)) fail(ErrorKind::Runtime, cat("zstd compression failed: ", ZSTD_getErrorName(ret)));
    if (out.pos) inner_->write(out_buf_.data(), out.pos);
    return ret;
  }
  std::unique_ptr<ByteSink> inner_;
  std::vector<uint8_t> out_buf_;
  ZSTD_CCtx* cs_;
};

class MemorySink final : public ByteSink {
 public:
  explicit MemorySink(std::vector<uint8_t>* out) : out_(out) {}
  void write(const void* data, size_t n) override {
    out_->insert(out_->end(), static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n);
  }
  void finish() override {}

 private:
  std::vector<uint8_t>* out_;
};

}  // namespace

std::unique_ptr<ByteSource> open_raw_input(const std::string& path) {
  if (path == "-") return std::make_unique<FdSource>(STDIN_FILENO, display_name(path), false);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_io("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, cat("cannot read ", quote(path), ": is a directory"));
  }
  return std::make_unique<FdSource>(fd, path, true);
}

std::unique_ptr<ByteSource> open_input(const std::string& path) { return auto_decompress(open_raw_input(path)); }

std::unique_ptr<ByteSource> auto_decompress(std::unique_ptr<ByteSource> raw) {
  std::vector<uint8_t> head(4);
  head.resize(raw->read_full(head.data(), head.size()));
  const bool zstd = is_zstd_magic(head.data(), head.size());
  auto src = std::make_unique<PrefixedSource>(std::move(head), std::move(raw));
  if (zstd) return std::make_unique<ZstdSource>(std::move(src));
  return src;
}

std::unique_ptr<ByteSource> prefixed_source(std::vector<uint8_t> prefix, std::unique_ptr<ByteSource> inner) {
  return std::make_unique<PrefixedSource>(std::move(prefix), std::move(inner));
}

std::unique_ptr<ByteSource> memory_source(const uint8_t* data, size_t size, std::string name) {
  return std::make_unique<MemorySource>(data, size, std::move(name));
}

std::unique_ptr<ByteSink> open_output(const std::string& path) { return std::make_unique<FileSink>(path); }

std::unique_ptr<ByteSink> zstd_sink(std::unique_ptr<ByteSink> inner, int level) {
  return std::make_unique<ZstdSink>(std::move(inner), level);
}

std::unique_ptr<ByteSink> memory_sink(std::vector<uint8_t>* out) { return std::make_unique<MemorySink>(out); }

}  // namespace lm
