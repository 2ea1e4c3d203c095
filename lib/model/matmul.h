// Linear layers: out = inp @ weight^T + bias, weights in PyTorch orientation [out, in].
// Shape letters: N rows (B*T), IC input features, OC output features.
#pragma once

#include <cstdint>

namespace lm {

// Up to this many rows, matmul_forward streams the weights once with its own loop (decode);
// above, it calls lm::sgemm.
inline constexpr int64_t kMatmulFewRows = 3;

// out [N, OC] = inp [N, IC] @ weight [OC, IC]^T + bias [OC] (bias may be null).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC);
// The same with plain loops (double accumulation): the reference the fast one is held to.
void matmul_forward_ref(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                        int64_t OC);

}  // namespace lm
