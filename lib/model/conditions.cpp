#include "model/conditions.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "model/ffn.h"
#include "model/matmul.h"
#include "model/params.h"

namespace lm {

// ---- ConditionBatch ----

ConditionBatch::ConditionBatch(const ModelConfig& cfg, int64_t B) : B_(B), V_(cfg.vocab_size), conds_(cfg.conditions) {
  if (B <= 0) fail_usage(cat("a condition batch needs at least one row, got ", B));
  values_.resize(conds_.size());
  for (size_t i = 0; i < conds_.size(); ++i) {
    const ConditionConfig& c = conds_[i];
    Values& v = values_[i];
    v.null.assign(static_cast<size_t>(B), 1);
    switch (c.proj_layer_type) {
      case ProjLayerType::Linear:
        v.linear.assign(static_cast<size_t>(B * c.input_dim), 0.0f);
        break;
      case ProjLayerType::Embedding:
        v.classes.assign(static_cast<size_t>(B), 0);
        break;
      case ProjLayerType::Formula:
        v.formula.resize(static_cast<size_t>(B * c.positions() * 2));
        for (size_t s = 0; s < v.formula.size(); s += 2) v.formula[s] = -1, v.formula[s + 1] = 0;
        break;
    }
  }
}

int64_t ConditionBatch::find(const std::string& name) const {
  for (size_t i = 0; i < conds_.size(); ++i)
    if (conds_[i].name == name) return static_cast<int64_t>(i);
  return -1;
}

const ConditionConfig& ConditionBatch::expect(size_t i, int64_t b, ProjLayerType type) const {
  if (i >= conds_.size()) fail_usage(cat("condition ", i, " of ", conds_.size(), " does not exist"));
  if (b < 0 || b >= B_) fail_usage(cat("row ", b, " of a condition batch of ", B_, " rows does not exist"));
  const ConditionConfig& c = conds_[i];
  if (c.proj_layer_type != type)
    fail_usage(cat("condition ", quote(c.name), " is a ", name_of(c.proj_layer_type), " condition, not ", name_of(type)));
  return c;
}

void ConditionBatch::set_linear(size_t i, int64_t b, const float* x) {
  const ConditionConfig& c = expect(i, b, ProjLayerType::Linear);
  for (int64_t d = 0; d < c.input_dim; ++d)
    if (!std::isfinite(x[d])) fail_data(cat(quote(c.name), " of row ", b, ": value ", d, " is not finite (", x[d], ")"));
  std::memcpy(values_[i].linear.data() + b * c.input_dim, x, static_cast<size_t>(c.input_dim) * sizeof(float));
  values_[i].null[static_cast<size_t>(b)] = 0;
}

void ConditionBatch::set_class(size_t i, int64_t b, int64_t k) {
  const ConditionConfig& c = expect(i, b, ProjLayerType::Embedding);
  if (k < 0 || k >= c.input_dim)
    fail_data(cat(quote(c.name), " of row ", b, ": class ", k, " is not in 0..", c.input_dim - 1));
  values_[i].classes[static_cast<size_t>(b)] = static_cast<int32_t>(k);
  values_[i].null[static_cast<size_t>(b)] = 0;
}

void ConditionBatch::set_formula(size_t i, int64_t b, const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  const ConditionConfig& c = expect(i, b, ProjLayerType::Formula);
  const int64_t S = c.positions();
  const int64_t m = static_cast<int64_t>(pairs.size());
  if (m < 1 || m > S)
    fail_data(cat(quote(c.name), " of row ", b, ": expected 1..", S, " (element, count) pairs, got ", m));
  std::set<int64_t> seen;
  for (const auto& [element, count] : pairs) {
    if (element < 0 || element >= V_)
      fail_data(cat(quote(c.name), " of row ", b, ": element id ", element, " is not below vocab_size ", V_));
    if (count < 1 || count > c.input_dim)
      fail_data(cat(quote(c.name), " of row ", b, ": count ", count, " of element ", element, " is not in 1..",
                    c.input_dim));
    if (!seen.insert(element).second) fail_data(cat(quote(c.name), " of row ", b, ": element ", element, " appears twice"));
  }
  int32_t* slot = values_[i].formula.data() + b * S * 2;
  for (int64_t j = 0; j < S; ++j) {
    slot[2 * j] = j < m ? static_cast<int32_t>(pairs[static_cast<size_t>(j)].first) : -1;
    slot[2 * j + 1] = j < m ? static_cast<int32_t>(pairs[static_cast<size_t>(j)].second) : 0;
  }
  values_[i].null[static_cast<size_t>(b)] = 0;
}

void ConditionBatch::set_null(size_t i, int64_t b) {
  if (i >= conds_.size()) fail_usage(cat("condition ", i, " of ", conds_.size(), " does not exist"));
  const ConditionConfig& c = expect(i, b, conds_[i].proj_layer_type);
  Values& v = values_[i];
  v.null[static_cast<size_t>(b)] = 1;
  switch (c.proj_layer_type) {
    case ProjLayerType::Linear:
      std::fill_n(v.linear.begin() + b * c.input_dim, c.input_dim, 0.0f);
      break;
    case ProjLayerType::Embedding:
      v.classes[static_cast<size_t>(b)] = 0;
      break;
    case ProjLayerType::Formula:
      for (int64_t j = 0; j < c.positions(); ++j) {
        v.formula[static_cast<size_t>((b * c.positions() + j) * 2)] = -1;
        v.formula[static_cast<size_t>((b * c.positions() + j) * 2 + 1)] = 0;
      }
      break;
  }
}

ConditionBatch ConditionBatch::gather(const std::vector<int64_t>& rows) const {
  ConditionBatch out;
  out.B_ = static_cast<int64_t>(rows.size());
  out.V_ = V_;
  out.conds_ = conds_;
  out.values_.resize(conds_.size());
  for (const int64_t r : rows)
    if (r < 0 || r >= B_) fail_usage(cat("row ", r, " of a condition batch of ", B_, " rows does not exist"));
  for (size_t i = 0; i < conds_.size(); ++i) {
    const ConditionConfig& c = conds_[i];
    const Values& from = values_[i];
    Values& to = out.values_[i];
    to.present = from.present;
    // Per row: `width` elements of `src` to `dst` (an empty vector stays empty).
    auto take = [&](const auto& src, auto& dst, int64_t width) {
      if (src.empty()) return;
      dst.resize(rows.size() * static_cast<size_t>(width));
      for (size_t j = 0; j < rows.size(); ++j)
        std::copy_n(src.begin() + rows[j] * width, width, dst.begin() + static_cast<int64_t>(j) * width);
    };
    take(from.null, to.null, 1);
    take(from.linear, to.linear, c.proj_layer_type == ProjLayerType::Linear ? c.input_dim : 0);
    take(from.classes, to.classes, 1);
    take(from.formula, to.formula, c.proj_layer_type == ProjLayerType::Formula ? c.positions() * 2 : 0);
  }
  return out;
}

void ConditionBatch::drop(size_t i) {
  if (i >= conds_.size()) fail_usage(cat("condition ", i, " of ", conds_.size(), " does not exist"));
  values_[i].present = false;
}

int64_t ConditionBatch::positions() const {
  int64_t k = 0;
  for (size_t i = 0; i < conds_.size(); ++i)
    if (values_[i].present) k += conds_[i].positions();
  return k;
}

void ConditionBatch::check_fits(const ModelConfig& cfg, int64_t B) const {
  if (cfg.conditions.empty()) fail_usage("condition values given to a model without conditions");
  if (conds_ != cfg.conditions || V_ != cfg.vocab_size)
    fail_usage("the condition values were made for another model's conditions");
  if (B_ != B) fail_usage(cat("condition values for ", B_, " rows given with a batch of ", B, " rows"));
}

std::vector<int32_t> position_types(const ModelConfig& cfg, const ConditionBatch* cb, int64_t T) {
  std::vector<int32_t> types;
  if (cb)
    for (size_t i = 0; i < cfg.conditions.size(); ++i)
      if (cb->values(i).present) types.insert(types.end(), static_cast<size_t>(cfg.conditions[i].positions()), static_cast<int32_t>(i + 1));
  types.insert(types.end(), static_cast<size_t>(T), 0);
  return types;
}

// ---- the prologue ----
//
// Per present condition i, its positions k0 .. k0 + n - 1 of every row b (rows b * S + k):
//   linear:    W x (W [C, input_dim])                      backward: dW += dy^T x
//   embedding: table[k]                                    backward: dtable[k] += dy
//   formula:   slot j < m: MLP(E[e_j] + N[n_j]), slot j >= m: 0, with MLP(x) = W2 gelu(W1 x + b1) + b2
//              backward through the MLP (used slots only) into W1, b1, W2, b2, E (tok_embeddings) and N
//   null row:  the mask embedding at each of its positions   backward: dmask += dy

namespace {

// The first position (within a row) of each condition present in cb; -1 for a dropped one.
std::vector<int64_t> condition_offsets(const ConditionBatch& cb) {
  std::vector<int64_t> at(cb.conditions().size(), -1);
  int64_t k = 0;
  for (size_t i = 0; i < at.size(); ++i)
    if (cb.values(i).present) {
      at[i] = k;
      k += cb.conditions()[i].positions();
    }
  return at;
}

}  // namespace

void conditions_forward(float* x, ConditionActivations& saved, const ConditionBatch& cb, const ModelConfig& cfg,
                        const ParameterTensors& w, int64_t S) {
  const int64_t B = cb.batch(), C = cfg.dim;
  const std::vector<int64_t> at = condition_offsets(cb);
  saved.formula.assign(cfg.conditions.size(), {});
  for (size_t i = 0; i < cfg.conditions.size(); ++i) {
    if (at[i] < 0) continue;
    const ConditionConfig& c = cfg.conditions[i];
    const ConditionBatch::Values& v = cb.values(i);
    const ConditionParams& p = w.conditions[i];
    const int64_t n = c.positions();
    auto row = [&](int64_t b, int64_t j) { return x + (b * S + at[i] + j) * C; };
    switch (c.proj_layer_type) {
      case ProjLayerType::Linear: {
        std::vector<float> y(static_cast<size_t>(B * C));
        matmul_forward(y.data(), v.linear.data(), p.linear_w, nullptr, B, c.input_dim, C);
        for (int64_t b = 0; b < B; ++b) std::memcpy(row(b, 0), y.data() + b * C, static_cast<size_t>(C) * sizeof(float));
        break;
      }
      case ProjLayerType::Embedding:
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(row(b, 0), p.embedding + static_cast<int64_t>(v.classes[static_cast<size_t>(b)]) * C,
                      static_cast<size_t>(C) * sizeof(float));
        break;
      case ProjLayerType::Formula: {
        ConditionActivations::Formula& f = saved.formula[i];
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t j = 0; j < n; ++j) {
            std::fill_n(row(b, j), C, 0.0f);  // unused slots stay zero (materium's pad_sequence)
            const int32_t e = v.formula[static_cast<size_t>((b * n + j) * 2)];
            if (v.null[static_cast<size_t>(b)] || e < 0) continue;
            f.rows.push_back(b * S + at[i] + j);
            f.element.push_back(e);
            f.count.push_back(v.formula[static_cast<size_t>((b * n + j) * 2 + 1)]);
          }
        }
        const int64_t M = static_cast<int64_t>(f.rows.size());
        f.x.resize(static_cast<size_t>(M * C));
        f.h.resize(static_cast<size_t>(M * 2 * C));
        f.g.resize(static_cast<size_t>(M * 2 * C));
        for (int64_t r = 0; r < M; ++r) {
          const float* e = w.tok_embeddings + static_cast<int64_t>(f.element[static_cast<size_t>(r)]) * C;
          const float* cnt = p.count_emb + static_cast<int64_t>(f.count[static_cast<size_t>(r)]) * C;
          for (int64_t d = 0; d < C; ++d) f.x[static_cast<size_t>(r * C + d)] = e[d] + cnt[d];
        }
        if (M == 0) break;
        std::vector<float> y(static_cast<size_t>(M * C));
        matmul_forward(f.h.data(), f.x.data(), p.mlp_w1, p.mlp_b1, M, C, 2 * C);
        gelu_forward(f.g.data(), f.h.data(), M * 2 * C, /*tanh_approx=*/false);  // nn.GELU(): erf
        matmul_forward(y.data(), f.g.data(), p.mlp_w2, p.mlp_b2, M, 2 * C, C);
        for (int64_t r = 0; r < M; ++r)
          std::memcpy(x + f.rows[static_cast<size_t>(r)] * C, y.data() + r * C, static_cast<size_t>(C) * sizeof(float));
        break;
      }
    }
    for (int64_t b = 0; b < B; ++b)  // torch.where(mask, mask_emb, cond_emb): every position of a null row
      if (v.null[static_cast<size_t>(b)])
        for (int64_t j = 0; j < n; ++j) std::memcpy(row(b, j), p.mask_emb, static_cast<size_t>(C) * sizeof(float));
  }
}

void conditions_backward(const ParameterTensors& grads, const float* dx, const ConditionActivations& saved,
                         const ConditionBatch& cb, const ModelConfig& cfg, const ParameterTensors& w, int64_t S) {
  const int64_t B = cb.batch(), C = cfg.dim;
  const std::vector<int64_t> at = condition_offsets(cb);
  for (size_t i = 0; i < cfg.conditions.size(); ++i) {
    if (at[i] < 0) continue;
    const ConditionConfig& c = cfg.conditions[i];
    const ConditionBatch::Values& v = cb.values(i);
    const ConditionParams& p = w.conditions[i];
    const ConditionParams& g = grads.conditions[i];
    const int64_t n = c.positions();
    auto drow = [&](int64_t b, int64_t j) { return dx + (b * S + at[i] + j) * C; };
    for (int64_t b = 0; b < B; ++b)
      if (v.null[static_cast<size_t>(b)])
        for (int64_t j = 0; j < n; ++j) {
          const float* d = drow(b, j);
          for (int64_t e = 0; e < C; ++e) g.mask_emb[e] += d[e];
        }
    switch (c.proj_layer_type) {
      case ProjLayerType::Linear: {
        std::vector<float> dy(static_cast<size_t>(B * C), 0.0f);  // null rows: no gradient to W
        for (int64_t b = 0; b < B; ++b)
          if (!v.null[static_cast<size_t>(b)]) std::memcpy(dy.data() + b * C, drow(b, 0), static_cast<size_t>(C) * sizeof(float));
        matmul_backward(nullptr, g.linear_w, nullptr, dy.data(), v.linear.data(), p.linear_w, B, c.input_dim, C);
        break;
      }
      case ProjLayerType::Embedding:
        for (int64_t b = 0; b < B; ++b) {
          if (v.null[static_cast<size_t>(b)]) continue;
          float* dt = g.embedding + static_cast<int64_t>(v.classes[static_cast<size_t>(b)]) * C;
          const float* d = drow(b, 0);
          for (int64_t e = 0; e < C; ++e) dt[e] += d[e];
        }
        break;
      case ProjLayerType::Formula: {
        const ConditionActivations::Formula& f = saved.formula.at(i);
        const int64_t M = static_cast<int64_t>(f.rows.size());
        if (M == 0) break;
        std::vector<float> dy(static_cast<size_t>(M * C)), dg(static_cast<size_t>(M * 2 * C), 0.0f);
        std::vector<float> dh(static_cast<size_t>(M * 2 * C), 0.0f), dxin(static_cast<size_t>(M * C), 0.0f);
        for (int64_t r = 0; r < M; ++r)
          std::memcpy(dy.data() + r * C, dx + f.rows[static_cast<size_t>(r)] * C, static_cast<size_t>(C) * sizeof(float));
        matmul_backward(dg.data(), g.mlp_w2, g.mlp_b2, dy.data(), f.g.data(), p.mlp_w2, M, 2 * C, C);
        gelu_backward(dh.data(), dg.data(), f.h.data(), M * 2 * C, /*tanh_approx=*/false);
        matmul_backward(dxin.data(), g.mlp_w1, g.mlp_b1, dh.data(), f.x.data(), p.mlp_w1, M, C, 2 * C);
        for (int64_t r = 0; r < M; ++r) {  // in slot order: deterministic sums
          float* de = grads.tok_embeddings + static_cast<int64_t>(f.element[static_cast<size_t>(r)]) * C;
          float* dn = g.count_emb + static_cast<int64_t>(f.count[static_cast<size_t>(r)]) * C;
          const float* d = dxin.data() + r * C;
          for (int64_t e = 0; e < C; ++e) {
            de[e] += d[e];
            dn[e] += d[e];
          }
        }
        break;
      }
    }
  }
}

void type_embedding_forward(float* x, const float* type_emb, const int32_t* types, int64_t B, int64_t S, int64_t C) {
#pragma omp parallel for schedule(static) if (B * S * C > (1 << 16))
  for (int64_t r = 0; r < B * S; ++r) {
    const float* t = type_emb + static_cast<int64_t>(types[r % S]) * C;
    float* y = x + r * C;
    for (int64_t e = 0; e < C; ++e) y[e] += t[e];
  }
}

void type_embedding_backward(float* dtype_emb, const float* dx, const int32_t* types, int64_t B, int64_t S, int64_t C) {
  // Serial over rows, in row order: the sums are the same whatever the thread count.
  for (int64_t r = 0; r < B * S; ++r) {
    float* d = dtype_emb + static_cast<int64_t>(types[r % S]) * C;
    const float* g = dx + r * C;
    for (int64_t e = 0; e < C; ++e) d[e] += g[e];
  }
}

}  // namespace lm
