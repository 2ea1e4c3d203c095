#include "model/transformer.h"
#include "core/threads.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <cstring>

#include "core/blas.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/rows.h"
#include "model/attention.h"
#include "model/dropout.h"
#include "model/embedding.h"
#include "model/ffn.h"
#include "model/matmul.h"
#include "model/norm.h"
#include "model/positions.h"
#include "model/rope.h"

namespace lm {

Capabilities model_capabilities() {
  Capabilities caps;  // what Transformer implements beyond a plain Llama / soma model
  caps.moe = caps.conditions = caps.blockwise_positions = true;
  caps.nope_layers = caps.chunked_attention = caps.temperature_tuning = caps.vision = true;
  return caps;
}

void require_model_support(const ModelConfig& cfg) {
  const auto missing = unsupported_features(cfg, model_capabilities());
  if (!missing.empty()) fail(ErrorKind::Unsupported, cat(missing.front(), " is not supported yet"));
  if (cfg.head_size() % 2 != 0 && cfg.nope_layer_interval != 1)  // only NoPE layers: no pairs to rotate
    fail(ErrorKind::Unsupported, cat("an odd head size (", cfg.head_size(), ") with RoPE is not supported"));
}

Transformer::Transformer(ModelWeights weights) : weights_(std::move(weights)) {
  validate(config(), "model config");
  require_model_support(config());
  inv_freq_ = rope_inv_freq(config());
}

void Transformer::set_compute_dtype(DType dtype) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    fail_usage(cat("compute dtype ", dtype_name(dtype), " is not supported (F32 or BF16)"));
  if (dtype == DType::F32) {
    bf16_.reset();
    return;
  }
  if (!bf16_) bf16_ = std::make_unique<Bf16Matmuls>();
  bf16_stale_ = true;
}

void Transformer::set_kv_dtype(DType dtype) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    fail_usage(cat("KV cache dtype ", dtype_name(dtype), " is not supported (F32, BF16 or F16)"));
  kv_dtype_ = dtype;
}

DType Transformer::weights_kv_dtype() const {
  const WeightType t = weights_.matrices().layers.at(0).wk.type;
  if (t == WeightType::F32) return DType::F32;
  return t == WeightType::BF16 ? DType::BF16 : DType::F16;  // f16, and the quantized types as llama.cpp
}

Bf16Matmuls* Transformer::fresh_bf16_matmuls() {
  if (!bf16_ || !bf16_stale_) return bf16_.get();
  // Every tensor of two or more dimensions: the linears, the classifier (tied: the embedding).
  bf16_->clear_weights();
  const auto& table = weights_.layout().tensors();
  for (size_t i = 0; i < table.size(); ++i)
    if (table[i].shape.size() >= 2) bf16_->add_weights(weights_.tensor(i).data<float>(), table[i].numel);
  bf16_->refresh();
  bf16_stale_ = false;
  return bf16_.get();
}

MoEParams moe_params(const LayerParams& p) {
  return {p.router, p.experts_w1, p.experts_w2, p.experts_w3, p.shared_w1, p.shared_w2, p.shared_w3};
}

namespace {

// Two passes over the same list of buffers: count the floats, then hand out views.
class ArenaPlan {
 public:
  void add(float** slot, int64_t n) { add(reinterpret_cast<void**>(slot), n); }
  void add(void** slot, int64_t n) {  // any 4-byte element type (float, int32_t)
    if (n > 0) items_.push_back({slot, n});
  }
  Tensor allocate() {
    int64_t total = 0;
    for (const auto& it : items_) total += (it.n + 15) / 16 * 16;
    Tensor arena = Tensor::zeros(DType::F32, {total});
    float* p = arena.data_mut<float>();
    for (const auto& it : items_) {
      *it.slot = p;
      p += (it.n + 15) / 16 * 16;
    }
    return arena;
  }

 private:
  struct Item {
    void** slot;
    int64_t n;
  };
  std::vector<Item> items_;
};

void add_residual(float* out, const float* a, const float* b, int64_t n) {
  parallel_for(n, n, [&](int64_t i) { out[i] = a[i] + b[i]; });
}

// out = a + dropout(b) (training: residual dropout on the block's output).
void add_residual_dropout(float* out, const float* a, const float* b, int64_t n, float p, uint64_t seed) {
  if (p <= 0) return add_residual(out, a, b, n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i] * dropout_scale(seed, static_cast<uint64_t>(i), p);
}

}  // namespace

void Transformer::ensure_activations(int64_t B, int64_t K, int64_t T, bool keep, bool checkpoint,
                                     bool head_all_rows, bool logits) {
  // The logits live in their own tensor, kept across plans: a training step needs none, and
  // an evaluation forward between steps then finds them without reallocating the arena.
  const int64_t V = config().vocab_size;
  auto place_logits = [&](ActivationTensors& a) {
    const int64_t n = (head_all_rows ? B * T : B) * V;
    if (!logits) {
      a.logits = nullptr;
      return;
    }
    if (a.logits_arena.numel() < n) {
      a.logits_arena = Tensor();  // freed before the larger one is allocated
      a.logits_arena = Tensor::zeros(DType::F32, {n});
    }
    a.logits = a.logits_arena.data_mut<float>();
  };
  // An arena whose head holds every row also serves a forward that needs the last ones only.
  if (acts_.arena.raw() && acts_.B == B && acts_.K == K && acts_.T == T && (acts_.head_all_rows || !head_all_rows)) {
    // A lean forward (evaluation between training steps) runs in a training arena of the
    // same shape as it is, instead of reallocating it back and forth.
    if ((acts_.keep_layers == keep && acts_.checkpointed == checkpoint) || (!keep && !checkpoint)) {
      place_logits(acts_);
      return;
    }
  }
  const ModelConfig& c = config();
  const int64_t S = K + T, N = B * S, NT = B * T, C = c.dim, L = c.n_layers;
  const int64_t NH = c.n_heads, NKV = c.kv_heads(), HS = c.head_size(), F = c.ffn_hidden();
  const bool swiglu = c.ffn_type == FfnType::SwiGLU;
  bool any_moe = false, any_dense = false;
  for (int64_t l = 0; l < L; ++l) (c.is_moe_layer(l) ? any_moe : any_dense) = true;

  ActivationTensors a;
  a.B = B;
  a.T = T;
  a.K = K;
  a.keep_layers = keep;
  a.checkpointed = checkpoint;
  a.head_all_rows = head_all_rows;
  a.layers.resize(static_cast<size_t>(L));
  ArenaPlan plan;
  plan.add(&a.encoded, N * C);
  for (int64_t l = 0; l < (keep ? L : 1); ++l) {
    LayerActivations& la = a.layers[static_cast<size_t>(l)];
    plan.add(&la.ln1, N * C);
    plan.add(&la.ln1_mean, N);
    plan.add(&la.ln1_rstd, N);
    plan.add(&la.q, N * (NH + 2 * NKV) * HS);  // k and v follow in the same block (below)
    if (c.qk_norm) {
      plan.add(&la.q_rstd, N * NH);
      plan.add(&la.k_rstd, N * NKV);
    }
    plan.add(&la.qr, N * NH * HS);
    plan.add(&la.kr, N * NKV * HS);
    if (keep || checkpoint) plan.add(&la.att, B * NH * S * S);
    plan.add(&la.atty, N * NH * HS);
    plan.add(&la.attproj, N * C);
    plan.add(&la.residual2, N * C);
    plan.add(&la.ln2, N * C);
    plan.add(&la.ln2_mean, N);
    plan.add(&la.ln2_rstd, N);
    // Kept layers get what their own feed-forward saves; a shared set serves both kinds.
    if (keep ? !c.is_moe_layer(l) : any_dense) {
      plan.add(&la.fch, (swiglu ? 2 : 1) * N * F);  // SwiGLU: fch3 follows in the same block (below)
      plan.add(&la.fch_act, N * F);
    }
    if (keep ? c.is_moe_layer(l) : any_moe)
      for (const auto& [slot, n] : moe_buffers(la.moe, moe_shape(c, N))) plan.add(slot, n);
    plan.add(&la.fcproj, N * C);
    plan.add(&la.residual3, N * C);
  }
  // Checkpointing keeps each layer's output (the next layer's input) and shares the rest.
  std::vector<float*> outputs(static_cast<size_t>(checkpoint ? L : 0));
  for (auto& o : outputs) plan.add(&o, N * C);
  if (K > 0) plan.add(&a.final_in, NT * C);
  plan.add(&a.last_in, B * C);
  const int64_t head_rows = head_all_rows ? NT : B;
  plan.add(&a.lnf, head_rows * C);
  plan.add(&a.lnf_mean, head_rows);
  plan.add(&a.lnf_rstd, head_rows);
  plan.add(&a.rope_cos, N * (HS / 2));
  plan.add(&a.rope_sin, N * (HS / 2));
  if (c.attn_temperature_tuning && c.nope_layer_interval > 0) plan.add(&a.attn_temp, N);
  if (c.vision_dim > 0) plan.add(&a.vision_proj, N * C);
  a.arena = plan.allocate();
  for (int64_t l = 0; l < (keep ? L : 1); ++l) {
    LayerActivations& la = a.layers[static_cast<size_t>(l)];
    la.k = la.q + N * NH * HS;
    la.v = la.k + N * NKV * HS;
    if (la.fch && swiglu) la.fch3 = la.fch + N * F;
  }
  if (!keep)  // every layer reads and writes the one shared set
    for (int64_t l = 1; l < L; ++l) a.layers[static_cast<size_t>(l)] = a.layers[0];
  if (checkpoint)
    for (int64_t l = 0; l < L; ++l) a.layers[static_cast<size_t>(l)].residual3 = outputs[static_cast<size_t>(l)];
  a.pos.resize(static_cast<size_t>(N));
  a.key_lo.resize(static_cast<size_t>(N));
  a.key_hi.resize(static_cast<size_t>(N));
  if (c.attn_chunk_size > 0) a.chunk_key_lo.resize(static_cast<size_t>(N));
  a.logits_arena = std::move(acts_.logits_arena);
  place_logits(a);
  acts_ = std::move(a);
}

void Transformer::check_inputs(const int64_t* pos, int64_t B, const ConditionBatch* cb) const {
  const ModelConfig& c = config();
  if (cb) cb->check_fits(c, B);
  if (pos && c.is_materium())
    fail_usage("a model with conditions or block-wise positions computes its own position ids: pass none");
}

namespace {
// "T tokens", or "K condition positions and T tokens".
std::string sequence_words(int64_t K, int64_t T) {
  return K > 0 ? cat(K, " condition positions and ", T, " tokens") : cat(T, " tokens");
}
}  // namespace

void Transformer::check_forward(const int64_t* pos, int64_t B, int64_t T, const ConditionBatch* conditions) const {
  if (B <= 0 || T <= 0) fail_usage(cat("forward needs at least one token per row, got B=", B, ", T=", T));
  check_inputs(pos, B, conditions);
  const int64_t K = conditions ? conditions->positions() : 0;
  if (K + T > config().max_seq_len)
    fail_usage(cat("sequence of ", sequence_words(K, T), " exceeds max_seq_len (", config().max_seq_len, ")"));
}

const float* Transformer::forward(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T,
                                  const ConditionBatch* conditions, const VisionRow* vision) {
  check_forward(pos, B, T, conditions);
  return run(tokens, pos, B, T, nullptr, conditions, vision);
}

const float* Transformer::forward_last(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T,
                                       const ConditionBatch* conditions, const VisionRow* vision) {
  check_forward(pos, B, T, conditions);
  return run(tokens, pos, B, T, nullptr, conditions, vision, true);
}

const float* Transformer::forward(const int32_t* tokens, const int64_t* pos, int64_t T, KVCache& cache,
                                  const ConditionBatch* conditions, const VisionRow* vision) {
  check_decode(pos, T, cache, conditions);
  return run(tokens, pos, cache.batch(), T, &cache, conditions, vision);
}

const float* Transformer::forward_last(const int32_t* tokens, const int64_t* pos, int64_t T, KVCache& cache,
                                       const ConditionBatch* conditions, const VisionRow* vision) {
  check_decode(pos, T, cache, conditions);
  return run(tokens, pos, cache.batch(), T, &cache, conditions, vision, true);
}

void Transformer::check_decode(const int64_t* pos, int64_t T, const KVCache& cache,
                               const ConditionBatch* conditions) const {
  if (!config().causal)
    fail(ErrorKind::Unsupported, "incremental decode (KV cache) of a non-causal model is not supported");
  if (T <= 0) fail_usage(cat("decode needs at least one token per row, got T=", T));
  check_inputs(pos, cache.batch(), conditions);
  if (conditions && cache.length() > 0)
    fail_usage("condition values go with the first call on an empty KV cache (the prefill)");
  const int64_t K = conditions ? conditions->positions() : 0;
  if (cache.length() + K + T > cache.capacity())
    fail_usage(cat("KV cache full: ", cache.length(), " + ", K + T, " positions exceed its capacity of ",
                   cache.capacity(), " (max_seq_len)"));
}

const int64_t* Transformer::layer_key_lo(int64_t l) const {
  return config().layer_chunk(l) > 0 ? acts_.chunk_key_lo.data() : acts_.key_lo.data();
}

bool Transformer::fused_qkv(int64_t l, int64_t N) const {
  const ModelConfig& c = config();
  const LayerParams& lw = weights_.params().layers[static_cast<size_t>(l)];
  const int64_t C = c.dim, QD = c.n_heads * c.head_size(), KD = c.kv_heads() * c.head_size();
  const LayerMatrices& lm = weights_.matrices().layers[static_cast<size_t>(l)];
  return fused_projections_ && !bf16_ && !few_rows_path(N, lm.wq) && !c.attn_bias && !c.qk_norm && !c.is_nope_layer(l) && lw.wq && lw.wk &&
         lw.wv && lw.wk == lw.wq + QD * C && lw.wv == lw.wk + KD * C;
}

bool Transformer::fused_w13(int64_t l, int64_t N) const {
  const ModelConfig& c = config();
  const LayerParams& lw = weights_.params().layers[static_cast<size_t>(l)];
  const LayerMatrices& lm = weights_.matrices().layers[static_cast<size_t>(l)];
  return fused_projections_ && !bf16_ && !few_rows_path(N, lm.w1) && c.ffn_type == FfnType::SwiGLU && !c.ffn_bias &&
         !c.is_moe_layer(l) && lw.w1 && lw.w3 && lw.w3 == lw.w1 + c.ffn_hidden() * c.dim;
}

void Transformer::position_qk(int64_t l, LayerActivations& la, int64_t N) {
  const ModelConfig& c = config();
  const LayerParams& lw = weights_.params().layers[static_cast<size_t>(l)];
  const ActivationTensors& a = acts_;
  const int64_t NH = c.n_heads, NKV = c.kv_heads(), HS = c.head_size();
  if (c.is_nope_layer(l)) {  // no QK-norm, no RoPE (docs/llama4.md §2)
    if (a.attn_temp)
      temperature_forward(la.qr, la.q, a.attn_temp, N, NH * HS);
    else
      std::memcpy(la.qr, la.q, static_cast<size_t>(N * NH * HS) * sizeof(float));
    std::memcpy(la.kr, la.k, static_cast<size_t>(N * NKV * HS) * sizeof(float));
    return;
  }
  const float eps = static_cast<float>(c.norm_eps);
  const float* qn = la.q;
  const float* kn = la.k;
  if (c.qk_norm) {  // RMSNorm over each head's HS features, before RoPE (weightless: = after, §2)
    rmsnorm_forward(la.qr, la.q_rstd, la.q, lw.q_norm_w, nullptr, N * NH, HS, eps);
    rmsnorm_forward(la.kr, la.k_rstd, la.k, lw.k_norm_w, nullptr, N * NKV, HS, eps);
    qn = la.qr;
    kn = la.kr;
  }
  rope_qk_forward(la.qr, la.kr, qn, kn, a.rope_cos, a.rope_sin, N, NH, NKV, HS);
}

bool Transformer::layer_forward(int64_t l, const float* residual, LayerActivations& la, int64_t B, int64_t T,
                                int64_t P, KVCache* cache, bool ln1_ready, LayerActivations* next) {
  const ModelConfig& c = config();
  const ParameterTensors& w = weights_.params();
  ActivationTensors& a = acts_;
  const int64_t N = B * T, C = c.dim;
  const int64_t NH = c.n_heads, NKV = c.kv_heads(), HS = c.head_size();
  const int64_t KD = NKV * HS;
  const float eps = static_cast<float>(c.norm_eps);
  const bool layernorm = c.norm_type == NormType::LayerNorm;
  auto norm = [&](float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias) {
    if (layernorm)
      layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
    else
      rmsnorm_forward(out, rstd, inp, weight, bias, N, C, eps);
  };
  const bool drop = training_ && !cache && !drop_seeds_.empty();
  auto seed = [&](int64_t i) { return drop ? drop_seeds_[static_cast<size_t>(i)] : uint64_t{0}; };
  const float p_attn = drop ? static_cast<float>(c.attn_dropout) : 0.0f;
  const float p_res = drop ? static_cast<float>(c.dropout) : 0.0f;
  const LayerParams& lw = w.layers[static_cast<size_t>(l)];
  const LayerMatrices& lm = weights_.matrices().layers[static_cast<size_t>(l)];

  // Attention block.
  if (!ln1_ready) norm(la.ln1, la.ln1_mean, la.ln1_rstd, residual, lw.attention_norm_w, lw.attention_norm_b);
  if (cache && B == 1 && T == 1 && NKV >= thread_count() && !bf16_) {  // a unit (kv head) for every thread
    attention_decode_step(l, la, P, *cache);
  } else if (!cache && fused_qkv(l, N)) {
    // One GEMM over the stacked [wq; wk; wv] into rows q_n k_n v_n; RoPE and attention read
    // them in place.
    const int64_t W = (NH + 2 * NKV) * HS;
    float* qkv = la.q;
    sgemm(false, true, N, W, C, 1.0f, la.ln1, C, lw.wq, C, 0.0f, qkv, W);
    rope_qk_forward(la.qr, la.kr, qkv, qkv + NH * HS, a.rope_cos, a.rope_sin, N, NH, NKV, HS, W);
    attention_forward(la.atty, la.att, la.qr, la.kr, qkv + (NH + NKV) * HS, layer_key_lo(l), a.key_hi.data(), B, T, 0,
                      T, NH, NKV, HS, p_attn, seed(1 + 3 * l), W);
  } else {
    matmul_forward_parts({{la.q, &lm.wq, lw.bq}, {la.k, &lm.wk, lw.bk}, {la.v, &lm.wv, lw.bv}}, la.ln1, N);
    position_qk(l, la, N);
    const int64_t* key_lo = layer_key_lo(l);
    if (cache) {
      for (int64_t b = 0; b < B; ++b) cache->store(l, b, P, la.kr + b * T * KD, la.v + b * T * KD, T);
      const CachedKV kv = cache->layer(l);
      const int64_t S = cache->capacity();
      if (T == 1) {
        attention_decode(la.atty, la.qr, kv, key_lo, a.key_hi.data(), B, S, NH, NKV, HS);
      } else if (kv.dtype == DType::F32) {
        attention_forward(la.atty, nullptr, la.qr, static_cast<const float*>(kv.k), static_cast<const float*>(kv.v),
                          key_lo, a.key_hi.data(), B, T, P, S, NH, NKV, HS);
      } else {  // a prompt over a bf16 / f16 cache: its slots widened once, then the GEMMs
        std::vector<float> keys(static_cast<size_t>(B * (P + T) * KD)), values(keys.size());
        for (int64_t b = 0; b < B; ++b)
          cache->widen(l, b, P + T, keys.data() + b * (P + T) * KD, values.data() + b * (P + T) * KD);
        attention_forward(la.atty, nullptr, la.qr, keys.data(), values.data(), key_lo, a.key_hi.data(), B, T, P,
                          P + T, NH, NKV, HS);
      }
    } else {
      attention_forward(la.atty, la.att, la.qr, la.kr, la.v, key_lo, a.key_hi.data(), B, T, 0, T, NH, NKV, HS, p_attn,
                        seed(1 + 3 * l));
    }
  }
  matmul_forward(la.attproj, la.atty, lm.wo, lw.bo, N);
  // Feed-forward block: its norm reads the residual as the add writes it (one pass; RMSNorm
  // without residual dropout).
  if (!layernorm && p_res <= 0) {
    residual_rmsnorm_forward(la.residual2, la.ln2, la.ln2_rstd, residual, la.attproj, lw.ffn_norm_w, lw.ffn_norm_b, N,
                             C, eps);
  } else {
    add_residual_dropout(la.residual2, residual, la.attproj, N * C, p_res, seed(2 + 3 * l));
    norm(la.ln2, la.ln2_mean, la.ln2_rstd, la.residual2, lw.ffn_norm_w, lw.ffn_norm_b);
  }
  ffn_forward(l, la, N);
  if (next && !layernorm && p_res <= 0) {
    const LayerParams& nw = w.layers[static_cast<size_t>(l + 1)];
    residual_rmsnorm_forward(la.residual3, next->ln1, next->ln1_rstd, la.residual2, la.fcproj, nw.attention_norm_w,
                             nw.attention_norm_b, N, C, eps);
    return true;
  }
  add_residual_dropout(la.residual3, la.residual2, la.fcproj, N * C, p_res, seed(3 + 3 * l));
  return false;
}

void Transformer::ffn_forward(int64_t l, LayerActivations& la, int64_t N) {
  const ModelConfig& c = config();
  const LayerParams& lw = weights_.params().layers[static_cast<size_t>(l)];
  const LayerMatrices& lm = weights_.matrices().layers[static_cast<size_t>(l)];
  if (c.is_moe_layer(l)) {
    const MoEShape s = moe_shape(c, N);
    moe_forward(la.fcproj, la.moe, la.ln2, moe_params(lw), s);
    if (training_) balance_[static_cast<size_t>(l)] = moe_balance_loss(la.moe, s);
    return;
  }
  const int64_t F = c.ffn_hidden();
  if (fused_w13(l, N)) {  // one GEMM over [w1; w3]: row n = gate_n up_n
    sgemm(false, true, N, 2 * F, c.dim, 1.0f, la.ln2, c.dim, lw.w1, c.dim, 0.0f, la.fch, 2 * F);
    swiglu_forward_fused(la.fch_act, la.fch, N, F);
  } else if (c.ffn_type == FfnType::SwiGLU) {
    swiglu_up_forward(la.fch_act, la.fch, la.fch3, la.ln2, lm.w1, lw.b1, lm.w3, lw.b3, N);
  } else {
    matmul_forward(la.fch, la.ln2, lm.w1, lw.b1, N);
    gelu_forward(la.fch_act, la.fch, N * F, c.gelu_approximate == GeluApprox::Tanh);
  }
  matmul_forward(la.fcproj, la.fch_act, lm.w2, lw.b2, N);
}

void Transformer::attention_decode_step(int64_t l, LayerActivations& la, int64_t P, KVCache& cache) {
  const ModelConfig& c = config();
  const LayerParams& lw = weights_.params().layers[static_cast<size_t>(l)];
  const ActivationTensors& a = acts_;
  const int64_t NH = c.n_heads, NKV = c.kv_heads(), HS = c.head_size(), rep = NH / NKV;
  const float eps = static_cast<float>(c.norm_eps);
  const bool nope = c.is_nope_layer(l);
  const int64_t key_lo = layer_key_lo(l)[0];
  const CachedKV kv = cache.layer(l);
  // A unit is one kv head and its query heads: nothing in it needs another unit, so no
  // barrier separates the projections from attention, and attention runs on every thread.
  // Each step is the function the general path calls, on the unit's rows: the same numbers.
  const LayerMatrices& lm = weights_.matrices().layers[static_cast<size_t>(l)];
  const WeightView &wq = lm.wq, &wk = lm.wk, &wv = lm.wv;
  for (WeightType t : {wq.type, wk.type, wv.type}) require_row_kernel(t);
  // The input prepared once for each type (q8_0 / q4_0: int8 blocks), before the units start.
  const RowsInput in_q(la.ln1, 1, wq);
  const RowsInput in_k(la.ln1, 1, wk);
  const RowsInput in_v(la.ln1, 1, wv);
  std::atomic<bool> overflow = false;  // a key or value beyond the cache's type (after the region: no throw in it)
  parallel_chunks(NKV, 1, [&](int64_t g0, int64_t g1) {
    thread_local std::vector<float> scratch;  // kept between calls: no allocation per unit
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t q0 = g * rep * HS, k0 = g * HS;  // the unit's first q and k/v features
      matmul_rows(la.q, in_q, wq, lw.bq, q0, rep * HS);
      matmul_rows(la.k, in_k, wk, lw.bk, k0, HS);
      matmul_rows(la.v, in_v, wv, lw.bv, k0, HS);
      if (nope) {  // position_qk's NoPE branch on the unit's rows
        if (a.attn_temp)
          temperature_forward(la.qr + q0, la.q + q0, a.attn_temp, 1, rep * HS);
        else
          std::memcpy(la.qr + q0, la.q + q0, static_cast<size_t>(rep * HS) * sizeof(float));
        std::memcpy(la.kr + k0, la.k + k0, static_cast<size_t>(HS) * sizeof(float));
      } else {
        const float* qn = la.q + q0;
        const float* kn = la.k + k0;
        if (c.qk_norm) {
          rmsnorm_forward(la.qr + q0, la.q_rstd + g * rep, la.q + q0, lw.q_norm_w, nullptr, rep, HS, eps);
          rmsnorm_forward(la.kr + k0, la.k_rstd + g, la.k + k0, lw.k_norm_w, nullptr, 1, HS, eps);
          qn = la.qr + q0;
          kn = la.kr + k0;
        }
        rope_forward(la.qr + q0, qn, a.rope_cos, a.rope_sin, 1, rep, HS);
        rope_forward(la.kr + k0, kn, a.rope_cos, a.rope_sin, 1, 1, HS);
      }
      if (!cache.store_features(l, 0, P, k0, HS, la.kr + k0, la.v + k0)) overflow = true;
      attention_one_query_heads(la.atty, la.qr, kv, 0, key_lo, a.key_hi[0], cache.capacity(), NH, NKV, HS, g * rep,
                                (g + 1) * rep, scratch);
    }
  });
  if (overflow) cache.fail_overflow(l);
}

void Transformer::set_positions(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T, int64_t K,
                                KVCache* cache, std::vector<BlockwiseState>& blockwise) {
  const ModelConfig& c = config();
  ActivationTensors& a = acts_;
  const int64_t P = cache ? cache->length() : 0, S = K + T;
  if (!c.is_materium()) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) a.pos[b * T + t] = pos ? pos[b * T + t] : P + t;
    return;
  }
  // Conditions at 0..K-1 (only ever in the first call on a cache); tokens after all of the
  // row's conditions, continuing the cache's block-wise state (on a copy: committed on success).
  const int64_t cond = P > 0 ? cache->cond_len() : K;
  if (cache) blockwise.assign(cache->blockwise(), cache->blockwise() + B);
  std::vector<int64_t> token_pos(static_cast<size_t>(B * T));
  token_positions(token_pos.data(), tokens, B, T, cond, P > 0 ? P - cond : 0, c, cache ? blockwise.data() : nullptr);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < K; ++k) a.pos[b * S + k] = k;
    for (int64_t t = 0; t < T; ++t) a.pos[b * S + K + t] = token_pos[b * T + t];
  }
}

void Transformer::embed(const int32_t* tokens, int64_t B, int64_t T, const ConditionBatch* cb) {
  const ModelConfig& c = config();
  const ParameterTensors& w = weights_.params();
  ActivationTensors& a = acts_;
  const int64_t K = a.K, S = K + T, C = c.dim, V = c.vocab_size;
  if (weights_.matrices().tok_embeddings.type != WeightType::F32) {  // typed rows: decode each (no conditions)
    const WeightView& e = weights_.matrices().tok_embeddings;
    for (int64_t n = 0; n < B * T; ++n) {
      const int64_t id = tokens[n];
      if (id < 0 || id >= V) fail_data(cat("token id ", id, " at index ", n, " is out of range for vocab size ", V));
      dequantize_row(e.type, static_cast<const unsigned char*>(e.data) + id * e.row_bytes, C, a.encoded + n * C);
    }
  } else if (K == 0) {
    embedding_forward(a.encoded, tokens, w.tok_embeddings, B * T, V, C);
  } else {
    for (int64_t b = 0; b < B; ++b) embedding_forward(a.encoded + (b * S + K) * C, tokens + b * T, w.tok_embeddings, T, V, C);
    conditions_forward(a.encoded, cond_acts_, *cb, c, w, S);
  }
  if (!c.conditions.empty()) {
    types_ = position_types(c, K > 0 ? cb : nullptr, T);
    type_embedding_forward(a.encoded, w.type_embeddings, types_.data(), B, S, C);
  }
}

void Transformer::embed_backward(const ParameterTensors& grads, const float* dx, const int32_t* tokens, int64_t B,
                                 int64_t T, const ConditionBatch* cb) {
  const ModelConfig& c = config();
  const int64_t K = acts_.K, S = K + T, C = c.dim;
  if (K == 0) {
    embedding_backward(grads.tok_embeddings, dx, tokens, B * T, C);
  } else {
    for (int64_t b = 0; b < B; ++b) embedding_backward(grads.tok_embeddings, dx + (b * S + K) * C, tokens + b * T, T, C);
    conditions_backward(grads, dx, cond_acts_, *cb, c, weights_.params(), S);
  }
  if (!c.conditions.empty()) type_embedding_backward(grads.type_embeddings, dx, types_.data(), B, S, C);
}

const float* Transformer::run(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T, KVCache* cache,
                              const ConditionBatch* cb, const VisionRow* vision, bool last_only, bool classifier) {
  const ModelConfig& c = config();
  const ParameterTensors& w = weights_.params();
  const int64_t C = c.dim, V = c.vocab_size, L = c.n_layers, HS = c.head_size();
  const int64_t P = cache ? cache->length() : 0;
  const int64_t K = cb ? cb->positions() : 0;  // condition positions this call prepends
  const int64_t S = K + T, N = B * S, NT = B * T;
  const float eps = static_cast<float>(c.norm_eps);
  const bool layernorm = c.norm_type == NormType::LayerNorm;
  const Bf16Matmuls::Scope compute(fresh_bf16_matmuls());  // bf16 compute, or f32 (null)
  std::optional<PromptRowsScope> prompt_rows;  // over a cache: short prompts on the row kernel
  if (cache) prompt_rows.emplace();

  check_token_ids(tokens, NT, V);
  // A training forward keeps every layer's activations, or with checkpointing only their outputs.
  const bool ckpt = training_ && checkpoint_ && !cache;
  ensure_activations(B, K, T, (keep_ || training_) && !cache && !ckpt, ckpt, !last_only, classifier);
  ActivationTensors& a = acts_;
  a.last_only = last_only;

  std::vector<BlockwiseState> blockwise;  // a cache's rows, advanced here, committed on success
  set_positions(tokens, pos, B, T, K, cache, blockwise);
  rope_tables(a.rope_cos, a.rope_sin, a.pos.data(), inv_freq_.data(), N, HS / 2, c.rope_scale_factor);
  // Spans are computed on a copy of the cache's document starts: the cache changes only on success.
  // Condition positions are no tokens (-1); documents do not combine with conditions (validate).
  std::vector<int32_t> row_tokens;
  if (K > 0) {
    row_tokens.assign(static_cast<size_t>(N), -1);
    for (int64_t b = 0; b < B; ++b) std::copy(tokens + b * T, tokens + (b + 1) * T, row_tokens.begin() + b * S + K);
  }
  std::vector<int64_t> doc_start(static_cast<size_t>(B), 0);
  if (cache) std::memcpy(doc_start.data(), cache->doc_start(), static_cast<size_t>(B) * sizeof(int64_t));
  attention_spans(a.key_lo.data(), a.key_hi.data(), K > 0 ? row_tokens.data() : tokens, B, S, P, c.causal, c.doc_mask,
                  c.eos_id, doc_start.data(), c.doc_mask_boundary == DocMaskBoundary::Start);
  if (c.attn_chunk_size > 0) {  // the chunked layers' spans (validation: causal, no conditions)
    a.chunk_key_lo = a.key_lo;
    narrow_spans_to_chunks(a.chunk_key_lo.data(), B, S, P, c.attn_chunk_size);
  }
  if (a.attn_temp) temperature_scales(a.attn_temp, a.pos.data(), N, c.attn_floor_scale, c.attn_scale);
  // Likewise the count of image features taken (image_token_id places in decode).
  std::vector<int64_t> vision_used(static_cast<size_t>(B), 0);
  if (cache) std::memcpy(vision_used.data(), cache->vision_used(), static_cast<size_t>(B) * sizeof(int64_t));

  // Training (train_step) applies dropout with this step's seeds; otherwise it is the identity.
  const bool drop = training_ && !cache && !drop_seeds_.empty();
  auto seed = [&](int64_t i) { return drop ? drop_seeds_[static_cast<size_t>(i)] : uint64_t{0}; };
  const float p_emb = drop ? static_cast<float>(c.emb_dropout) : 0.0f;

  embed(tokens, B, T, cb);
  // The image merge: its own step after the embedding, before the embedding dropout (§8).
  merge_vision(tokens, B, T, P, vision, cache ? vision_used.data() : nullptr);
  if (p_emb > 0) dropout_forward(a.encoded, a.encoded, N * C, p_emb, seed(0));
  const float* residual = a.encoded;  // [N, C]
  bool ln1_ready = false;  // the previous layer wrote this one's attention norm
  for (int64_t l = 0; l < L; ++l) {
    LayerActivations& la = a.layers[static_cast<size_t>(l)];
    ln1_ready = layer_forward(l, residual, la, B, S, P, cache, ln1_ready,
                              l + 1 < L ? &a.layers[static_cast<size_t>(l + 1)] : nullptr);
    residual = la.residual3;
  }

  // The head reads the token rows only: all of them, or each row's last (last_only).
  const int64_t HR = last_only ? B : NT;
  if (last_only) {
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(a.last_in + b * C, residual + (b * S + S - 1) * C, static_cast<size_t>(C) * sizeof(float));
    residual = a.last_in;
  } else if (K > 0) {
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(a.final_in + b * T * C, residual + (b * S + K) * C, static_cast<size_t>(T * C) * sizeof(float));
    residual = a.final_in;
  }
  if (layernorm)
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, w.norm_w, w.norm_b, HR, C, eps);
  else
    rmsnorm_forward(a.lnf, a.lnf_rstd, residual, w.norm_w, w.norm_b, HR, C, eps);
  if (classifier) {
    matmul_forward(a.logits, a.lnf, weights_.matrices().output, w.output_b, HR);
    if (c.logits_soft_cap > 0) softcap_forward(a.logits, a.logits, HR * V, static_cast<float>(c.logits_soft_cap));
  }

  if (cache) {
    std::memcpy(cache->doc_start(), doc_start.data(), static_cast<size_t>(B) * sizeof(int64_t));
    std::memcpy(cache->vision_used(), vision_used.data(), static_cast<size_t>(B) * sizeof(int64_t));
    if (!blockwise.empty()) std::copy(blockwise.begin(), blockwise.end(), cache->blockwise());
    if (P == 0) cache->set_cond_len(K);
    cache->advance(S);
  }
  return a.logits;
}

void Transformer::merge_vision(const int32_t* tokens, int64_t B, int64_t T, int64_t P, const VisionRow* vision,
                               int64_t* vision_used) {
  const ModelConfig& c = config();
  ActivationTensors& a = acts_;
  resolve_vision_places(a.vision, c, vision, tokens, B, T, P, vision_used);
  if (a.vision.count() > 0)  // no condition positions here (validate): token rows are the layer rows
    vision_merge_forward(a.encoded, a.vision_proj, a.vision, weights_.params().vision_projection, c.dim, c.vision_dim);
}

LossResult Transformer::loss(const int32_t* targets) const {
  if (!acts_.logits) fail(ErrorKind::Runtime, "internal: loss() without the logits of a forward (a training step keeps none)");
  if (acts_.last_only) fail(ErrorKind::Runtime, "internal: loss() after forward_last() (logits of the last positions only)");
  const int64_t N = acts_.B * acts_.T;
  const WeightedLoss w = crossentropy_weighted_mean(acts_.logits, targets, weights_.loss_weights(), N,
                                                    config().vocab_size, static_cast<int32_t>(config().pad_id));
  LossResult r;
  r.loss = w.loss;
  r.count = w.count;
  r.weight_sum = w.weight_sum;
  return r;
}

}  // namespace lm

namespace lm {

const float* Transformer::forward_steps(const int32_t* tokens, KVCache* const* caches, int64_t n) {
  const ModelConfig& c = config();
  if (n <= 0) fail_usage(cat("a batched decode step needs at least one sequence, got ", n));
  for (int64_t i = 0; i < n; ++i) {
    if (caches[i]->batch() != 1)
      fail_usage(cat("a batched decode step takes one cache per sequence (of one row), got one of ", caches[i]->batch()));
    for (int64_t j = 0; j < i; ++j)
      if (caches[j] == caches[i]) fail_usage(cat("a batched decode step got the same cache for sequences ", j, " and ", i));
    check_decode(nullptr, 1, *caches[i], nullptr);
  }
  const int64_t C = c.dim, V = c.vocab_size, L = c.n_layers, HS = c.head_size();
  const int64_t NH = c.n_heads, NKV = c.kv_heads(), QD = NH * HS, KD = NKV * HS;
  const float eps = static_cast<float>(c.norm_eps);
  const bool layernorm = c.norm_type == NormType::LayerNorm;
  check_token_ids(tokens, n, V);
  if (c.vision_dim > 0 && c.image_token_id >= 0)
    for (int64_t i = 0; i < n; ++i)
      if (tokens[i] == c.image_token_id)
        fail_usage(cat("sequence ", i, " of a batched decode step is an image place (token ", c.image_token_id,
                       "): image features go with the prompt"));
  const Bf16Matmuls::Scope compute(fresh_bf16_matmuls());
  const RowKernelScope rows;  // every row's numbers as in a one-row product
  ensure_activations(n, 0, 1, false, false, true);
  ActivationTensors& a = acts_;
  a.last_only = false;

  // Positions and spans per sequence, on copies of the caches' state (committed on success).
  std::vector<int64_t> P(static_cast<size_t>(n)), doc_start(static_cast<size_t>(n));
  std::vector<BlockwiseState> blockwise(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    KVCache& kv = *caches[i];
    P[i] = kv.length();
    doc_start[i] = kv.doc_start()[0];
    if (c.is_materium()) {  // set_positions for one row of one token
      blockwise[i] = kv.blockwise()[0];
      const int64_t cond = P[i] > 0 ? kv.cond_len() : 0;
      token_positions(&a.pos[i], tokens + i, 1, 1, cond, P[i] > 0 ? P[i] - cond : 0, c, &blockwise[i]);
    } else {
      a.pos[i] = P[i];
    }
    attention_spans(&a.key_lo[i], &a.key_hi[i], tokens + i, 1, 1, P[i], c.causal, c.doc_mask, c.eos_id,
                    &doc_start[i], c.doc_mask_boundary == DocMaskBoundary::Start);
    if (c.attn_chunk_size > 0) {
      a.chunk_key_lo[i] = a.key_lo[i];
      narrow_spans_to_chunks(&a.chunk_key_lo[i], 1, 1, P[i], c.attn_chunk_size);
    }
  }
  rope_tables(a.rope_cos, a.rope_sin, a.pos.data(), inv_freq_.data(), n, HS / 2, c.rope_scale_factor);
  if (a.attn_temp) temperature_scales(a.attn_temp, a.pos.data(), n, c.attn_floor_scale, c.attn_scale);

  embed(tokens, n, 1, nullptr);
  const ParameterTensors& w = weights_.params();
  auto norm = [&](float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias) {
    if (layernorm)
      layernorm_forward(out, mean, rstd, inp, weight, bias, n, C, eps);
    else
      rmsnorm_forward(out, rstd, inp, weight, bias, n, C, eps);
  };
  const float* residual = a.encoded;  // [n, C]
  for (int64_t l = 0; l < L; ++l) {
    LayerActivations& la = a.layers[static_cast<size_t>(l)];
    const LayerParams& lw = w.layers[static_cast<size_t>(l)];
    const LayerMatrices& lm = weights_.matrices().layers[static_cast<size_t>(l)];
    norm(la.ln1, la.ln1_mean, la.ln1_rstd, residual, lw.attention_norm_w, lw.attention_norm_b);
    matmul_forward_parts({{la.q, &lm.wq, lw.bq}, {la.k, &lm.wk, lw.bk}, {la.v, &lm.wv, lw.bv}}, la.ln1, n);
    position_qk(l, la, n);
    const int64_t* key_lo = layer_key_lo(l);
    for (int64_t i = 0; i < n; ++i) caches[i]->store(l, 0, P[i], la.kr + i * KD, la.v + i * KD, 1);
    // All sequences' attention in one region. A unit is one sequence's query heads of a group
    // of kv heads: all of them once there are as many sequences as threads, so that each unit
    // reads its cache's positions whole, front to back (one contiguous stream that the
    // hardware prefetcher follows), not one head's 256-byte slice every few KB. Each head's
    // numbers do not depend on the heads beside it: the one-token step's, bit for bit.
    const int64_t rep = NH / NKV;
    const int64_t groups = std::clamp<int64_t>((thread_count() + n - 1) / n, 1, NKV);
    parallel_chunks(n * groups, 1, [&](int64_t u0, int64_t u1) {
      thread_local std::vector<float> scratch;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t i = u / groups, g = u % groups;
        const int64_t h0 = NKV * g / groups * rep, h1 = NKV * (g + 1) / groups * rep;
        KVCache& kv = *caches[i];
        attention_one_query_heads(la.atty + i * QD, la.qr + i * QD, kv.layer(l), 0, key_lo[i], a.key_hi[i],
                                  kv.capacity(), NH, NKV, HS, h0, h1, scratch);
      }
    });
    matmul_forward(la.attproj, la.atty, lm.wo, lw.bo, n);
    add_residual(la.residual2, residual, la.attproj, n * C);
    norm(la.ln2, la.ln2_mean, la.ln2_rstd, la.residual2, lw.ffn_norm_w, lw.ffn_norm_b);
    ffn_forward(l, la, n);
    add_residual(la.residual3, la.residual2, la.fcproj, n * C);
    residual = la.residual3;
  }
  if (layernorm)
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, w.norm_w, w.norm_b, n, C, eps);
  else
    rmsnorm_forward(a.lnf, a.lnf_rstd, residual, w.norm_w, w.norm_b, n, C, eps);
  matmul_forward(a.logits, a.lnf, weights_.matrices().output, w.output_b, n);
  if (c.logits_soft_cap > 0) softcap_forward(a.logits, a.logits, n * V, static_cast<float>(c.logits_soft_cap));

  for (int64_t i = 0; i < n; ++i) {
    KVCache& kv = *caches[i];
    kv.doc_start()[0] = doc_start[i];
    if (c.is_materium()) kv.blockwise()[0] = blockwise[i];
    kv.advance(1);
  }
  return a.logits;
}

}  // namespace lm
