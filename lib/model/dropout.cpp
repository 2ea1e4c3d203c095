#include "model/dropout.h"

namespace lm {

void dropout_forward(float* out, const float* inp, int64_t n, float p, uint64_t seed) {
  if (p <= 0) {
    if (out != inp)
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) out[i] = inp[i];
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * dropout_scale(seed, static_cast<uint64_t>(i), p);
}

void dropout_backward(float* dinp, const float* dout, int64_t n, float p, uint64_t seed) {
  if (p <= 0) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) dinp[i] += dout[i];
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dinp[i] += dout[i] * dropout_scale(seed, static_cast<uint64_t>(i), p);
}

}  // namespace lm
