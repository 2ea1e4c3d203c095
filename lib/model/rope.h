// Rotary position embeddings in Meta's interleaved layout: within each head the pairs
// (2i, 2i+1) rotate by angle (pos / rope_scale_factor) * inv_freq[i], with
// inv_freq[i] = rope_theta^(-2i/HS) rescaled by rope_scaling ("llama3": Llama 3.1's
// apply_scaling; "linear": inv_freq / factor). Angles are computed in double, so explicit
// positions as large as soma's global byte offsets stay exact to float precision.
// Shape letters: N rows (B*T), H heads, HS head size.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace lm {

// inv_freq [HS/2] of a config, rope_scaling applied.
std::vector<double> rope_inv_freq(const ModelConfig& cfg);

// cos, sin [N, HS/2] for positions pos [N]: angle = pos[n] / scale_factor * inv_freq[i].
void rope_tables(float* cos, float* sin, const int64_t* pos, const double* inv_freq, int64_t N, int64_t half,
                 double scale_factor);

// out [N, H, HS] = inp rotated pairwise; out may equal inp (in place).
void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int64_t N, int64_t H,
                  int64_t HS);

// Backward of rope_forward (positions are constants): dinp [N, H, HS] += dout rotated back
// (the transpose of the rotation). dinp must not alias dout.
void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int64_t N, int64_t H,
                   int64_t HS);

// One layer's q and k in one pass over the rows (one parallel region instead of two):
// qr [N, NH, HS] = rope(q), kr [N, NKV, HS] = rope(k); the same numbers as rope_forward on
// each. qr, kr may equal q, k (in place; then in_ld must be 0). in_ld > 0: row n of q is at
// q + n * in_ld and of k at k + n * in_ld (both read in place from one fused [N, in_ld] q/k/v
// projection); 0: q and k are contiguous [N, NH*HS] and [N, NKV*HS].
void rope_qk_forward(float* qr, float* kr, const float* q, const float* k, const float* cos, const float* sin,
                     int64_t N, int64_t NH, int64_t NKV, int64_t HS, int64_t in_ld = 0);
// Its backward, WRITING (not accumulating) the rotated-back gradients: dq [N, NH, HS] and
// dk [N, NKV, HS] = dqr, dkr rotated back, so the training step needs no zeroing pass before
// it; the same numbers as rope_backward into zeroed buffers. out_ld > 0: the rows of dq and
// dk at a stride of out_ld floats (written into the fused projection's gradient), as in_ld above.
void rope_qk_backward(float* dq, float* dk, const float* dqr, const float* dkr, const float* cos, const float* sin,
                      int64_t N, int64_t NH, int64_t NKV, int64_t HS, int64_t out_ld = 0);

}  // namespace lm
