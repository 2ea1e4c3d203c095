#include "model/loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace lm {

void softcap_forward(float* out, const float* inp, int64_t n, float cap) {
  const float inv = 1.0f / cap;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = cap * std::tanh(inp[i] * inv);
}

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                          int32_t ignore_index) {
  for (int64_t n = 0; n < N; ++n) {
    const int32_t t = targets[n];
    if ((ignore_index < 0 || t != ignore_index) && (t < 0 || t >= V))
      fail_data(cat("target id ", t, " at index ", n, " is out of range for vocab size ", V));
  }
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int32_t t = targets[n];
    if (ignore_index >= 0 && t == ignore_index) {
      losses[n] = 0;
      continue;
    }
    const float* x = logits + n * V;
    const float mx = *std::max_element(x, x + V);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(x[i] - mx));
    losses[n] = static_cast<float>(std::log(sum) + mx - x[t]);
  }
}

LossResult crossentropy_mean(const float* logits, const int32_t* targets, int64_t N, int64_t V,
                             int32_t ignore_index) {
  std::vector<float> losses(static_cast<size_t>(N));
  crossentropy_forward(losses.data(), logits, targets, N, V, ignore_index);
  LossResult r;
  double sum = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (ignore_index >= 0 && targets[n] == ignore_index) continue;
    sum += losses[n];
    ++r.count;
  }
  r.loss = r.count ? sum / static_cast<double>(r.count) : 0.0;
  return r;
}

}  // namespace lm
