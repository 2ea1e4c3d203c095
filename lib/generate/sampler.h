// Next-token sampling from logits, in llama.cpp's order (common/sampling.cpp's default chain):
//   1. penalties over the last repeat_last_n tokens of the sequence (prompt and completion,
//      accept()): each such id's logit l becomes l / repeat_penalty when l > 0, else
//      l * repeat_penalty (llama.cpp), then l - count * frequency_penalty - presence_penalty
//      (OpenAI; count = the id's occurrences in the window);
//   2. greedy at temperature 0 (the argmax of the penalised logits), else softmax(l / T)
//      cut to the top_k most likely tokens, then to the smallest set whose probability
//      reaches top_p (nucleus), then to the tokens whose probability is at least min_p times
//      the most likely one's, and drawn with lm::Rng, so a seed fixes the output.
// Temperature scales the logits before the cuts (as Hugging Face transformers does;
// llama.cpp applies it after them, so its top-p and min-p see the untempered distribution:
// the two agree at T = 1). Shape letter: V vocab.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/rng.h"

namespace lm {

struct SamplerOptions {
  double temperature = 1.0;  // 0 = greedy (argmax; the lowest id wins ties)
  int64_t top_k = 0;         // 0 = every token
  double top_p = 1.0;        // 1 = no nucleus cut; in (0, 1]
  double min_p = 0.0;        // 0 = no cut; in [0, 1]
  double repeat_penalty = 1.0;     // 1 = none; > 0
  double presence_penalty = 0.0;   // 0 = none
  double frequency_penalty = 0.0;  // 0 = none
  int64_t repeat_last_n = 64;      // the penalties' window in tokens; 0 = no penalties, -1 = every token
  bool penalises() const {
    return repeat_last_n != 0 && (repeat_penalty != 1.0 || presence_penalty != 0.0 || frequency_penalty != 0.0);
  }
};

// Throws Usage for a negative temperature or top_k, top_p outside (0, 1], min_p outside
// [0, 1], a repeat_penalty <= 0, non-finite penalties, or repeat_last_n < -1.
void validate(const SamplerOptions& opts);

class Sampler {
 public:
  Sampler(const SamplerOptions& opts, uint64_t seed);
  // The next token from logits [V], never one with reserved[id] != 0 (reserved may be
  // null; [V] otherwise). Deterministic for (options, seed, sequence of calls). Data error
  // when every id is reserved. Does not accept() the token.
  int32_t sample(const float* logits, int64_t V, const uint8_t* reserved = nullptr);
  // Adds a token of the sequence to the penalties' window (the prompt's, then each sampled one).
  void accept(int32_t token);
  // The logits after the penalties of the last sample() (tests), or the input when none applied.
  const float* last_logits() const { return logits_; }
  // The candidates and probabilities the last sample() drew from (tests): most likely first
  // after a top-k or top-p cut, else in id order.
  const std::vector<std::pair<int32_t, double>>& last_candidates() const { return cand_; }

 private:
  SamplerOptions opts_;
  Rng rng_;
  struct Candidate {
    float logit;
    int32_t id;
    double weight;  // exp((logit - the largest) / temperature)
  };
  std::vector<Candidate> work_;
  std::vector<int32_t> window_;        // the last repeat_last_n accepted tokens (a ring once full)
  std::size_t window_next_ = 0;             // the ring's oldest slot
  std::unordered_map<int32_t, int64_t> counts_;  // occurrences in window_
  std::vector<float> penalised_;       // [V]
  const float* logits_ = nullptr;
  std::vector<std::pair<int32_t, double>> cand_;
};

// Index of the largest logit (the first one on ties) among the ids not reserved (reserved
// may be null); -1 when every id is.
int32_t argmax(const float* logits, int64_t V, const uint8_t* reserved = nullptr);

}  // namespace lm
