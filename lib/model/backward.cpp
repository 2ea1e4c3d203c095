// Transformer::train_step: the training forward (dropout), the loss (cross-entropy ignoring
// PAD, optionally loss-weighted, + SIGReg) and the backward pass, layer by layer in reverse,
// each step the *_backward kernel beside its forward in the layer's file.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <vector>

#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"
#include "model/attention.h"
#include "model/dropout.h"
#include "model/embedding.h"
#include "model/ffn.h"
#include "model/matmul.h"
#include "model/norm.h"
#include "model/rope.h"
#include "model/sigreg.h"
#include "model/transformer.h"
#include "model/vision.h"

namespace lm {

namespace {

// Views of the backward scratch for B rows of S = K + T positions, T of them tokens (gradients
// of activations; "d" = dloss/d). N = B*S rows in the layers, NT = B*T token rows in the head.
struct GradBuffers {
  float* dlogits = nullptr;  // [min(NT, classifier_chunk_rows), V] one chunk's logits, then dlogits
  float* losses = nullptr;   // [NT]
  float* dres = nullptr;     // [N, C]  the residual stream
  float* dln = nullptr;      // [N, C]  a norm's output (the final norm's: [NT, C])
  float* dtok = nullptr;     // [NT, C] the final norm's input gradient at the token rows (K > 0)
  float* dproj = nullptr;    // [N, C]  a block output before residual dropout
  float* datty = nullptr;    // [N, NH*HS]
  float* dqr = nullptr;      // [N, NH*HS]
  float* dkr = nullptr;      // [N, NKV*HS]
  float* dqn = nullptr;      // [N, NH*HS]  (qk_norm)
  float* dkn = nullptr;      // [N, NKV*HS] (qk_norm)
  float* dq = nullptr;       // [N, NH*HS]
  float* dk = nullptr;       // [N, NKV*HS]
  float* dv = nullptr;       // [N, NKV*HS]
  float* dfch = nullptr;     // [N, F]
  float* dfch3 = nullptr;    // [N, F]
  float* dfact = nullptr;    // [N, F]
  float* sg_noise = nullptr; // [C, S]  SIGReg (when enabled)
  float* sg_A = nullptr;     // [C, S]
  float* sg_proj = nullptr;  // [NT, slices]
  float* sg_dproj = nullptr; // [NT, slices]
  float* sg_cmean = nullptr; // [NT, points]
  float* sg_smean = nullptr; // [NT, points]
  MoEScratch moe;            // MoE layers (model/moe.h)
};

// Lays the buffers out from `base` (null: only counts); returns the floats used.
int64_t layout_grad_buffers(GradBuffers& g, float* base, const ModelConfig& c, int64_t N, int64_t NT,
                            int64_t chunk) {
  const int64_t C = c.dim, V = c.vocab_size, QD = c.n_heads * c.head_size(), KD = c.kv_heads() * c.head_size();
  const int64_t F = c.ffn_hidden();
  bool any_moe = false, any_dense = false;
  for (int64_t l = 0; l < c.n_layers; ++l) (c.is_moe_layer(l) ? any_moe : any_dense) = true;
  int64_t off = 0;
  auto take_any = [&](void** slot, int64_t n) {  // 4-byte elements
    *slot = base ? base + off : nullptr;
    off += (n + 15) / 16 * 16;
  };
  auto take = [&](float*& slot, int64_t n) { take_any(reinterpret_cast<void**>(&slot), n); };
  take(g.dlogits, chunk * V);
  take(g.losses, NT);
  take(g.dres, N * C);
  take(g.dln, N * C);
  if (N != NT) take(g.dtok, NT * C);
  take(g.dproj, N * C);
  take(g.datty, N * QD);
  take(g.dqr, N * QD);
  take(g.dkr, N * KD);
  if (c.qk_norm) {
    take(g.dqn, N * QD);
    take(g.dkn, N * KD);
  }
  take(g.dq, N * (QD + 2 * KD));  // dk and dv follow in the same block: the fused q/k/v
  if (base) {                      // projection's gradient [N, QD + 2 KD] where it runs
    g.dk = g.dq + N * QD;
    g.dv = g.dk + N * KD;
  }
  if (any_dense) {
    const bool swiglu = c.ffn_type == FfnType::SwiGLU;
    take(g.dfch, (swiglu ? 2 : 1) * N * F);  // SwiGLU: dfch3 follows (the fused [N, 2F] gradient)
    if (base && swiglu) g.dfch3 = g.dfch + N * F;
    take(g.dfact, N * F);
  }
  if (any_moe)
    for (const auto& [slot, n] : moe_buffers(g.moe, moe_shape(c, N))) take_any(slot, n);
  if (c.sigreg.enabled) {
    const int64_t S = c.sigreg.slices, P = c.sigreg.points;
    take(g.sg_noise, C * S);
    take(g.sg_A, C * S);
    take(g.sg_proj, NT * S);
    take(g.sg_dproj, NT * S);
    take(g.sg_cmean, NT * P);
    take(g.sg_smean, NT * P);
  }
  return off;
}

void zero(float* p, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = 0;
}

}  // namespace

int64_t Transformer::classifier_chunk(int64_t NT) const {
  return std::max<int64_t>(
      1, std::min(NT, classifier_chunk_ > 0 ? classifier_chunk_ : classifier_chunk_rows(config().vocab_size)));
}

void Transformer::ensure_grad_buffers(int64_t B, int64_t S, int64_t T) {
  const int64_t chunk = classifier_chunk(B * T);
  if (grad_arena_.raw() && grad_B_ == B && grad_S_ == S && grad_T_ == T && grad_chunk_ == chunk) return;
  GradBuffers g;
  const int64_t n = layout_grad_buffers(g, nullptr, config(), B * S, B * T, chunk);
  grad_arena_ = Tensor();  // freed before the next is allocated
  grad_arena_ = Tensor::zeros(DType::F32, {n});
  grad_B_ = B;
  grad_S_ = S;
  grad_T_ = T;
  grad_chunk_ = chunk;
}

bool Transformer::row_parallel_applies(int64_t B, const TrainStepOptions& opt) const {
  const ModelConfig& c = config();
  bool any_moe = false;
  for (int64_t l = 0; l < c.n_layers; ++l) any_moe = any_moe || c.is_moe_layer(l);
  return row_parallel_ && B >= 2 && thread_count() >= 2 && !omp_in_parallel() && !bf16_ && !opt.conditions &&
         !opt.vision && !c.is_materium() && c.vision_dim == 0 && !c.sigreg.enabled && !any_moe && c.dropout <= 0 &&
         c.attn_dropout <= 0 && c.emb_dropout <= 0;
}

bool Transformer::row_parallel_pays(const ModelConfig& cfg) {
  return ParameterLayout(cfg).num_parameters() < (int64_t{32} << 20);
}

TrainStepResult Transformer::train_step(const ParameterTensors& grads, const int32_t* tokens, const int64_t* pos,
                                        const int32_t* targets, int64_t B, int64_t T, const TrainStepOptions& opt) {
  if (row_parallel_applies(B, opt) && T > 0) return train_row_parallel(grads, tokens, pos, targets, B, T, opt);
  return train_rows(grads, tokens, pos, targets, B, T, opt, 0.0);
}

TrainStepResult Transformer::train_row_parallel(const ParameterTensors& grads, const int32_t* tokens,
                                                const int64_t* pos, const int32_t* targets, int64_t B, int64_t T,
                                                const TrainStepOptions& opt) {
  const ModelConfig& c = config();
  check_token_ids(targets, B * T, c.vocab_size, "target");  // errors name the whole batch's index
  const int64_t parts = std::min<int64_t>(B, thread_count());
  const ParameterLayout& layout = weights_.layout();
  // The replicas view this model's weight storage; rebuilt when it moved (make_writable).
  const float* storage = weights_.params().tok_embeddings;
  if (static_cast<int64_t>(row_parts_.size()) != parts - 1 ||
      (!row_parts_.empty() && row_parts_[0].model->weights().params().tok_embeddings != storage)) {
    row_parts_.clear();
    for (int64_t i = 1; i < parts; ++i) {
      RowPart part;
      part.model = std::make_unique<Transformer>(weights_);
      part.grads = Tensor::zeros(DType::F32, {layout.arena_floats()});
      row_parts_.push_back(std::move(part));
    }
  }
  for (auto& part : row_parts_) {
    part.model->set_gradient_checkpointing(checkpoint_);
    part.model->set_classifier_chunk(classifier_chunk_);
    part.model->set_fused_projections(fused_projections_);
  }
  // Every part's gradients are normalised by the whole batch's target weight.
  const int32_t pad = static_cast<int32_t>(c.pad_id);
  double weight_total = 0;
  for (int64_t n = 0; n < B * T; ++n)
    if (!(pad >= 0 && targets[n] == pad)) weight_total += opt.loss_weights ? opt.loss_weights[targets[n]] : 1.0;
  std::vector<TrainStepResult> results(static_cast<size_t>(parts));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(parts));
#pragma omp parallel num_threads(static_cast<int>(parts))
  {
    const int64_t i = omp_get_thread_num();
    const int64_t b0 = B * i / parts, b1 = B * (i + 1) / parts;
    try {
      Transformer& m = i == 0 ? *this : *row_parts_[static_cast<size_t>(i - 1)].model;
      ParameterTensors views;
      if (i > 0) {
        Tensor& g = row_parts_[static_cast<size_t>(i - 1)].grads;
        std::memset(g.data_mut<float>(), 0, g.nbytes());
        views = layout.bind(g.data_mut<float>());
      }
      results[static_cast<size_t>(i)] = m.train_rows(i == 0 ? grads : views, tokens + b0 * T, pos ? pos + b0 * T : nullptr,
                                                     targets + b0 * T, b1 - b0, T, opt, weight_total);
    } catch (...) {
      errors[static_cast<size_t>(i)] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  // The parts' gradients into the caller's arena (entry by entry: grads are views of it).
  std::vector<const float*> sources;
  for (const auto& part : row_parts_) sources.push_back(part.grads.data<float>());
  const ParamInfo* emb = nullptr;
  for (const ParamInfo& p : layout.tensors())
    if (p.kind == ParamKind::TokEmbeddings) emb = &p;
  if (!emb) fail(ErrorKind::Runtime, "internal: no token embedding in the parameter layout");
  float* base = grads.tok_embeddings - emb->offset;
  // In blocks, one source at a time over a block (base + s1 + s2 ... per element, as before):
  // a loop over the sources per element stayed scalar.
  const int64_t n = layout.arena_floats();
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t lo = blk * kBlock, hi = std::min(n, lo + kBlock);
    for (const float* src : sources) {
#pragma omp simd
      for (int64_t j = lo; j < hi; ++j) base[j] += src[j];
    }
  }
  TrainStepResult r;
  double ce_sum = 0;
  for (const TrainStepResult& part : results) {
    r.count += part.count;
    r.weight_sum += part.weight_sum;
    ce_sum += part.ce * part.weight_sum;
  }
  r.ce = weight_total > 0 ? ce_sum / weight_total : 0.0;
  r.loss = r.ce;
  return r;
}

TrainStepResult Transformer::train_rows(const ParameterTensors& grads, const int32_t* tokens, const int64_t* pos,
                                        const int32_t* targets, int64_t B, int64_t T, const TrainStepOptions& opt,
                                        double weight_norm) {
  const ModelConfig& c = config();
  const ParameterTensors& w = weights_.params();
  if (B <= 0 || T <= 0) fail_usage(cat("train_step needs at least one token per row, got B=", B, ", T=", T));
  if (!weights_.all_f32())
    fail(ErrorKind::Unsupported, cat("train_step: the weights hold ", weights_.types_summary(),
                                     " matrices; training needs f32 weights"),
         "convert the checkpoint with lm-convert-checkpoint --cast f32");
  check_inputs(pos, B, opt.conditions);
  const ConditionBatch* cb = opt.conditions;
  const int64_t K = cb ? cb->positions() : 0, S = K + T;
  if (S > c.max_seq_len)
    fail_usage(K > 0 ? cat("sequence of ", K, " condition positions and ", T, " tokens exceeds max_seq_len (",
                           c.max_seq_len, ")")
                     : cat("sequence of ", T, " tokens exceeds max_seq_len (", c.max_seq_len, ")"));
  // N: rows through the layers (conditions and tokens); NT: token rows (head and loss).
  const int64_t N = B * S, NT = B * T, C = c.dim, V = c.vocab_size, L = c.n_layers;
  const int64_t NH = c.n_heads, NKV = c.kv_heads(), HS = c.head_size(), F = c.ffn_hidden();
  const int64_t QD = NH * HS, KD = NKV * HS;
  const bool layernorm = c.norm_type == NormType::LayerNorm;
  const bool swiglu = c.ffn_type == FfnType::SwiGLU;
  const int32_t pad = static_cast<int32_t>(c.pad_id);
  const bool any_drop = c.dropout > 0 || c.attn_dropout > 0 || c.emb_dropout > 0;
  if ((any_drop || (c.sigreg.enabled && !opt.sigreg_noise)) && !opt.rng)
    fail_usage("train_step: dropout and SIGReg need TrainStepOptions::rng");
  check_token_ids(targets, NT, V, "target");  // pad_id lies inside the vocabulary too
  const Bf16Matmuls::Scope compute(fresh_bf16_matmuls());  // bf16 compute, or f32 (null)

  // 1. Dropout seeds, then 2. the forward with dropout (documented order: transformer.h).
  drop_seeds_.clear();
  balance_.assign(static_cast<size_t>(L), 0.0);
  if (any_drop)
    for (int64_t i = 0; i < 1 + 3 * L; ++i) drop_seeds_.push_back(opt.rng->next_u64());
  struct TrainingMode {  // dropout on in run() and layer_forward() while the step runs
    bool& flag;
    explicit TrainingMode(bool& f) : flag(f) { flag = true; }
    ~TrainingMode() { flag = false; }
  } training_mode(training_);
  run(tokens, pos, B, T, nullptr, cb, opt.vision, false, /*classifier=*/false);  // the head's classifier: below
  ActivationTensors& a = acts_;

  ensure_grad_buffers(B, S, T);
  GradBuffers g;
  const int64_t chunk = classifier_chunk(NT);
  layout_grad_buffers(g, grad_arena_.data_mut<float>(), c, N, NT, chunk);

  // Loss: the counted targets' weights first (they scale every row's gradient), then the
  // classifier, the cross-entropy and their backward in one pass over chunks of rows (the
  // [NT, V] logits are never all stored): the final norm's output gradient into g.dln.
  TrainStepResult r;
  for (int64_t n = 0; n < NT; ++n) {
    if (pad >= 0 && targets[n] == pad) continue;
    ++r.count;
    r.weight_sum += opt.loss_weights ? opt.loss_weights[targets[n]] : 1.0;
  }
  const float scale = opt.grad_scale;
  classifier_crossentropy(g.dln, grads.output, grads.output_b, g.losses, g.dlogits, a.lnf, w.output, w.output_b,
                          targets, opt.loss_weights, weight_norm > 0 ? weight_norm : r.weight_sum, scale,
                          static_cast<float>(c.logits_soft_cap), NT, C, V, pad, chunk);
  double ce_sum = 0;
  for (int64_t n = 0; n < NT; ++n)
    if (!(pad >= 0 && targets[n] == pad)) ce_sum += (opt.loss_weights ? opt.loss_weights[targets[n]] : 1.0) * g.losses[n];
  r.ce = r.weight_sum > 0 ? ce_sum / r.weight_sum : 0.0;
  r.loss = r.ce;
  const int64_t slices = c.sigreg.slices;
  if (c.sigreg.enabled) {
    if (opt.sigreg_noise)
      std::memcpy(g.sg_noise, opt.sigreg_noise, static_cast<size_t>(C * slices) * sizeof(float));
    else
      sigreg_draw_noise(g.sg_noise, *opt.rng, C, slices);
    sigreg_projections(g.sg_A, g.sg_noise, C, slices);
    r.sigreg = sigreg_forward(g.sg_proj, g.sg_cmean, g.sg_smean, a.lnf, g.sg_A, NT, C, slices, c.sigreg);
    r.loss += c.sigreg.coefficient * r.sigreg;
  }
  // The load-balancing loss: the mean over the MoE layers of their balance losses (§6 of
  // docs/llama4.md), which the forward recorded.
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < L; ++l)
    if (c.is_moe_layer(l)) r.moe_aux += balance_[static_cast<size_t>(l)], ++moe_layers;
  if (moe_layers > 0) r.moe_aux /= static_cast<double>(moe_layers);
  if (c.moe.aux_loss_coef != 0) r.loss += c.moe.aux_loss_coef * r.moe_aux;
  // d(loss)/d(a layer's balance loss), times the gradient scale.
  const float aux_scale =
      moe_layers > 0 ? static_cast<float>(c.moe.aux_loss_coef / static_cast<double>(moe_layers)) * scale : 0.0f;

  // Backward: the classifier's (above) and SIGReg's gradients of the final norm's output.
  if (c.sigreg.enabled && c.sigreg.coefficient != 0)
    sigreg_backward(g.dln, g.sg_dproj, static_cast<float>(c.sigreg.coefficient) * scale, g.sg_proj, g.sg_cmean,
                    g.sg_smean, g.sg_A, NT, C, slices, c.sigreg);

  // Over n rows: the layers' N, or the final norm's NT.
  auto norm_backward = [&](float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                           const float* weight, const float* mean, const float* rstd, int64_t n = -1) {
    if (n < 0) n = N;
    if (layernorm)
      layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, n, C);
    else
      rmsnorm_backward(dinp, dweight, dbias, dout, inp, weight, rstd, n, C);
  };
  const float p_attn = drop_seeds_.empty() ? 0.0f : static_cast<float>(c.attn_dropout);
  const float p_res = drop_seeds_.empty() ? 0.0f : static_cast<float>(c.dropout);
  const float p_emb = drop_seeds_.empty() ? 0.0f : static_cast<float>(c.emb_dropout);
  auto seed = [&](int64_t i) { return drop_seeds_.empty() ? uint64_t{0} : drop_seeds_[static_cast<size_t>(i)]; };
  // The gradient of a block's output before its residual dropout (dres itself without dropout).
  auto through_dropout = [&](const float* d, uint64_t sd) -> const float* {
    if (p_res <= 0) return d;
    zero(g.dproj, N * C);
    dropout_backward(g.dproj, d, N * C, p_res, sd);
    return g.dproj;
  };

  const float* last = L > 0 ? a.layers[static_cast<size_t>(L - 1)].residual3 : a.encoded;
  zero(g.dres, N * C);
  if (K == 0) {
    norm_backward(g.dres, grads.norm_w, grads.norm_b, g.dln, last, w.norm_w, a.lnf_mean, a.lnf_rstd, NT);
  } else {  // the head read the token rows: their gradient goes back there, the condition rows get none
    zero(g.dtok, NT * C);
    norm_backward(g.dtok, grads.norm_w, grads.norm_b, g.dln, a.final_in, w.norm_w, a.lnf_mean, a.lnf_rstd, NT);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(g.dres + (b * S + K) * C, g.dtok + b * T * C, static_cast<size_t>(T * C) * sizeof(float));
  }

  for (int64_t l = L - 1; l >= 0; --l) {
    const LayerParams& lw = w.layers[static_cast<size_t>(l)];
    const LayerParams& lg = grads.layers[static_cast<size_t>(l)];
    const LayerActivations& la = a.layers[static_cast<size_t>(l)];
    const float* res_in = l > 0 ? a.layers[static_cast<size_t>(l - 1)].residual3 : a.encoded;
    // Checkpointing: recompute this layer's activations from its input (the last layer's are
    // still in the shared set from the forward).
    if (a.checkpointed && l < L - 1)
      layer_forward(l, res_in, a.layers[static_cast<size_t>(l)], B, S, 0, nullptr);

    // Feed-forward block: residual3 = residual2 + dropout(w2 act(w1 ln2 [, w3 ln2])), or the MoE.
    // The first product into each gradient buffer writes it (no zeroing pass before).
    const float* dfc = through_dropout(g.dres, seed(3 + 3 * l));
    if (c.is_moe_layer(l)) {
      zero(g.dln, N * C);
      moe_backward(g.dln, moe_params(lg), dfc, la.ln2, la.moe, moe_params(lw), moe_shape(c, N), aux_scale, g.moe);
    } else {
      matmul_backward(g.dfact, lg.w2, lg.b2, dfc, la.fch_act, lw.w2, N, F, C, false);
      if (fused_w13(l, N)) {  // the forward's one [w1; w3] GEMM: gradient rows dgate_n dup_n
        float* d13 = g.dfch;
        swiglu_backward_write_fused(d13, g.dfact, la.fch, N, F);
        sgemm(false, false, N, C, 2 * F, 1.0f, d13, 2 * F, lw.w1, C, 0.0f, g.dln, C);  // dln = d13 [w1; w3]
        if (lg.w3 == lg.w1 + F * C) {
          sgemm(true, false, 2 * F, C, N, 1.0f, d13, 2 * F, la.ln2, C, 1.0f, lg.w1, C);
        } else {
          sgemm(true, false, F, C, N, 1.0f, d13, 2 * F, la.ln2, C, 1.0f, lg.w1, C);
          sgemm(true, false, F, C, N, 1.0f, d13 + F, 2 * F, la.ln2, C, 1.0f, lg.w3, C);
        }
      } else if (swiglu) {
        swiglu_backward_write(g.dfch, g.dfch3, g.dfact, la.fch, la.fch3, N * F);
      } else {
        zero(g.dfch, N * F);
        gelu_backward(g.dfch, g.dfact, la.fch, N * F, c.gelu_approximate == GeluApprox::Tanh);
      }
      if (!fused_w13(l, N)) {
        matmul_backward(g.dln, lg.w1, lg.b1, g.dfch, la.ln2, lw.w1, N, C, F, false);
        if (swiglu) matmul_backward(g.dln, lg.w3, lg.b3, g.dfch3, la.ln2, lw.w3, N, C, F);
      }
    }
    norm_backward(g.dres, lg.ffn_norm_w, lg.ffn_norm_b, g.dln, la.residual2, lw.ffn_norm_w, la.ln2_mean, la.ln2_rstd);

    // Attention block: residual2 = res_in + dropout(wo attention(rope(qk_norm(wq ln1)), ...)).
    const float* dattn = through_dropout(g.dres, seed(2 + 3 * l));
    matmul_backward(g.datty, lg.wo, lg.bo, dattn, la.atty, lw.wo, N, QD, C, false);
    if (fused_qkv(l, N)) {  // the forward's one q/k/v GEMM: its gradient rows dq_n dk_n dv_n in one block
      const int64_t W = QD + 2 * KD;
      float* dqkv = g.dq;
      attention_backward(g.dqr, g.dkr, dqkv + QD + KD, g.datty, la.qr, la.kr, la.q + QD + KD, la.att, layer_key_lo(l),
                         a.key_hi.data(), B, S, NH, NKV, HS, p_attn, seed(1 + 3 * l), false, W);
      rope_qk_backward(dqkv, dqkv + QD, g.dqr, g.dkr, a.rope_cos, a.rope_sin, N, NH, NKV, HS, W);
      sgemm(false, false, N, C, W, 1.0f, dqkv, W, lw.wq, C, 0.0f, g.dln, C);  // dln = dqkv [wq; wk; wv]
      if (lg.wk == lg.wq + QD * C && lg.wv == lg.wk + KD * C) {  // the gradients' tensors adjacent too
        sgemm(true, false, W, C, N, 1.0f, dqkv, W, la.ln1, C, 1.0f, lg.wq, C);
      } else {
        sgemm(true, false, QD, C, N, 1.0f, dqkv, W, la.ln1, C, 1.0f, lg.wq, C);
        sgemm(true, false, KD, C, N, 1.0f, dqkv + QD, W, la.ln1, C, 1.0f, lg.wk, C);
        sgemm(true, false, KD, C, N, 1.0f, dqkv + QD + KD, W, la.ln1, C, 1.0f, lg.wv, C);
      }
      norm_backward(g.dres, lg.attention_norm_w, lg.attention_norm_b, g.dln, res_in, lw.attention_norm_w,
                    la.ln1_mean, la.ln1_rstd);
      continue;
    }
    attention_backward(g.dqr, g.dkr, g.dv, g.datty, la.qr, la.kr, la.v, la.att, layer_key_lo(l), a.key_hi.data(), B,
                       S, NH, NKV, HS, p_attn, seed(1 + 3 * l), false);
    // Back through position_qk to the projections' gradients dq_in, dk_in.
    const float* dq_in = g.dq;
    const float* dk_in = g.dk;
    if (c.is_nope_layer(l)) {  // qr = q (times the temperature scale), kr = k
      if (a.attn_temp) {
        zero(g.dq, N * QD);
        temperature_backward(g.dq, g.dqr, a.attn_temp, N, QD);
      } else {
        dq_in = g.dqr;
      }
      dk_in = g.dkr;
    } else if (c.qk_norm) {
      zero(g.dq, N * QD);
      zero(g.dk, N * KD);
      rope_qk_backward(g.dqn, g.dkn, g.dqr, g.dkr, a.rope_cos, a.rope_sin, N, NH, NKV, HS);
      rmsnorm_backward(g.dq, lg.q_norm_w, nullptr, g.dqn, la.q, lw.q_norm_w, la.q_rstd, N * NH, HS);
      rmsnorm_backward(g.dk, lg.k_norm_w, nullptr, g.dkn, la.k, lw.k_norm_w, la.k_rstd, N * NKV, HS);
    } else {
      rope_qk_backward(g.dq, g.dk, g.dqr, g.dkr, a.rope_cos, a.rope_sin, N, NH, NKV, HS);
    }
    matmul_backward(g.dln, lg.wq, lg.bq, dq_in, la.ln1, lw.wq, N, C, QD, false);
    matmul_backward(g.dln, lg.wk, lg.bk, dk_in, la.ln1, lw.wk, N, C, KD);
    matmul_backward(g.dln, lg.wv, lg.bv, g.dv, la.ln1, lw.wv, N, C, KD);
    norm_backward(g.dres, lg.attention_norm_w, lg.attention_norm_b, g.dln, res_in, lw.attention_norm_w, la.ln1_mean,
                  la.ln1_rstd);
  }

  // Embedding (through its dropout), then the image merge: the projection's gradient from the
  // image places, whose token embedding rows get none.
  float* demb = g.dres;
  if (p_emb > 0) {
    zero(g.dproj, N * C);
    dropout_backward(g.dproj, g.dres, N * C, p_emb, seed(0));
    demb = g.dproj;
  }
  vision_merge_backward(grads.vision_projection, demb, a.vision_proj, a.vision, C, c.vision_dim);
  embed_backward(grads, demb, tokens, B, T, cb);
  return r;
}

}  // namespace lm
