#include "model/loss.h"
#include "core/threads.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/fast_exp.h"

namespace lm {

void softcap_forward(float* out, const float* inp, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  parallel_for(n, n, [&](int64_t i) { out[i] = cap * std::tanh(inp[i] * inv); });
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
  r.weight_sum = static_cast<double>(r.count);
  return r;
}

void softcap_backward_inplace(float* d, const float* out, int64_t n, float cap) {
  const float inv = 1.0f / cap;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float y = out[i] * inv;
    d[i] *= 1.0f - y * y;
  }
}

void crossentropy_backward(float* dlogits, float* losses, const float* logits, const int32_t* targets,
                           const float* weights, double weight_sum, float dloss, int64_t N, int64_t V,
                           int32_t ignore_index) {
  // One pass over each row's logits from memory (the max), one from cache (the exponentials,
  // into the row of dlogits itself), and one over that row to scale it: dlogits is written,
  // never read before, so it needs no zeroing pass. exp_fast vectorises; std::exp here was a
  // libm call per logit.
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int32_t t = targets[n];
    float* d = dlogits + n * V;
    const float scale = ignore_index >= 0 && t == ignore_index
                            ? 0.0f
                            : static_cast<float>(weight_sum > 0 ? dloss * (weights ? weights[t] : 1.0f) / weight_sum : 0.0);
    if (ignore_index >= 0 && t == ignore_index) {
      if (losses) losses[n] = 0;
      std::fill(d, d + V, 0.0f);
      continue;
    }
    const float* x = logits + n * V;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, x[i]);
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < V; ++i) sum += (d[i] = exp_fast(x[i] - mx));
    if (losses) losses[n] = std::log(sum) + mx - x[t];
    const float k = scale / sum;
#pragma omp simd
    for (int64_t i = 0; i < V; ++i) d[i] *= k;
    d[t] -= scale;
  }
}

WeightedLoss crossentropy_weighted_mean(const float* logits, const int32_t* targets, const float* weights, int64_t N,
                                        int64_t V, int32_t ignore_index) {
  std::vector<float> losses(static_cast<size_t>(N));
  crossentropy_forward(losses.data(), logits, targets, N, V, ignore_index);
  WeightedLoss r;
  double sum = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (ignore_index >= 0 && targets[n] == ignore_index) continue;
    const double w = weights ? weights[targets[n]] : 1.0;
    sum += w * losses[n];
    r.weight_sum += w;
    ++r.count;
  }
  r.loss = r.weight_sum > 0 ? sum / r.weight_sum : 0.0;
  return r;
}

}  // namespace lm
