#include "model/params.h"

#include <cmath>
#include <cstring>
#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "core/panels.h"
#include "core/quant.h"
#include "core/rng.h"
#include "io/metadata_keys.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "model/loss_weights.h"

namespace lm {

namespace {

constexpr int64_t kAlignFloats = 16;  // 64 bytes

bool is_bias(ParamKind k) {
  switch (k) {
    case ParamKind::AttnNormB: case ParamKind::Bq: case ParamKind::Bk: case ParamKind::Bv: case ParamKind::Bo:
    case ParamKind::FfnNormB: case ParamKind::B1: case ParamKind::B2: case ParamKind::B3: case ParamKind::NormB:
    case ParamKind::OutputB: case ParamKind::CondMlpB1: case ParamKind::CondMlpB2:
      return true;
    default:
      return false;
  }
}

// The kinds the forward pass reads through matrices() (and may therefore be stored typed).
bool is_matrix(ParamKind k) {
  switch (k) {
    case ParamKind::TokEmbeddings: case ParamKind::Wq: case ParamKind::Wk: case ParamKind::Wv: case ParamKind::Wo:
    case ParamKind::W1: case ParamKind::W2: case ParamKind::W3: case ParamKind::Output:
      return true;
    default:
      return false;
  }
}

bool is_norm_weight(ParamKind k) {
  return k == ParamKind::AttnNormW || k == ParamKind::FfnNormW || k == ParamKind::NormW || k == ParamKind::QNormW ||
         k == ParamKind::KNormW;
}

}  // namespace

bool param_is_matrix(ParamKind kind) { return is_matrix(kind); }

ParameterLayout::ParameterLayout(const ModelConfig& cfg) {
  const int64_t C = cfg.dim, V = cfg.vocab_size, L = cfg.n_layers;
  const int64_t NH = cfg.n_heads, NKV = cfg.kv_heads(), HS = cfg.head_size(), F = cfg.ffn_hidden();
  n_layers_ = L;
  n_conditions_ = static_cast<int64_t>(cfg.conditions.size());
  tied_ = cfg.tie_embeddings;

  auto add = [&](std::string name, ParamKind kind, int64_t layer, Shape shape, int64_t condition = -1) {
    ParamInfo p{std::move(name), kind, layer, shape, shape_numel(shape, "parameter"), -1, condition};
    num_parameters_ += p.numel;
    tensors_.push_back(std::move(p));
  };
  auto linear = [&](const std::string& prefix, ParamKind w, ParamKind b, int64_t layer, int64_t out, int64_t in,
                    bool bias) {
    add(prefix + ".weight", w, layer, {out, in});
    if (bias) add(prefix + ".bias", b, layer, {out});
  };
  auto norm = [&](const std::string& prefix, ParamKind w, ParamKind b, int64_t layer) {
    add(prefix + ".weight", w, layer, {C});
    if (cfg.norm_bias) add(prefix + ".bias", b, layer, {C});
  };

  add("tok_embeddings.weight", ParamKind::TokEmbeddings, -1, {V, C});
  if (cfg.vision_dim > 0) add("vision_projection.weight", ParamKind::VisionProjection, -1, {C, cfg.vision_dim});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l);
    norm(p + ".attention_norm", ParamKind::AttnNormW, ParamKind::AttnNormB, l);
    linear(p + ".attention.wq", ParamKind::Wq, ParamKind::Bq, l, NH * HS, C, cfg.attn_bias);
    linear(p + ".attention.wk", ParamKind::Wk, ParamKind::Bk, l, NKV * HS, C, cfg.attn_bias);
    linear(p + ".attention.wv", ParamKind::Wv, ParamKind::Bv, l, NKV * HS, C, cfg.attn_bias);
    linear(p + ".attention.wo", ParamKind::Wo, ParamKind::Bo, l, C, NH * HS, cfg.attn_bias);
    if (cfg.qk_norm && cfg.qk_norm_weight && !cfg.is_nope_layer(l)) {  // NoPE layers: no QK-norm
      add(p + ".attention.q_norm.weight", ParamKind::QNormW, l, {HS});
      add(p + ".attention.k_norm.weight", ParamKind::KNormW, l, {HS});
    }
    norm(p + ".ffn_norm", ParamKind::FfnNormW, ParamKind::FfnNormB, l);
    if (cfg.is_moe_layer(l)) {  // bias-free SwiGLU experts, stacked [E, out, in] (docs/llama4.md §10)
      const int64_t E = cfg.moe.n_experts, Fe = cfg.moe_hidden();
      add(p + ".feed_forward.router.weight", ParamKind::Router, l, {E, C});
      add(p + ".feed_forward.experts.w1.weight", ParamKind::ExpertsW1, l, {E, Fe, C});
      add(p + ".feed_forward.experts.w2.weight", ParamKind::ExpertsW2, l, {E, C, Fe});
      add(p + ".feed_forward.experts.w3.weight", ParamKind::ExpertsW3, l, {E, Fe, C});
      if (cfg.moe.shared_expert) {
        add(p + ".feed_forward.shared_expert.w1.weight", ParamKind::SharedW1, l, {Fe, C});
        add(p + ".feed_forward.shared_expert.w2.weight", ParamKind::SharedW2, l, {C, Fe});
        add(p + ".feed_forward.shared_expert.w3.weight", ParamKind::SharedW3, l, {Fe, C});
      }
      continue;
    }
    linear(p + ".feed_forward.w1", ParamKind::W1, ParamKind::B1, l, F, C, cfg.ffn_bias);
    linear(p + ".feed_forward.w2", ParamKind::W2, ParamKind::B2, l, C, F, cfg.ffn_bias);
    if (cfg.ffn_type == FfnType::SwiGLU) linear(p + ".feed_forward.w3", ParamKind::W3, ParamKind::B3, l, F, C, cfg.ffn_bias);
  }
  norm("norm", ParamKind::NormW, ParamKind::NormB, -1);
  if (!cfg.tie_embeddings) add("output.weight", ParamKind::Output, -1, {V, C});
  if (cfg.output_bias) add("output.bias", ParamKind::OutputB, -1, {V});

  // materium's own state_dict names (docs/materium.md, "Checkpoint tensors").
  for (int64_t i = 0; i < n_conditions_; ++i) {
    const ConditionConfig& c = cfg.conditions[static_cast<size_t>(i)];
    const std::string p = "cond_proj_layers." + c.name;
    const int64_t in = c.input_dim;
    switch (c.proj_layer_type) {
      case ProjLayerType::Linear:
        add(p + ".weight", ParamKind::CondLinearW, -1, {C, in}, i);
        break;
      case ProjLayerType::Embedding:
        add(p + ".weight", ParamKind::CondEmbedding, -1, {in, C}, i);
        break;
      case ProjLayerType::Formula:
        add(p + ".composition_num_atoms.weight", ParamKind::CondCountEmb, -1, {in + 1, C}, i);
        add(p + ".combined_emb.0.weight", ParamKind::CondMlpW1, -1, {2 * C, C}, i);
        add(p + ".combined_emb.0.bias", ParamKind::CondMlpB1, -1, {2 * C}, i);
        add(p + ".combined_emb.2.weight", ParamKind::CondMlpW2, -1, {C, 2 * C}, i);
        add(p + ".combined_emb.2.bias", ParamKind::CondMlpB2, -1, {C}, i);
        break;
    }
    add("condition_mask_embeddings." + c.name, ParamKind::CondMaskEmb, -1, {C}, i);
  }
  if (n_conditions_ > 0) add("type_embeddings.weight", ParamKind::TypeEmbeddings, -1, {n_conditions_ + 1, C});

  // Arena offsets in table order, except that a bias-free SwiGLU layer's w3 follows its w1
  // (before w2): the stacked [w1; w3] is then one [2F, C] matrix, which the training step
  // multiplies in one GEMM (Transformer::fused_w13), as [wq; wk; wv] already are in table
  // order. Checkpoints, optimizer state and every other reader go by name or offset.
  std::vector<size_t> order;
  order.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const ParamInfo& p = tensors_[i];
    if (p.kind == ParamKind::W3 && !cfg.ffn_bias) continue;  // placed after its layer's w1
    order.push_back(i);
    if (p.kind == ParamKind::W1 && !cfg.ffn_bias)
      for (size_t j = i + 1; j < tensors_.size() && tensors_[j].layer == p.layer; ++j)
        if (tensors_[j].kind == ParamKind::W3) order.push_back(j);
  }
  if (order.size() != tensors_.size()) fail(ErrorKind::Runtime, "internal: a w3 without its layer's w1");
  for (size_t i : order) {
    ParamInfo& p = tensors_[i];
    p.offset = arena_floats_;
    arena_floats_ += (p.numel + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  }
}

const ParamInfo* ParameterLayout::find(const std::string& name) const {
  for (const auto& p : tensors_)
    if (p.name == name) return &p;
  return nullptr;
}

ParameterTensors ParameterLayout::bind(float* base) const {
  std::vector<float*> ptrs;
  ptrs.reserve(tensors_.size());
  for (const auto& p : tensors_) ptrs.push_back(base + p.offset);
  return bind(ptrs);
}

ParameterTensors ParameterLayout::bind(const std::vector<float*>& ptrs) const {
  if (ptrs.size() != tensors_.size()) fail(ErrorKind::Runtime, "internal: parameter pointer count mismatch");
  ParameterTensors t;
  t.layers.resize(static_cast<size_t>(n_layers_));
  t.conditions.resize(static_cast<size_t>(n_conditions_));
  for (size_t i = 0; i < tensors_.size(); ++i) {
    float* x = ptrs[i];
    const auto& p = tensors_[i];
    LayerParams* lp = p.layer >= 0 ? &t.layers[static_cast<size_t>(p.layer)] : nullptr;
    ConditionParams* cp = p.condition >= 0 ? &t.conditions[static_cast<size_t>(p.condition)] : nullptr;
    switch (p.kind) {
      case ParamKind::TokEmbeddings: t.tok_embeddings = x; break;
      case ParamKind::VisionProjection: t.vision_projection = x; break;
      case ParamKind::AttnNormW: lp->attention_norm_w = x; break;
      case ParamKind::AttnNormB: lp->attention_norm_b = x; break;
      case ParamKind::Wq: lp->wq = x; break;
      case ParamKind::Bq: lp->bq = x; break;
      case ParamKind::Wk: lp->wk = x; break;
      case ParamKind::Bk: lp->bk = x; break;
      case ParamKind::Wv: lp->wv = x; break;
      case ParamKind::Bv: lp->bv = x; break;
      case ParamKind::Wo: lp->wo = x; break;
      case ParamKind::Bo: lp->bo = x; break;
      case ParamKind::QNormW: lp->q_norm_w = x; break;
      case ParamKind::KNormW: lp->k_norm_w = x; break;
      case ParamKind::FfnNormW: lp->ffn_norm_w = x; break;
      case ParamKind::FfnNormB: lp->ffn_norm_b = x; break;
      case ParamKind::W1: lp->w1 = x; break;
      case ParamKind::B1: lp->b1 = x; break;
      case ParamKind::W2: lp->w2 = x; break;
      case ParamKind::B2: lp->b2 = x; break;
      case ParamKind::W3: lp->w3 = x; break;
      case ParamKind::B3: lp->b3 = x; break;
      case ParamKind::Router: lp->router = x; break;
      case ParamKind::ExpertsW1: lp->experts_w1 = x; break;
      case ParamKind::ExpertsW2: lp->experts_w2 = x; break;
      case ParamKind::ExpertsW3: lp->experts_w3 = x; break;
      case ParamKind::SharedW1: lp->shared_w1 = x; break;
      case ParamKind::SharedW2: lp->shared_w2 = x; break;
      case ParamKind::SharedW3: lp->shared_w3 = x; break;
      case ParamKind::NormW: t.norm_w = x; break;
      case ParamKind::NormB: t.norm_b = x; break;
      case ParamKind::Output: t.output = x; break;
      case ParamKind::OutputB: t.output_b = x; break;
      case ParamKind::CondLinearW: cp->linear_w = x; break;
      case ParamKind::CondEmbedding: cp->embedding = x; break;
      case ParamKind::CondCountEmb: cp->count_emb = x; break;
      case ParamKind::CondMlpW1: cp->mlp_w1 = x; break;
      case ParamKind::CondMlpB1: cp->mlp_b1 = x; break;
      case ParamKind::CondMlpW2: cp->mlp_w2 = x; break;
      case ParamKind::CondMlpB2: cp->mlp_b2 = x; break;
      case ParamKind::CondMaskEmb: cp->mask_emb = x; break;
      case ParamKind::TypeEmbeddings: t.type_embeddings = x; break;
    }
  }
  if (tied_) t.output = t.tok_embeddings;
  return t;
}

// ---- ModelWeights ----

void ModelWeights::allocate_arena() {
  if (arena_.raw() == nullptr) arena_ = Tensor::zeros(DType::F32, {layout_.arena_floats()});
}

WeightView ModelWeights::view(size_t i) const {
  const ParamInfo& p = layout_.tensors()[i];
  const int64_t OC = p.shape[0], IC = p.shape[1];
  if (types_[i] == WeightType::F32) return f32_weights(ptrs_[i], OC, IC);
  return {types_[i], typed_[i].bytes.raw(), OC, IC, weight_row_bytes(types_[i], IC)};
}

void ModelWeights::rebind() {
  const auto& table = layout_.tensors();
  if (types_.size() != table.size()) types_.assign(table.size(), WeightType::F32);
  typed_.resize(table.size());
  params_ = layout_.bind(ptrs_);
  matrices_ = ModelMatrices{};
  matrices_.layers.resize(static_cast<size_t>(cfg_.n_layers));
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamInfo& p = table[i];
    if (!is_matrix(p.kind)) continue;
    WeightView v = view(i);
    if (i < panels_.size()) v.panels = panels_[i].get();
    LayerMatrices* lm = p.layer >= 0 ? &matrices_.layers[static_cast<size_t>(p.layer)] : nullptr;
    switch (p.kind) {
      case ParamKind::TokEmbeddings: matrices_.tok_embeddings = v; break;
      case ParamKind::Output: matrices_.output = v; break;
      case ParamKind::Wq: lm->wq = v; break;
      case ParamKind::Wk: lm->wk = v; break;
      case ParamKind::Wv: lm->wv = v; break;
      case ParamKind::Wo: lm->wo = v; break;
      case ParamKind::W1: lm->w1 = v; break;
      case ParamKind::W2: lm->w2 = v; break;
      case ParamKind::W3: lm->w3 = v; break;
      default: break;
    }
  }
  if (cfg_.tie_embeddings) matrices_.output = matrices_.tok_embeddings;
}

bool ModelWeights::all_f32() const {
  for (WeightType t : types_)
    if (t != WeightType::F32) return false;
  return true;
}

int64_t ModelWeights::stored_bytes(size_t i) const {
  const ParamInfo& p = layout_.tensors().at(i);
  if (types_[i] == WeightType::F32) return p.numel * 4;
  return static_cast<int64_t>(typed_[i].bytes.nbytes());
}

std::string ModelWeights::types_summary() const {
  std::string out;
  for (WeightType t : {WeightType::F16, WeightType::BF16, WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_K, WeightType::Q6_K})
    if (std::find(types_.begin(), types_.end(), t) != types_.end()) out += (out.empty() ? "" : "+") + std::string(weight_type_name(t));
  return out.empty() ? "f32" : out;
}

void ModelWeights::require_f32(const char* what) const {
  if (!all_f32())
    fail(ErrorKind::Unsupported, cat(what, ": the weights hold ", types_summary(), " matrices; training needs f32 weights"),
         "convert the checkpoint with lm-convert-checkpoint --cast f32");
}

void ModelWeights::add_panels() {
  const auto& table = layout_.tensors();
  std::vector<std::shared_ptr<const WeightPanels>> made(table.size());
  bool any = false;
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamKind kind = table[i].kind;
    if (!is_matrix(kind) || !has_panel_kernels(types_[i])) continue;
    if (kind == ParamKind::TokEmbeddings && !cfg_.tie_embeddings) continue;  // looked up, not multiplied
    made[i] = make_panels(view(i));
    any = true;
  }
  if (!any) return;
  panels_ = std::move(made);
  rebind();
}

float* ModelWeights::arena() {
  if (!panels_.empty()) {  // the weights may change under them
    panels_.clear();
    rebind();
  }
  require_f32("arena");
  if (!writable()) fail(ErrorKind::Runtime, "internal: arena() on weights that still point into a mapping");
  allocate_arena();
  return arena_.data_mut<float>();
}

void ModelWeights::make_writable() {
  // Typed matrices get a private copy too (decode reads them once per token: a copy sits on
  // transparent huge pages, a file mapping mostly on 4 KiB ones); they stay read-only.
  for (size_t i = 0; i < typed_.size(); ++i) {
    if (types_[i] == WeightType::F32) continue;
    const Tensor& b = typed_[i].bytes;
    Tensor copy = Tensor::zeros(DType::U8, {static_cast<int64_t>(b.nbytes())});
    std::memcpy(copy.raw_mut(), b.raw(), b.nbytes());
    typed_[i].bytes = std::move(copy);
  }
  if (writable()) {
    rebind();
    return;
  }
  allocate_arena();
  float* base = arena_.data_mut<float>();
  for (size_t i = 0; i < layout_.tensors().size(); ++i) {
    const auto& p = layout_.tensors()[i];
    if (types_[i] != WeightType::F32) continue;
    if (ptrs_[i] != base + p.offset) {
      std::memcpy(base + p.offset, ptrs_[i], static_cast<size_t>(p.numel) * sizeof(float));
      ptrs_[i] = base + p.offset;
    }
  }
  mapped_.clear();
  rebind();
}

Tensor ModelWeights::tensor(size_t i) const {
  const auto& p = layout_.tensors().at(i);
  // The owner keeps whichever storage the pointer lives in alive: the arena or the mapping.
  if (types_[i] != WeightType::F32) {  // f16/bf16 as such; q8_0/q4_0 rows as U8 [rows, row bytes]
    const Tensor& b = typed_[i].bytes;
    auto owner = std::make_shared<Tensor>(b);
    if (types_[i] == WeightType::F16) return Tensor::view(DType::F16, p.shape, b.raw(), owner);
    if (types_[i] == WeightType::BF16) return Tensor::view(DType::BF16, p.shape, b.raw(), owner);
    return Tensor::view(DType::U8, {p.shape[0], static_cast<int64_t>(b.nbytes()) / p.shape[0]}, b.raw(), owner);
  }
  auto owner = std::make_shared<std::pair<Tensor, std::vector<Tensor>>>(arena_, mapped_);
  return Tensor::view(DType::F32, p.shape, ptrs_[i], owner);
}

ModelWeights ModelWeights::random(const ModelConfig& cfg, uint64_t seed, const InitOptions& opts) {
  ModelWeights w;
  w.cfg_ = cfg;
  w.layout_ = ParameterLayout(cfg);
  w.allocate_arena();
  float* base = w.arena_.data_mut<float>();
  Rng rng(seed);
  const float residual_std =
      opts.scaled_residual ? opts.std / std::sqrt(2.0f * static_cast<float>(std::max<int64_t>(cfg.n_layers, 1)))
                           : opts.std;
  for (const auto& p : w.layout_.tensors()) {
    float* x = base + p.offset;
    if (is_bias(p.kind)) continue;  // zeros
    if (is_norm_weight(p.kind)) {
      for (int64_t i = 0; i < p.numel; ++i) x[i] = 1.0f;
      continue;
    }
    const bool into_residual = p.kind == ParamKind::Wo || p.kind == ParamKind::W2 || p.kind == ParamKind::ExpertsW2 ||
                               p.kind == ParamKind::SharedW2;
    const float s = into_residual ? residual_std : opts.std;
    for (int64_t i = 0; i < p.numel; ++i) x[i] = rng.normal() * s;
  }
  w.ptrs_.clear();
  for (const auto& p : w.layout_.tensors()) w.ptrs_.push_back(base + p.offset);
  w.rebind();
  if (cfg.loss_weights) w.set_loss_weights(std::vector<float>(static_cast<size_t>(cfg.vocab_size), 1.0f), "random weights");
  return w;
}

void ModelWeights::set_loss_weights(const std::vector<float>& weights, const std::string& where) {
  check_loss_weights(weights, cfg_.vocab_size, where);
  Tensor t = Tensor::zeros(DType::F32, {cfg_.vocab_size});
  std::memcpy(t.data_mut<float>(), weights.data(), weights.size() * sizeof(float));
  loss_weights_ = std::move(t);
  cfg_.loss_weights = true;
}

ModelWeights ModelWeights::from_checkpoint(const SafeTensorsFile& file, const ModelConfig& cfg, bool keep_types) {
  ParameterLayout layout(cfg);
  const std::string where = quote(display_name(file.path()));
  const auto& table = layout.tensors();

  std::set<std::string> expected;
  for (const auto& p : table) expected.insert(p.name);
  // Loss weights are used when the config says so; a config with them switched off (say
  // --set loss_weights=false to fine-tune a weighted checkpoint without them) leaves them.
  expected.insert(kLossWeightsTensor);
  for (const auto& info : file.tensors())
    if (!expected.count(info.name))
      fail_data(cat(where, ": unexpected tensor ", quote(info.name), " for this config"));

  // The typed tensors' tags.
  std::map<std::string, WeightType> tags;
  if (auto text = file.metadata_value(kWeightTypesMetadataKey)) {
    const nlohmann::json j = parse_json_strict(*text, cat(where, ": metadata ", kWeightTypesMetadataKey, ": "));
    if (!j.is_object()) fail_data(cat(where, ": metadata ", kWeightTypesMetadataKey, ": not a JSON object"));
    for (const auto& [name, v] : j.items()) {
      const auto t = v.is_string() ? weight_type_from_name(v.get<std::string>()) : std::nullopt;
      if (!t || !weight_type_blocked(*t))
        fail_data(cat(where, ": metadata ", kWeightTypesMetadataKey, ": tensor ", quote(name), ": type ", v.dump(),
                      " is not one of \"q8_0\", \"q4_0\", \"q4_K\", \"q6_K\""));
      if (!expected.count(name)) fail_data(cat(where, ": metadata ", kWeightTypesMetadataKey, ": no tensor ", quote(name)));
      tags[name] = *t;
    }
  }
  if (!tags.empty() && !keep_types)
    fail(ErrorKind::Unsupported, cat(where, ": holds ", weight_type_name(tags.begin()->second),
                                     " tensors; training needs f32 weights"),
         "convert the checkpoint with lm-convert-checkpoint --cast f32");

  std::vector<StoredTensor> stored(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& p = table[i];
    const TensorInfo* info = file.find(p.name);
    if (!info) fail_data(cat(where, ": missing tensor ", quote(p.name)));
    if (auto tag = tags.find(p.name); tag != tags.end()) {
      if (info->dtype != DType::U8 || info->shape.size() != 2 || p.shape.size() != 2 || info->shape[0] != p.shape[0] ||
          info->shape[1] != weight_row_bytes(tag->second, p.shape[1], cat(where, ": tensor ", quote(p.name))))
        fail_data(cat(where, ": tensor ", quote(p.name), ": ", weight_type_name(tag->second), " rows of ",
                      shape_str(p.shape), " are U8 [", p.shape[0], ", ",
                      p.shape.size() == 2 ? weight_row_bytes(tag->second, p.shape[1]) : 0, "], got ",
                      dtype_name(info->dtype), " ", shape_str(info->shape)));
      stored[i] = {tag->second, file.get(p.name)};
      continue;
    }
    if (info->shape != p.shape)
      fail_data(cat(where, ": tensor ", quote(p.name), ": got shape ", shape_str(info->shape), ", expected ",
                    shape_str(p.shape)));
    if (info->dtype != DType::F32 && info->dtype != DType::F16 && info->dtype != DType::BF16)
      fail_data(cat(where, ": tensor ", quote(p.name), ": got dtype ", dtype_name(info->dtype),
                    ", expected F32, F16 or BF16"));
    Tensor v = file.get(p.name);
    if (keep_types && is_matrix(p.kind) && info->dtype != DType::F32)
      stored[i] = {info->dtype == DType::F16 ? WeightType::F16 : WeightType::BF16, v};
    else
      stored[i] = {WeightType::F32, info->dtype == DType::F32 ? v : v.cast(DType::F32), info->dtype != DType::F32};
  }
  ModelWeights w = from_stored(cfg, std::move(stored), where);
  if (cfg.loss_weights) w.set_loss_weights(loss_weights_from_checkpoint(file, cfg.vocab_size, where), where);
  return w;
}

ModelWeights ModelWeights::from_stored(const ModelConfig& cfg, std::vector<StoredTensor> tensors,
                                       const std::string& where) {
  ModelWeights w;
  w.cfg_ = cfg;
  w.layout_ = ParameterLayout(cfg);
  const auto& table = w.layout_.tensors();
  if (tensors.size() != table.size())
    fail(ErrorKind::Runtime, cat("internal: from_stored: ", tensors.size(), " tensors for ", table.size(), " entries"));
  bool need_arena = false;
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamInfo& p = table[i];
    const StoredTensor& t = tensors[i];
    if (t.type == WeightType::F32) {
      if (t.bytes.dtype() != DType::F32 || t.bytes.shape() != p.shape)
        fail_data(cat(where, ": tensor ", quote(p.name), ": expected F32 ", shape_str(p.shape)));
      if (t.to_arena || reinterpret_cast<uintptr_t>(t.bytes.raw()) % alignof(float) != 0) need_arena = true;
      continue;
    }
    if (!is_matrix(p.kind))
      fail_data(cat(where, ": tensor ", quote(p.name), ": only matrices may be stored as ", weight_type_name(t.type)));
    if (cfg.is_materium() || cfg.vision_dim > 0)
      fail(ErrorKind::Unsupported, cat(where, ": ", weight_type_name(t.type),
                                       " weights are not supported for models with conditions or vision yet"));
    const int64_t bytes = p.shape[0] * weight_row_bytes(t.type, p.shape[1], cat(where, ": tensor ", quote(p.name)));
    if (static_cast<int64_t>(t.bytes.nbytes()) != bytes)
      fail_data(cat(where, ": tensor ", quote(p.name), ": ", t.bytes.nbytes(), " bytes, expected ", bytes, " for ",
                    weight_type_name(t.type), " ", shape_str(p.shape)));
  }
  if (need_arena) w.allocate_arena();
  w.types_.assign(table.size(), WeightType::F32);
  w.typed_.resize(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamInfo& p = table[i];
    StoredTensor& t = tensors[i];
    w.types_[i] = t.type;
    if (t.type != WeightType::F32) {
      w.ptrs_.push_back(nullptr);
      w.typed_[i] = std::move(t);
      continue;
    }
    if (!t.to_arena && reinterpret_cast<uintptr_t>(t.bytes.raw()) % alignof(float) == 0) {
      w.ptrs_.push_back(const_cast<float*>(t.bytes.data<float>()));  // read-only: writable() is false
      w.mapped_.push_back(t.bytes);
    } else {
      float* dst = w.arena_.data_mut<float>() + p.offset;
      std::memcpy(dst, t.bytes.raw(), static_cast<size_t>(p.numel) * sizeof(float));
      w.ptrs_.push_back(dst);
    }
  }
  w.rebind();
  return w;
}

ModelWeights ModelWeights::cast(WeightType type) const {
  const auto& table = layout_.tensors();
  std::vector<StoredTensor> out(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamInfo& p = table[i];
    if (!is_matrix(p.kind)) {
      out[i] = {WeightType::F32, tensor(i)};
      continue;
    }
    const int64_t OC = p.shape[0], IC = p.shape[1];
    const WeightView v = view(i);
    const int64_t rb = weight_row_bytes(type, IC, cat("--cast ", weight_type_name(type), ": tensor ", quote(p.name)));
    Tensor bytes = type == WeightType::F32 ? Tensor::zeros(DType::F32, p.shape) : Tensor::zeros(DType::U8, {OC, rb});
    auto* dst = static_cast<unsigned char*>(bytes.raw_mut());
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(IC));
#pragma omp for schedule(static)
      for (int64_t o = 0; o < OC; ++o) {
        dequantize_row(v.type, static_cast<const unsigned char*>(v.data) + o * v.row_bytes, IC, row.data());
        quantize_row(type, row.data(), IC, dst + o * rb);
      }
    }
    out[i] = {type, bytes};
  }
  ModelWeights w = from_stored(cfg_, std::move(out), "cast");
  w.tokenizer_json_ = tokenizer_json_;
  w.loss_weights_ = loss_weights_;
  return w;
}

namespace {
// load and load_typed: the config from the metadata, then the tensors.
ModelWeights load_checkpoint(const std::string& path, bool keep_types) {
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  const std::string name = display_name(path);
  const auto text = file.metadata_value(kConfigMetadataKey);
  if (!text)
    fail(ErrorKind::Data, cat(quote(name), ": no model config (metadata key ", quote(kConfigMetadataKey), ")"),
         "convert the checkpoint with lm-convert-checkpoint, which writes the config");
  const std::string source = cat(name, " ", kConfigMetadataKey);
  ModelConfig cfg = config_from_json(*text, source);
  validate(cfg, source);
  ModelWeights w = ModelWeights::from_checkpoint(file, cfg, keep_types);
  if (auto tok = file.metadata_value(kTokenizerMetadataKey)) w.set_tokenizer_json(*tok);
  return w;
}
}  // namespace

ModelWeights ModelWeights::load_typed(const std::string& path) { return load_checkpoint(path, true); }

ModelWeights ModelWeights::load(const std::string& path) { return load_checkpoint(path, false); }

SafeTensorsWriter ModelWeights::writer(const std::string& tokenizer_json) const {
  SafeTensorsWriter out;
  out.set_metadata("format", "pt");
  out.set_metadata(kConfigMetadataKey, config_to_json(cfg_, -1));
  const std::string& tok = tokenizer_json.empty() ? tokenizer_json_ : tokenizer_json;
  if (!tok.empty()) out.set_metadata(kTokenizerMetadataKey, tok);
  nlohmann::json tags = nlohmann::json::object();
  for (size_t i = 0; i < layout_.tensors().size(); ++i) {
    out.add(layout_.tensors()[i].name, tensor(i));
    if (weight_type_blocked(types_[i])) tags[layout_.tensors()[i].name] = weight_type_name(types_[i]);
  }
  if (!tags.empty()) out.set_metadata(kWeightTypesMetadataKey, tags.dump());
  if (loss_weights_.raw()) out.add(kLossWeightsTensor, loss_weights_);
  return out;
}

void ModelWeights::save(const std::string& path, const std::string& tokenizer_json) const {
  writer(tokenizer_json).write_file(path);
}

}  // namespace lm
