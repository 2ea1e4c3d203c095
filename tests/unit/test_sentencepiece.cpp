// SentencePiece BPE: the protobuf reader against hand-made bytes and every malformed
// class, hand-computed encodings of tiny models (merge order and ties, unknowns with and
// without byte fallback, user-defined and UNUSED pieces, whitespace options), decoding,
// every refused model, and the Llama 2 tokenizer: ids that spm_encode gave (pinned here),
// the identity in the stream header, and the streaming encoder (cuts, blocks, threads)
// held to a plain whole-text BPE written from SentencePiece's algorithm.
// The whole-corpus comparison with spm_encode is in tests/cli/tokenize_bpe.bats.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "tokenizer/protobuf.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace lm {
namespace {

using test::Ids;
namespace pbw = test::pbw;

// ---------------------------------------------------------------- protobuf

TEST(Protobuf, ReadsEveryWireType) {
  std::string m;
  pbw::number(m, 1, 150);
  pbw::bytes(m, 2, "hi");
  pbw::f32(m, 3, 1.5f);
  pbw::tag(m, 4, 1);
  m.append("\x01\x00\x00\x00\x00\x00\x00\x80", 8);
  pbw::number(m, 5, uint64_t(-1));  // an int32 -1 is a 10-byte varint
  const std::string file = "m";
  pb::Reader r(m, 0, file);
  pb::Field f;
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(f.number, 1u);
  EXPECT_EQ(r.varint(f, "x"), 150u);
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(r.bytes(f, "x"), "hi");
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(r.fixed_float(f, "x"), 1.5f);
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(f.type, pb::kFixed64);
  EXPECT_EQ(f.value, 0x8000000000000001ull);
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(r.int32(f, "x"), -1);
  EXPECT_FALSE(r.next(f));
}

std::string protobuf_error(const std::string& bytes) {
  const std::string file = "bad.model";
  try {
    pb::Reader r(bytes, 0, file);
    pb::Field f;
    while (r.next(f)) {
      if (f.type == pb::kBytes) r.message(f, "x");
    }
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    return e.what();
  }
  return "";
}

TEST(Protobuf, MalformedInputIsADataErrorWithTheOffset) {
  EXPECT_EQ(protobuf_error("\x08"), "'bad.model': truncated protobuf: the input ends inside a varint at byte 1");
  EXPECT_EQ(protobuf_error(std::string("\x08\x01\x12\x05" "abc", 7)),
            "'bad.model': truncated protobuf: field 2 declares 5 bytes, 3 remain at byte 2");
  EXPECT_EQ(protobuf_error("\x1d\x01\x02"), "'bad.model': truncated protobuf: field 3 needs 4 bytes, 2 remain at byte 0");
  EXPECT_EQ(protobuf_error("\x0b"), "'bad.model': malformed protobuf: field 1 has a group (unsupported wire type 3) at byte 0");
  EXPECT_EQ(protobuf_error("\x0e"), "'bad.model': malformed protobuf: field 1 has invalid wire type 6 at byte 0");
  EXPECT_EQ(protobuf_error(std::string("\x00\x01", 2)), "'bad.model': malformed protobuf: field number 0 at byte 0");
  EXPECT_EQ(protobuf_error("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"),
            "'bad.model': malformed protobuf: a varint overflows 64 bits at byte 1");
  EXPECT_EQ(protobuf_error("\x12\xff\xff\xff\xff\xff\xff\xff\xff\x7f"),
            "'bad.model': truncated protobuf: field 2 declares 9223372036854775807 bytes, 0 remain at byte 0");
}

// ---------------------------------------------------------------- tiny models

struct P {
  std::string piece;
  float score = 0;
  int type = 1;  // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
};

struct ModelSpec {
  std::vector<P> pieces;
  int model_type = 2;
  bool byte_fallback = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = false, escape_whitespaces = true;
  std::string charsmap;
};

std::string serialize(const ModelSpec& m) {
  std::string out;
  for (const P& p : m.pieces) {
    std::string sp;
    pbw::bytes(sp, 1, p.piece);
    pbw::f32(sp, 2, p.score);
    if (p.type != 1) pbw::number(sp, 3, static_cast<uint64_t>(p.type));
    pbw::bytes(out, 1, sp);
  }
  std::string trainer;
  pbw::number(trainer, 3, static_cast<uint64_t>(m.model_type));
  pbw::number(trainer, 35, m.byte_fallback);
  pbw::bytes(out, 2, trainer);
  std::string norm;
  pbw::bytes(norm, 1, m.charsmap.empty() ? "identity" : "nmt_nfkc");
  if (!m.charsmap.empty()) pbw::bytes(norm, 2, m.charsmap);
  pbw::number(norm, 3, m.add_dummy_prefix);
  pbw::number(norm, 4, m.remove_extra_whitespaces);
  pbw::number(norm, 5, m.escape_whitespaces);
  pbw::bytes(out, 3, norm);
  return out;
}

const char* const kSp = "\xE2\x96\x81";  // U+2581

std::vector<P> base_pieces() {
  return {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {kSp, -10}, {"a", -11}, {"b", -12}, {"c", -13},
          {"ab", -1},      {"bc", -2},    {"abc", -3},   {std::string(kSp) + "a", -4}, {std::string(kSp) + "ab", -0.5f}};
}
// ids:   0 <unk>  1 <s>  2 </s>  3 ▁  4 a  5 b  6 c  7 ab  8 bc  9 abc  10 ▁a  11 ▁ab

std::unique_ptr<SentencePieceTokenizer> make(const ModelSpec& m) {
  return SentencePieceTokenizer::from_bytes(serialize(m), "tiny.model");
}

TEST(SentencePieceTiny, MergesByScoreLeftmostFirst) {
  ModelSpec m;
  m.pieces = base_pieces();
  auto tok = make(m);
  // "▁abc": ab (-1) before bc (-2); then ▁ab (-0.5) before abc (-3): ▁ab c.
  EXPECT_EQ(test::encode(*tok, "abc"), (Ids{11, 6}));
  // "▁bc": bc merges; ▁b is no piece.
  EXPECT_EQ(test::encode(*tok, "bc"), (Ids{3, 8}));
  // "▁a▁a": the two ▁a pairs tie: the leftmost merges first, both merge.
  EXPECT_EQ(test::encode(*tok, "a a"), (Ids{10, 10}));
  // Without the dummy prefix.
  m.add_dummy_prefix = false;
  EXPECT_EQ(test::encode(*make(m), "abc"), (Ids{9}));  // ab, then abc
  EXPECT_EQ(test::encode(*make(m), ""), (Ids{}));
}

TEST(SentencePieceTiny, TiesGoToTheLeftmostPair) {
  ModelSpec m;
  m.pieces = {{"<unk>", 0, 2}, {"a", 0}, {"b", 0}, {"ab", -1}, {"ba", -1}};
  m.add_dummy_prefix = false;
  // "aba": ab and ba have equal scores: ab (left) wins, then a remains.
  EXPECT_EQ(test::encode(*make(m), "aba"), (Ids{3, 1}));
  EXPECT_EQ(test::encode(*make(m), "bab"), (Ids{4, 2}));
}

TEST(SentencePieceTiny, UnknownsCollapseWithoutByteFallback) {
  ModelSpec m;
  m.pieces = base_pieces();
  auto tok = make(m);
  EXPECT_EQ(test::encode(*tok, "xx"), (Ids{3, 0}));          // ▁ <unk>: the run of two is one
  EXPECT_EQ(test::encode(*tok, "x a x"), (Ids{3, 0, 10, 3, 0}));
  EXPECT_EQ(tok->collapsed_unknown(), 0);
  // Also across the cuts the streaming encoder makes (at every character pair no piece holds).
  std::string many(100000, 'x');
  EXPECT_EQ(test::encode(*tok, many, 4097, 2), (Ids{3, 0}));
  EXPECT_EQ(test::decode(*tok, {3, 0, 10}), " \xE2\x81\x87  a");  // unk_surface " ⁇ "
}

ModelSpec with_bytes() {
  ModelSpec m;
  m.pieces = base_pieces();
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    m.pieces.push_back({name, 0, 6});
  }
  m.byte_fallback = true;
  return m;
}
uint32_t byte_id(int b) { return 12 + static_cast<uint32_t>(b); }

TEST(SentencePieceTiny, ByteFallbackSpellsUnknownsInBytes) {
  auto tok = make(with_bytes());
  EXPECT_EQ(test::encode(*tok, "xx"), (Ids{3, byte_id('x'), byte_id('x')}));
  EXPECT_EQ(test::encode(*tok, "\xC3\xA9"), (Ids{3, byte_id(0xC3), byte_id(0xA9)}));  // é
  // Malformed UTF-8: each bad byte is a U+FFFD (SentencePiece's rule), spelled in bytes.
  EXPECT_EQ(test::encode(*tok, "\xFF\xE2\x96"),
            (Ids{3, byte_id(0xEF), byte_id(0xBF), byte_id(0xBD), byte_id(0xEF), byte_id(0xBF), byte_id(0xBD),
                 byte_id(0xEF), byte_id(0xBF), byte_id(0xBD)}));
  EXPECT_EQ(tok->collapsed_unknown(), -1);
  EXPECT_EQ(test::decode(*tok, test::encode(*tok, "ab xx\xC3\xA9")), "ab xx\xC3\xA9");
}

TEST(SentencePieceTiny, UserDefinedSymbolsAreWholeAndFrozen) {
  ModelSpec m;
  m.pieces = base_pieces();
  m.pieces.push_back({"<t>", 0, 4});      // 12
  m.pieces.push_back({"a<t", -0.1f, 1});  // 13: never formed, <t> is frozen
  auto tok = make(m);
  EXPECT_EQ(test::encode(*tok, "a<t>b"), (Ids{10, 12, 5}));
  EXPECT_EQ(test::encode(*tok, "<t"), (Ids{3, 0}));  // not the symbol: < and t are unknown
  EXPECT_EQ(test::decode(*tok, {10, 12, 5}), "a<t>b");
}

TEST(SentencePieceTiny, UnusedPiecesAreSplitBack) {
  ModelSpec m;
  m.pieces = base_pieces();
  m.pieces[7].type = 5;  // ab is UNUSED
  m.add_dummy_prefix = false;
  auto tok = make(m);
  EXPECT_EQ(test::encode(*tok, "ab"), (Ids{4, 5}));  // ab merges, then splits back into a b
  EXPECT_EQ(test::encode(*tok, "abc"), (Ids{9}));    // ab then abc (normal)
}

TEST(SentencePieceTiny, WhitespaceOptions) {
  ModelSpec m;
  m.pieces = base_pieces();
  m.remove_extra_whitespaces = true;
  auto tok = make(m);
  // Leading spaces dropped, runs collapsed, trailing dropped: "▁a▁b".
  EXPECT_EQ(test::encode(*tok, "   a    b   "), (Ids{10, 3, 5}));
  EXPECT_EQ(test::encode(*tok, "     "), (Ids{}));
  EXPECT_EQ(test::encode(*tok, "a \xE2\x96\x81"), (Ids{10}));  // a literal U+2581 at the end goes too
  // The same through the streaming encoder in pieces of 1 byte.
  EXPECT_EQ(test::encode(*tok, "   a    b   ", 1), (Ids{10, 3, 5}));
  m.remove_extra_whitespaces = false;
  EXPECT_EQ(test::encode(*make(m), " a"), (Ids{3, 10}));
  m.escape_whitespaces = false;
  m.pieces.push_back({" a", -0.2f});  // 12
  EXPECT_EQ(test::encode(*make(m), "b a"), (Ids{0, 5, 12}));  // " " is the dummy prefix now, and unknown
}

TEST(SentencePieceTiny, SpecialIdsAndDecoding) {
  ModelSpec m;
  m.pieces = base_pieces();
  auto tok = make(m);
  const TokenizerSpec& s = tok->spec();
  EXPECT_EQ(s.kind, TokenizerKind::SentencePiece);
  EXPECT_EQ(s.vocab_size, 12u);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_EQ(s.unk_id, 0);
  EXPECT_EQ(s.pad_id, -1);
  // The dummy prefix goes at a document's start only; BOS and EOS give nothing.
  EXPECT_EQ(test::decode(*tok, {1, 10, 11, 2}), "a ab");
  EXPECT_EQ(test::decode(*tok, {1, 10, 11, 2}, false), " a ab");
  std::vector<uint8_t> out;
  const uint32_t bad[] = {4, 12};
  EXPECT_EQ(tok->decode(bad, 2, out), 1u);
  EXPECT_EQ(tok->describe_token(12), "token 12 is outside the vocabulary of 12 pieces");
  // The fingerprint covers pieces and types, not scores.
  ModelSpec m2 = m;
  m2.pieces[7].score = -7;
  EXPECT_EQ(make(m2)->spec().fingerprint, s.fingerprint);
  m2.pieces[7].piece = "ba";
  EXPECT_NE(make(m2)->spec().fingerprint, s.fingerprint);
}

std::string load_error(const std::string& bytes, ErrorKind kind = ErrorKind::Data) {
  try {
    SentencePieceTokenizer::from_bytes(bytes, "bad.model");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  return "";
}

TEST(SentencePieceTiny, RefusedModels) {
  ModelSpec m;
  m.pieces = base_pieces();
  m.model_type = 1;
  EXPECT_EQ(load_error(serialize(m), ErrorKind::Unsupported),
            "'bad.model': unsupported SentencePiece model type 'unigram' (lmkit reads BPE models)");
  m.model_type = 9;
  EXPECT_EQ(load_error(serialize(m)), "'bad.model': unknown SentencePiece model type 9");
  m.model_type = 2;
  m.charsmap = std::string("\x04\x00\x00\x00xxxxyy", 10);
  EXPECT_EQ(load_error(serialize(m), ErrorKind::Unsupported),
            "'bad.model': unsupported SentencePiece normalization 'nmt_nfkc' (lmkit implements the identity "
            "normalizer only)");
  m.charsmap.clear();
  m.pieces.push_back({"ab", 0, 1});
  EXPECT_EQ(load_error(serialize(m)), "'bad.model': piece 12 'ab' is already defined");
  m.pieces = base_pieces();
  m.pieces[0].type = 1;
  EXPECT_EQ(load_error(serialize(m)), "'bad.model': the model has no unknown piece");
  m.pieces = base_pieces();
  m.pieces.push_back({"<0x41>", 0, 6});
  EXPECT_EQ(load_error(serialize(m)), "'bad.model': byte piece '<0x41>' is found although byte_fallback is false");
  m.byte_fallback = true;
  m.pieces.back().piece = "<0xZZ>";
  EXPECT_EQ(load_error(serialize(m)), "'bad.model': byte piece 12 is '<0xZZ>', expected <0xNN>");
  m.pieces = base_pieces();
  m.pieces.push_back({"", 0, 1});
  EXPECT_EQ(load_error(serialize(m)), "'bad.model': piece 12 is empty");
  EXPECT_EQ(load_error(""), "'bad.model': empty file, not a SentencePiece model");
  EXPECT_EQ(load_error("hello"), "'bad.model': malformed protobuf: field 13 has a group (unsupported wire type 4) at byte 2")
      << "(a text file is not a model)";
  EXPECT_EQ(load_error("IQ== 0\nIg== 1\n", ErrorKind::Unsupported),
            "'bad.model': a tiktoken vocabulary (base64 tokens and ranks), not a SentencePiece model");
  std::string piece;
  pbw::bytes(piece, 1, "a");
  pbw::number(piece, 3, 7);
  std::string bad;
  pbw::bytes(bad, 1, piece);
  EXPECT_EQ(load_error(bad), "'bad.model': piece 0 has unknown type 7 at byte 5");
}

// ---------------------------------------------------------------- Llama 2

class Llama2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::shared_data("llama2-tokenizer/tokenizer.model");
    if (test::exists(path)) tok_ = SentencePieceTokenizer::load(path).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_) GTEST_SKIP() << "no Llama 2 tokenizer.model in the shared data";
  }
  static SentencePieceTokenizer* tok_;
};
SentencePieceTokenizer* Llama2::tok_ = nullptr;

TEST_F(Llama2, Identity) {
  const TokenizerSpec& s = tok_->spec();
  EXPECT_EQ(s.kind, TokenizerKind::SentencePiece);
  EXPECT_EQ(s.vocab_size, 32000u);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_EQ(s.unk_id, 0);
  EXPECT_EQ(s.pad_id, -1);
  EXPECT_EQ(s.fingerprint, 0xdc974adab22798cbull);  // pinned: docs/tokenizers.md
}

TEST_F(Llama2, IdsOfSpmEncode) {  // spm_encode --output_format=id of each line, pinned
  const std::pair<const char*, Ids> cases[] = {
      {"Hello world", {15043, 3186}},
      {" leading space", {29871, 8236, 2913}},
      {"trailing  ", {25053, 259}},
      {"tab\tand  two", {4434, 12, 392, 29871, 1023}},
      {"na\xC3\xAFve caf\xC3\xA9", {1055, 30085, 345, 274, 28059}},
      {"\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x82\xBF\xE3\x83\xAF\xE3\x83\xBC", {29871, 30591, 30675, 30369, 31028, 30185}},
      {"\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok", {29871, 243, 162, 148, 144, 243, 162, 146, 192, 3431}},
      {"<s> </s> <unk>", {529, 29879, 29958, 1533, 29879, 29958, 529, 2960, 29958}},
      {"    def f(x):", {268, 822, 285, 29898, 29916, 1125}},
      {"1234567", {29871, 29896, 29906, 29941, 29946, 29945, 29953, 29955}},
      {"\xFF\xFE abc \xE2\x96\x81x", {29871, 26308, 25638, 29871, 921}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(test::encode(*tok_, text), ids) << text;
    EXPECT_EQ(test::encode(*tok_, text, 1), ids) << text << " (1 byte at a time)";
  }
}

TEST_F(Llama2, DecodingRestoresTheText) {
  const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n  caf\xC3\xA9 \xF0\x9F\x91\x8D\n";
  EXPECT_EQ(test::decode(*tok_, test::encode(*tok_, text)), text);
  // A single token inside a document keeps its space: what token byte counts use.
  const uint32_t the = 278;  // "▁the"
  std::vector<uint8_t> out;
  tok_->decode(&the, 1, out);
  EXPECT_EQ(std::string(out.begin(), out.end()), " the");
}

// SentencePiece's BPE written plainly over the whole normalized text (no cuts, no
// cache, a full scan for the best pair at every step), for the identity normalizer
// with a dummy prefix and byte fallback, as Llama 2 has.
Ids plain_bpe(const SentencePieceTokenizer& tok, const std::string& text) {
  std::unordered_map<std::string, uint32_t> normal, reserved;
  const auto& pieces = tok.proto().pieces;
  for (uint32_t i = 0; i < pieces.size(); ++i) {
    const auto t = pieces[i].type;
    const bool n = t == sentencepiece::PieceType::Normal || t == sentencepiece::PieceType::UserDefined;
    (n ? normal : reserved)[pieces[i].text] = i;
  }
  std::string norm = text.empty() ? "" : kSp;
  for (size_t i = 0; i < text.size();) {
    bool valid;
    const size_t k = utf8::spm_char(reinterpret_cast<const uint8_t*>(text.data()) + i, text.size() - i, &valid);
    if (!valid) norm += utf8::kReplacement;
    else if (text[i] == ' ') norm += kSp;
    else norm.append(text, i, k);
    i += valid ? k : 1;
  }
  std::vector<std::string> sym;
  for (size_t i = 0; i < norm.size();) {
    const size_t k = utf8::char_len(static_cast<uint8_t>(norm[i]));
    sym.push_back(norm.substr(i, k));
    i += k;
  }
  for (;;) {
    size_t best = SIZE_MAX;
    float best_score = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      const auto it = normal.find(sym[i] + sym[i + 1]);
      if (it == normal.end()) continue;
      const float s = pieces[it->second].score;
      if (best == SIZE_MAX || s > best_score) {
        best = i;
        best_score = s;
      }
    }
    if (best == SIZE_MAX) break;
    sym[best] += sym[best + 1];
    sym.erase(sym.begin() + static_cast<ptrdiff_t>(best) + 1);
  }
  Ids ids;
  for (const auto& s : sym) {
    if (normal.count(s)) {
      ids.push_back(normal[s]);
    } else {
      for (unsigned char c : s) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", c);
        ids.push_back(reserved.at(name));
      }
    }
  }
  return ids;
}

TEST_F(Llama2, StreamingEncoderEqualsPlainBpeOverTheWholeText) {
  const std::string shakespeare = test::read_file(test::shared_data("tinyshakespeare/input.txt"));
  const std::string mix = test::read_file(test::source_path("tests/data/unicode_mix.txt"));
  ASSERT_FALSE(mix.empty());
  const std::string texts[] = {shakespeare.substr(0, 2500), mix.substr(0, 2500), mix.substr(40000, 2500)};
  for (const std::string& text : texts) {
    const Ids want = plain_bpe(*tok_, text);
    EXPECT_EQ(test::encode(*tok_, text), want);
    EXPECT_EQ(test::encode(*tok_, text, 3), want);
  }
}

TEST_F(Llama2, OutputDoesNotDependOnBlocksOrThreads) {
  std::string big = test::read_file(test::source_path("tests/data/unicode_mix.txt"));
  big += big;
  big += big;  // 690 KB: several 256 KiB jobs, cut inside
  const Ids once = test::encode(*tok_, big);
  EXPECT_EQ(test::encode(*tok_, big, 65537, 2), once);
  EXPECT_EQ(test::encode(*tok_, big, 1000, 3), once);
  EXPECT_GT(once.size(), 100000u);
}

}  // namespace
}  // namespace lm
