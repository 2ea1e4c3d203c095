#include "io/tokstream.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "core/error.h"

namespace lm {

static_assert(std::endian::native == std::endian::little, "token streams are little-endian; so is this code");

namespace {

uint32_t le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
int32_t le32s(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

size_t padding_for(uint64_t bytes) { return static_cast<size_t>((tokstream::kAlign - bytes % tokstream::kAlign) % tokstream::kAlign); }

std::string hex64(uint64_t v) {
  char buf[17];
  for (int i = 15; i >= 0; --i, v >>= 4) buf[i] = "0123456789abcdef"[v & 15];
  buf[16] = '\0';
  return buf;
}

// Narrowing and widening loops: the hot paths of tokenizing and decoding. `omp simd`
// because GCC's -O2 cost model does not vectorize loops of unknown trip count.
// (Sanitizer builds cannot vectorize them; clang would warn about each.)
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif
void widen_bytes_to_u16(uint16_t* __restrict dst, const uint8_t* __restrict src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}
void widen_bytes_to_u32(uint32_t* __restrict dst, const uint8_t* __restrict src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}
void widen_u16_to_u32(uint32_t* __restrict dst, const uint16_t* __restrict src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}
void narrow_u32_to_u16(uint16_t* __restrict dst, const uint32_t* __restrict src, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<uint16_t>(src[i]);
}
uint32_t max_of(const uint32_t* p, size_t n) {
  uint32_t m = 0;
#pragma omp simd reduction(max : m)
  for (size_t i = 0; i < n; ++i) m = p[i] > m ? p[i] : m;  // (std::max defeats omp simd in GCC 12)
  return m;
}
// Index of the first token >= vocab, or n. vocab 0 = unknown: every token is accepted.
size_t first_out_of_vocab(const uint32_t* p, size_t n, uint32_t vocab) {
  if (vocab == 0 || n == 0 || max_of(p, n) < vocab) return n;
  return static_cast<size_t>(std::find_if(p, p + n, [vocab](uint32_t t) { return t >= vocab; }) - p);
}

void check_spec_writable(const TokenizerSpec& spec) {
  if (static_cast<uint32_t>(spec.kind) > static_cast<uint32_t>(TokenizerKind::HfBpe))
    fail_usage(cat("cannot write a token stream for tokenizer kind ", static_cast<uint32_t>(spec.kind)));
  if (spec.vocab_size == 0) fail_usage("cannot write a token stream with an unknown vocab size");
  const std::pair<const char*, int32_t> ids[] = {
      {"bos", spec.bos_id}, {"eos", spec.eos_id}, {"pad", spec.pad_id}, {"unk", spec.unk_id}};
  for (const auto& [what, id] : ids)
    if (id < -1 || (id >= 0 && static_cast<uint32_t>(id) >= spec.vocab_size))
      fail_usage(cat("cannot write a token stream: ", what, " id ", id, " is outside vocab size ", spec.vocab_size));
}

}  // namespace

// ---------------------------------------------------------------- tokenizer spec

const char* tokenizer_kind_name(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::Raw: return "raw";
    case TokenizerKind::ByteV1: return "byte-v1";
    case TokenizerKind::SentencePiece: return "sentencepiece";
    case TokenizerKind::HfBpe: return "hf-bpe";
  }
  return "unknown";
}

std::optional<TokenizerKind> tokenizer_kind_from_name(std::string_view name) {
  for (auto k : {TokenizerKind::Raw, TokenizerKind::ByteV1, TokenizerKind::SentencePiece, TokenizerKind::HfBpe})
    if (name == tokenizer_kind_name(k)) return k;
  return std::nullopt;
}

std::string TokenizerSpec::describe() const {
  std::string vocab = vocab_size ? std::to_string(vocab_size) : std::string("unknown");
  return cat(kind_name(), " (vocab ", vocab, ", fingerprint 0x", hex64(fingerprint), ")");
}

uint32_t token_width_for(uint32_t vocab_size) { return vocab_size != 0 && vocab_size <= 65536 ? 2 : 4; }

void require_same_tokenizer(const TokenizerSpec& expected, const TokenizerSpec& got, const std::string& what) {
  if (expected == got) return;
  std::string detail;
  if (expected.kind == got.kind && expected.vocab_size == got.vocab_size && expected.fingerprint == got.fingerprint)
    detail = " (special token ids differ)";
  fail_data(cat(what, ": tokenizer mismatch: got ", got.describe(), ", expected ", expected.describe(), detail));
}

std::vector<uint8_t> tokstream::encode_header(const TokenizerSpec& spec) {
  check_spec_writable(spec);
  std::vector<uint8_t> h(kHeaderSize, 0);
  std::memcpy(h.data(), kMagic, 8);
  put32(&h[8], kVersion);
  put32(&h[12], kHeaderSize);
  put32(&h[16], static_cast<uint32_t>(spec.kind));
  put32(&h[20], spec.vocab_size);
  put32(&h[24], token_width_for(spec.vocab_size));
  put32(&h[28], static_cast<uint32_t>(spec.bos_id));
  put32(&h[32], static_cast<uint32_t>(spec.eos_id));
  put32(&h[36], static_cast<uint32_t>(spec.pad_id));
  put32(&h[40], static_cast<uint32_t>(spec.unk_id));
  // [44, 48) reserved
  put64(&h[48], spec.fingerprint);
  // [56, 64) reserved
  return h;
}

// ---------------------------------------------------------------- writers

void RecordSink::write_byte_record(const uint8_t* bytes, size_t n, const uint32_t* extra, size_t n_extra,
                                   uint64_t start) {
  std::vector<uint32_t> tokens(n + n_extra);
  widen_bytes_to_u32(tokens.data(), bytes, n);
  std::copy(extra, extra + n_extra, tokens.data() + n);
  write_record(tokens.data(), tokens.size(), start);
}

namespace {
// The staging buffer: blocks of >= kFlushAt go to the sink in one write (a FileSink
// passes writes of >= 1 MiB straight to the file descriptor, without another copy).
constexpr size_t kStageCapacity = size_t{4} << 20;
constexpr size_t kFlushAt = size_t{1} << 20;
constexpr size_t kPieceTokens = size_t{1} << 18;  // tokens converted per step of a big record
}  // namespace

TokenStreamWriter::TokenStreamWriter(ByteSink& sink, const TokenizerSpec& spec)
    : sink_(sink), spec_(spec), width_(token_width_for(spec.vocab_size)) {
  const std::vector<uint8_t> header = tokstream::encode_header(spec);  // validates the spec
  buf_ = static_cast<uint8_t*>(std::malloc(kStageCapacity));
  if (!buf_) throw std::bad_alloc();
  std::memcpy(reserve(header.size()), header.data(), header.size());
  used_ += header.size();
}

TokenStreamWriter::~TokenStreamWriter() { std::free(buf_); }

uint8_t* TokenStreamWriter::reserve(size_t bytes) {
  if (used_ + bytes > kStageCapacity) flush();
  return buf_ + used_;
}

void TokenStreamWriter::flush() {
  if (used_) sink_.write(buf_, used_);
  used_ = 0;
}

void TokenStreamWriter::begin_record(size_t n, uint64_t start) {
  if (n > tokstream::kMaxRecordTokens)
    fail_data(cat("a record of ", n, " tokens exceeds the token stream limit of ", tokstream::kMaxRecordTokens));
  const uint64_t total = tokstream::kRecordHeaderSize + uint64_t{n} * width_ + padding_for(uint64_t{n} * width_);
  if (used_ + total > kStageCapacity) flush();
  uint8_t* p = reserve(tokstream::kRecordHeaderSize);
  std::memcpy(p, tokstream::kRecordTag, 4);
  put32(p + 4, static_cast<uint32_t>(n));
  put64(p + 8, start);
  used_ += tokstream::kRecordHeaderSize;
}

void TokenStreamWriter::end_record(size_t n) {
  const size_t pad = padding_for(uint64_t{n} * width_);
  std::memset(reserve(pad), 0, pad);
  used_ += pad;
  ++records_;
  tokens_ += n;
  if (used_ >= kFlushAt) flush();
}

void TokenStreamWriter::write_record(const uint32_t* tokens, size_t n, uint64_t start) {
  const size_t bad = first_out_of_vocab(tokens, n, spec_.vocab_size);
  if (bad < n)
    fail_data(cat("cannot write token ", tokens[bad], " at position ", start + bad, ": outside the vocab size ",
                  spec_.vocab_size, " of the ", spec_.kind_name(), " tokenizer"));
  begin_record(n, start);
  for (size_t done = 0; done < n;) {
    const size_t k = std::min(kPieceTokens, n - done);
    uint8_t* p = reserve(k * width_);
    if (width_ == 2)
      narrow_u32_to_u16(reinterpret_cast<uint16_t*>(p), tokens + done, k);
    else
      std::memcpy(p, tokens + done, k * 4);
    used_ += k * width_;
    done += k;
  }
  end_record(n);
}

void TokenStreamWriter::write_byte_record(const uint8_t* bytes, size_t n, const uint32_t* extra, size_t n_extra,
                                          uint64_t start) {
  if (spec_.vocab_size < 256)
    fail_data(cat("cannot write byte tokens to a stream of vocab size ", spec_.vocab_size));
  const size_t bad = first_out_of_vocab(extra, n_extra, spec_.vocab_size);
  if (bad < n_extra)
    fail_data(cat("cannot write token ", extra[bad], ": outside the vocab size ", spec_.vocab_size));
  if (n > tokstream::kMaxRecordTokens - n_extra)
    fail_data(cat("a record of ", n + n_extra, " tokens exceeds the token stream limit of ", tokstream::kMaxRecordTokens));
  begin_record(n + n_extra, start);
  for (size_t done = 0; done < n;) {
    const size_t k = std::min(kPieceTokens, n - done);
    uint8_t* p = reserve(k * width_);
    if (width_ == 2)
      widen_bytes_to_u16(reinterpret_cast<uint16_t*>(p), bytes + done, k);
    else
      widen_bytes_to_u32(reinterpret_cast<uint32_t*>(p), bytes + done, k);
    used_ += k * width_;
    done += k;
  }
  for (size_t i = 0; i < n_extra; ++i) {
    uint8_t* p = reserve(width_);
    if (width_ == 2) {
      const uint16_t t = static_cast<uint16_t>(extra[i]);
      std::memcpy(p, &t, 2);
    } else {
      std::memcpy(p, &extra[i], 4);
    }
    used_ += width_;
  }
  end_record(n + n_extra);
}

void TokenStreamWriter::finish() {
  flush();
  sink_.finish();
}

void TextRecordWriter::write_record(const uint32_t* tokens, size_t n, uint64_t start) {
  line_.clear();
  char num[16];
  for (size_t i = 0; i < n; ++i) {
    if (i) line_.push_back(' ');
    const auto r = std::to_chars(num, num + sizeof(num), tokens[i]);
    line_.insert(line_.end(), num, r.ptr);
    if (line_.size() >= (size_t{1} << 16)) {
      sink_.write(line_.data(), line_.size());
      line_.clear();
    }
  }
  line_.push_back('\n');
  sink_.write(line_.data(), line_.size());
}

void TextRecordWriter::finish() { sink_.finish(); }

// ---------------------------------------------------------------- readers

const char* token_input_format_name(TokenInputFormat f) {
  switch (f) {
    case TokenInputFormat::Auto: return "auto";
    case TokenInputFormat::Stream: return "stream";
    case TokenInputFormat::Llmc: return "llmc";
    case TokenInputFormat::U16: return "u16";
    case TokenInputFormat::U32: return "u32";
  }
  return "unknown";
}

std::optional<TokenInputFormat> token_input_format_from_name(std::string_view name) {
  for (auto f : {TokenInputFormat::Auto, TokenInputFormat::Stream, TokenInputFormat::Llmc, TokenInputFormat::U16,
                 TokenInputFormat::U32})
    if (name == token_input_format_name(f)) return f;
  return std::nullopt;
}

namespace {

// A buffered source that can peek ahead and counts the bytes it has handed out.
class InBuf final : public ByteSource {
 public:
  explicit InBuf(std::unique_ptr<ByteSource> src) : src_(std::move(src)), buf_(kCapacity) {}

  size_t read_some(void* dst, size_t n) override {
    if (pos_ == end_ && n >= kCapacity) {
      const size_t k = src_->read_some(dst, n);
      offset_ += k;
      return k;
    }
    if (pos_ == end_ && fill(1) == 0) return 0;
    const size_t k = std::min(n, end_ - pos_);
    std::memcpy(dst, buf_.data() + pos_, k);
    consume(k);
    return k;
  }
  const std::string& name() const override { return src_->name(); }

  // Makes at least min(n, capacity) bytes available unless the input ends first; returns how many are.
  size_t fill(size_t n) {
    n = std::min(n, kCapacity);
    if (end_ - pos_ >= n) return end_ - pos_;
    if (pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
      end_ -= pos_;
      pos_ = 0;
    }
    while (end_ < n) {
      const size_t k = src_->read_some(buf_.data() + end_, kCapacity - end_);
      if (k == 0) break;
      end_ += k;
    }
    return end_ - pos_;
  }
  const uint8_t* data() const { return buf_.data() + pos_; }
  void consume(size_t n) {
    pos_ += n;
    offset_ += n;
  }
  // Reads n bytes, or fewer only at the end of the input.
  size_t read(void* dst, size_t n) {
    if (n == 0) return 0;  // dst may be null (an empty vector's data())
    auto* out = static_cast<uint8_t*>(dst);
    size_t got = std::min(n, end_ - pos_);
    std::memcpy(out, buf_.data() + pos_, got);
    consume(got);
    if (got < n && n - got >= kCapacity / 2) {  // big reads bypass the buffer
      const size_t k = src_->read_full(out + got, n - got);
      offset_ += k;
      return got + k;
    }
    while (got < n) {
      const size_t avail = fill(n - got);
      if (avail == 0) break;
      const size_t k = std::min(avail, n - got);
      std::memcpy(out + got, data(), k);
      consume(k);
      got += k;
    }
    return got;
  }
  uint64_t offset() const { return offset_; }

 private:
  static constexpr size_t kCapacity = size_t{1} << 18;
  std::unique_ptr<ByteSource> src_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, end_ = 0;
  uint64_t offset_ = 0;
};

// Shared by the three readers: the input, its name for messages and reading tokens of a width.
class ReaderBase : public TokenReader {
 protected:
  ReaderBase(std::unique_ptr<InBuf> in, const TokenReadOptions& opts, bool compressed)
      : in_(std::move(in)), max_chunk_(std::max<size_t>(1, opts.max_chunk_tokens)) {
    name_ = in_->name();
    compressed_ = compressed;
    decompressed_ = compressed || opts.decompressed;
  }

  std::string at(uint64_t offset) const {
    return cat("at byte ", offset, decompressed_ ? " of the decompressed stream" : "");
  }
  [[noreturn]] void fail_here(const std::string& msg) const { fail_data(cat(quote(name_), ": ", msg)); }

  // Reads up to k tokens of width_ into out.tokens; returns the number of bytes read.
  size_t read_tokens(TokenChunk& out, size_t k) {
    out.tokens.resize(k);
    if (width_ == 4) return in_->read(out.tokens.data(), k * 4);
    scratch_.resize(k);
    const size_t got = in_->read(scratch_.data(), k * 2);
    widen_u16_to_u32(out.tokens.data(), scratch_.data(), got / 2);
    return got;
  }
  void check_vocab(const TokenChunk& out, uint64_t first_token_offset, const std::string& what) const {
    const size_t bad = first_out_of_vocab(out.tokens.data(), out.tokens.size(), spec_.vocab_size);
    if (bad < out.tokens.size())
      fail_here(cat("token ", out.tokens[bad], " is outside the vocab size ", spec_.vocab_size, " (", what, ", ",
                    at(first_token_offset + uint64_t{bad} * width_), ")"));
  }

  std::unique_ptr<InBuf> in_;
  size_t max_chunk_;
  bool decompressed_ = false;
  std::vector<uint16_t> scratch_;
};

// ---- lmkit token streams

class StreamReader final : public ReaderBase {
 public:
  StreamReader(std::unique_ptr<InBuf> in, const TokenReadOptions& opts, bool compressed)
      : ReaderBase(std::move(in), opts, compressed) {
    format_ = TokenInputFormat::Stream;
    spec_ = read_header();
    width_ = token_width_for(spec_.vocab_size);
  }

  bool next(TokenChunk& out) override {
    if (!in_record_ && !start_record()) return false;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(remaining_, max_chunk_));
    const uint64_t token_offset = in_->offset();
    const size_t got = read_tokens(out, k);
    if (got < k * width_)
      fail_here(cat("truncated record ", record_, " (", at(record_offset_), "): the input ends after ",
                    (rec_off_ * width_) + got, " of its ", uint64_t{count_} * width_, " token bytes"));
    check_vocab(out, token_offset, cat("record ", record_));
    out.offset = token_offset;
    out.start = start_ + rec_off_;
    out.record = record_;
    out.first = rec_off_ == 0;
    rec_off_ += k;
    remaining_ -= k;
    out.last = remaining_ == 0;
    if (out.last) {
      const size_t pad = padding_for(uint64_t{count_} * width_);
      const uint64_t pad_offset = in_->offset();
      if (in_->fill(pad) < pad)
        fail_here(cat("truncated record ", record_, " (", at(record_offset_), "): the input ends in its padding"));
      for (size_t i = 0; i < pad; ++i)
        if (in_->data()[i] != 0) fail_here(cat("nonzero record padding ", at(pad_offset + i)));
      in_->consume(pad);
      in_record_ = false;
    }
    return true;
  }

 private:
  // Reads and validates a header at the current position.
  TokenizerSpec read_header() {
    const uint64_t off = in_->offset();
    const size_t got = in_->fill(tokstream::kHeaderSize);
    const uint8_t* p = in_->data();
    if (got == 0) fail_here("empty input, not a token stream");
    if (std::memcmp(p, tokstream::kMagic, std::min<size_t>(got, 8)) != 0)
      fail_here(off == 0 ? std::string("not a token stream (bad magic)") : cat("bad stream header magic ", at(off)));
    if (got < tokstream::kHeaderSize)
      fail_here(cat("truncated token stream header ", at(off), ": got ", got, " of ", tokstream::kHeaderSize, " bytes"));
    const uint32_t version = le32(p + 8);
    if (version != tokstream::kVersion)
      fail_here(cat("unsupported token stream version ", version, " ", at(off), " (this build reads version ",
                    tokstream::kVersion, ")"));
    const uint32_t header_size = le32(p + 12);
    if (header_size != tokstream::kHeaderSize)
      fail_here(cat("bad token stream header size ", header_size, " ", at(off), " (version 1 headers are ",
                    tokstream::kHeaderSize, " bytes)"));
    TokenizerSpec s;
    const uint32_t kind = le32(p + 16);
    if (kind > static_cast<uint32_t>(TokenizerKind::HfBpe))
      fail_here(cat("unknown tokenizer kind ", kind, " in the token stream header ", at(off)));
    s.kind = static_cast<TokenizerKind>(kind);
    s.vocab_size = le32(p + 20);
    if (s.vocab_size == 0) fail_here(cat("vocab size 0 in the token stream header ", at(off)));
    const uint32_t width = le32(p + 24);
    if (width != token_width_for(s.vocab_size))
      fail_here(cat("token width ", width, " in the token stream header ", at(off), " does not match vocab size ",
                    s.vocab_size, " (expected ", token_width_for(s.vocab_size), ")"));
    const std::pair<const char*, int32_t*> ids[] = {
        {"bos", &s.bos_id}, {"eos", &s.eos_id}, {"pad", &s.pad_id}, {"unk", &s.unk_id}};
    for (size_t i = 0; i < 4; ++i) {
      const int32_t id = le32s(p + 28 + 4 * i);
      if (id < -1 || (id >= 0 && static_cast<uint32_t>(id) >= s.vocab_size))
        fail_here(cat(ids[i].first, " id ", id, " in the token stream header ", at(off), " is outside vocab size ",
                      s.vocab_size));
      *ids[i].second = id;
    }
    s.fingerprint = le64(p + 48);
    for (size_t i : {44, 45, 46, 47, 56, 57, 58, 59, 60, 61, 62, 63})
      if (p[i] != 0) fail_here(cat("nonzero reserved byte in the token stream header ", at(off + i)));
    in_->consume(tokstream::kHeaderSize);
    return s;
  }

  // At a record boundary: reads the next record header, passing over repeated stream
  // headers of the same tokenizer. False at the clean end.
  bool start_record() {
    for (;;) {
      const uint64_t off = in_->offset();
      const size_t got = in_->fill(tokstream::kRecordHeaderSize);
      if (got == 0) return false;
      const uint8_t* p = in_->data();
      if (got >= 4 && std::memcmp(p, tokstream::kMagic, 4) == 0) {  // "LMKT": a concatenated stream
        const TokenizerSpec again = read_header();
        if (again != spec_)
          fail_here(cat("concatenated token stream ", at(off), " has a different tokenizer: got ", again.describe(),
                        ", expected ", spec_.describe()));
        continue;
      }
      if (got < 4 || std::memcmp(p, tokstream::kRecordTag, 4) == 0) {
        if (got < tokstream::kRecordHeaderSize)
          fail_here(cat("truncated record header ", at(off), ": got ", got, " of ", tokstream::kRecordHeaderSize,
                        " bytes"));
      } else {
        char tag[12];
        std::snprintf(tag, sizeof(tag), "%02x%02x%02x%02x", p[0], p[1], p[2], p[3]);
        fail_here(cat("bad record tag 0x", tag, " ", at(off), " (not a record or a stream header)"));
      }
      const uint32_t count = le32(p + 4);
      const uint64_t start = le64(p + 8);
      if (count > tokstream::kMaxRecordTokens)
        fail_here(cat("record ", records_seen_, " ", at(off), ": token count ", count, " exceeds the limit ",
                      tokstream::kMaxRecordTokens));
      if (start > std::numeric_limits<uint64_t>::max() - count)
        fail_here(cat("record ", records_seen_, " ", at(off), ": start position ", start, " + ", count,
                      " tokens overflows 64 bits"));
      in_->consume(tokstream::kRecordHeaderSize);
      record_ = records_seen_++;
      record_offset_ = off;
      count_ = count;
      start_ = start;
      rec_off_ = 0;
      remaining_ = count;
      in_record_ = true;
      return true;
    }
  }

  bool in_record_ = false;
  uint64_t records_seen_ = 0, record_ = 0, record_offset_ = 0, start_ = 0, rec_off_ = 0, remaining_ = 0;
  uint32_t count_ = 0;
};

// ---- llm.c .bin token files: 256 x int32 header, then ntok tokens; one record at 0

class LlmcReader final : public ReaderBase {
 public:
  LlmcReader(std::unique_ptr<InBuf> in, const TokenReadOptions& opts, bool compressed)
      : ReaderBase(std::move(in), opts, compressed) {
    format_ = TokenInputFormat::Llmc;
    const size_t got = in_->fill(kLlmcHeaderBytes);
    const uint8_t* p = in_->data();
    const int32_t magic = got >= 4 ? le32s(p) : 0;
    if (magic != kLlmcMagicU16 && magic != kLlmcMagicU32)
      fail_here(got == 0 ? std::string("empty input, not an llm.c token file")
                         : cat("not an llm.c token file (bad magic ", magic, ")"));
    if (got < kLlmcHeaderBytes)
      fail_here(cat("truncated llm.c header: got ", got, " of ", kLlmcHeaderBytes, " bytes"));
    const int32_t version = le32s(p + 4);
    const int32_t want_version = magic == kLlmcMagicU16 ? 1 : 7;
    if (version != want_version)
      fail_here(cat("unsupported llm.c token file version ", version, " for magic ", magic, " (expected ",
                    want_version, ")"));
    const int32_t ntok = le32s(p + 8);
    if (ntok <= 0) fail_here(cat("bad llm.c token count ", ntok, " (expected 0 < ntok < 2^31)"));
    for (size_t i = 3; i < 256; ++i)
      if (le32s(p + 4 * i) != 0)
        fail_here(cat("nonzero llm.c header field [", i, "] = ", le32s(p + 4 * i), " (expected 0)"));
    in_->consume(kLlmcHeaderBytes);
    width_ = magic == kLlmcMagicU16 ? 2 : 4;
    spec_.kind = TokenizerKind::Raw;
    spec_.vocab_size = opts.vocab_size;
    ntok_ = static_cast<uint64_t>(ntok);
  }

  bool next(TokenChunk& out) override {
    if (done_ == ntok_) return false;
    const size_t k = static_cast<size_t>(std::min<uint64_t>(ntok_ - done_, max_chunk_));
    const uint64_t token_offset = in_->offset();
    const size_t got = read_tokens(out, k);
    const uint64_t file_size = kLlmcHeaderBytes + ntok_ * width_;
    if (got < k * width_)
      fail_here(cat("truncated llm.c token file: the header declares ", ntok_, " tokens (a file of ", file_size,
                    " bytes), the input ends after ", in_->offset(), " bytes"));
    check_vocab(out, token_offset, "llm.c tokens");
    out.offset = token_offset;
    out.start = done_;
    out.record = 0;
    out.first = done_ == 0;
    done_ += k;
    out.last = done_ == ntok_;
    if (out.last && in_->fill(1) != 0)
      fail_here(cat("trailing bytes after the ", ntok_, " tokens the llm.c header declares (expected a file of ",
                    file_size, " bytes)"));
    return true;
  }

 private:
  uint64_t ntok_ = 0, done_ = 0;
};

// ---- headerless u16/u32 tokens (nanoGPT): one record at 0

class RawReader final : public ReaderBase {
 public:
  RawReader(std::unique_ptr<InBuf> in, const TokenReadOptions& opts, bool compressed, uint32_t width)
      : ReaderBase(std::move(in), opts, compressed) {
    format_ = width == 2 ? TokenInputFormat::U16 : TokenInputFormat::U32;
    width_ = width;
    spec_.kind = TokenizerKind::Raw;
    spec_.vocab_size = opts.vocab_size;
    if (width == 2 && opts.vocab_size > 65536)
      fail_usage(cat("vocab size ", opts.vocab_size, " does not fit u16 tokens"));
  }

  bool next(TokenChunk& out) override {
    if (ended_) return false;
    const uint64_t token_offset = in_->offset();
    const size_t got = read_tokens(out, max_chunk_);
    if (got % width_ != 0)
      fail_here(cat("the input ends inside a token: ", in_->offset(), " bytes is not a multiple of the token width ",
                    width_));
    out.tokens.resize(got / width_);
    if (got == 0 && done_ == 0) return false;  // empty input: no records
    check_vocab(out, token_offset, "raw tokens");
    out.offset = token_offset;
    out.start = done_;
    out.record = 0;
    out.first = done_ == 0;
    done_ += out.tokens.size();
    out.last = got < max_chunk_ * width_ || in_->fill(1) == 0;
    ended_ = out.last;
    return true;
  }

 private:
  uint64_t done_ = 0;
  bool ended_ = false;
};

}  // namespace

std::unique_ptr<TokenReader> open_token_reader(std::unique_ptr<ByteSource> src, const TokenReadOptions& opts) {
  auto in = std::make_unique<InBuf>(std::move(src));
  bool compressed = false;
  if (in->fill(4) >= 4 && is_zstd_magic(in->data(), 4)) {
    compressed = true;
    in = std::make_unique<InBuf>(auto_decompress(std::move(in)));
  }
  switch (opts.format) {
    case TokenInputFormat::U16: return std::make_unique<RawReader>(std::move(in), opts, compressed, 2);
    case TokenInputFormat::U32: return std::make_unique<RawReader>(std::move(in), opts, compressed, 4);
    case TokenInputFormat::Stream: return std::make_unique<StreamReader>(std::move(in), opts, compressed);
    case TokenInputFormat::Llmc: return std::make_unique<LlmcReader>(std::move(in), opts, compressed);
    case TokenInputFormat::Auto: break;
  }
  const size_t got = in->fill(8);
  const uint8_t* p = in->data();
  if (got >= 8 && std::memcmp(p, tokstream::kMagic, 8) == 0)
    return std::make_unique<StreamReader>(std::move(in), opts, compressed);
  if (got >= 4 && (le32s(p) == kLlmcMagicU16 || le32s(p) == kLlmcMagicU32))
    return std::make_unique<LlmcReader>(std::move(in), opts, compressed);
  if (got == 0) fail_data(cat(quote(in->name()), ": empty input, not a token stream"));
  fail(ErrorKind::Data, cat(quote(in->name()), ": not a token stream (bad magic)"),
       "headerless token files (nanoGPT .bin) need --input-format u16 or u32");
}

std::unique_ptr<TokenReader> open_token_reader(const std::string& path, const TokenReadOptions& opts) {
  return open_token_reader(open_raw_input(path), opts);
}

}  // namespace lm
