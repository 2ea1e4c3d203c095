// Next-token sampling from logits: greedy at temperature 0, else softmax(logits / T)
// restricted to the top_k most likely tokens and then to the smallest set whose
// probability reaches top_p (nucleus), drawn with lm::Rng, so a seed fixes the output.
// Shape letter: V vocab.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/rng.h"

namespace lm {

struct SamplerOptions {
  double temperature = 1.0;  // 0 = greedy (argmax; the lowest id wins ties)
  int64_t top_k = 0;         // 0 = every token
  double top_p = 1.0;        // 1 = no nucleus cut; in (0, 1]
};

// Throws Usage for a negative temperature or top_k, or top_p outside (0, 1].
void validate(const SamplerOptions& opts);

class Sampler {
 public:
  Sampler(const SamplerOptions& opts, uint64_t seed);
  // The next token from logits [V], never one with reserved[id] != 0 (reserved may be
  // null; [V] otherwise). Deterministic for (options, seed, sequence of calls). Data error
  // when every id is reserved.
  int32_t sample(const float* logits, int64_t V, const uint8_t* reserved = nullptr);
  // The candidates and probabilities the last sample() drew from (tests): most likely first
  // after a top-k or top-p cut, else in id order.
  const std::vector<std::pair<int32_t, double>>& last_candidates() const { return cand_; }

 private:
  SamplerOptions opts_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> work_;
  std::vector<std::pair<int32_t, double>> cand_;
};

// Index of the largest logit (the first one on ties) among the ids not reserved (reserved
// may be null); -1 when every id is.
int32_t argmax(const float* logits, int64_t V, const uint8_t* reserved = nullptr);

}  // namespace lm
