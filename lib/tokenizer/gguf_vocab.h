// A tokenizer as a GGUF vocabulary (the tokenizer.ggml.* keys llama.cpp reads, src/llama-vocab.cpp
// there) and back, so that a GGUF file written by lmkit carries its tokenizer into llama.cpp and
// a GGUF file from llama.cpp carries its tokenizer into lmkit. docs/tokenizers.md, "GGUF".
//
//  sentencepiece  model "llama": tokens = the pieces, scores, token_type = the piece types
//                 (llama.cpp's LLAMA_TOKEN_TYPE_* are SentencePiece's values, 1 normal ..
//                 6 byte), add_space_prefix = add_dummy_prefix, remove_extra_whitespaces.
//  hf-bpe         model "gpt2": tokens = each id's text as written in tokenizer.json (byte-level
//                 characters), token_type 1 for vocabulary tokens, 3 (control) for special
//                 added tokens, 4 (user-defined) for other added tokens, merges "a b" in rank
//                 order, and pre = the name llama.cpp gives the pre-tokenizer: "llama-bpe" for
//                 Llama 3's Split pattern (with ignore_merges, as llama.cpp applies it), "gpt-2"
//                 for GPT-2's. Any other pre-tokenizer is refused: llama.cpp would split the
//                 text differently.
//  byte-v1        refused: llama.cpp has no byte-level tokenizer whose ids are the bytes.
//
// Both add bos/eos/unknown/padding ids when the tokenizer has them, add_bos_token (true when
// there is a BOS, as lmkit's programs put one in front of a prompt) and add_eos_token false.
// A model whose vocabulary is larger than its tokenizer's gets unused tokens "[PAD<id>]" (type
// 5) up to its size, as llama.cpp's converter does; reading drops trailing ones again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace lm {

// The tokenizer.ggml.* key/values for `tok` in a model of `model_vocab` tokens (>= the
// tokenizer's). Unsupported errors (byte-v1, pre-tokenizers llama.cpp has no name for) say why.
std::vector<std::pair<std::string, GGUFValue>> gguf_vocab_keys(const Tokenizer& tok, int64_t model_vocab);

// The tokenizer a GGUF file's tokenizer.ggml.* keys describe, or null when it has none (no
// tokenizer.ggml.model, or "none"/"no_vocab"). Unsupported errors for other models ("bert",
// "t5", ...) and unknown pre-tokenizer names; Data errors for malformed keys. Errors name `name`.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile& file, const std::string& name);
// The same over any key lookup (null: absent).
using GGUFLookup = std::function<const GGUFValue*(const std::string& key)>;
std::unique_ptr<Tokenizer> tokenizer_from_gguf_keys(const GGUFLookup& find, const std::string& name);

// The vocabulary key/values as one JSON object {"tokenizer.ggml.model": "llama", ...}: the form
// an lmkit checkpoint carries its tokenizer in (metadata key lmkit.vocab, io/metadata_keys.h).
// Arrays of strings stay strings, of integers integers (token_type), of floats floats (scores).
std::string gguf_vocab_to_json(const std::vector<std::pair<std::string, GGUFValue>>& kv);
// The tokenizer of such a JSON object (null for model "none"); Data errors name `name`.
std::unique_ptr<Tokenizer> tokenizer_from_vocab_json(const std::string& json, const std::string& name);

// Whether the file at `path` starts with GGUF's magic (false for "-" and unreadable files).
bool is_gguf_path(const std::string& path);

// The regular expression llama.cpp splits text with for a "gpt2" pre-tokenizer name lmkit
// supports, or "" for names it does not ("llama-bpe"/"llama3"/"llama-v3"/"falcon3"/
// "smollm"/"dbrx" are Llama 3's; "gpt-2"/"phi-2"/"roberta-bpe"/... GPT-2's).
std::string gguf_pre_tokenizer_pattern(const std::string& pre);

}  // namespace lm
