#include "model/norm.h"

#include <cmath>

namespace lm {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, const float* bias, int64_t N,
                     int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    float* y = out + n * C;
    double ss = 0;
    for (int64_t i = 0; i < C; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    for (int64_t i = 0; i < C; ++i) {
      float v = x[i] * r;
      if (weight) v *= weight[i];
      if (bias) v += bias[i];
      y[i] = v;
    }
    if (rstd) rstd[n] = r;
  }
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
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
  }
}

}  // namespace lm
