#include "model/loss.h"
#include "core/threads.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fast_exp.h"
#include "core/row_max.h"
#include "model/matmul.h"

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

namespace {

// One row of classifier_crossentropy, in place: `row` [V] holds the row's logits before the
// soft cap on entry and its dlogits on exit (crossentropy_backward's numbers, the same
// operations in the same order); returns the row's loss. capped [V]: scratch for the cap's
// output, which its backward needs (unused without a cap).
float crossentropy_row_inplace(float* row, float* capped, int32_t t, float scale, float soft_cap, int64_t V) {
  const float* y = row;
  if (soft_cap > 0) {
    const float inv = 1.0f / soft_cap;
    for (int64_t i = 0; i < V; ++i) capped[i] = soft_cap * std::tanh(row[i] * inv);
    y = capped;
  }
  const float mx = row_max(y, V);
  const float yt = y[t];  // before the exponentials overwrite it (no cap: y is row)
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < V; ++i) sum += (row[i] = exp_fast(y[i] - mx));
  const float loss = std::log(sum) + mx - yt;
  const float k = scale / sum;
#pragma omp simd
  for (int64_t i = 0; i < V; ++i) row[i] *= k;
  row[t] -= scale;
  if (soft_cap > 0) {
    const float inv = 1.0f / soft_cap;
#pragma omp simd
    for (int64_t i = 0; i < V; ++i) {
      const float c = capped[i] * inv;
      row[i] *= 1.0f - c * c;
    }
  }
  return loss;
}

}  // namespace

int64_t classifier_chunk_rows(int64_t V) {
  // As many rows as 128 MiB of logits hold (1,048 at V = 32000): measured at stories15M and
  // stories110M (README, "Training speed"), every split of a step's rows made it slower. Each
  // chunk reads and writes all of dW [V, C] (37 MB at stories15M) and reads W twice, which
  // costs more than keeping a chunk of logits in cache saves unless a chunk has more than
  // about C / 2 rows, and a chunk that large no longer fits in the cache. So the chunks bound
  // the memory (a long batch no longer stores [B*T, V] logits and dlogits, 2 GB at 16k rows)
  // rather than save time; one chunk of logits, turned into dlogits in place, replaces the two
  // [B*T, V] buffers of the unfused step.
  return std::max<int64_t>(1, (int64_t{128} << 20) / 4 / std::max<int64_t>(V, 1));
}

void classifier_crossentropy(float* dx, float* dW, float* dbias, float* losses, float* scratch, const float* x,
                             const float* W, const float* bias, const int32_t* targets, const float* weights,
                             double weight_sum, float dloss, float soft_cap, int64_t N, int64_t C, int64_t V,
                             int32_t ignore_index, int64_t chunk) {
  if (chunk < 1) fail(ErrorKind::Runtime, cat("internal: classifier chunk of ", chunk, " rows"));
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t R = std::min(chunk, N - r0);
    const float* xr = x + r0 * C;
    matmul_forward(scratch, xr, W, bias, R, C, V);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      thread_local std::vector<float> capped;
      if (soft_cap > 0 && static_cast<int64_t>(capped.size()) < V) capped.resize(static_cast<size_t>(V));
      const int64_t n = r0 + r;
      const int32_t t = targets[n];
      float* row = scratch + r * V;
      if (ignore_index >= 0 && t == ignore_index) {
        losses[n] = 0;
        std::fill(row, row + V, 0.0f);
        continue;
      }
      const float scale =
          static_cast<float>(weight_sum > 0 ? dloss * (weights ? weights[t] : 1.0f) / weight_sum : 0.0);
      losses[n] = crossentropy_row_inplace(row, capped.data(), t, scale, soft_cap, V);
    }
    std::memset(dx + r0 * C, 0, static_cast<size_t>(R * C) * sizeof(float));
    matmul_backward(dx + r0 * C, dW, dbias, scratch, xr, W, R, C, V);
  }
}

void classifier_crossentropy_ref(float* dx, float* dW, float* dbias, float* losses, const float* x, const float* W,
                                 const float* bias, const int32_t* targets, const float* weights, double weight_sum,
                                 float dloss, float soft_cap, int64_t N, int64_t C, int64_t V, int32_t ignore_index) {
  std::vector<float> logits(static_cast<size_t>(N * V)), dlogits(static_cast<size_t>(N * V));
  matmul_forward(logits.data(), x, W, bias, N, C, V);
  if (soft_cap > 0) softcap_forward(logits.data(), logits.data(), N * V, soft_cap);
  crossentropy_backward(dlogits.data(), losses, logits.data(), targets, weights, weight_sum, dloss, N, V,
                        ignore_index);
  if (soft_cap > 0) softcap_backward_inplace(dlogits.data(), logits.data(), N * V, soft_cap);
  std::fill(dx, dx + N * C, 0.0f);
  matmul_backward(dx, dW, dbias, dlogits.data(), x, W, N, C, V);
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
