// Text generation with a KV cache: prefill the prompt in one forward pass, then sample one
// token at a time (Sampler), until max_new_tokens, the model's end-of-sequence token, a
// stop string, or the end of the context (max_seq_len). Text is handed out as it is
// produced, holding back only bytes that may be the start of a stop string; a stop string
// itself is not part of the output.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "generate/sampler.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace lm {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplerOptions sampling;
  bool stop_at_eos = true;        // stop at the config's eos_id (not emitted)
  std::vector<std::string> stop;  // stop strings (bytes; need a tokenizer)
};

struct Completion {
  std::vector<int32_t> tokens;  // generated, up to (not including) EOS or the stop string's first token
  std::string text;             // their bytes, cut before the stop string
  int64_t prompt_tokens = 0;
  int64_t generated = 0;        // tokens sampled (incl. EOS and the stop string's tokens)
  std::string stop_reason;      // "length", "eos", "stop", "max_seq_len"
  double time_to_first_token = 0, seconds = 0;  // s, from the start of the prefill
  double tokens_per_second() const { return seconds > 0 ? generated / seconds : 0; }
  // Decode speed after the first token.
  double decode_tokens_per_second() const {
    return generated > 1 && seconds > time_to_first_token ? (generated - 1) / (seconds - time_to_first_token) : 0;
  }
};

// The ids a completion never holds, [V] (1 = reserved): PAD (the config's and the
// tokenizer's), ids at or past the tokenizer's vocabulary size (a model's vocabulary may be
// padded beyond it), and ids the tokenizer cannot decode (byte-v1's 258..263). EOS is not
// reserved: it ends a completion, or is kept with stop_at_eos off. A vision model's
// image_token_id is reserved (a generated image place would have no feature). `tokenizer` may be null
// (then `spec` alone decides: its pad and vocab size).
std::vector<uint8_t> reserved_ids(const ModelConfig& cfg, const TokenizerSpec& spec, const Tokenizer* tokenizer);

// Encodes text with `tokenizer` (no end-of-document token), prepending the spec's BOS when
// it has one and the encoding does not start with it.
std::vector<int32_t> encode_prompt(Tokenizer& tokenizer, std::string_view text);

class Generator {
 public:
  // tokenizer may be null: then no text is produced and stop strings are refused. `spec`
  // names the model's tokenizer (default: the tokenizer's, else raw with the model's
  // vocabulary); no completion holds its reserved ids (reserved_ids).
  Generator(Transformer& model, const Tokenizer* tokenizer, const TokenizerSpec* spec = nullptr);

  // Generates from `prompt` (1 <= size, size + K <= max_seq_len, else a Data error naming `what`).
  // on_text (may be empty) receives the output bytes as they are decided. `conditions`: a
  // materium model's condition values for this prompt (one row; null: unconditional, every
  // condition dropped), whose K positions come first in the cache. vision (may be null): the
  // prompt's image features (model/vision.h), every one on a place of the prompt (Data error
  // otherwise); image_token_id is never sampled (reserved_ids).
  Completion generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts, uint64_t seed,
                      const std::function<void(std::string_view)>& on_text, const std::string& what = "prompt",
                      const ConditionBatch* conditions = nullptr, const VisionRow* vision = nullptr);

 private:
  Transformer& model_;
  const Tokenizer* tok_;
  KVCache cache_;
  std::vector<uint8_t> reserved_;  // [V]
};

}  // namespace lm
