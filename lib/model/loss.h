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
  double loss = 0;        // mean over counted targets; 0 when count == 0
  int64_t count = 0;      // targets not equal to ignore_index
  double weight_sum = 0;  // the sum of their loss weights (Transformer::loss; == count unweighted)
};
// The mean of crossentropy_forward's losses over the targets that count.
LossResult crossentropy_mean(const float* logits, const int32_t* targets, int64_t N, int64_t V,
                             int32_t ignore_index);

// Backward of softcap_forward in place (saves an [N, V] buffer): d [n] *= 1 - (out / cap)^2,
// with out the forward's output.
void softcap_backward_inplace(float* d, const float* out, int64_t n, float cap);

// Backward of the (weighted) mean cross-entropy, fused with its forward (one softmax per
// row): dlogits [N, V] = scale[n] * (softmax(logits[n]) - onehot(targets[n])) (written, not
// accumulated: no zeroing pass over [N, V] first) with
// scale[n] = dloss * w / W, w = weights[targets[n]] (1 when weights is null) and W =
// `weight_sum` (the sum of w over the counted targets), and losses [N] (may be null) =
// logsumexp(logits[n]) - logits[n, targets[n]]. Rows whose target is ignore_index get a zero
// gradient and a loss of 0. The softmax's exponentials are exp_fast's (core/fast_exp.h). Targets must be in range (check_token_ids).
void crossentropy_backward(float* dlogits, float* losses, const float* logits, const int32_t* targets,
                           const float* weights, double weight_sum, float dloss, int64_t N, int64_t V,
                           int32_t ignore_index);

// The loss-weighted mean: sum_n w[t_n] losses[n] / sum_n w[t_n] over targets != ignore_index
// (weights null: all 1, the plain mean). count = targets that count; weight_sum = sum of their w.
struct WeightedLoss {
  double loss = 0;
  int64_t count = 0;
  double weight_sum = 0;
};
WeightedLoss crossentropy_weighted_mean(const float* logits, const int32_t* targets, const float* weights, int64_t N,
                                        int64_t V, int32_t ignore_index);

}  // namespace lm
