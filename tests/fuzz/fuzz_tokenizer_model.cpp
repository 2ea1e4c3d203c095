// libFuzzer target: arbitrary bytes as a tokenizer file, through the SentencePiece
// protobuf reader (first byte even) or the tokenizer.json reader (odd). Only lm::Error may
// escape loading; a tokenizer that loads must encode a fixed text (every script class,
// ill-formed UTF-8, its own special tokens) to ids inside its vocabulary, give the same
// ids read one byte at a time, and decode every id without crashing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/stream.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/sentencepiece.h"

namespace {

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

std::vector<uint32_t> encode(lm::Tokenizer& tok, std::string_view text, bool trickle) {
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

void exercise(lm::Tokenizer& tok) {
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      auto tok = lm::SentencePieceTokenizer::from_bytes(body, "fuzz.model");
      exercise(*tok);
    } else {
      auto tok = lm::HfBpeTokenizer::from_json(body, "", "fuzz.json");
      exercise(*tok);
    }
  } catch (const lm::Error&) {
  }
  return 0;
}
