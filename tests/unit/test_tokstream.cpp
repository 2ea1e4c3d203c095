// The token stream format: layout, round trips, concatenation, zstd, the headerless
// readers (llm.c, raw), and one hand-made corrupt input per failure class.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/stream.h"
#include "io/tokstream.h"
#include "tokenizer/byte_v1.h"

namespace lm {
namespace {

using Bytes = std::vector<uint8_t>;

struct Rec {
  uint64_t start;
  std::vector<uint32_t> tokens;
  bool operator==(const Rec&) const = default;
};

uint32_t get32(const Bytes& b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}
void set32(Bytes& b, size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
void set64(Bytes& b, size_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); }

Bytes write_stream(const TokenizerSpec& spec, const std::vector<Rec>& recs, int zstd_level = 0) {
  Bytes out;
  std::unique_ptr<ByteSink> sink = memory_sink(&out);
  if (zstd_level) sink = zstd_sink(std::move(sink), zstd_level);
  TokenStreamWriter w(*sink, spec);
  for (const Rec& r : recs) w.write_record(r.tokens.data(), r.tokens.size(), r.start);
  w.finish();
  return out;
}

std::unique_ptr<TokenReader> open_bytes(const Bytes& b, TokenReadOptions opts = {}) {
  return open_token_reader(memory_source(b.data(), b.size(), "mem.tok"), opts);
}

// Reads every record, joining chunks and checking the chunk flags on the way.
std::vector<Rec> read_all(TokenReader& r) {
  std::vector<Rec> out;
  TokenChunk c;
  bool open = false;
  while (r.next(c)) {
    EXPECT_EQ(c.first, !open);
    if (c.first) {
      out.push_back({c.start, {}});
      EXPECT_EQ(c.record, out.size() - 1);
    }
    EXPECT_EQ(c.start, out.back().start + out.back().tokens.size());
    out.back().tokens.insert(out.back().tokens.end(), c.tokens.begin(), c.tokens.end());
    open = !c.last;
  }
  EXPECT_FALSE(open) << "input ended inside a record";
  return out;
}
std::vector<Rec> read_all(const Bytes& b, TokenReadOptions opts = {}) { return read_all(*open_bytes(b, opts)); }

// Runs `f` and returns the Data error's message ("" when nothing was thrown).
template <class F>
std::string data_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data) << e.what();
    return e.what();
  }
  return "";
}
std::string read_error(const Bytes& b, TokenReadOptions opts = {}) {
  return data_error([&] { read_all(b, opts); });
}

TokenizerSpec spec264() { return byte_v1::spec(); }
const std::vector<Rec> kRecs = {{0, {72, 105, 257}}, {3, {}}, {1000000000000ull, {0, 255, 256, 1, 2}}, {7, {9}}};

// ---------------------------------------------------------------- spec helpers

TEST(TokenizerSpec, KindNamesRoundTrip) {
  for (auto k : {TokenizerKind::Raw, TokenizerKind::ByteV1, TokenizerKind::SentencePiece, TokenizerKind::HfBpe})
    EXPECT_EQ(tokenizer_kind_from_name(tokenizer_kind_name(k)), k);
  EXPECT_EQ(tokenizer_kind_name(TokenizerKind::ByteV1), std::string("byte-v1"));
  EXPECT_FALSE(tokenizer_kind_from_name("bpe").has_value());
  for (auto f : {TokenInputFormat::Auto, TokenInputFormat::Stream, TokenInputFormat::Llmc, TokenInputFormat::U16,
                 TokenInputFormat::U32})
    EXPECT_EQ(token_input_format_from_name(token_input_format_name(f)), f);
}

TEST(TokenizerSpec, TokenWidthFollowsVocabSize) {
  EXPECT_EQ(token_width_for(264), 2u);
  EXPECT_EQ(token_width_for(65536), 2u);
  EXPECT_EQ(token_width_for(65537), 4u);
  EXPECT_EQ(token_width_for(128256), 4u);
  EXPECT_EQ(token_width_for(0), 4u);
}

TEST(TokenizerSpec, MismatchIsADataErrorNamingBoth) {
  TokenizerSpec other = spec264();
  EXPECT_NO_THROW(require_same_tokenizer(spec264(), other, "'x'"));
  other.vocab_size = 32000;
  other.kind = TokenizerKind::SentencePiece;
  const std::string msg = data_error([&] { require_same_tokenizer(spec264(), other, "'x'"); });
  EXPECT_NE(msg.find("'x': tokenizer mismatch: got sentencepiece (vocab 32000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected byte-v1 (vocab 264"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- layout

TEST(TokenStream, HeaderLayoutIsExact) {
  const Bytes h = tokstream::encode_header(spec264());
  ASSERT_EQ(h.size(), 64u);
  EXPECT_EQ(std::memcmp(h.data(), "LMKTOKS\0", 8), 0);
  EXPECT_EQ(get32(h, 8), 1u);     // version
  EXPECT_EQ(get32(h, 12), 64u);   // header size
  EXPECT_EQ(get32(h, 16), 1u);    // kind byte-v1
  EXPECT_EQ(get32(h, 20), 264u);  // vocab
  EXPECT_EQ(get32(h, 24), 2u);    // width
  EXPECT_EQ(get32(h, 28), 0xffffffffu);  // bos none
  EXPECT_EQ(get32(h, 32), 257u);         // eos
  EXPECT_EQ(get32(h, 36), 256u);         // pad
  EXPECT_EQ(get32(h, 40), 0xffffffffu);  // unk none
  EXPECT_EQ(get32(h, 44), 0u);
  uint64_t fp;
  std::memcpy(&fp, h.data() + 48, 8);
  EXPECT_EQ(fp, byte_v1::fingerprint());
  for (size_t i = 56; i < 64; ++i) EXPECT_EQ(h[i], 0) << i;
}

TEST(TokenStream, RecordLayoutIsExactAndAligned) {
  const Bytes b = write_stream(spec264(), {{5, {1, 2, 3}}});
  ASSERT_EQ(b.size(), 64u + 16u + 8u);  // 3 u16 tokens = 6 bytes, padded to 8
  EXPECT_EQ(std::memcmp(b.data() + 64, "LMKR", 4), 0);
  EXPECT_EQ(get32(b, 68), 3u);
  EXPECT_EQ(get32(b, 72), 5u);
  EXPECT_EQ(get32(b, 76), 0u);
  EXPECT_EQ(b[80], 1);
  EXPECT_EQ(b[82], 2);
  EXPECT_EQ(b[84], 3);
  EXPECT_EQ(b[86], 0);
  EXPECT_EQ(b[87], 0);
}

TEST(TokenStream, WriterRefusesBadSpecsAndTokens) {
  Bytes out;
  auto sink = memory_sink(&out);
  TokenizerSpec s;
  s.vocab_size = 0;
  EXPECT_THROW(TokenStreamWriter(*sink, s), Error);
  s.vocab_size = 10;
  s.eos_id = 10;
  EXPECT_THROW(TokenStreamWriter(*sink, s), Error);
  TokenStreamWriter w(*sink, spec264());
  const uint32_t bad[] = {1, 264};
  const std::string msg = data_error([&] { w.write_record(bad, 2, 0); });
  EXPECT_NE(msg.find("cannot write token 264"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- round trips

TEST(TokenStream, RoundTripU16) {
  const Bytes b = write_stream(spec264(), kRecs);
  EXPECT_EQ(b.size() % 8, 0u);
  const auto r = open_bytes(b);
  EXPECT_EQ(r->spec(), spec264());
  EXPECT_EQ(r->token_width(), 2u);
  EXPECT_EQ(r->format(), TokenInputFormat::Stream);
  EXPECT_FALSE(r->compressed());
  EXPECT_EQ(read_all(*r), kRecs);
}

TEST(TokenStream, RoundTripU32) {
  TokenizerSpec s;
  s.kind = TokenizerKind::HfBpe;
  s.vocab_size = 128256;
  s.bos_id = 128000;
  s.eos_id = 128001;
  s.fingerprint = 0x1234;
  const std::vector<Rec> recs = {{0, {128000, 70000, 0, 128255}}, {4, {65536}}};
  const Bytes b = write_stream(s, recs);
  EXPECT_EQ(get32(b, 24), 4u);
  const auto r = open_bytes(b);
  EXPECT_EQ(r->spec(), s);
  EXPECT_EQ(r->token_width(), 4u);
  EXPECT_EQ(read_all(*r), recs);
}

TEST(TokenStream, ByteRecordsMatchTokenRecords) {
  const uint8_t bytes[] = {0, 1, 127, 128, 255};
  const uint32_t eos[] = {257};
  Bytes a, b;
  auto sa = memory_sink(&a), sb = memory_sink(&b);
  TokenStreamWriter wa(*sa, spec264()), wb(*sb, spec264());
  wa.write_byte_record(bytes, 5, eos, 1, 9);
  const uint32_t tokens[] = {0, 1, 127, 128, 255, 257};
  wb.write_record(tokens, 6, 9);
  wa.finish();
  wb.finish();
  EXPECT_EQ(a, b);
  EXPECT_EQ(wa.records_written(), 1u);
  EXPECT_EQ(wa.tokens_written(), 6u);
}

TEST(TokenStream, BigRecordsSpanTheStagingBuffer) {
  std::vector<uint32_t> big(3'000'001);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint32_t>(i % 264);
  std::vector<uint8_t> bytes(5'000'003);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  Bytes out;
  auto sink = memory_sink(&out);
  TokenStreamWriter w(*sink, spec264());
  w.write_record(big.data(), big.size(), 0);
  w.write_byte_record(bytes.data(), bytes.size(), nullptr, 0, 11);
  w.finish();
  const auto recs = read_all(out);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].tokens, big);
  ASSERT_EQ(recs[1].tokens.size(), bytes.size());
  EXPECT_EQ(recs[1].start, 11u);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(recs[1].tokens[i], bytes[i]) << i;
}

TEST(TokenStream, ChunksBoundMemoryAndCarryPositions) {
  std::vector<uint32_t> t(10);
  for (uint32_t i = 0; i < 10; ++i) t[i] = i;
  const Bytes b = write_stream(spec264(), {{100, t}});
  TokenReadOptions o;
  o.max_chunk_tokens = 3;
  const auto r = open_bytes(b, o);
  TokenChunk c;
  std::vector<std::pair<uint64_t, size_t>> got;
  while (r->next(c)) {
    got.push_back({c.start, c.tokens.size()});
    EXPECT_EQ(c.tokens.front(), c.start - 100);
    EXPECT_EQ(c.first, c.start == 100);
    EXPECT_EQ(c.last, c.start == 109);
  }
  EXPECT_EQ(got, (std::vector<std::pair<uint64_t, size_t>>{{100, 3}, {103, 3}, {106, 3}, {109, 1}}));
}

TEST(TokenStream, HeaderOnlyStreamHasNoRecords) {
  const Bytes b = write_stream(spec264(), {});
  EXPECT_EQ(b.size(), 64u);
  EXPECT_TRUE(read_all(b).empty());
}

TEST(TokenStream, ConcatenatedStreamsReadAsOne) {
  const Bytes a = write_stream(spec264(), {{0, {1, 2}}});
  const Bytes b = write_stream(spec264(), {{0, {3}}, {1, {4, 5, 6}}});
  const Bytes empty = write_stream(spec264(), {});
  Bytes ab = a;
  ab.insert(ab.end(), empty.begin(), empty.end());
  ab.insert(ab.end(), b.begin(), b.end());
  const std::vector<Rec> want = {{0, {1, 2}}, {0, {3}}, {1, {4, 5, 6}}};
  EXPECT_EQ(read_all(ab), want);
}

TEST(TokenStream, ConcatenatedStreamOfAnotherTokenizerIsAnError) {
  TokenizerSpec other = spec264();
  other.fingerprint ^= 1;
  Bytes ab = write_stream(spec264(), {{0, {1}}});
  const size_t at = ab.size();
  const Bytes b = write_stream(other, {{0, {3}}});
  ab.insert(ab.end(), b.begin(), b.end());
  const std::string msg = read_error(ab);
  EXPECT_NE(msg.find("'mem.tok': concatenated token stream at byte " + std::to_string(at) +
                     " has a different tokenizer"),
            std::string::npos)
      << msg;
}

TEST(TokenStream, ZstdRoundTripAndConcatenatedFrames) {
  const Bytes z = write_stream(spec264(), kRecs, 3);
  ASSERT_TRUE(is_zstd_magic(z.data(), z.size()));
  const auto r = open_bytes(z);
  EXPECT_TRUE(r->compressed());
  EXPECT_EQ(read_all(*r), kRecs);
  Bytes zz = z;
  zz.insert(zz.end(), z.begin(), z.end());
  std::vector<Rec> twice = kRecs;
  twice.insert(twice.end(), kRecs.begin(), kRecs.end());
  EXPECT_EQ(read_all(zz), twice);
}

TEST(TokenStream, ErrorsInCompressedStreamsSayDecompressed) {
  Bytes plain = write_stream(spec264(), {{0, {1, 2}}});
  set32(plain, 80, 300);  // first token out of vocab
  Bytes z;
  auto sink = zstd_sink(memory_sink(&z), 3);
  sink->write(plain.data(), plain.size());
  sink->finish();
  const std::string msg = read_error(z);
  EXPECT_NE(msg.find("at byte 80 of the decompressed stream"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- corrupt streams, one per class

TEST(TokenStreamErrors, WrongMagic) {
  Bytes b = write_stream(spec264(), kRecs);
  b[3] = 'X';
  const std::string msg = read_error(b);
  EXPECT_EQ(msg, "'mem.tok': not a token stream (bad magic)");
  b = Bytes{'h', 'e', 'l', 'l', 'o'};
  EXPECT_EQ(read_error(b), "'mem.tok': not a token stream (bad magic)");
  TokenReadOptions o;
  o.format = TokenInputFormat::Stream;
  EXPECT_EQ(read_error(b, o), "'mem.tok': not a token stream (bad magic)");
}

TEST(TokenStreamErrors, EmptyInput) {
  EXPECT_EQ(read_error(Bytes{}), "'mem.tok': empty input, not a token stream");
}

TEST(TokenStreamErrors, BadVersion) {
  Bytes b = write_stream(spec264(), kRecs);
  set32(b, 8, 2);
  EXPECT_NE(read_error(b).find("unsupported token stream version 2 at byte 0 (this build reads version 1)"),
            std::string::npos);
}

TEST(TokenStreamErrors, BadHeaderSize) {
  Bytes b = write_stream(spec264(), kRecs);
  set32(b, 12, 80);
  EXPECT_NE(read_error(b).find("bad token stream header size 80"), std::string::npos);
}

TEST(TokenStreamErrors, UnknownKindZeroVocabWidthAndSpecialIds) {
  Bytes b = write_stream(spec264(), kRecs);
  Bytes k = b;
  set32(k, 16, 9);
  EXPECT_NE(read_error(k).find("unknown tokenizer kind 9"), std::string::npos);
  Bytes v = b;
  set32(v, 20, 0);
  EXPECT_NE(read_error(v).find("vocab size 0 in the token stream header"), std::string::npos);
  Bytes w = b;
  set32(w, 24, 4);
  EXPECT_NE(read_error(w).find("token width 4 in the token stream header at byte 0 does not match vocab size 264"),
            std::string::npos);
  Bytes id = b;
  set32(id, 32, 264);
  EXPECT_NE(read_error(id).find("eos id 264 in the token stream header at byte 0 is outside vocab size 264"),
            std::string::npos);
  set32(id, 32, static_cast<uint32_t>(-2));
  EXPECT_NE(read_error(id).find("eos id -2"), std::string::npos);
}

TEST(TokenStreamErrors, NonzeroReserved) {
  for (size_t off : {44, 47, 56, 63}) {
    Bytes b = write_stream(spec264(), kRecs);
    b[off] = 1;
    EXPECT_EQ(read_error(b), "'mem.tok': nonzero reserved byte in the token stream header at byte " +
                                 std::to_string(off))
        << off;
  }
}

TEST(TokenStreamErrors, TruncatedHeader) {
  Bytes b = write_stream(spec264(), kRecs);
  b.resize(30);
  EXPECT_EQ(read_error(b), "'mem.tok': truncated token stream header at byte 0: got 30 of 64 bytes");
  // A truncated header after a record, in a concatenation.
  Bytes c = write_stream(spec264(), {{0, {1}}});
  const Bytes h = tokstream::encode_header(spec264());
  c.insert(c.end(), h.begin(), h.begin() + 6);
  EXPECT_NE(read_error(c).find("truncated token stream header at byte 88: got 6 of 64 bytes"), std::string::npos)
      << read_error(c);
}

TEST(TokenStreamErrors, TruncatedRecord) {
  const Bytes full = write_stream(spec264(), {{0, {1, 2, 3, 4, 5}}});  // 64 + 16 + 10 + 6 pad
  Bytes b = full;
  b.resize(64 + 9);
  EXPECT_EQ(read_error(b), "'mem.tok': truncated record header at byte 64: got 9 of 16 bytes");
  b = full;
  b.resize(64 + 16 + 7);
  EXPECT_EQ(read_error(b),
            "'mem.tok': truncated record 0 (at byte 64): the input ends after 7 of its 10 token bytes");
  b = full;
  b.resize(64 + 16 + 10 + 3);
  EXPECT_EQ(read_error(b), "'mem.tok': truncated record 0 (at byte 64): the input ends in its padding");
}

TEST(TokenStreamErrors, NonzeroPadding) {
  Bytes b = write_stream(spec264(), {{0, {1, 2, 3}}});
  b[64 + 16 + 7] = 9;
  EXPECT_EQ(read_error(b), "'mem.tok': nonzero record padding at byte 87");
}

TEST(TokenStreamErrors, BadTag) {
  Bytes b = write_stream(spec264(), {{0, {1, 2, 3, 4}}, {4, {5}}});
  b[64 + 16 + 8] = 'X';  // second record's tag
  EXPECT_EQ(read_error(b), "'mem.tok': bad record tag 0x584d4b52 at byte 88 (not a record or a stream header)");
}

TEST(TokenStreamErrors, CountTooLarge) {
  Bytes b = write_stream(spec264(), {{0, {1, 2, 3, 4}}});
  set32(b, 68, 0x80000000u);
  EXPECT_EQ(read_error(b), "'mem.tok': record 0 at byte 64: token count 2147483648 exceeds the limit 2147483647");
  // The largest legal count on a short input is a truncation, found without allocating it all.
  set32(b, 68, 0x7fffffffu);
  EXPECT_NE(read_error(b).find("truncated record 0"), std::string::npos);
}

TEST(TokenStreamErrors, StartOverflow) {
  Bytes b = write_stream(spec264(), {{0, {1, 2, 3, 4}}});
  set64(b, 72, ~uint64_t{0} - 1);
  EXPECT_NE(read_error(b).find("start position 18446744073709551614 + 4 tokens overflows 64 bits"),
            std::string::npos);
}

TEST(TokenStreamErrors, TokenOutsideVocab) {
  Bytes b = write_stream(spec264(), {{0, {1, 2}}, {2, {3, 4, 5}}});
  b[64 + 24 + 16 + 4] = 8;  // record 1, token 2: 5 -> 0x0108 = 264
  b[64 + 24 + 16 + 5] = 1;
  EXPECT_EQ(read_error(b), "'mem.tok': token 264 is outside the vocab size 264 (record 1, at byte 108)");
}

// ---------------------------------------------------------------- llm.c

Bytes llmc_file(int32_t magic, int32_t version, int32_t ntok, const std::vector<uint32_t>& tokens, size_t width) {
  Bytes b(1024, 0);
  std::memcpy(&b[0], &magic, 4);
  std::memcpy(&b[4], &version, 4);
  std::memcpy(&b[8], &ntok, 4);
  for (uint32_t t : tokens) {
    const size_t at = b.size();
    b.resize(at + width);
    std::memcpy(&b[at], &t, width);
  }
  return b;
}

TEST(Llmc, ReadsU16AndU32AsOneRecordInChunks) {
  std::vector<uint32_t> t(1000);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint32_t>(i * 37 % 50257);
  TokenReadOptions o;
  o.max_chunk_tokens = 64;
  const auto r = open_bytes(llmc_file(20240520, 1, 1000, t, 2), o);
  EXPECT_EQ(r->format(), TokenInputFormat::Llmc);
  EXPECT_EQ(r->token_width(), 2u);
  EXPECT_EQ(r->spec().kind, TokenizerKind::Raw);
  EXPECT_EQ(r->spec().vocab_size, 0u);
  EXPECT_EQ(read_all(*r), (std::vector<Rec>{{0, t}}));

  std::vector<uint32_t> big = {128000, 9, 128255, 70000};
  const auto r32 = open_bytes(llmc_file(20240801, 7, 4, big, 4));
  EXPECT_EQ(r32->token_width(), 4u);
  EXPECT_EQ(read_all(*r32), (std::vector<Rec>{{0, big}}));
}

TEST(Llmc, Errors) {
  const std::vector<uint32_t> t = {1, 2, 3};
  EXPECT_NE(read_error(llmc_file(20240520, 7, 3, t, 2)).find("unsupported llm.c token file version 7 for magic 20240520"),
            std::string::npos);
  EXPECT_NE(read_error(llmc_file(20240801, 1, 3, t, 4)).find("unsupported llm.c token file version 1 for magic 20240801"),
            std::string::npos);
  EXPECT_NE(read_error(llmc_file(20240520, 1, 0, {}, 2)).find("bad llm.c token count 0"), std::string::npos);
  EXPECT_NE(read_error(llmc_file(20240520, 1, -5, {}, 2)).find("bad llm.c token count -5"), std::string::npos);
  EXPECT_EQ(read_error(llmc_file(20240520, 1, 4, t, 2)),
            "'mem.tok': truncated llm.c token file: the header declares 4 tokens (a file of 1032 bytes), the input "
            "ends after 1030 bytes");
  EXPECT_EQ(read_error(llmc_file(20240520, 1, 2, t, 2)),
            "'mem.tok': trailing bytes after the 2 tokens the llm.c header declares (expected a file of 1028 bytes)");
  Bytes f = llmc_file(20240520, 1, 3, t, 2);
  set32(f, 4 * 17, 5);
  EXPECT_EQ(read_error(f), "'mem.tok': nonzero llm.c header field [17] = 5 (expected 0)");
  Bytes h = llmc_file(20240520, 1, 3, t, 2);
  h.resize(500);
  EXPECT_EQ(read_error(h), "'mem.tok': truncated llm.c header: got 500 of 1024 bytes");
  TokenReadOptions o;
  o.format = TokenInputFormat::Llmc;
  EXPECT_EQ(read_error(write_stream(spec264(), {}), o), "'mem.tok': not an llm.c token file (bad magic 1414221132)");
  o.format = TokenInputFormat::Auto;
  o.vocab_size = 3;
  EXPECT_NE(read_error(llmc_file(20240520, 1, 3, t, 2), o).find("token 3 is outside the vocab size 3 (llm.c tokens, "
                                                                  "at byte 1028)"),
            std::string::npos);
}

// ---------------------------------------------------------------- raw nanoGPT tokens

TEST(Raw, ReadsU16AndU32OnlyWhenAsked) {
  const Bytes u16 = {1, 0, 2, 0, 0xff, 0xff};
  TokenReadOptions o;
  o.format = TokenInputFormat::U16;
  const auto r = open_bytes(u16, o);
  EXPECT_EQ(r->format(), TokenInputFormat::U16);
  EXPECT_EQ(read_all(*r), (std::vector<Rec>{{0, {1, 2, 65535}}}));
  o.format = TokenInputFormat::U32;
  const Bytes u32 = {1, 0, 1, 0, 7, 0, 0, 0};
  EXPECT_EQ(read_all(u32, o), (std::vector<Rec>{{0, {65537, 7}}}));
  EXPECT_TRUE(read_all(Bytes{}, o).empty());
  // Without --input-format, raw tokens are not guessed.
  try {
    read_all(u16);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "'mem.tok': not a token stream (bad magic)");
    EXPECT_NE(e.hint().find("--input-format u16"), std::string::npos);
  }
}

TEST(Raw, ChunksAndErrors) {
  Bytes b;
  for (uint16_t i = 0; i < 100; ++i) {
    b.push_back(static_cast<uint8_t>(i));
    b.push_back(0);
  }
  TokenReadOptions o;
  o.format = TokenInputFormat::U16;
  o.max_chunk_tokens = 10;  // 100 tokens: exactly 10 chunks, the last one flagged
  const auto recs = read_all(b, o);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].tokens.size(), 100u);
  b.push_back(1);
  EXPECT_EQ(read_error(b, o), "'mem.tok': the input ends inside a token: 201 bytes is not a multiple of the token width 2");
  b.pop_back();
  o.vocab_size = 50;
  EXPECT_EQ(read_error(b, o), "'mem.tok': token 50 is outside the vocab size 50 (raw tokens, at byte 100)");
}

// ---------------------------------------------------------------- text output

TEST(TextRecordWriter, OneLinePerRecord) {
  Bytes out;
  auto sink = memory_sink(&out);
  TextRecordWriter w(*sink);
  const uint32_t a[] = {1, 22, 333};
  w.write_record(a, 3, 0);
  w.write_record(a, 0, 3);
  const uint8_t bytes[] = {65};
  const uint32_t eos[] = {257};
  w.write_byte_record(bytes, 1, eos, 1, 0);
  w.finish();
  EXPECT_EQ(std::string(out.begin(), out.end()), "1 22 333\n\n65 257\n");
}

}  // namespace
}  // namespace lm
