// The soma V1 byte tokenizer: the data contract (hand-computed values from the cases
// of soma-org/soma models/src/v1/data/dataset.rs and batcher.rs), the streaming
// encoder against the in-memory reference, EOS modes, documents, decoding, JSONL.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/stream.h"
#include "io/tokstream.h"
#include "tokenizer/byte_v1.h"
#include "tokenizer/tokenizer.h"

namespace lm {
namespace {

constexpr uint32_t PAD = byte_v1::kPad, EOS = byte_v1::kEos;
using U32s = std::vector<uint32_t>;
using U64s = std::vector<uint64_t>;

std::vector<uint8_t> test_buffer(size_t n) {  // soma's test buffer: byte i = i % 256
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i % 256);
  return b;
}

struct Capture final : RecordSink {
  struct Rec {
    uint64_t start;
    U32s tokens;
  };
  std::vector<Rec> recs;
  void write_record(const uint32_t* t, size_t n, uint64_t start) override { recs.push_back({start, U32s(t, t + n)}); }
  void finish() override {}
};

// A source handing out at most `step` bytes per read, like a pipe.
class TrickleSource final : public ByteSource {
 public:
  TrickleSource(const std::vector<uint8_t>& d, size_t step) : d_(d), step_(step) {}
  size_t read_some(void* buf, size_t n) override {
    const size_t k = std::min({n, step_, d_.size() - pos_});
    std::memcpy(buf, d_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  const std::string& name() const override { return name_; }

 private:
  const std::vector<uint8_t>& d_;
  size_t step_, pos_ = 0;
  std::string name_ = "trickle";
};

std::vector<Capture::Rec> encode(const std::vector<uint8_t>& data, size_t seq, EosMode eos = EosMode::Soma,
                                 size_t step = 0) {
  ByteV1Tokenizer tok;
  Capture cap;
  EncodeStats stats;
  EncodeOptions o;
  o.max_seq_len = seq;
  o.eos = eos;
  if (step) {
    TrickleSource src(data, step);
    tok.encode_document(src, o, cap, stats);
  } else {
    auto src = memory_source(data.data(), data.size(), "mem");
    tok.encode_document(*src, o, cap, stats);
  }
  EXPECT_EQ(stats.bytes, data.size());
  EXPECT_EQ(stats.records, cap.recs.size());
  EXPECT_EQ(stats.documents, 1u);
  return cap.recs;
}

// ---------------------------------------------------------------- the contract

TEST(ByteV1, SpecAndFingerprint) {
  const TokenizerSpec s = byte_v1::spec();
  EXPECT_EQ(s.kind, TokenizerKind::ByteV1);
  EXPECT_EQ(s.vocab_size, 264u);
  EXPECT_EQ(s.pad_id, 256);
  EXPECT_EQ(s.eos_id, 257);
  EXPECT_EQ(s.bos_id, -1);
  EXPECT_EQ(s.unk_id, -1);
  // FNV-1a 64 of byte_v1::kDefinition, pinned: changing the definition changes every stream.
  EXPECT_EQ(s.fingerprint, 0xef2b3847a812eb54ull);
}

TEST(ByteV1Reference, ChunkCounts) {  // dataset.rs test_dataset_length
  const std::pair<size_t, size_t> cases[] = {{0, 0}, {1, 1}, {9, 1}, {10, 1}, {11, 2}, {20, 2}, {21, 3}};
  for (auto [size, chunks] : cases) {
    const auto buf = test_buffer(size);
    EXPECT_EQ(byte_v1::tokenize(buf.data(), size, 10).size(), chunks) << size;
    EXPECT_EQ(encode(buf, 10).size(), chunks) << size;
  }
}

TEST(ByteV1Reference, FullChunksHaveNoEos) {  // test_full_chunk_no_eos: 16 bytes, seq 8
  const auto buf = test_buffer(16);
  const auto s = byte_v1::tokenize(buf.data(), 16, 8);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].token_ids, (U32s{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(s[0].pos_ids, (U64s{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(s[1].token_ids, (U32s{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(s[1].pos_ids, (U64s{8, 9, 10, 11, 12, 13, 14, 15}));
}

TEST(ByteV1Reference, LastChunkGetsEosThenPad) {  // test_last_chunk_with_eos_and_padding: 10 bytes, seq 6
  const auto buf = test_buffer(10);
  const auto s = byte_v1::tokenize(buf.data(), 10, 6);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].token_ids, (U32s{6, 7, 8, 9, EOS, PAD}));
  EXPECT_EQ(s[1].pos_ids, (U64s{6, 7, 8, 9, 10, 10}));
  EXPECT_EQ(s[1].targets, (U32s{7, 8, 9, EOS, PAD, PAD}));
}

TEST(ByteV1Reference, SingleByte) {  // test_single_byte: 1 byte, seq 4
  const auto buf = test_buffer(1);
  const auto s = byte_v1::tokenize(buf.data(), 1, 4);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].token_ids, (U32s{0, EOS, PAD, PAD}));
  EXPECT_EQ(s[0].pos_ids, (U64s{0, 1, 1, 1}));
  EXPECT_EQ(s[0].targets, (U32s{EOS, PAD, PAD, PAD}));
}

TEST(ByteV1Reference, TargetsShiftLeftWithPad) {  // batcher.rs: 10 bytes, seq 5
  const auto buf = test_buffer(10);
  const auto s = byte_v1::tokenize(buf.data(), 10, 5);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].targets, (U32s{1, 2, 3, 4, PAD}));
  EXPECT_EQ(s[1].token_ids, (U32s{5, 6, 7, 8, 9}));
  EXPECT_EQ(s[1].targets, (U32s{6, 7, 8, 9, PAD}));
  EXPECT_EQ(s[1].pos_ids, (U64s{5, 6, 7, 8, 9}));
}

// ---------------------------------------------------------------- the streaming encoder

TEST(ByteV1Encoder, RecordsHoldDataPlusEosWithoutPadding) {
  const auto r = encode(test_buffer(10), 6);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].start, 0u);
  EXPECT_EQ(r[0].tokens, (U32s{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(r[1].start, 6u);
  EXPECT_EQ(r[1].tokens, (U32s{6, 7, 8, 9, EOS}));
  EXPECT_TRUE(encode({}, 6).empty());
}

// Every record, seen as a training sequence, equals soma's tokenize() output.
void expect_matches_reference(const std::vector<uint8_t>& data, size_t seq, size_t step = 0) {
  ByteV1Tokenizer tok;
  const auto recs = encode(data, seq, EosMode::Soma, step);
  const auto ref = byte_v1::tokenize(data.data(), data.size(), seq);
  ASSERT_EQ(recs.size(), ref.size()) << "size " << data.size() << " seq " << seq;
  Sequence s;
  for (size_t i = 0; i < recs.size(); ++i) {
    tok.make_sequence(recs[i].tokens.data(), recs[i].tokens.size(), recs[i].start, seq, s);
    ASSERT_EQ(s.token_ids, ref[i].token_ids) << "size " << data.size() << " seq " << seq << " chunk " << i;
    ASSERT_EQ(s.targets, ref[i].targets) << "size " << data.size() << " seq " << seq << " chunk " << i;
    ASSERT_EQ(s.pos_ids, ref[i].pos_ids) << "size " << data.size() << " seq " << seq << " chunk " << i;
  }
}

TEST(ByteV1Encoder, MatchesReferenceOnSmallInputs) {
  for (size_t n = 0; n <= 40; ++n)
    for (size_t seq = 1; seq <= 12; ++seq) expect_matches_reference(test_buffer(n), seq);
}

TEST(ByteV1Encoder, MatchesReferenceAcrossInputBlocks) {
  // The encoder reads 1 MiB blocks and carries partial chunks over: sizes and
  // sequence lengths that do not divide the block, and a pipe-like source.
  std::vector<uint8_t> data(3 * 1048576 + 7);
  uint32_t x = 12345;
  for (auto& b : data) b = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
  expect_matches_reference(data, 8192);
  expect_matches_reference(data, 1000003);
  expect_matches_reference(data, 3 * 1048576 + 7);  // one chunk, exactly full: no EOS
  std::vector<uint8_t> small(data.begin(), data.begin() + 100000);
  expect_matches_reference(small, 777, 1000);
  expect_matches_reference(small, 777, 1);
}

TEST(ByteV1Encoder, EosModes) {
  // Always: an exact multiple gets an EOS record of its own at the document's end.
  auto r = encode(test_buffer(10), 5, EosMode::Always);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[2].start, 10u);
  EXPECT_EQ(r[2].tokens, (U32s{EOS}));
  r = encode(test_buffer(7), 5, EosMode::Always);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].tokens, (U32s{5, 6, EOS}));
  r = encode({}, 5, EosMode::Always);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].start, 0u);
  EXPECT_EQ(r[0].tokens, (U32s{EOS}));
  // Never: just bytes.
  r = encode(test_buffer(7), 5, EosMode::Never);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].tokens, (U32s{5, 6}));
  EXPECT_TRUE(encode({}, 5, EosMode::Never).empty());
  // Soma: no EOS after a full last chunk.
  r = encode(test_buffer(10), 5, EosMode::Soma);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].tokens, (U32s{5, 6, 7, 8, 9}));
}

TEST(ByteV1Encoder, RejectsBadMaxSeqLen) {
  ByteV1Tokenizer tok;
  Capture cap;
  EncodeStats st;
  EncodeOptions o;
  o.max_seq_len = 0;
  auto src = memory_source(nullptr, 0, "mem");
  try {
    tok.encode_document(*src, o, cap, st);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
  }
}

TEST(ByteV1Sequence, PaddingPositionsFollowTheLastByte) {
  ByteV1Tokenizer tok;
  Sequence s;
  const U32s with_eos = {65, 66, EOS};
  tok.make_sequence(with_eos.data(), 3, 100, 6, s);
  EXPECT_EQ(s.token_ids, (U32s{65, 66, EOS, PAD, PAD, PAD}));
  EXPECT_EQ(s.targets, (U32s{66, EOS, PAD, PAD, PAD, PAD}));
  EXPECT_EQ(s.pos_ids, (U64s{100, 101, 102, 102, 102, 102}));
  const U32s no_eos = {65, 66};
  tok.make_sequence(no_eos.data(), 2, 0, 4, s);
  EXPECT_EQ(s.token_ids, (U32s{65, 66, PAD, PAD}));
  EXPECT_EQ(s.pos_ids, (U64s{0, 1, 2, 2}));
}

// ---------------------------------------------------------------- decoding

TEST(ByteV1Decode, BytesOutEosDroppedPadSkipped) {
  ByteV1Tokenizer tok;
  std::vector<uint8_t> out = {'>'};
  const U32s t = {104, PAD, 105, EOS, 0, 255};
  EXPECT_EQ(tok.decode(t.data(), t.size(), out), t.size());
  EXPECT_EQ(out, (std::vector<uint8_t>{'>', 'h', 'i', 0, 255}));
}

TEST(ByteV1Decode, ReservedAndOutOfVocabTokensStop) {
  ByteV1Tokenizer tok;
  std::vector<uint8_t> out;
  const U32s t = {104, 105, 258, 106};
  EXPECT_EQ(tok.decode(t.data(), t.size(), out), 2u);
  EXPECT_EQ(out, (std::vector<uint8_t>{'h', 'i'}));
  EXPECT_EQ(tok.describe_token(263), "token 263 is a reserved byte-v1 special and has no bytes");
  EXPECT_EQ(tok.describe_token(264), "token 264 is outside the byte-v1 vocabulary of 264 tokens");
  const U32s u = {264};
  EXPECT_EQ(tok.decode(u.data(), 1, out), 0u);
}

// ---------------------------------------------------------------- files, documents, output formats

class TempFiles : public ::testing::Test {
 protected:
  std::string path(const std::string& name) { return ::testing::TempDir() + "lmkit_bytev1_" + name; }
  std::string write(const std::string& name, const std::string& content) {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << content;
    made_.push_back(p);
    return p;
  }
  void TearDown() override {
    for (const auto& p : made_) std::remove(p.c_str());
  }
  std::vector<std::string> made_;
};

TEST_F(TempFiles, DocumentsRestartPositionsAndDecodeToTheConcatenation) {
  const std::string a = write("a.txt", "Hello"), b = write("b.txt", ""), c = write("c.txt", "abcdefg");
  ByteV1Tokenizer tok;
  std::vector<uint8_t> stream;
  auto sink = memory_sink(&stream);
  TokenStreamWriter w(*sink, tok.spec());
  EncodeOptions o;
  o.max_seq_len = 4;
  const EncodeStats st = tokenize_files(tok, {a, b, c}, o, w);
  w.finish();
  EXPECT_EQ(st.documents, 3u);
  EXPECT_EQ(st.bytes, 12u);
  EXPECT_EQ(st.records, 4u);  // "Hell" "o<EOS>" | (empty: nothing) | "abcd" "efg<EOS>"
  EXPECT_EQ(st.tokens, 14u);

  const std::string tok_path = write("x.tok", std::string(stream.begin(), stream.end()));
  const auto reader = open_token_reader(tok_path);
  TokenChunk ch;
  std::vector<uint64_t> starts;
  while (reader->next(ch)) starts.push_back(ch.start);
  EXPECT_EQ(starts, (U64s{0, 4, 0, 4}));

  std::vector<uint8_t> decoded;
  auto out = memory_sink(&decoded);
  const DecodeStats ds = decode_files({tok_path, tok_path}, {}, *out);
  EXPECT_EQ(std::string(decoded.begin(), decoded.end()), "Helloabcdefg" "Helloabcdefg");
  EXPECT_EQ(ds.inputs, 2u);
  EXPECT_EQ(ds.records, 8u);
  EXPECT_EQ(ds.tokens, 28u);
  EXPECT_EQ(ds.bytes, 24u);
}

TEST_F(TempFiles, DecodeNamesTheRecordAndPositionOfABadToken) {
  TokenizerSpec s = byte_v1::spec();
  std::vector<uint8_t> stream;
  auto sink = memory_sink(&stream);
  TokenStreamWriter w(*sink, s);
  const U32s r0 = {65, 66}, r1 = {67, 260};
  w.write_record(r0.data(), 2, 0);
  w.write_record(r1.data(), 2, 10);
  w.finish();
  const std::string p = write("bad.tok", std::string(stream.begin(), stream.end()));
  std::vector<uint8_t> decoded;
  auto out = memory_sink(&decoded);
  try {
    decode_files({p}, {}, *out);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_EQ(std::string(e.what()), "'" + p + "': cannot decode record 1 at position 11: token 260 is a reserved "
                                              "byte-v1 special and has no bytes");
  }
}

TEST_F(TempFiles, DecodeRefusesAnotherTokenizer) {
  TokenizerSpec s = byte_v1::spec();
  s.fingerprint = 42;
  std::vector<uint8_t> stream;
  auto sink = memory_sink(&stream);
  TokenStreamWriter w(*sink, s);
  w.finish();
  const std::string p = write("other.tok", std::string(stream.begin(), stream.end()));
  std::vector<uint8_t> decoded;
  auto out = memory_sink(&decoded);
  try {
    decode_files({p}, {}, *out);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer mismatch"), std::string::npos) << e.what();
  }
  s.kind = TokenizerKind::SentencePiece;
  s.vocab_size = 32000;
  stream.clear();
  auto sink2 = memory_sink(&stream);
  TokenStreamWriter w2(*sink2, s);
  w2.finish();
  const std::string q = write("sp.tok", std::string(stream.begin(), stream.end()));
  try {
    decode_files({q}, {}, *out);
    FAIL() << "no error";
  } catch (const Error& e) {
    // A SentencePiece stream decodes only with its tokenizer file (lm-tokenize --decode --tokenizer).
    EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
  }
}

TEST(Jsonl, OneSomaSequencePerLine) {
  ByteV1Tokenizer tok;
  std::vector<uint8_t> out;
  auto sink = memory_sink(&out);
  const auto w = make_record_sink(TokenOutputFormat::Jsonl, *sink, tok, 4);
  const uint8_t bytes[] = {'h', 'i'};
  const uint32_t eos[] = {EOS};
  w->write_byte_record(bytes, 2, eos, 1, 7);
  w->finish();
  EXPECT_EQ(std::string(out.begin(), out.end()),
            "{\"token_ids\":[104,105,257,256],\"targets\":[105,257,256,256],\"pos_ids\":[7,8,9,9]}\n");
}

TEST(Formats, NamesRoundTrip) {
  for (auto m : {EosMode::Soma, EosMode::Always, EosMode::Never}) EXPECT_EQ(eos_mode_from_name(eos_mode_name(m)), m);
  for (auto f : {TokenOutputFormat::Stream, TokenOutputFormat::Text, TokenOutputFormat::Jsonl})
    EXPECT_EQ(token_output_format_from_name(token_output_format_name(f)), f);
  EXPECT_FALSE(eos_mode_from_name("sometimes").has_value());
  EXPECT_THROW(make_tokenizer(TokenizerKind::HfBpe), Error);
}

}  // namespace
}  // namespace lm
