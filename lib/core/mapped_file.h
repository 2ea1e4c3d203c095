// Read-only access to a whole input file: mmap for regular files, a buffer read
// to EOF for pipes and stdin ("-"). The object is shared so tensor views can keep it alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct stat;

namespace lm {

// Opens `path` (not "-") read-only and fills `st` with its status; returns the descriptor, which
// the caller closes. Throws an Io error naming `path` when it cannot be opened or is a directory.
int open_for_reading(const std::string& path, struct stat& st);

class MappedFile {
 public:
  // Throws an Io error naming `path` when it cannot be opened or read.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // Wraps an in-memory copy (tests, fuzzers).
  static std::shared_ptr<MappedFile> from_bytes(std::vector<uint8_t> bytes, std::string name);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }  // "-" shown as "<stdin>"

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> buffer_;
  std::string path_;
};

// "<stdin>" for "-", else the path itself: the name used in messages.
std::string display_name(const std::string& path);

}  // namespace lm
