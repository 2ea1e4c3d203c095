// What the tokenizer fuzz targets ask of every tokenizer that loads: encode a fixed text
// (every script class, ill-formed UTF-8, common special tokens) to ids inside its vocabulary,
// give the same ids read one byte at a time, and decode every id without crashing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "io/stream.h"
#include "tokenizer/tokenizer.h"

namespace fuzz {

struct Collect final : lm::RecordSink {
  std::vector<uint32_t> ids;
  void write_record(const uint32_t* t, size_t n, uint64_t) override { ids.insert(ids.end(), t, t + n); }
  void finish() override {}
};

class OneByte final : public lm::ByteSource {
 public:
  explicit OneByte(std::string_view d) : d_(d) {}
  size_t read_some(void* buf, size_t n) override {
    if (pos_ >= d_.size() || n == 0) return 0;
    std::memcpy(buf, d_.data() + pos_++, 1);
    return 1;
  }
  const std::string& name() const override { return name_; }

 private:
  std::string_view d_;
  size_t pos_ = 0;
  std::string name_ = "one-byte";
};

inline std::vector<uint32_t> encode(lm::Tokenizer& tok, std::string_view text, bool trickle) {
  Collect out;
  lm::EncodeStats stats;
  lm::EncodeOptions o;
  o.max_seq_len = 7;
  o.eos = lm::EosMode::Never;
  o.add_bos = tok.spec().bos_id >= 0;
  if (trickle) {
    OneByte src(text);
    tok.encode_document(src, o, out, stats);
  } else {
    auto src = lm::memory_source(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "text");
    tok.encode_document(*src, o, out, stats);
  }
  return out.ids;
}

inline void exercise(lm::Tokenizer& tok) {
  const uint32_t vocab = tok.spec().vocab_size;
  if (vocab == 0) __builtin_trap();
  const std::string text =
      "Hello, world's 12345  \n\n x\t\xC2\xA0I'M ok!!\r\n \xE2\x96\x81 caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC "
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD <s></s><unk><|endoftext|><|begin_of_text|> \xFF\xC0\xAF\xED\xA0\x80\xE2\x82";
  const std::vector<uint32_t> ids = encode(tok, text, false);
  for (uint32_t t : ids)
    if (t >= vocab) __builtin_trap();
  if (encode(tok, text, true) != ids) __builtin_trap();  // cuts must not change the tokens
  std::vector<uint8_t> bytes;
  lm::DecodeContext ctx;
  ctx.document_start = true;
  tok.decode_in_document(ids.data(), ids.size(), ctx, bytes);
  for (uint32_t t = 0; t < vocab && t < 4096; ++t) {
    bytes.clear();
    if (tok.decode(&t, 1, bytes) == 0) (void)tok.describe_token(t);
  }
}

}  // namespace fuzz
