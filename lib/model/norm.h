// Normalisation over the last axis: RMSNorm and LayerNorm, each with optional weight and
// bias (a null weight means 1, a null bias means 0). Statistics are accumulated in double
// and saved (rstd, and mean for LayerNorm) for the backward pass. Shape letters: N rows,
// C features (also used with C = HS for QK-norm over each head).
#pragma once

#include <cstdint>

namespace lm {

// out [N, C] = inp * rstd * weight + bias, rstd [N] = 1 / sqrt(mean(inp^2) + eps).
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, const float* bias, int64_t N,
                     int64_t C, float eps);
// The residual add and the norm after it in one pass over the rows: h [N, C] = x + y, then
// out, rstd = rmsnorm_forward(h). The same numbers as add then rmsnorm_forward, bit for bit
// (residual_rmsnorm_forward_ref, the unfused pair). h may alias x or y.
void residual_rmsnorm_forward(float* h, float* out, float* rstd, const float* x, const float* y, const float* weight,
                              const float* bias, int64_t N, int64_t C, float eps);
void residual_rmsnorm_forward_ref(float* h, float* out, float* rstd, const float* x, const float* y,
                                  const float* weight, const float* bias, int64_t N, int64_t C, float eps);
// out [N, C] = (inp - mean) * rstd * weight + bias, mean [N], rstd [N] = 1 / sqrt(var + eps) (biased var).
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps);

// Backward passes, accumulating: dinp [N, C] += d/dinp, dweight [C] += d/dweight, dbias [C] +=
// column sums of dout. dweight and dbias may be null (no weight / no bias: then `weight` is
// null too and means 1). inp and the saved statistics are those of the forward.
void rmsnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int64_t C);
// rmsnorm_backward reads each row once: dinp and the parameter gradients in one pass and one
// parallel region (the parameter gradients summed per block of rows, the blocks in order, so
// the result does not depend on the thread count). rmsnorm_backward_ref is the two-pass
// original it is held to: dinp first, then the column sums.
void rmsnorm_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* rstd, int64_t N, int64_t C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C);

}  // namespace lm
