// The soma-models V1 byte-level tokenizer (soma-org/soma: models/src/v1/data/dataset.rs
// and batcher.rs; python/soma_models/v1/tokenizer.py), exactly:
//
//   vocab 264: token b (0..255) is byte b; PAD = 256, EOS = 257; 258..263 reserved, unused.
//   A buffer of L bytes becomes ceil(L / S) sequences of S = max_seq_len tokens. Chunk i
//   holds bytes [i*S, min(L, (i+1)*S)); only the final chunk, and only when it has room
//   (its data length d < S), gets EOS at index d; the rest is PAD. pos_ids are global
//   byte offsets: start+i for data, start+d (the position after the last byte) for EOS
//   and PAD. targets = token_ids shifted left by one, PAD appended. Empty input: nothing.
//
// In a token stream a sequence is a record holding its data bytes plus the EOS (no
// padding): record start = chunk start, so pos_ids = start + index up to the EOS, and a
// reader pads with PAD at the position after the last byte (make_sequence).
//
// lmkit's documents: each input file is one document, tokenized as one soma buffer
// (offsets restart at 0). EosMode::Always and Never change where EOS goes (see
// tokenizer.h). Decoding writes the bytes of byte tokens, drops EOS and skips PAD, so
// `lm-tokenize a b | lm-tokenize --decode` reproduces `cat a b`; the reserved ids
// 258..263 have no bytes and are an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lm {
namespace byte_v1 {

inline constexpr uint32_t kVocabSize = 256 + 8;
inline constexpr uint32_t kPad = 256;
inline constexpr uint32_t kEos = 257;
inline constexpr size_t kMaxSeqLen = 1024;  // soma V1_MAX_SEQ_LEN, tokenize(data, max_seq_len=1024)

// FNV-1a 64 of kDefinition: the fingerprint written into byte-v1 stream headers.
inline constexpr const char* kDefinition = "lmkit byte-v1: vocab 264; ids 0-255 = bytes; pad 256; eos 257; 258-263 reserved";
uint64_t fingerprint();
TokenizerSpec spec();

// soma's tokenize(data, max_seq_len) over one in-memory buffer: the reference the
// streaming encoder is tested against (EosMode::Soma).
std::vector<Sequence> tokenize(const uint8_t* data, size_t n, size_t max_seq_len);

}  // namespace byte_v1

class ByteV1Tokenizer final : public Tokenizer {
 public:
  ByteV1Tokenizer();
  const TokenizerSpec& spec() const override { return spec_; }
  void encode_document(ByteSource& src, const EncodeOptions& opts, RecordSink& out, EncodeStats& stats) override;
  size_t decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const override;
  std::string describe_token(uint32_t token) const override;
  void make_sequence(const uint32_t* tokens, size_t n, uint64_t start, size_t max_seq_len,
                     Sequence& out) const override;

 private:
  TokenizerSpec spec_;
  std::vector<uint8_t> buf_;  // input block plus one carried-over partial chunk
};

}  // namespace lm
