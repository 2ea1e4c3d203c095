// Text generation with a KV cache: prefill the prompt in one forward pass, then sample one
// token at a time (Sampler), until max_new_tokens, the model's end-of-sequence token, a
// stop string, or the end of the context (max_seq_len). Text is handed out as it is
// produced, holding back only bytes that may be the start of a stop string; a stop string
// itself is not part of the output.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
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
  bool stop_at_eos = true;        // stop at the config's eos_id or extra_eos_ids (not emitted)
  std::vector<std::string> stop;  // stop strings (bytes; need a tokenizer)
  // >= 0: each kept token's log-probability and the `logprobs` most likely ids' (Completion::logprobs)
  int64_t logprobs = -1;
};

// A log-probability under the model's own distribution: log_softmax of its logits over the
// whole vocabulary, before penalties, temperature and any cut (reserved ids included).
struct TokenLogprob {
  int32_t id = 0;
  double logprob = 0;
};
struct StepLogprobs {
  TokenLogprob chosen;           // the token kept
  std::vector<TokenLogprob> top;  // the K most likely ids, most likely first (ties: lower id)
};

struct Completion {
  std::vector<int32_t> tokens;  // generated, up to (not including) EOS or the stop string's first token
  std::string text;             // their bytes, cut before the stop string
  int64_t prompt_tokens = 0;
  int64_t generated = 0;        // tokens sampled (incl. EOS and the stop string's tokens)
  std::string stop_reason;      // "length", "eos", "stop", "max_seq_len"
  std::vector<StepLogprobs> logprobs;  // [tokens.size()] with GenerateOptions::logprobs >= 0, else empty
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

// The log-probabilities of `chosen` and of the k most likely ids under softmax(logits [V]).
StepLogprobs step_logprobs(const float* logits, int64_t V, int32_t chosen, int64_t k);

// Encodes text with `tokenizer` (no end-of-document token), prepending the spec's BOS when
// it has one and the encoding does not start with it.
std::vector<int32_t> encode_prompt(Tokenizer& tokenizer, std::string_view text);

// One completion in progress: the prompt's checks and prefill, then a token at a time, each
// sampled with the sequence's own Sampler (so the tokens depend on its prompt, options and
// seed alone, never on what else runs beside it). Generator runs one at a time;
// BatchGenerator several with one decode forward for all.
class CompletionRun {
 public:
  // Checks the prompt (see Generator::generate), prefills it into this sequence's KV cache
  // (one row, kept between prompts while big enough), and samples the first token; done()
  // may be true at once. reserved: [V] (reserved_ids). on_text as Generator::generate's.
  void begin(Transformer& model, const Tokenizer* tokenizer, const uint8_t* reserved,
             const std::vector<int32_t>& prompt, const GenerateOptions& opts, uint64_t seed,
             std::function<void(std::string_view)> on_text, const std::string& what,
             const ConditionBatch* conditions, const VisionRow* vision);
  bool done() const { return done_; }
  // The token to feed next (the last one sampled; not done()).
  int32_t next_input() const { return next_; }
  KVCache& cache() { return cache_; }
  const VisionRow* vision() const { return vision_.count > 0 ? &vision_ : nullptr; }
  // The logits [V] of the position after next_input(): samples the next token.
  void take(const float* logits);
  // take() in two parts: choose() draws the token with this sequence's own sampler (and its
  // log-probabilities when asked), touching nothing another sequence uses, so BatchGenerator
  // runs the sequences' choices on the threads (the same token on any thread); then commit()
  // emits it (text, stop strings, the end), in the sequences' order.
  void choose(const float* logits);
  void commit();
  // The completion, after done(); hands out the bytes still held back.
  Completion finish();

 private:
  double since() const;

  Transformer* model_ = nullptr;
  const Tokenizer* tok_ = nullptr;
  const uint8_t* reserved_ = nullptr;
  GenerateOptions opts_;
  std::function<void(std::string_view)> on_text_;
  VisionRow vision_;
  KVCache cache_;
  std::unique_ptr<Sampler> sampler_;
  Completion out_;
  std::chrono::steady_clock::time_point t0_;
  std::vector<size_t> token_end_;  // byte end of each emitted token in all_
  std::vector<uint8_t> bytes_;
  size_t emitted_ = 0;             // bytes of all_ handed out
  std::string all_;                // every decoded byte
  int32_t next_ = -1;
  int32_t chosen_ = -1;             // choose()'s token, until commit()
  StepLogprobs chosen_logprobs_;    // its log-probabilities (GenerateOptions::logprobs >= 0)
  bool done_ = true;
};

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
  CompletionRun seq_;
  std::vector<uint8_t> reserved_;  // [V]
};

// Continuous batching: up to `slots` sequences in flight, each with its own KV cache and
// sampler; step() runs one decode forward for all unfinished ones (Transformer::forward_steps:
// the weights read once per step for all of them), and a finished one's slot takes the next
// prompt. Every completion is the one Generator::generate gives for the same prompt, options
// and seed, token for token (f32 compute; the tests hold it to that).
class BatchGenerator {
 public:
  BatchGenerator(Transformer& model, const Tokenizer* tokenizer, const TokenizerSpec* spec, int64_t slots);

  int64_t slots() const { return static_cast<int64_t>(seqs_.size()); }
  // A slot that holds no sequence, or -1.
  int64_t free_slot() const;
  // Starts a completion in free slot `slot` (CompletionRun::begin: the prefill runs here, alone).
  void start(int64_t slot, const std::vector<int32_t>& prompt, const GenerateOptions& opts, uint64_t seed,
             std::function<void(std::string_view)> on_text, const std::string& what,
             const ConditionBatch* conditions = nullptr, const VisionRow* vision = nullptr);
  bool done(int64_t slot) const { return seqs_[static_cast<size_t>(slot)].done(); }
  // The completion of a done sequence; frees its slot.
  Completion finish(int64_t slot);
  // Sequences started and not done.
  int64_t running() const;
  // One token for every running sequence: one forward over all of them.
  void step();

 private:
  Transformer& model_;
  const Tokenizer* tok_;
  std::vector<CompletionRun> seqs_;
  std::vector<uint8_t> busy_;      // [slots] holds a sequence (done or not)
  std::vector<uint8_t> reserved_;  // [V]
  std::vector<int32_t> step_tokens_;
  std::vector<KVCache*> step_caches_;
  std::vector<int64_t> step_slots_;
};

}  // namespace lm
