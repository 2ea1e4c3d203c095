#include "model/norm.h"
#include "core/threads.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lm {

namespace {

// One row of rmsnorm_forward: y = x r w + b; returns r. Shared by the fused residual kernel so
// that both give the same numbers.
inline float rmsnorm_row(float* y, const float* x, const float* weight, const float* bias, int64_t C, float eps) {
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < C; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
  for (int64_t i = 0; i < C; ++i) {
    float v = x[i] * r;
    if (weight) v *= weight[i];
    if (bias) v += bias[i];
    y[i] = v;
  }
  return r;
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, const float* bias, int64_t N,
                     int64_t C, float eps) {
  parallel_for(N, N * C, [&](int64_t n) {
    const float r = rmsnorm_row(out + n * C, inp + n * C, weight, bias, C, eps);
    if (rstd) rstd[n] = r;
  });
}

// The row of h is still in L1 when the norm reads it: one pass over memory instead of the
// add's read-read-write and the norm's read-write.
void residual_rmsnorm_forward(float* h, float* out, float* rstd, const float* x, const float* y, const float* weight,
                              const float* bias, int64_t N, int64_t C, float eps) {
  parallel_for(N, 2 * N * C, [&](int64_t n) {
    float* hr = h + n * C;
    const float* xr = x + n * C;
    const float* yr = y + n * C;
    for (int64_t i = 0; i < C; ++i) hr[i] = xr[i] + yr[i];
    const float r = rmsnorm_row(out + n * C, hr, weight, bias, C, eps);
    if (rstd) rstd[n] = r;
  });
}

void residual_rmsnorm_forward_ref(float* h, float* out, float* rstd, const float* x, const float* y,
                                  const float* weight, const float* bias, int64_t N, int64_t C, float eps) {
  for (int64_t i = 0; i < N * C; ++i) h[i] = x[i] + y[i];
  rmsnorm_forward(out, rstd, h, weight, bias, N, C, eps);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps) {
  parallel_for(N, N * C, [&](int64_t n) {
    const float* x = inp + n * C;
    float* y = out + n * C;
    double s = 0;
    for (int64_t i = 0; i < C; ++i) s += x[i];
    const double m = s / static_cast<double>(C);
    double ss = 0;
    for (int64_t i = 0; i < C; ++i) ss += (x[i] - m) * (x[i] - m);
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    const float mf = static_cast<float>(m);
    for (int64_t i = 0; i < C; ++i) {
      float v = (x[i] - mf) * r;
      if (weight) v *= weight[i];
      if (bias) v += bias[i];
      y[i] = v;
    }
    if (mean) mean[n] = mf;
    if (rstd) rstd[n] = r;
  });
}

namespace {

// dweight [C] += sum_n dout * xhat, dbias [C] += sum_n dout; xhat recomputed from the
// statistics (mean null: RMSNorm). Columns in blocks over threads, rows in order.
void norm_param_grads(float* dweight, float* dbias, const float* dout, const float* inp, const float* mean,
                      const float* rstd, int64_t N, int64_t C) {
  if (!dweight && !dbias) return;
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t c1 = std::min(C, c0 + kBlock);
    float dw[kBlock] = {}, db[kBlock] = {};
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * C;
      const float* d = dout + n * C;
      const float m = mean ? mean[n] : 0.0f, r = rstd[n];
      for (int64_t c = c0; c < c1; ++c) {
        dw[c - c0] += d[c] * ((x[c] - m) * r);
        db[c - c0] += d[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      if (dweight) dweight[c] += dw[c - c0];
      if (dbias) dbias[c] += db[c - c0];
    }
  }
}

}  // namespace

// y = x r w + b:  dx = r (g - xhat mean(g xhat)) with g = dout w, xhat = x r.
void rmsnorm_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* rstd, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const float* d = dout + n * C;
    float* dx = dinp + n * C;
    const float r = rstd[n];
    double dot = 0;  // sum g * xhat
    for (int64_t i = 0; i < C; ++i) dot += static_cast<double>(weight ? d[i] * weight[i] : d[i]) * (x[i] * r);
    const float k = static_cast<float>(dot / static_cast<double>(C));
    for (int64_t i = 0; i < C; ++i) {
      const float g = weight ? d[i] * weight[i] : d[i];
      dx[i] += r * (g - x[i] * r * k);
    }
  }
  norm_param_grads(dweight, dbias, dout, inp, nullptr, rstd, N, C);
}

namespace {

// Rows [n0, n1) of rmsnorm_backward: dx += ..., and the block's parameter-gradient partials
// pw [C] = sum dout * xhat, pb [C] = sum dout (either may be null).
template <bool kWeight>
void rmsnorm_backward_rows(float* dinp, float* pw, float* pb, const float* dout, const float* inp, const float* weight,
                           const float* rstd, int64_t n0, int64_t n1, int64_t C) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* x = inp + n * C;
    const float* d = dout + n * C;
    float* dx = dinp + n * C;
    const float r = rstd[n];
    double dot = 0;  // sum g * xhat
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < C; ++i) dot += static_cast<double>(kWeight ? d[i] * weight[i] : d[i]) * (x[i] * r);
    const float k = static_cast<float>(dot / static_cast<double>(C));
    for (int64_t i = 0; i < C; ++i) {
      const float g = kWeight ? d[i] * weight[i] : d[i];
      const float xhat = x[i] * r;
      dx[i] += r * (g - xhat * k);
    }
    if (pw)
      for (int64_t i = 0; i < C; ++i) pw[i] += d[i] * (x[i] * r);
    if (pb)
      for (int64_t i = 0; i < C; ++i) pb[i] += d[i];
  }
}

}  // namespace

void rmsnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int64_t N, int64_t C) {
  constexpr int64_t kBlockRows = 64;
  const int64_t blocks = (N + kBlockRows - 1) / kBlockRows;
  // [blocks][2][C]: each block's dweight and dbias partials; kept between calls (the caller's
  // thread owns it, the team writes disjoint blocks of it).
  thread_local std::vector<float> partial;
  const bool params = dweight || dbias;
  if (params) partial.assign(static_cast<size_t>(blocks * 2 * C), 0.0f);
  float* part = partial.data();
#pragma omp parallel if (N * C >= kParallelMinWork)
  {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      float* pw = dweight ? part + b * 2 * C : nullptr;
      float* pb = dbias ? part + b * 2 * C + C : nullptr;
      const int64_t n0 = b * kBlockRows, n1 = std::min(N, n0 + kBlockRows);
      if (weight)
        rmsnorm_backward_rows<true>(dinp, pw, pb, dout, inp, weight, rstd, n0, n1, C);
      else
        rmsnorm_backward_rows<false>(dinp, pw, pb, dout, inp, weight, rstd, n0, n1, C);
    }
    if (params) {
#pragma omp for schedule(static)
      for (int64_t c = 0; c < C; ++c) {
        float sw = 0, sb = 0;
        for (int64_t b = 0; b < blocks; ++b) {
          sw += part[b * 2 * C + c];
          sb += part[b * 2 * C + C + c];
        }
        if (dweight) dweight[c] += sw;
        if (dbias) dbias[c] += sb;
      }
    }
  }
}

// y = xhat w + b, xhat = (x - mean) r:  dx = r (g - mean(g) - xhat mean(g xhat)).
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const float* d = dout + n * C;
    float* dx = dinp + n * C;
    const float m = mean[n], r = rstd[n];
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < C; ++i) {
      const double g = weight ? d[i] * weight[i] : d[i];
      sg += g;
      sgx += g * ((x[i] - m) * r);
    }
    const float mg = static_cast<float>(sg / static_cast<double>(C));
    const float mgx = static_cast<float>(sgx / static_cast<double>(C));
    for (int64_t i = 0; i < C; ++i) {
      const float g = weight ? d[i] * weight[i] : d[i];
      dx[i] += r * (g - mg - (x[i] - m) * r * mgx);
    }
  }
  norm_param_grads(dweight, dbias, dout, inp, mean, rstd, N, C);
}

}  // namespace lm
