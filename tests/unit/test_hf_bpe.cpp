// tokenizer.json byte-level BPE: the WHATWG UTF-8 repair against Python's
// decode("utf-8", "replace"), the split patterns against JavaScript's own matching
// (outputs pinned from node), hand-computed encodings of a tiny tokenizer.json (merge
// ranks, ties, ignore_merges, added tokens with lstrip/rstrip, longest match), every
// refused file, and the Llama 3 tokenizer.json when tests/tokenizer/fetch-llama3.sh has
// fetched it: ids of the transformers.js reference (pinned here), its identity, decoding,
// and output that does not depend on blocks or threads. The whole-corpus comparison with
// the reference is in tests/cli/tokenize_bpe.bats.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace lm {
namespace {

using test::Ids;
using json = nlohmann::json;

// ---------------------------------------------------------------- UTF-8 and patterns

TEST(Utf8, WhatwgReplacementIsPerMaximalSubpart) {  // Python's bytes.decode("utf-8", "replace")
  const std::string R = utf8::kReplacement;
  const std::pair<std::string, std::string> cases[] = {
      {"\xE2\x82" "A", R + "A"},
      {"\xF0\x80\x80", R + R + R},
      {"\xED\xA0\x80x", R + R + R + "x"},
      {"\xC0\xAF", R + R},
      {"\xF4\x90\x80\x80", R + R + R + R},
      {"\xE0\x80\xAF", R + R + R},
      {"\xF0\x9F\x98", R},
      {"a\xFF\xFE" "b", "a" + R + R + "b"},
      {"\xC3(", R + "("},
      {"\xF0(\x8C\xBC", R + "(" + R + R},
      {"ok \xF0\x9F\x91\x8D", "ok \xF0\x9F\x91\x8D"},
  };
  for (const auto& [in, want] : cases) {
    std::string out;
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    EXPECT_EQ(utf8::whatwg_sanitize(p, in.size(), true, out), in.size());
    EXPECT_EQ(out, want);
    // Byte by byte, as a stream: the same.
    std::string streamed, pending;
    for (char c : in) {
      pending += c;
      const size_t used = utf8::whatwg_sanitize(reinterpret_cast<const uint8_t*>(pending.data()), pending.size(),
                                                false, streamed);
      pending.erase(0, used);
    }
    utf8::whatwg_sanitize(reinterpret_cast<const uint8_t*>(pending.data()), pending.size(), true, streamed);
    EXPECT_EQ(streamed, want) << "streamed";
  }
}

std::vector<std::string> split(const char* pattern, const std::string& text) {
  SplitRegex re(pattern, "test");
  SplitRegex::Matcher m(re);
  std::vector<std::pair<size_t, size_t>> spans;
  m.split(text, spans);
  std::vector<std::string> out;
  for (auto [o, l] : spans) out.push_back(text.substr(o, l));
  return out;
}

TEST(SplitRegex, MatchesAsJavaScriptDoes) {  // String.prototype.match in node 20, pinned
  const std::string text = "Hello, world's 12345  \n\n x\t\xC2\xA0I'M ok!!\r\n";
  EXPECT_EQ(split(hf::kLlama3Pattern, text),
            (std::vector<std::string>{"Hello", ",", " world", "'s", " ", "123", "45", "  \n\n", " x", "\t",
                                      "\xC2\xA0I", "'M", " ok", "!!\r\n"}));
  EXPECT_EQ(split(hf::kGpt2Pattern, text),
            (std::vector<std::string>{"Hello", ",", " world", "'s", " 12345", "  \n\n", " x", "\t", "\xC2\xA0", "I",
                                      "'", "M", " ok", "!!", "\r\n"}));
  // U+FEFF is white space and U+0085 is not (ECMAScript); U+017F is no 's' after an apostrophe.
  EXPECT_EQ(split("\\s+", "a\xEF\xBB\xBF" "b\xC2\x85" "c"), (std::vector<std::string>{"a", "\xEF\xBB\xBF", "b\xC2\x85" "c"}));
  EXPECT_EQ(split(hf::kLlama3Pattern, "'\xC5\xBF"), (std::vector<std::string>{"'\xC5\xBF"}));
  // Gaps between matches are pieces too (Isolated); empty matches move on by a character.
  EXPECT_EQ(split("b", "abcb"), (std::vector<std::string>{"a", "b", "c", "b"}));
  EXPECT_EQ(split("x*", "\xC3\xA9y"), (std::vector<std::string>{"\xC3\xA9", "y"}));  // as regexSplit does
}

TEST(SplitRegex, TranslationAndErrors) {
  EXPECT_EQ(js_regex_to_pcre2("(?i:'s|'t|'re|'ve|'m|'ll|'d)"), "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))");
  EXPECT_EQ(js_regex_to_pcre2("[^\\s\\p{L}]\\S"),
            "[^\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
            "\\x{FEFF}\\p{L}][^\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
            "\\x{205F}\\x{3000}\\x{FEFF}]");
  try {
    SplitRegex re("(a", "'t.json'");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_EQ(std::string(e.what()), "'t.json': bad split pattern '(a': missing closing parenthesis at offset 2");
  }
}

// ---------------------------------------------------------------- a tiny tokenizer.json

std::string bl(const std::string& bytes) {  // bytes in the byte-level alphabet
  std::string out;
  for (unsigned char c : bytes) utf8::append(out, hf::byte_to_unicode(c));
  return out;
}

json tiny() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[bl(std::string(1, static_cast<char>(b)))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"o", "r"}, {" ", "w"}, {"l", "d"}, {"he", "ll"}, {"hell", "o"}, {" w", "or"}, {" wor", "ld"}};
  json m = json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    m.push_back(bl(a) + " " + bl(b));
    vocab[bl(a + b)] = id++;
  }
  // 256 he, 257 ll, 258 or, 259 Ġw, 260 ld, 261 hell, 262 hello, 263 Ġwor, 264 Ġworld
  vocab[bl("hel")] = 265;
  json t = {{"version", "1.0"},
            {"added_tokens", json::array({{{"id", 266}, {"content", "<|x|>"}, {"special", true}},
                                          {{"id", 267}, {"content", "<|x|>y"}, {"special", false}}})},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", false}}}};
  return t;
}

std::unique_ptr<HfBpeTokenizer> make(const json& j, const std::string& config = "") {
  return HfBpeTokenizer::from_json(j.dump(), config, "tiny.json");
}

TEST(HfBpeTiny, MergesByRank) {
  auto tok = make(tiny());
  EXPECT_EQ(test::encode(*tok, "hello world"), (Ids{262, 264}));
  EXPECT_EQ(test::encode(*tok, "lll"), (Ids{257, 'l'}));  // equal ranks: the leftmost pair first
  EXPECT_EQ(test::encode(*tok, "hel"), (Ids{256, 'l'}));  // "hel" is a token, but no merge makes it
  EXPECT_EQ(test::encode(*tok, "\xFF"), (Ids{239, 191, 189}));  // ill-formed: U+FFFD's bytes
  EXPECT_EQ(test::decode(*tok, test::encode(*tok, "hello world \xE2\x82\xAC!")), "hello world \xE2\x82\xAC!");
  EXPECT_TRUE(tok->cuts());  // the GPT-2 pattern, no added token that strips or holds "x "
}

TEST(HfBpeTiny, IgnoreMergesTakesWholeTokens) {
  json j = tiny();
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(test::encode(*make(j), "hel"), (Ids{265}));
  EXPECT_EQ(test::encode(*make(j), "hello"), (Ids{262}));
}

TEST(HfBpeTiny, AddedTokensLongestFirstWithStripping) {
  json j = tiny();
  auto tok = make(j);
  EXPECT_EQ(test::encode(*tok, "a<|x|>b"), (Ids{'a', 266, 'b'}));
  EXPECT_EQ(test::encode(*tok, "a<|x|>yb"), (Ids{'a', 267, 'b'}));
  EXPECT_EQ(test::encode(*tok, "<|x|"), (Ids{'<', '|', 'x', '|'}));
  EXPECT_EQ(test::decode(*tok, {'a', 266, 'b'}), "a<|x|>b");
  j["added_tokens"].push_back({{"id", 268}, {"content", "<L>"}, {"lstrip", true}, {"rstrip", true}});
  tok = make(j);
  // ' ' before and after <L> is stripped (ECMAScript white space: U+3000 too).
  EXPECT_EQ(test::encode(*tok, "a \xE3\x80\x80<L>  b"), (Ids{'a', 268, 'b'}));
  EXPECT_FALSE(tok->cuts());
}

TEST(HfBpeTiny, SpecialIds) {
  json j = tiny();
  j["added_tokens"].push_back({{"id", 268}, {"content", "<s>"}, {"special", true}});
  j["added_tokens"].push_back({{"id", 269}, {"content", "</s>"}, {"special", true}});
  auto tok = make(j);
  EXPECT_EQ(tok->spec().kind, TokenizerKind::HfBpe);
  EXPECT_EQ(tok->spec().vocab_size, 270u);
  EXPECT_EQ(tok->spec().bos_id, 268);  // by name
  EXPECT_EQ(tok->spec().eos_id, 269);
  EXPECT_EQ(tok->spec().pad_id, -1);
  EXPECT_EQ(test::decode(*tok, {268, 262, 269}), "hello");  // BOS and EOS give nothing
  // tokenizer_config.json wins.
  tok = make(j, R"({"bos_token": {"content": "</s>"}, "eos_token": "<s>", "pad_token": "<|x|>"})");
  EXPECT_EQ(tok->spec().bos_id, 269);
  EXPECT_EQ(tok->spec().eos_id, 268);
  EXPECT_EQ(tok->spec().pad_id, 266);
  // The fingerprint covers tokens, not merges.
  json k = j;
  k["model"]["vocab"].erase(bl("hel"));
  k["model"]["vocab"][bl("heL")] = 265;
  EXPECT_NE(make(k)->spec().fingerprint, make(j)->spec().fingerprint);
  // A hole in the ids decodes to an error.
  std::vector<uint8_t> out;
  const uint32_t ids[] = {262, 275};
  EXPECT_EQ(tok->decode(ids, 2, out), 1u);
  EXPECT_EQ(tok->describe_token(275), "token 275 is outside the vocabulary of 270 tokens");
}

std::string load_error(const std::string& text, ErrorKind kind = ErrorKind::Data) {
  try {
    HfBpeTokenizer::from_json(text, "", "bad.json");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  return "";
}

TEST(HfBpeTiny, RefusedFiles) {
  EXPECT_EQ(load_error("{"), "'bad.json': not valid JSON: parse error at line 1, column 2: syntax error while parsing "
                             "object key - unexpected end of input; expected string literal");
  EXPECT_EQ(load_error("[]"), "'bad.json': not a tokenizer.json (expected a JSON object)");
  EXPECT_EQ(load_error("{}"), "'bad.json': not a tokenizer.json (no \"model\" object)");
  EXPECT_EQ(load_error(R"({"model": {}, "model": {}})"), "'bad.json': duplicate key 'model'");
  // Ten million levels took 1.15 GB of parser stacks; now refused at level 513.
  EXPECT_EQ(load_error(R"({"model": {}, "added_tokens": )" + std::string(10'000'000, '[')),
            "'bad.json': JSON nested deeper than 512 levels");
  EXPECT_EQ(load_error(R"({"model": {"vocab": {"a": )" + std::string(10'000'000, '[')),
            "'bad.json': JSON nested deeper than 512 levels");
  EXPECT_EQ(load_error("{\"model\": {}, \"x\": " + std::string(510, '[') + std::string(510, ']') + "}",
                       ErrorKind::Unsupported),
            "'bad.json': unsupported tokenizer.json: model type '?' (lmkit reads BPE models)");  // 511 levels are read
  json j = tiny();
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(load_error(j.dump(), ErrorKind::Unsupported),
            "'bad.json': unsupported tokenizer.json: model type 'WordPiece' (lmkit reads BPE models)");
  j = tiny();
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_EQ(load_error(j.dump(), ErrorKind::Unsupported), "'bad.json': unsupported tokenizer.json: normalizer 'NFC'");
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(load_error(j.dump(), ErrorKind::Unsupported),
            "'bad.json': unsupported tokenizer.json: pre-tokenizer 'Whitespace'");
  j = tiny();
  j["model"]["byte_fallback"] = true;
  EXPECT_EQ(load_error(j.dump(), ErrorKind::Unsupported),
            "'bad.json': unsupported tokenizer.json: byte_fallback BPE (lmkit reads byte-level BPE)");
  j = tiny();
  j["model"]["vocab"].erase(bl("A"));
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.vocab has no token for byte 0x41 (not a byte-level vocabulary)");
  j = tiny();
  j["model"]["merges"].push_back("q z");
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.merges[9] 'q z': 'qz' is not in the vocabulary");
  j = tiny();
  j["model"]["merges"].push_back("a b c");
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.merges[9] 'a b c': expected two tokens separated by one space");
  j = tiny();
  j["model"]["vocab"]["x y"] = "7";
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.vocab 'x y': expected an integer id, got string");
  j = tiny();  // nested values where ids and merges go (found by fuzzing)
  j["model"]["vocab"]["x y"] = {{"a", json::array({1, {{"b", 2}}})}};
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.vocab 'x y': expected an integer id, got an object");
  j = tiny();
  j["model"]["merges"].push_back(json::array({json::array({"a"}), {{"k", "v"}}}));
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.merges[9]: expected two strings");
  j = tiny();
  j["model"]["vocab"]["zz"] = 65;
  EXPECT_EQ(load_error(j.dump()), "'bad.json': model.vocab: id 65 is given to both 'A' and 'zz'");
  std::string dup = tiny().dump();
  dup.replace(dup.find("\"vocab\":{") + 9, 0, "\"he\":300,");
  EXPECT_EQ(load_error(dup), "'bad.json': duplicate key 'model.vocab.he'");
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(x"}}}, {"behavior", "Isolated"}};
  EXPECT_EQ(load_error(j.dump(), ErrorKind::Unsupported),
            "'bad.json': unsupported tokenizer.json: a pre_tokenizer that does not end with ByteLevel");
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"},
                                                        {"pattern", {{"Regex", "(x"}}},
                                                        {"behavior", "Isolated"}},
                                                       {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  EXPECT_EQ(load_error(j.dump()), "'bad.json': bad split pattern '(x': missing closing parenthesis at offset 2");
}

// ---------------------------------------------------------------- Llama 3

class Llama3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::llama3_tokenizer_json();
    if (test::exists(path)) tok_ = HfBpeTokenizer::load(path).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_) GTEST_SKIP() << "no Llama 3 tokenizer.json (tests/tokenizer/fetch-llama3.sh fetches it)";
  }
  static HfBpeTokenizer* tok_;
};
HfBpeTokenizer* Llama3::tok_ = nullptr;

TEST_F(Llama3, Identity) {
  const TokenizerSpec& s = tok_->spec();
  EXPECT_EQ(s.kind, TokenizerKind::HfBpe);
  EXPECT_EQ(s.vocab_size, 128256u);
  EXPECT_EQ(s.bos_id, 128000);  // from tokenizer_config.json beside it
  EXPECT_EQ(s.eos_id, 128001);
  EXPECT_EQ(s.pad_id, -1);
  EXPECT_EQ(s.unk_id, -1);
  EXPECT_EQ(s.fingerprint, 0x3806d29fd8667f61ull);  // pinned: docs/tokenizers.md
  EXPECT_TRUE(tok_->cuts());
}

TEST_F(Llama3, IdsOfTheReference) {  // transformers.js encode(text, {add_special_tokens: false}), pinned
  const std::pair<const char*, Ids> cases[] = {
      {"Hello, my dog is cute", {9906, 11, 856, 5679, 374, 19369}},
      {"Hello, my dog is cute<|eot_id|> x  \n\n y", {9906, 11, 856, 5679, 374, 19369, 128009, 865, 19124, 379}},
      {"'\xC5\xBFt \xC2\x85x\xEF\xBB\xBFy", {6, 129, 123, 83, 2188, 227, 87, 3305, 88}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(test::encode(*tok_, text), ids) << text;
    EXPECT_EQ(test::encode(*tok_, text, 1), ids) << text << " (1 byte at a time)";
  }
}

TEST_F(Llama3, DecodingRestoresTheText) {
  const std::string text = test::read_file(test::source_path("tests/data/tinyshakespeare.txt")).substr(0, 20000) +
                           " caf\xC3\xA9 \xF0\x9F\x91\x8D <|eot_id|>";
  EXPECT_EQ(test::decode(*tok_, test::encode(*tok_, text)), text);
}

TEST_F(Llama3, OutputDoesNotDependOnBlocksOrThreads) {
  std::string big = test::read_file(test::source_path("tests/data/unicode_mix.txt"));
  big += big;
  big += big;
  const Ids once = test::encode(*tok_, big);
  EXPECT_EQ(test::encode(*tok_, big, 65537, 2), once);
  EXPECT_EQ(test::encode(*tok_, big, 999, 3), once);
}

}  // namespace
}  // namespace lm
