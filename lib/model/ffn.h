// Feed-forward activations. The projections are matmul_forward (w1, w3: [F, C]; w2: [C, F]):
//   swiglu: out = w2 (silu(w1 x) * w3 x)     gelu: out = w2 gelu(w1 x)
// Shape letter: n = N * F elements.
#pragma once

#include <cstdint>

namespace lm {

// out [n] = silu(gate) * up, silu(x) = x / (1 + exp(-x)). out may alias gate or up.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
// SwiGLU's first half: gate = inp @ w1^T + b1, up = inp @ w3^T + b3 ([N, F] each, biases may
// be null), act = silu(gate) * up. The same numbers as matmul_forward_parts then
// swiglu_forward; with few rows (decode) row i of w1 and of w3 are read together and act[i]
// follows at once, so the activation needs no serial pass between the parallel matmuls.
void swiglu_up_forward(float* act, float* gate, float* up, const float* inp, const float* w1, const float* b1,
                       const float* w3, const float* b3, int64_t N, int64_t C, int64_t F);
// The same over weights of any type (core/rows.h): w1, w3 [F, C].
struct WeightView;
void swiglu_up_forward(float* act, float* gate, float* up, const float* inp, const WeightView& w1, const float* b1,
                       const WeightView& w3, const float* b3, int64_t N);
// out [n] = gelu(inp): erf form, or the tanh approximation when tanh_approx. out may alias inp.
void gelu_forward(float* out, const float* inp, int64_t n, bool tanh_approx);

// Backward passes, accumulating (no aliasing between outputs and inputs):
// dgate, dup [n] += dout * d(silu(gate) * up)/d(gate, up).
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);
// The same WRITING dgate and dup (=, not +=): the training step's buffers need no zeroing pass.
void swiglu_backward_write(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);
// The two above over a fused [N, 2F] projection (Transformer::fused_w13): row n's gate is
// gu[n*2F, n*2F + F) and its up the F floats after. act [N, F] = silu(gate) * up; dgu [N, 2F]
// written with dgate and dup in the same places. The same numbers as the flat ones.
void swiglu_forward_fused(float* act, const float* gu, int64_t N, int64_t F);
void swiglu_backward_write_fused(float* dgu, const float* dout, const float* gu, int64_t N, int64_t F);
// dinp [n] += dout * gelu'(inp).
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n, bool tanh_approx);

}  // namespace lm
