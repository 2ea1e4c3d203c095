// What the token-stream fuzz targets ask of every reader: chunks no longer than asked, a
// record opened and closed exactly once, ids inside the vocabulary, a clean end never inside
// a record (checked with __builtin_trap), and only lm::Error on bad input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "io/stream.h"
#include "io/tokstream.h"
#include "tokenizer/byte_v1.h"

namespace fuzz {

inline void read_everything(const uint8_t* data, size_t size, lm::TokenInputFormat format) {
  lm::TokenReadOptions opts;
  opts.format = format;
  opts.max_chunk_tokens = 4096;
  auto reader = lm::open_token_reader(lm::auto_decompress(lm::memory_source(data, size, "fuzz")), opts);
  const uint32_t vocab = reader->spec().vocab_size;
  lm::ByteV1Tokenizer decoder;
  std::vector<uint8_t> bytes;
  lm::TokenChunk chunk;
  bool in_record = false;
  uint64_t record = 0, next_start = 0;
  while (reader->next(chunk)) {
    if (chunk.tokens.size() > opts.max_chunk_tokens) __builtin_trap();
    if (chunk.first == in_record) __builtin_trap();  // first exactly when no record is open
    if (!chunk.first && (chunk.record != record || chunk.start != next_start)) __builtin_trap();
    for (uint32_t t : chunk.tokens)
      if (vocab && t >= vocab) __builtin_trap();
    record = chunk.record;
    next_start = chunk.start + chunk.tokens.size();
    in_record = !chunk.last;
    bytes.clear();
    decoder.decode(chunk.tokens.data(), chunk.tokens.size(), bytes);
  }
  if (in_record) __builtin_trap();  // a clean end is never inside a record
}

}  // namespace fuzz
