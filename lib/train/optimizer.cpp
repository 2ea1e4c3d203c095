#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lm::train {

void validate(const AdamWConfig& c) {
  for (const auto& [name, v] : {std::pair{"--beta1", c.beta1}, std::pair{"--beta2", c.beta2}})
    if (!(v >= 0 && v < 1)) fail_usage(cat(name, " must be in [0, 1), got ", v));
  if (!(std::isfinite(c.eps) && c.eps > 0)) fail_usage(cat("--eps must be a finite number > 0, got ", c.eps));
  if (!(std::isfinite(c.weight_decay) && c.weight_decay >= 0))
    fail_usage(cat("--weight-decay must be a finite number >= 0, got ", c.weight_decay));
}

bool decays(const ParamInfo& p, bool decay_embeddings) {
  switch (p.kind) {
    case ParamKind::TokEmbeddings:
    // materium's condition tables (docs/materium.md: "the tables like the token embedding");
    // the mask embedding is a one-row table of the same kind.
    case ParamKind::CondEmbedding:
    case ParamKind::CondCountEmb:
    case ParamKind::CondMaskEmb:
    case ParamKind::TypeEmbeddings:
      return decay_embeddings;
    case ParamKind::Wq:
    case ParamKind::Wk:
    case ParamKind::Wv:
    case ParamKind::Wo:
    case ParamKind::W1:
    case ParamKind::W2:
    case ParamKind::W3:
    case ParamKind::Router:
    case ParamKind::ExpertsW1:
    case ParamKind::ExpertsW2:
    case ParamKind::ExpertsW3:
    case ParamKind::SharedW1:
    case ParamKind::SharedW2:
    case ParamKind::SharedW3:
    case ParamKind::Output:
    case ParamKind::VisionProjection:
    case ParamKind::CondLinearW:
    case ParamKind::CondMlpW1:
    case ParamKind::CondMlpW2:
      return true;
    default:  // norms, biases, QK-norm scales
      return false;
  }
}

AdamW::AdamW(const ParameterLayout& layout, const AdamWConfig& cfg)
    : cfg_(cfg), arena_floats_(layout.arena_floats()) {
  for (const ParamInfo& p : layout.tensors()) ranges_.push_back({p.offset, p.numel, decays(p, cfg.decay_embeddings)});
  m_ = Tensor::zeros(DType::F32, {arena_floats_});
  v_ = Tensor::zeros(DType::F32, {arena_floats_});
}

namespace {

// One parallel region for the whole arena (a fork per tensor before: about 110 at stories110M):
// each range's elements split statically, `nowait` between ranges. Elementwise, so the bits
// are those of any split.
template <bool kZeroGrads, typename Grad>
void adamw_pass(const std::vector<AdamW::Range>& ranges, float* params, Grad* grads, float* m, float* v, float b1,
                float b2, float step_size, float inv_sqrt_bc2, float eps, float decay, float grad_scale,
                int64_t arena_floats) {
  const bool scaled = grad_scale != 1.0f;
#pragma omp parallel if (arena_floats > 65536)
  for (const AdamW::Range& r : ranges) {
    float* p = params + r.offset;
    Grad* g = grads + r.offset;
    float* mr = m + r.offset;
    float* vr = v + r.offset;
    const float d = r.decay ? decay : 1.0f;
#pragma omp for simd schedule(static) nowait
    for (int64_t i = 0; i < r.numel; ++i) {
      const float gi = scaled ? g[i] * grad_scale : g[i];
      if constexpr (kZeroGrads) g[i] = 0.0f;
      const float mi = b1 * mr[i] + (1.0f - b1) * gi;
      const float vi = b2 * vr[i] + (1.0f - b2) * gi * gi;
      mr[i] = mi;
      vr[i] = vi;
      p[i] = p[i] * d - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    }
  }
}

}  // namespace

template <bool kZeroGrads, typename Grad>
void AdamW::update(float* params, Grad* grads, double lr, int64_t t, float grad_scale) {
  const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
  const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t));
  const float step_size = static_cast<float>(lr / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float eps = static_cast<float>(cfg_.eps);
  const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
  adamw_pass<kZeroGrads>(ranges_, params, grads, m_.data_mut<float>(), v_.data_mut<float>(), b1, b2, step_size,
                         inv_sqrt_bc2, eps, decay, grad_scale, arena_floats_);
}

void AdamW::step(float* params, const float* grads, double lr, int64_t t, float grad_scale) {
  update<false>(params, grads, lr, t, grad_scale);
}

void AdamW::step_and_zero(float* params, float* grads, double lr, int64_t t, float grad_scale) {
  update<true>(params, grads, lr, t, grad_scale);
}

double grad_global_norm(const ParameterLayout& layout, const float* grads) {
  // Fixed chunks summed in a fixed order: the same bits for any thread count (exact resume).
  // Within a chunk, kLanes independent sums (element i into lane i % kLanes), added up in
  // lane order at the end: one double accumulator was a chain of dependent adds, about 4
  // cycles per float (perf: 5 ms of a stories15M step); the lanes vectorise.
  // One parallel region over every tensor's chunks (a fork per tensor before); the partial
  // sums are added up afterwards in tensor, then chunk order: the order they always had.
  constexpr int64_t kChunk = 8192, kLanes = 16;
  const std::vector<ParamInfo>& table = layout.tensors();
  std::vector<int64_t> first(table.size() + 1, 0);  // the index of each tensor's first chunk
  for (size_t t = 0; t < table.size(); ++t) first[t + 1] = first[t] + (table[t].numel + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(first.back()), 0.0);
#pragma omp parallel if (first.back() > 8)
  for (size_t t = 0; t < table.size(); ++t) {
    const float* g = grads + table[t].offset;
    const int64_t numel = table[t].numel, chunks = first[t + 1] - first[t];
    double* out = partial.data() + first[t];
#pragma omp for schedule(static) nowait
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * kChunk, end = std::min(numel, (c + 1) * kChunk);
      double lane[kLanes] = {};
      int64_t i = begin;
      for (; i + kLanes <= end; i += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) lane[j] += static_cast<double>(g[i + j]) * g[i + j];
      for (int64_t j = 0; i < end; ++i, ++j) lane[j] += static_cast<double>(g[i]) * g[i];
      double s = 0;
      for (double x : lane) s += x;
      out[c] = s;
    }
  }
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

double grad_global_norm_ref(const ParameterLayout& layout, const float* grads) {
  double total = 0;
  for (const ParamInfo& p : layout.tensors())
    for (int64_t i = 0; i < p.numel; ++i) total += static_cast<double>(grads[p.offset + i]) * grads[p.offset + i];
  return std::sqrt(total);
}

float clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm && std::isfinite(norm) ? static_cast<float>(max_norm / (norm + 1e-6)) : 1.0f;
}

double clip_grad_norm(const ParameterLayout& layout, float* grads, double max_norm) {
  const double norm = grad_global_norm(layout, grads);
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
    const float scale = clip_scale(norm, max_norm);
    for (const ParamInfo& p : layout.tensors()) {
      float* g = grads + p.offset;
#pragma omp parallel for simd schedule(static) if (p.numel > 65536)
      for (int64_t i = 0; i < p.numel; ++i) g[i] *= scale;
    }
  }
  return norm;
}

}  // namespace lm::train
