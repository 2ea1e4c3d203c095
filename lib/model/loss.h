// The output head's last steps: logits soft cap and cross-entropy. Shape letters: N rows
// (B*T), V vocab.
#pragma once

#include <cstdint>

namespace lm {

// out [n] = cap * tanh(inp / cap); out may alias inp. (Backward needs only out.)
void softcap_forward(float* out, const float* inp, int64_t n, float cap);

// losses [N] = logsumexp(logits[n]) - logits[n, targets[n]]; 0 where targets[n] == ignore_index
// (ignore_index < 0: nothing ignored). Throws a Data error for another target outside [0, V).
void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                          int32_t ignore_index);

struct LossResult {
  double loss = 0;    // mean over counted targets; 0 when count == 0
  int64_t count = 0;  // targets not equal to ignore_index
};
// The mean of crossentropy_forward's losses over the targets that count.
LossResult crossentropy_mean(const float* logits, const int32_t* targets, int64_t N, int64_t V,
                             int32_t ignore_index);

}  // namespace lm
