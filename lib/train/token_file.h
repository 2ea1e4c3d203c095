// One token input's bytes, mapped read-only (lib/train/data.h says which inputs are mapped
// as they are and which are decompressed into an unlinked temporary file first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lm::train {

class TokenFile {
 public:
  // Io errors name `path` ("-" = stdin) or, for a failed spill, the temporary directory.
  static std::shared_ptr<const TokenFile> open(const std::string& path);
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }  // for messages: "<stdin>" for "-"
  bool decompressed() const { return decompressed_; }  // the input was zstd-compressed
  // Lets the kernel drop this process's pages holding bytes [begin, end); touching them
  // again reads them back from the file.
  void release(size_t begin, size_t end) const;

 private:
  TokenFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  bool decompressed_ = false;
};

}  // namespace lm::train
