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

// The classifier and its cross-entropy in one training pass, over chunks of `chunk` rows so
// the [N, V] logits are never all stored (issue 16). For each chunk of rows R:
//   logits[R] = x[R] W^T + bias (then cap * tanh(logits / cap) when soft_cap > 0), into scratch;
//   losses[R] and dlogits[R] in place, as crossentropy_backward (and softcap_backward_inplace);
//   dx[R] = dlogits[R] W (written: dx needs no zeroing), dW += dlogits[R]^T x[R], dbias +=
//   column sums of dlogits[R] (bias/dbias may be null).
// x [N, C], W [V, C] (PyTorch orientation), dW may alias another gradient (tied embeddings:
// it accumulates). scratch: [min(chunk, N), V] floats (classifier_chunk_rows). The matmuls
// go through matmul_forward / matmul_backward (bf16 compute included). The result equals
// classifier_crossentropy_ref's except for the order of dW's and dbias's sums over rows.
void classifier_crossentropy(float* dx, float* dW, float* dbias, float* losses, float* scratch, const float* x,
                             const float* W, const float* bias, const int32_t* targets, const float* weights,
                             double weight_sum, float dloss, float soft_cap, int64_t N, int64_t C, int64_t V,
                             int32_t ignore_index, int64_t chunk);
// The same through the whole [N, V] logits and dlogits (two buffers it allocates), as the
// training step ran before the chunks: the reference the chunked pass is held to.
void classifier_crossentropy_ref(float* dx, float* dW, float* dbias, float* losses, const float* x, const float* W,
                                 const float* bias, const int32_t* targets, const float* weights, double weight_sum,
                                 float dloss, float soft_cap, int64_t N, int64_t C, int64_t V, int32_t ignore_index);
// Rows per chunk of classifier_crossentropy for a vocabulary of V: as many as 128 MiB of logits
// hold (measured: smaller chunks were slower; lmkit's README, "Training speed").
int64_t classifier_chunk_rows(int64_t V);

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
