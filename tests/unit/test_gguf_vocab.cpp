// GGUF vocabularies (tokenizer/gguf_vocab.h): an lmkit tokenizer written as tokenizer.ggml.* keys
// and read back gives the same tokenizer (identity and ids); the keys are what llama.cpp reads;
// the committed fixture's ids are llama.cpp's (tests/fixtures/gguf_vocab/make_fixture.sh).
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/stream.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace lm {
namespace {

using nlohmann::json;
using test::Ids;
using KV = std::vector<std::pair<std::string, GGUFValue>>;

const GGUFValue* find(const KV& kv, const std::string& key) {
  for (const auto& [k, v] : kv)
    if (k == key) return &v;
  return nullptr;
}

std::unique_ptr<Tokenizer> read_back(const KV& kv) {
  return tokenizer_from_gguf_keys([&kv](const std::string& key) { return find(kv, key); }, "keys");
}

std::string bl(const std::string& bytes) {  // bytes in the byte-level alphabet
  std::string out;
  for (unsigned char c : bytes) utf8::append(out, hf::byte_to_unicode(c));
  return out;
}

// A byte-level BPE tokenizer.json: 256 bytes, a few merges, two added tokens, a pre-tokenizer.
json tiny_bpe(const json& pre, bool ignore_merges) {
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
  return {{"added_tokens", json::array({{{"id", 265}, {"content", "<|end|>"}, {"special", true}},
                                        {{"id", 267}, {"content", "<x>"}, {"special", false}}})},
          {"pre_tokenizer", pre},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", ignore_merges}}}};
}

json llama3_pre() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", hf::kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
}

TEST(GGUFVocab, BpeKeysAreLlamaCppsAndReadBack) {
  auto tok = HfBpeTokenizer::from_json(tiny_bpe(llama3_pre(), true).dump(), R"({"eos_token":"<|end|>"})", "tiny.json");
  const KV kv = gguf_vocab_keys(*tok, 270);
  EXPECT_EQ(find(kv, "tokenizer.ggml.model")->s, "gpt2");
  EXPECT_EQ(find(kv, "tokenizer.ggml.pre")->s, "llama-bpe");
  const auto& tokens = find(kv, "tokenizer.ggml.tokens")->array;
  const auto& types = find(kv, "tokenizer.ggml.token_type")->array;
  ASSERT_EQ(tokens.size(), 270u);  // padded to the model's vocabulary
  EXPECT_EQ(tokens[32].s, bl(" "));
  EXPECT_EQ(types[32].i, 1);
  EXPECT_EQ(tokens[265].s, "<|end|>");
  EXPECT_EQ(types[265].i, 3);  // control
  EXPECT_EQ(tokens[266].s, "[PAD266]");
  EXPECT_EQ(types[266].i, 5);  // unused: no token has this id
  EXPECT_EQ(tokens[267].s, "<x>");
  EXPECT_EQ(types[267].i, 4);  // user-defined
  EXPECT_EQ(tokens[269].s, "[PAD269]");
  const auto& merges = find(kv, "tokenizer.ggml.merges")->array;
  ASSERT_EQ(merges.size(), 9u);
  EXPECT_EQ(merges[0].s, "h e");
  EXPECT_EQ(merges[3].s, bl(" ") + " w");
  EXPECT_EQ(merges[8].s, bl(" wor") + " ld");
  EXPECT_EQ(find(kv, "tokenizer.ggml.eos_token_id")->u, 265u);
  EXPECT_EQ(find(kv, "tokenizer.ggml.bos_token_id"), nullptr);
  EXPECT_EQ(find(kv, "tokenizer.ggml.add_bos_token")->u, 0u);

  auto back = read_back(kv);
  EXPECT_EQ(back->spec(), tok->spec());  // kind, vocabulary size, special ids, fingerprint
  const std::string text = "hello world<|end|> <x>hell\n\n  worlds 123 ";
  EXPECT_EQ(test::encode(*back, text), test::encode(*tok, text));
  // and through the JSON form an lmkit checkpoint carries (lmkit.vocab)
  auto from_json = tokenizer_from_vocab_json(gguf_vocab_to_json(kv), "vocab");
  EXPECT_EQ(from_json->spec(), tok->spec());
  EXPECT_EQ(test::encode(*from_json, text), test::encode(*tok, text));
}

TEST(GGUFVocab, BpePreTokenizerNames) {
  const json gpt2 = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  auto tok = HfBpeTokenizer::from_json(tiny_bpe(gpt2, false).dump(), "", "gpt2.json");
  EXPECT_EQ(find(gguf_vocab_keys(*tok, 268), "tokenizer.ggml.pre")->s, "gpt-2");
  auto smaug = HfBpeTokenizer::from_json(tiny_bpe(llama3_pre(), false).dump(), "", "smaug.json");
  EXPECT_EQ(find(gguf_vocab_keys(*smaug, 268), "tokenizer.ggml.pre")->s, "smaug-bpe");  // llama3 split, merges kept
  // A split llama.cpp has no name for is refused, saying what it is.
  json other = llama3_pre();
  other["pretokenizers"][0]["pattern"]["Regex"] = "\\p{N}|[^\\p{N}]+";
  auto odd = HfBpeTokenizer::from_json(tiny_bpe(other, false).dump(), "", "odd.json");
  try {
    gguf_vocab_keys(*odd, 268);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("llama.cpp has no pre-tokenizer"), std::string::npos) << e.what();
  }
  // Reading: unknown names and models are refused, "none" is no tokenizer.
  KV kv = gguf_vocab_keys(*tok, 268);
  for (auto& [k, v] : kv)
    if (k == "tokenizer.ggml.pre") v = GGUFValue::str("qwen2");
  EXPECT_THROW(read_back(kv), Error);
  KV none = {{"tokenizer.ggml.model", GGUFValue::str("none")}};
  EXPECT_TRUE(read_back(none) == nullptr);
  KV bert = {{"tokenizer.ggml.model", GGUFValue::str("bert")}};
  EXPECT_THROW(read_back(bert), Error);
  EXPECT_THROW(gguf_vocab_keys(*make_tokenizer(TokenizerKind::ByteV1), 264), Error);
}

class Llama2Vocab : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = test::shared_data("llama2-tokenizer/tokenizer.model");
    if (!test::exists(path)) GTEST_SKIP() << "no Llama 2 tokenizer.model in the shared data";
    tok_ = SentencePieceTokenizer::load(path);
  }
  std::unique_ptr<SentencePieceTokenizer> tok_;
};

TEST_F(Llama2Vocab, KeysAndRoundTrip) {
  const KV kv = gguf_vocab_keys(*tok_, 32000);
  EXPECT_EQ(find(kv, "tokenizer.ggml.model")->s, "llama");
  const auto& tokens = find(kv, "tokenizer.ggml.tokens")->array;
  const auto& types = find(kv, "tokenizer.ggml.token_type")->array;
  const auto& scores = find(kv, "tokenizer.ggml.scores")->array;
  ASSERT_EQ(tokens.size(), 32000u);
  EXPECT_EQ(tokens[0].s, "<unk>");
  EXPECT_EQ(types[0].i, 2);
  EXPECT_EQ(types[1].i, 3);
  EXPECT_EQ(types[2].i, 3);
  EXPECT_EQ(tokens[3].s, "<0x00>");
  EXPECT_EQ(types[3].i, 6);
  EXPECT_EQ(types[1000].i, 1);
  EXPECT_FLOAT_EQ(static_cast<float>(scores[1000].f), tok_->proto().pieces[1000].score);
  EXPECT_EQ(find(kv, "tokenizer.ggml.bos_token_id")->u, 1u);
  EXPECT_EQ(find(kv, "tokenizer.ggml.eos_token_id")->u, 2u);
  EXPECT_EQ(find(kv, "tokenizer.ggml.unknown_token_id")->u, 0u);
  EXPECT_EQ(find(kv, "tokenizer.ggml.padding_token_id"), nullptr);
  EXPECT_EQ(find(kv, "tokenizer.ggml.add_bos_token")->u, 1u);
  EXPECT_EQ(find(kv, "tokenizer.ggml.add_space_prefix")->u, 1u);

  auto back = read_back(kv);
  EXPECT_EQ(back->spec(), tok_->spec());
  std::string text = test::read_file(test::shared_data("tinyshakespeare/input.txt")).substr(0, 20000);
  text += " naïve café — 東京 ✓ \x01\x7f tabs\tand 12345";
  EXPECT_EQ(test::encode(*back, text), test::encode(*tok_, text));
  // A padded model vocabulary reads back as the tokenizer's own.
  auto padded = read_back(gguf_vocab_keys(*tok_, 32004));
  EXPECT_EQ(padded->spec(), tok_->spec());
}

// tests/fixtures/gguf_vocab: GGUF files lmkit wrote, and the ids llama.cpp's llama-tokenize
// gives for some strings on them (recorded by make_fixture.sh with a llama.cpp build).
TEST(GGUFVocab, IdsOfLlamaCpp) {
  const std::string dir = test::source_path("tests/fixtures/gguf_vocab");
  const json expected = json::parse(test::read_file(dir + "/expected.json"));
  ASSERT_FALSE(expected.empty());
  size_t checked = 0;
  for (const auto& [file, cases] : expected.items()) {
    auto tok = load_tokenizer(dir + "/" + file);
    for (const auto& c : cases) {
      Ids want;
      for (const auto& id : c["ids"]) want.push_back(id.get<uint32_t>());
      EXPECT_EQ(test::encode(*tok, c["text"].get<std::string>()), want) << file << ": " << c["text"];
      ++checked;
    }
  }
  EXPECT_GE(checked, 10u);
}

}  // namespace
}  // namespace lm
