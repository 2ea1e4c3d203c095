#include "model/ffn.h"
#include "core/fast_exp.h"
#include "core/rows.h"
#include "core/threads.h"
#include "model/matmul.h"

#include <cmath>
#include <numbers>
#include <optional>

namespace lm {

namespace {
// exp_fast: a libm expf call per element kept these loops from vectorising.
inline float swiglu(float gate, float up) { return gate / (1.0f + exp_fast(-gate)) * up; }
}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  parallel_for(n, n, [&](int64_t i) { out[i] = swiglu(gate[i], up[i]); });
}

void swiglu_up_forward(float* act, float* gate, float* up, const float* inp, const float* w1, const float* b1,
                       const float* w3, const float* b3, int64_t N, int64_t C, int64_t F) {
  swiglu_up_forward(act, gate, up, inp, f32_weights(w1, F, C), b1, f32_weights(w3, F, C), b3, N);
}

void swiglu_up_forward(float* act, float* gate, float* up, const float* inp, const WeightView& w1_rows,
                       const float* b1, const WeightView& w3_rows, const float* b3, int64_t N) {
  const int64_t F = w1_rows.rows;
  if (!few_rows_path(N, w1_rows) || !few_rows_path(N, w3_rows)) {
    matmul_forward_parts({{gate, &w1_rows, b1}, {up, &w3_rows, b3}}, inp, N);
    swiglu_forward(act, gate, up, N * F);
    return;
  }
  require_row_kernel(w1_rows.type);
  require_row_kernel(w3_rows.type);
  const RowsInput in1(inp, N, w1_rows);
  std::optional<RowsInput> own3;  // w3's input, when w1's does not serve it
  if (!same_rows_input(w1_rows, w3_rows)) own3.emplace(inp, N, w3_rows);
  const RowsInput& in3 = own3 ? *own3 : in1;
  // Row by row, w1 then w3: two weight streams in flight through each piece. A piece of w1
  // rows and then the same rows of w3 (one matmul_rows call each) decoded stories110m about
  // 4% slower (fraction of the bandwidth bound, 35 timed runs each, paired).
  if (N >= kBlockedMinRows || w1_rows.panels || w3_rows.panels) {
    // Many rows (batched decode): the blocked kernel wants many weight rows per call, to
    // stream them past the inputs it holds in L1 (and panels are computed 16 rows at once):
    // a piece of w1, the same rows of w3, then their products.
    parallel_chunks_grouped(F, few_rows_chunk(w1_rows), row_group(N, w1_rows), [&](int64_t lo, int64_t hi) {
      matmul_rows(gate, in1, w1_rows, b1, lo, hi - lo);
      matmul_rows(up, in3, w3_rows, b3, lo, hi - lo);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = lo; i < hi; ++i) act[n * F + i] = swiglu(gate[n * F + i], up[n * F + i]);
    });
    return;
  }
  parallel_chunks(F, few_rows_chunk(w1_rows.cols) / 2, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      matmul_rows(gate, in1, w1_rows, b1, i, 1);
      matmul_rows(up, in3, w3_rows, b3, i, 1);
      for (int64_t n = 0; n < N; ++n) act[n * F + i] = swiglu(gate[n * F + i], up[n * F + i]);
    }
  });
}

void gelu_forward(float* out, const float* inp, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    const float s = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
    parallel_for(n, n, [&](int64_t i) {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + std::tanh(s * (x + 0.044715f * x * x * x)));
    });
  } else {
    const float s = static_cast<float>(1.0 / std::numbers::sqrt2);
    parallel_for(n, n, [&](int64_t i) {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + std::erf(x * s));
    });
  }
}

namespace {
// d(silu(g) u)/dg and /du at one element.
inline void swiglu_grads(float dout, float g, float u, float& dg, float& du) {
  const float s = 1.0f / (1.0f + exp_fast(-g));
  dg = dout * u * (s * (1.0f + g * (1.0f - s)));
  du = dout * (g * s);
}
}  // namespace

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float dg, du;
    swiglu_grads(dout[i], gate[i], up[i], dg, du);
    dgate[i] += dg;
    dup[i] += du;
  }
}

void swiglu_backward_write(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                           int64_t n) {
  parallel_for(n, n, [&](int64_t i) { swiglu_grads(dout[i], gate[i], up[i], dgate[i], dup[i]); });
}

void swiglu_forward_fused(float* act, const float* gu, int64_t N, int64_t F) {
  parallel_for(N, N * F, [&](int64_t n) {
    const float* g = gu + n * 2 * F;
    const float* u = g + F;
    float* a = act + n * F;
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) a[i] = swiglu(g[i], u[i]);
  });
}

void swiglu_backward_write_fused(float* dgu, const float* dout, const float* gu, int64_t N, int64_t F) {
  parallel_for(N, N * F, [&](int64_t n) {
    const float* g = gu + n * 2 * F;
    const float* u = g + F;
    const float* d = dout + n * F;
    float* dg = dgu + n * 2 * F;
    float* du = dg + F;
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) swiglu_grads(d[i], g[i], u[i], dg[i], du[i]);
  });
}

void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    const float s = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float x = inp[i];
      const float th = std::tanh(s * (x + 0.044715f * x * x * x));
      const float d = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * s * (1.0f + 3.0f * 0.044715f * x * x);
      dinp[i] += dout[i] * d;
    }
  } else {
    const float s = static_cast<float>(1.0 / std::numbers::sqrt2);
    const float k = static_cast<float>(1.0 / std::sqrt(2.0 * std::numbers::pi));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float x = inp[i];
      const float d = 0.5f * (1.0f + std::erf(x * s)) + x * k * std::exp(-0.5f * x * x);
      dinp[i] += dout[i] * d;
    }
  }
}

}  // namespace lm
