// soma-models V1's SIGReg regulariser (Sketched Isotropic Gaussian Regularisation, after
// LeJEPA), forward and backward, exactly as soma_models' torch SIGReg module computes it:
//
//   t_k   = linspace(0, t_max, P) (P = points), dt = t_max / (P - 1)
//   w_k   = (dt at both ends, 2 dt inside) * phi_k,  phi_k = exp(-t_k^2 / 2)
//   A     = noise / ||noise||, each of the S (= slices) columns of noise [C, S] normalised
//   x     = rows [N, C] @ A                                       -> proj [N, S]
//   c_nk  = mean_s cos(t_k x_ns),  s_nk = mean_s sin(t_k x_ns)    (mean over the S slices)
//   stat_n = S * sum_k w_k ((c_nk - phi_k)^2 + s_nk^2)
//   SIGReg = mean_n stat_n
//
// soma's module applies this to the representations [B, T, C] (the encoder output, i.e.
// after the final norm, what the classifier reads): the empirical characteristic function
// is taken over the S projections of each token (torch.mean over dim -2 of [B, T, S, P]),
// and every token counts, PAD included. Its compute_loss returns loss = CE +
// coefficient * SIGReg and the "embedding": the mean of the representations over batch
// and time (mean_embedding). soma draws noise [C, S] ~ N(0, 1) from a seeded generator
// (arrgen); lmkit draws it from lm::Rng (sigreg_draw_noise) or takes it explicitly.
// Shape letters: N rows (B*T), C dim, S slices, P points.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "model/config.h"

namespace lm {

// noise [C, S] = rng.normal() in row-major order (C * S draws).
void sigreg_draw_noise(float* noise, Rng& rng, int64_t C, int64_t S);
// A [C, S] = noise with each column divided by its Euclidean norm (A may alias noise).
void sigreg_projections(float* A, const float* noise, int64_t C, int64_t S);

// The statistic of rows x [N, C] projected by A [C, S] (already normalised). Saves for the
// backward pass proj [N, S] = x @ A and the per-row means cmean, smean [N, P] (all may be
// null when no backward follows, except proj which is scratch).
double sigreg_forward(float* proj, float* cmean, float* smean, const float* x, const float* A, int64_t N, int64_t C,
                      int64_t S, const SigRegConfig& cfg);
// dx [N, C] += dstat * d(SIGReg)/dx. dproj [N, S] is scratch.
void sigreg_backward(float* dx, float* dproj, float dstat, const float* proj, const float* cmean, const float* smean,
                     const float* A, int64_t N, int64_t C, int64_t S, const SigRegConfig& cfg);
// Plain loops in double (no sgemm, no recurrences): the reference the fast pair is held to.
double sigreg_forward_ref(const float* x, const float* A, int64_t N, int64_t C, int64_t S, const SigRegConfig& cfg);
void sigreg_backward_ref(float* dx, float dstat, const float* x, const float* A, int64_t N, int64_t C, int64_t S,
                         const SigRegConfig& cfg);

// Convenience for evaluation: the statistic of x [N, C] for raw noise [C, S] (allocates).
double sigreg_value(const float* x, const float* noise, int64_t N, int64_t C, const SigRegConfig& cfg);
// soma's returned embedding: out [C] = mean of x [N, C] over the rows (in double).
void mean_embedding(float* out, const float* x, int64_t N, int64_t C);

}  // namespace lm
