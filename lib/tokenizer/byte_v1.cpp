#include "tokenizer/byte_v1.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace lm {
namespace byte_v1 {

namespace {
constexpr uint64_t fnv1a64(const char* s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; ++s) h = (h ^ static_cast<uint8_t>(*s)) * 0x100000001b3ull;
  return h;
}
}  // namespace

uint64_t fingerprint() { return fnv1a64(kDefinition); }

TokenizerSpec spec() {
  TokenizerSpec s;
  s.kind = TokenizerKind::ByteV1;
  s.vocab_size = kVocabSize;
  s.eos_id = static_cast<int32_t>(kEos);
  s.pad_id = static_cast<int32_t>(kPad);
  s.fingerprint = fingerprint();
  return s;
}

std::vector<Sequence> tokenize(const uint8_t* data, size_t n, size_t max_seq_len) {
  if (max_seq_len == 0) fail_usage("max_seq_len must be at least 1");
  std::vector<Sequence> out;
  const size_t chunks = (n + max_seq_len - 1) / max_seq_len;
  for (size_t c = 0; c < chunks; ++c) {
    const size_t start = c * max_seq_len;
    const size_t data_len = std::min(n - start, max_seq_len);
    const bool eos = c + 1 == chunks && data_len < max_seq_len;
    Sequence s;
    for (size_t i = 0; i < max_seq_len; ++i) {
      const bool is_data = i < data_len;
      s.token_ids.push_back(is_data ? data[start + i] : (eos && i == data_len) ? kEos : kPad);
      s.pos_ids.push_back(is_data ? start + i : start + data_len);
    }
    s.targets.assign(s.token_ids.begin() + 1, s.token_ids.end());
    s.targets.push_back(kPad);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace byte_v1

ByteV1Tokenizer::ByteV1Tokenizer() : spec_(byte_v1::spec()) {}

void ByteV1Tokenizer::encode_document(ByteSource& src, const EncodeOptions& opts, RecordSink& out,
                                      EncodeStats& stats) {
  const size_t seq = opts.max_seq_len;
  if (seq == 0 || seq > tokstream::kMaxRecordTokens)
    fail_usage(cat("max_seq_len ", seq, " is outside 1..", tokstream::kMaxRecordTokens));
  // One input block plus room for a partial chunk carried over from the previous block.
  constexpr size_t kBlock = size_t{1} << 20;
  const size_t cap = kBlock + seq;
  if (buf_.size() < cap) buf_.resize(cap);
  uint8_t* buf = buf_.data();
  static constexpr uint32_t kEosToken[1] = {byte_v1::kEos};

  size_t have = 0;    // bytes in buf
  uint64_t base = 0;  // document offset of buf[0]
  for (;;) {
    const size_t want = cap - have;
    const size_t got = src.read_full(buf + have, want);
    have += got;
    stats.bytes += got;
    size_t off = 0;
    for (; have - off >= seq; off += seq) {  // full chunks never carry EOS (soma)
      out.write_byte_record(buf + off, seq, nullptr, 0, base + off);
      ++stats.records;
      stats.tokens += seq;
    }
    if (got < want) {  // end of the document
      const size_t rest = have - off;  // < seq
      const bool eos = opts.eos == EosMode::Always || (opts.eos == EosMode::Soma && rest > 0);
      if (rest > 0 || eos) {
        out.write_byte_record(buf + off, rest, kEosToken, eos ? 1 : 0, base + off);
        ++stats.records;
        stats.tokens += rest + (eos ? 1 : 0);
      }
      break;
    }
    std::memmove(buf, buf + off, have - off);
    base += off;
    have -= off;
  }
  ++stats.documents;
}

size_t ByteV1Tokenizer::decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const {
  const size_t old = out.size();
  out.resize(old + n);
  uint8_t* dst = out.data() + old;
  size_t j = 0;
  constexpr size_t kBlock = 4096;
  for (size_t b = 0; b < n; b += kBlock) {
    const uint32_t* t = tokens + b;
    const size_t k = std::min(kBlock, n - b);
    uint32_t m = 0;
#pragma omp simd reduction(max : m)
    for (size_t i = 0; i < k; ++i) m = t[i] > m ? t[i] : m;
    if (m < 256) {  // all bytes: the common case, vectorized
      uint8_t* __restrict d = dst + j;
#pragma omp simd
      for (size_t i = 0; i < k; ++i) d[i] = static_cast<uint8_t>(t[i]);
      j += k;
      continue;
    }
    for (size_t i = 0; i < k; ++i) {
      if (t[i] < 256) {
        dst[j++] = static_cast<uint8_t>(t[i]);
      } else if (t[i] != byte_v1::kEos && t[i] != byte_v1::kPad) {
        out.resize(old + j);
        return b + i;
      }
    }
  }
  out.resize(old + j);
  return n;
}

std::string ByteV1Tokenizer::describe_token(uint32_t token) const {
  if (token < 256) return cat("byte token ", token);
  if (token == byte_v1::kPad) return "PAD token 256";
  if (token == byte_v1::kEos) return "EOS token 257";
  if (token < byte_v1::kVocabSize) return cat("token ", token, " is a reserved byte-v1 special and has no bytes");
  return cat("token ", token, " is outside the byte-v1 vocabulary of ", byte_v1::kVocabSize, " tokens");
}

void ByteV1Tokenizer::make_sequence(const uint32_t* tokens, size_t n, uint64_t start, size_t max_seq_len,
                                    Sequence& out) const {
  const size_t len = std::max(n, max_seq_len);
  const size_t data_len = n > 0 && tokens[n - 1] == byte_v1::kEos ? n - 1 : n;
  out.token_ids.assign(tokens, tokens + n);
  out.token_ids.resize(len, byte_v1::kPad);
  out.pos_ids.resize(len);
  for (size_t i = 0; i < len; ++i) out.pos_ids[i] = start + (i < n ? i : data_len);
  out.targets.assign(out.token_ids.begin() + (len ? 1 : 0), out.token_ids.end());
  if (len) out.targets.push_back(byte_v1::kPad);
}

}  // namespace lm
