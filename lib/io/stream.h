// Sequential byte streams: inputs that may be pipes (stdin, "-") and may be
// zstd-compressed (detected by magic), and outputs that are atomic for files
// (temp file in the target directory, renamed on commit) or go to stdout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lm {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes; returns 0 only at end of stream.
  virtual size_t read_some(void* buf, size_t n) = 0;
  // Reads exactly n bytes, or fewer only at end of stream; returns the count read.
  size_t read_full(void* buf, size_t n);
  virtual const std::string& name() const = 0;  // for messages
};

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t n) = 0;
  // Completes the stream (flush, end compression frame, rename a temp file). Without it,
  // a file output is discarded on destruction.
  virtual void finish() = 0;
};

// An unbuffered reader over a file descriptor ("-" = stdin). Throws Io errors naming the path.
std::unique_ptr<ByteSource> open_raw_input(const std::string& path);
// Like open_raw_input, but transparently decompresses when the stream starts with the zstd magic.
std::unique_ptr<ByteSource> open_input(const std::string& path);
// Peeks at the first bytes of `src` and wraps it in a zstd decoder when they are the zstd magic.
std::unique_ptr<ByteSource> auto_decompress(std::unique_ptr<ByteSource> src);
// Replays `prefix` (bytes already peeked from `inner`), then reads on from `inner`.
std::unique_ptr<ByteSource> prefixed_source(std::vector<uint8_t> prefix, std::unique_ptr<ByteSource> inner);
// Wraps an in-memory buffer (tests and fuzzers).
std::unique_ptr<ByteSource> memory_source(const uint8_t* data, size_t size, std::string name);

// A file output written to "<dir>/.<name>.XXXXXX" and renamed to `path` by finish(); "-" = stdout.
std::unique_ptr<ByteSink> open_output(const std::string& path);
// Compresses everything written into one zstd frame on `inner`. level 1..19 (default 3).
std::unique_ptr<ByteSink> zstd_sink(std::unique_ptr<ByteSink> inner, int level);
// Appends to a vector (tests).
std::unique_ptr<ByteSink> memory_sink(std::vector<uint8_t>* out);

bool is_zstd_magic(const uint8_t* p, size_t n);

}  // namespace lm
