// The decoder transformer: embeddings, L pre-norm blocks (attention, feed-forward), final
// norm, classifier, optional soft cap; a batched forward over [B, T] and incremental decode
// with a KV cache (evaluation: dropout is the identity), and a training step (forward with
// dropout, loss, hand-written backward into a gradient arena). materium's models (conditions,
// block-wise positions: docs/materium.md) run K condition positions before the T tokens of a
// row through the layers; the classifier and the loss see the tokens only. Llama 4 style
// attention (docs/llama4.md §1-§4): NoPE layers, chunked local attention on RoPE layers,
// temperature tuning on NoPE layers; image features over the token embeddings (§8, model/vision.h).
// Shape letters: B batch, T tokens, K condition positions, S = K + T positions per row, C dim,
// V vocab, L layers, NH/NKV heads, HS head size, F ffn.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "model/conditions.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/loss.h"
#include "model/matmul.h"
#include "model/moe.h"
#include "model/params.h"
#include "model/vision.h"

namespace lm {

// One layer's activations of a forward over N = B*S rows (what a backward pass reads).
struct LayerActivations {
  float* ln1 = nullptr;        // [N, C]   attention_norm output
  float* ln1_mean = nullptr;   // [N]      (layernorm)
  float* ln1_rstd = nullptr;   // [N]
  float* q = nullptr;          // [N, NH*HS]  projections (+ bias), one block: k = q + N*NH*HS,
  float* k = nullptr;          // [N, NKV*HS] v = k + N*NKV*HS. Where the layer runs q/k/v as one
  float* v = nullptr;          // [N, NKV*HS] GEMM (Transformer::fused_qkv) the block is instead
                               //             [N, (NH + 2 NKV) HS], row n = q_n k_n v_n: q, k and
                               //             v point at row 0's parts, each row NH*HS+2*NKV*HS apart
  float* q_rstd = nullptr;     // [N, NH]   qk_norm statistics
  float* k_rstd = nullptr;     // [N, NKV]
  float* qr = nullptr;         // [N, NH*HS]  q after QK-norm and RoPE (NoPE layers: q, times the
                               //             temperature scale when attn_temperature_tuning)
  float* kr = nullptr;         // [N, NKV*HS] k after QK-norm and RoPE (NoPE layers: k)
  float* att = nullptr;        // [B, NH, S, S] probabilities; null unless activations are kept
  float* atty = nullptr;       // [N, NH*HS]  attention output before wo
  float* attproj = nullptr;    // [N, C]
  float* residual2 = nullptr;  // [N, C]   residual after attention
  float* ln2 = nullptr;        // [N, C]   ffn_norm output
  float* ln2_mean = nullptr;   // [N]
  float* ln2_rstd = nullptr;   // [N]
  float* fch = nullptr;        // [N, F]   w1 output (swiglu gate / gelu input)   dense layers
  float* fch3 = nullptr;       // [N, F]   w3 output (swiglu up)
  float* fch_act = nullptr;    // [N, F]   silu(fch) * fch3, or gelu(fch)
  MoEActivations moe;          //          MoE layers (model/moe.h)
  float* fcproj = nullptr;     // [N, C]   the feed-forward output
  float* residual3 = nullptr;  // [N, C]   the layer's output
};

// Views into one arena for a forward over [B, T] tokens after K condition positions per row
// (S = K + T rows per batch row in the layers, N = B*S; the head runs on the B*T token rows).
// With keep_layers every layer has its own buffers (llm.c's ActivationTensors, for backward);
// without, the layers share one set.
struct ActivationTensors {
  int64_t B = 0, T = 0, K = 0;
  bool keep_layers = false;
  bool checkpointed = false;            // gradient checkpointing: layers share one set except
                                        // residual3 (each layer's output), recomputed in backward
  float* encoded = nullptr;             // [N, C] embeddings (conditions, tokens, + type embeddings)
  std::vector<LayerActivations> layers;  // [L]
  // The head (final norm, classifier) runs on every token row, or with last_only on each
  // row's last position alone (B rows; generation's prefill needs no more): lnf, lnf_mean,
  // lnf_rstd and logits then hold B rows. head_all_rows says what they are sized for.
  bool head_all_rows = true;
  bool last_only = false;               // what the last forward computed
  float* final_in = nullptr;            // [B*T, C] the last layer's output at the token rows (K > 0 only)
  float* last_in = nullptr;             // [B, C] the last layer's output at each row's last position
  float* lnf = nullptr;                 // [B*T, C] final-norm output of the tokens (the hidden states)
  float* lnf_mean = nullptr;            // [B*T]
  float* lnf_rstd = nullptr;            // [B*T]
  float* logits = nullptr;              // [B*T, V]  after the soft cap; null after a training step,
                                        // whose classifier runs in chunks of rows (classifier_crossentropy)
  float* rope_cos = nullptr;            // [N, HS/2]
  float* rope_sin = nullptr;            // [N, HS/2]
  float* attn_temp = nullptr;           // [N] temperature tuning's query scale s(pos) (NoPE layers)
  std::vector<int64_t> pos;             // [N] positions used
  std::vector<int64_t> key_lo, key_hi;  // [N] attention spans of global layers (attention_spans)
  std::vector<int64_t> chunk_key_lo;    // [N] chunked layers' span starts (key_hi as is); empty without chunks
  VisionPlaces vision;                  // the image places of this forward and their features
  float* vision_proj = nullptr;         // [B*T, C] scratch of the vision merge (vision_dim > 0)
  Tensor arena;
  Tensor logits_arena;                  // logits' storage, kept when the arena is planned again
};

// ---- Training ----
//
// What train_step needs beyond the batch.
struct TrainStepOptions {
  // Dropout masks and SIGReg projections are drawn from this generator (required when the
  // config has dropout, attn_dropout or emb_dropout > 0 or sigreg.enabled, unless
  // sigreg_noise is given). Drawing order per step, so a run is reproducible bit for bit:
  //   1. when any dropout probability is > 0: 1 + 3 L values of rng.next_u64(), the seeds of
  //      the embedding dropout, then per layer: attention probabilities, attention residual,
  //      feed-forward residual (every seed is drawn even when its probability is 0); each
  //      mask element is then a pure function of (seed, element index) (dropout.h), so the
  //      masks do not depend on the thread count;
  //   2. when sigreg.enabled and sigreg_noise is null: C * S values of rng.normal(), the
  //      noise [C, S] in row-major order (sigreg.h).
  Rng* rng = nullptr;
  // [V] weight per target token id (config.loss_weights, materium; a model's own are
  // weights().loss_weights(), which the trainer passes here); null = every weight 1.
  // loss = sum_n w[t_n] ce_n / sum_n w[t_n] over targets t_n != pad_id.
  const float* loss_weights = nullptr;
  // [C, S] explicit SIGReg noise (not yet column-normalised), e.g. to match PyTorch; null = draw.
  const float* sigreg_noise = nullptr;
  // materium: the batch's condition values (made for this model and B rows); null = every
  // condition dropped (K = 0). Their parameters get gradients; a dropped condition's none.
  const ConditionBatch* conditions = nullptr;
  // [B] image features per row (model/vision.h), or null: none.
  const VisionRow* vision = nullptr;
  // Gradients are of grad_scale * loss (e.g. 1 / micro_steps for gradient accumulation).
  float grad_scale = 1.0f;
};

struct TrainStepResult {
  double loss = 0;        // ce + sigreg.coefficient * sigreg + moe.aux_loss_coef * moe_aux (what the
                          // gradients are of, before grad_scale)
  double ce = 0;          // mean (or loss-weighted mean) cross-entropy over targets != pad_id
  double sigreg = 0;      // the SIGReg statistic (0 when disabled)
  double moe_aux = 0;     // mean load-balancing loss of the MoE layers (docs/llama4.md §6; 0 without MoE),
                          // computed whatever moe.aux_loss_coef is
  int64_t count = 0;      // targets that count (!= pad_id)
  double weight_sum = 0;  // sum of their loss weights (== count without loss_weights)
};

class Transformer {
 public:
  // Validates the config and refuses (Unsupported, "... is not supported yet") features
  // this build does not implement.
  explicit Transformer(ModelWeights weights);

  const ModelConfig& config() const { return weights_.config(); }
  const ModelWeights& weights() const { return weights_; }
  ModelWeights& weights() { return weights_; }

  // Keep every layer's activations (for a backward pass) instead of reusing one set.
  void set_keep_activations(bool keep) { keep_ = keep; }
  // Gradient checkpointing for train_step: keep only each layer's output and recompute the
  // layer's activations during the backward pass (one extra forward of the layers; the same
  // gradients bit for bit). Saves (L - 1) layers' activations, the attention probabilities
  // [B, NH, T, T] among them: activation_bytes() reports the arena.
  void set_gradient_checkpointing(bool on) { checkpoint_ = on; }
  int64_t activation_bytes() const { return static_cast<int64_t>(acts_.arena.nbytes()); }

  // The matmuls' operand type: DType::F32 (the default) or DType::BF16 (bf16 compute): every
  // linear's and the classifier's GEMMs, forward and backward, take bfloat16 operands (rounded
  // to nearest even) and accumulate in f32 (matmul.h's Bf16Matmuls): the weights through bf16
  // copies of every tensor of two or more dimensions (2 bytes per parameter, rounded again
  // after weights_changed()), the activations rounded per matmul. Everything else (embedding
  // lookups, norms, RoPE, attention's products and softmax, the loss, every gradient and
  // reduction) stays f32, and so does the fused one-token attention step of KV-cache decode's
  // projections (issue 15 owns bf16 decode: in bf16 compute decode takes the batched path).
  // Other types are a Usage error. The F32 path is unchanged bit for bit.
  void set_compute_dtype(DType dtype);
  DType compute_dtype() const { return bf16_ ? DType::BF16 : DType::F32; }
  // Call after changing weights() in place (an optimizer step) or moving their storage
  // (make_writable): bf16 compute rounds its weight copies again before the next pass.
  void weights_changed() { bf16_stale_ = true; }
  const Bf16Matmuls* bf16_matmuls() const { return bf16_.get(); }
  const ActivationTensors& activations() const { return acts_; }

  // Logits [B, T, V] of tokens [B, T] at positions pos [B, T] (null: 0..T-1), T <= max_seq_len.
  // The result points into activations() and stays valid until the next forward.
  // materium (config.is_materium()): `conditions` (for B rows; null: all dropped) put their K
  // positions before the tokens (K + T <= max_seq_len), and the model computes every position
  // id (docs/materium.md: conditions 0..K-1, tokens K + j or block-wise), so pos must be null
  // (a Usage error otherwise). A [LATTICE] before any [ATOMS] of its row is a Data error.
  // vision: [B] rows of image features (null: none), each used whole (model/vision.h).
  const float* forward(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T,
                       const ConditionBatch* conditions = nullptr, const VisionRow* vision = nullptr);

  // Incremental decode: appends T tokens per row (B = cache.batch()) at positions pos [B, T]
  // (null: cache.length() + t) to `cache` and returns their logits [B, T, V]. Gives the same
  // logits as the full forward over the whole sequence. Causal models only; a Usage error
  // when the cache would pass its capacity. materium: the condition values go with the first
  // call on an empty cache (the prefill), whose K positions become the cache's first (null:
  // unconditional); later calls continue the rows' position ids (block-wise state included).
  // vision: [B] rows of the whole sequences' image features (the same rows on every call);
  // each call takes the features of the image places it holds (given places: those among its
  // slots; image_token_id: the next ones, counted by the cache), so decode equals the full
  // forward with the same rows.
  const float* forward(const int32_t* tokens, const int64_t* pos, int64_t T, KVCache& cache,
                       const ConditionBatch* conditions = nullptr, const VisionRow* vision = nullptr);
  // Prefill: as the decode forward above, but the head runs on each row's last position only
  // and the result is its logits [B, V] (the classifier on B rows instead of B*T; the same
  // values as the last row of the full forward's logits). hidden() then holds those B rows.
  const float* forward_last(const int32_t* tokens, const int64_t* pos, int64_t T, KVCache& cache,
                            const ConditionBatch* conditions = nullptr, const VisionRow* vision = nullptr);
  // The same without a cache (a batched forward over [B, T]): logits [B, V] of each row's last position.
  const float* forward_last(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T,
                            const ConditionBatch* conditions = nullptr, const VisionRow* vision = nullptr);
  // One token per row: logits [B, V].
  const float* forward_step(const int32_t* tokens, const int64_t* pos, KVCache& cache) {
    return forward(tokens, pos, 1, cache);
  }
  // Batched decode of independent sequences (continuous batching): one token each, tokens [n],
  // sequence i in caches[i] (a cache of one row; the caches may hold different lengths and
  // must be distinct). Returns logits [n, V]. Every linear runs once over the n rows through
  // the row kernel (RowKernelScope: the weights are read once for all rows, and each row's
  // numbers are those of a one-row product), attention runs per sequence over its own cache,
  // so row i equals forward_step on caches[i] alone, bit for bit, in f32 compute. No image
  // places (image_token_id: a Usage error; image features go with the prompt) and no
  // conditions (they go with the prefill). Usage errors as forward's; on error no cache changes.
  const float* forward_steps(const int32_t* tokens, KVCache* const* caches, int64_t n);
  // A cache for this model: `batch` rows of `capacity` positions (<= 0: max_seq_len), of
  // kv_dtype()'s elements.
  KVCache make_cache(int64_t batch, int64_t capacity = 0) const {
    return KVCache(config(), batch, capacity, kv_dtype_);
  }
  // The element type of the caches make_cache gives: F32 (the default), BF16 or F16 (a Usage
  // error otherwise). Every reader widens to f32: only the stored values' rounding differs.
  void set_kv_dtype(DType dtype);
  DType kv_dtype() const { return kv_dtype_; }
  // The cache type that goes with the weights (the programs' --kv-dtype auto), by the
  // attention's key projection: F32 for f32 (exact), BF16 for bf16 (a model run in that type
  // keeps its cache in it, as PyTorch does), F16 for f16 and the quantized types (llama.cpp's
  // default cache: their activations are already rounded to int8 blocks).
  DType weights_kv_dtype() const;

  // The final-norm output [B, T, C] of the last forward's token positions (materium's
  // return_hidden_states without the condition positions), [B, C] after forward_last; valid
  // until the next forward.
  const float* hidden() const { return acts_.lnf; }

  // Mean cross-entropy of the last forward's logits against targets [B, T], ignoring pad_id;
  // the loss-weighted mean (weight_sum = the counted targets' weights) when the model carries
  // loss weights (weights().loss_weights(), config loss_weights). A Runtime error after forward_last.
  LossResult loss(const int32_t* targets) const;

  // One training step over tokens, targets [B, T] at positions pos [B, T] (null: 0..T-1;
  // materium: null, and the conditions in TrainStepOptions, as forward):
  // forward with dropout (TrainStepOptions::rng), loss (cross-entropy ignoring pad_id,
  // optionally loss-weighted, + sigreg.coefficient * SIGReg of the final-norm output when
  // sigreg.enabled), and the backward pass. The gradients of grad_scale * loss with respect
  // to every parameter are ACCUMULATED (+=) into `grads`: views of a float arena of
  // weights().layout().arena_floats() floats bound with weights().layout().bind(arena), which
  // the caller zeroes (one memset) before the first micro-step. Tied embeddings: grads.output
  // aliases grads.tok_embeddings and receives both contributions. Keeps every layer's
  // activations during the step (whatever set_keep_activations says; an evaluation forward
  // of another shape in between reallocates them); activations() stays valid afterwards,
  // except logits: the step runs the classifier, the cross-entropy and their backward over
  // chunks of rows (classifier_crossentropy, model/loss.h) and never stores the [B*T, V]
  // logits, so activations().logits is null after it (a forward computes them). Not
  // thread-safe; the kernels use OpenMP.
  // With set_gradient_checkpointing(true) the layers are recomputed during the backward pass.
  TrainStepResult train_step(const ParameterTensors& grads, const int32_t* tokens, const int64_t* pos,
                             const int32_t* targets, int64_t B, int64_t T, const TrainStepOptions& opt = {});

  // Row-parallel training steps (off by default): train_step splits the batch's B rows into
  // min(B, thread_count()) parts and runs each part's whole step (forward, loss, backward) on
  // one thread at once, on single-threaded kernels, each part in a replica of this model that
  // shares its weights; the parts' gradients are then summed into `grads`. The loss and the
  // gradients are the plain step's up to the order of float sums (each part's gradient is
  // scaled by the whole batch's target weight). For small shapes, where a kernel's work is
  // too short to pay for a fork/join across threads (about 40 us each under passive OpenMP
  // waiting on this machine; a step runs hundreds). Steps it cannot split run as before:
  // B < 2, one thread, bf16 compute, dropout, SIGReg, MoE layers, conditions or images.
  // activations() then hold the first part's rows only. Costs a second activation arena per
  // part and one gradient arena per extra part.
  void set_row_parallel(bool on) { row_parallel_ = on; }
  // Rows per chunk of the training step's fused classifier and cross-entropy
  // (classifier_crossentropy, model/loss.h); 0 (the default): classifier_chunk_rows, measured.
  // The gradients are the same up to the order of the classifier gradient's sums over rows.
  void set_classifier_chunk(int64_t rows) { classifier_chunk_ = rows > 0 ? rows : 0; }
  // The chunk a step over NT token rows uses: min(NT, the setting or classifier_chunk_rows).
  int64_t classifier_chunk(int64_t NT) const;
  // Whether layer l's q, k, v projections of N rows without a cache run as one GEMM over the
  // stacked [wq; wk; wv] (their f32 tensors adjacent in memory, as the parameter arena lays
  // them out; no biases, no QK-norm, a RoPE layer, f32 compute, not the few-rows kernel): the
  // forward writes one [N, NH*HS + 2 NKV*HS] block that RoPE and attention read in place, and
  // the backward runs two GEMMs instead of six. The forward and the backward of a step decide
  // alike (same weights, same N). Off with set_fused_projections(false).
  bool fused_qkv(int64_t l, int64_t N) const;
  // Whether layer l's SwiGLU gate and up projections of N rows run as one GEMM over the
  // stacked [w1; w3] (adjacent f32 tensors: the arena puts a bias-free layer's w3 right after
  // its w1; a dense layer, f32 compute, not the few-rows kernel): one [N, 2F] block, gate and
  // up side by side in each row, forward; two GEMMs instead of four backward.
  bool fused_w13(int64_t l, int64_t N) const;
  // The fused projections on (the default) or off (three GEMMs each way, as before): the
  // tests hold the fused step to the unfused one with this.
  void set_fused_projections(bool on) { fused_projections_ = on; }
  bool row_parallel() const { return row_parallel_; }
  // Whether a train_step over B rows with these options would run row-parallel.
  bool row_parallel_applies(int64_t B, const TrainStepOptions& opt) const;
  // What lm-train and lm-bench choose: on for models below 32M parameters (measured, 2
  // threads: +40% tokens/s at nanoGPT's baby shape, 0.9M parameters, and +10% at stories15M;
  // nothing measurable at stories110M, where every matmul is large enough to thread well and
  // the extra gradient arena would cost 440 MB).
  static bool row_parallel_pays(const ModelConfig& cfg);

 private:
  // classifier false (the training step): the head stops at the final norm (a.lnf), no logits.
  const float* run(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T, KVCache* cache,
                   const ConditionBatch* cb, const VisionRow* vision, bool last_only = false, bool classifier = true);
  // forward()'s checks (without a cache; with one) before run.
  void check_forward(const int64_t* pos, int64_t B, int64_t T, const ConditionBatch* conditions) const;
  void check_decode(const int64_t* pos, int64_t T, const KVCache& cache, const ConditionBatch* conditions) const;
  // Usage errors for inputs that do not fit the model (materium: explicit positions, condition values).
  void check_inputs(const int64_t* pos, int64_t B, const ConditionBatch* cb) const;
  // head_all_rows false: the head's buffers for each row's last position only (forward_last).
  // logits false: no logits (a.logits null; their storage, if any, is kept for later forwards).
  void ensure_activations(int64_t B, int64_t K, int64_t T, bool keep, bool checkpoint = false,
                          bool head_all_rows = true, bool logits = true);
  // a.pos [B, S] of this call: K condition positions and T tokens after P cached positions.
  void set_positions(const int32_t* tokens, const int64_t* pos, int64_t B, int64_t T, int64_t K, KVCache* cache,
                     std::vector<BlockwiseState>& blockwise);
  // The input of the first layer, a.encoded [B, S, C]: the condition prologue (K positions per
  // row, config order) and the token embeddings, plus the type embeddings when the model has
  // conditions (also when all are dropped); its backward is embed_backward.
  void embed(const int32_t* tokens, int64_t B, int64_t T, const ConditionBatch* cb);
  void embed_backward(const ParameterTensors& grads, const float* dx, const int32_t* tokens, int64_t B, int64_t T,
                      const ConditionBatch* cb);
  // The image features written over their places in a.encoded (after embed; no conditions):
  // a.vision resolved from `vision` (vision_used: the cache's per-row count of features taken
  // by image_token_id places, advanced; null for a full forward), then the projection.
  void merge_vision(const int32_t* tokens, int64_t B, int64_t T, int64_t P, const VisionRow* vision,
                    int64_t* vision_used);
  // The key span starts of layer l's queries: chunked or global (attention.h).
  const int64_t* layer_key_lo(int64_t l) const;
  // q, k -> qr, kr of layer l over N rows: QK-norm and RoPE on RoPE layers; on NoPE layers
  // neither, and the temperature scale on q when attn_temperature_tuning.
  void position_qk(int64_t l, LayerActivations& la, int64_t N);

  // One block (attention, feed-forward) of layer l over [B, T] from its input `residual` into la.
  // ln1_ready: la.ln1 (and its statistics) already hold the attention norm of `residual` (the
  // previous layer wrote them). next: the next layer's activations, whose attention norm this
  // layer then writes as it adds its output to the residual (one pass), when it can (RMSNorm,
  // no residual dropout). Returns whether it did.
  bool layer_forward(int64_t l, const float* residual, LayerActivations& la, int64_t B, int64_t T, int64_t P,
                     KVCache* cache, bool ln1_ready = false, LayerActivations* next = nullptr);
  // The feed-forward block of layer l over N rows (la.ln2 -> la.fcproj): the dense FFN, or the
  // mixture of experts on MoE layers (whose balance loss a training forward records).
  void ffn_forward(int64_t l, LayerActivations& la, int64_t N);
  // Decode of one token (B = T = 1): layer l's projections, QK-norm, RoPE (or NoPE and the
  // temperature scale), cache append and attention over the layer's span in one parallel pass
  // over kv heads; la.atty gets the attention output.
  void attention_decode_step(int64_t l, LayerActivations& la, int64_t P, KVCache& cache);

  // train_step on this model's own rows; weight_norm > 0: the target weight the gradients are
  // normalised by (the whole batch's, when this is one part of a row-parallel step), else
  // the rows' own.
  TrainStepResult train_rows(const ParameterTensors& grads, const int32_t* tokens, const int64_t* pos,
                             const int32_t* targets, int64_t B, int64_t T, const TrainStepOptions& opt,
                             double weight_norm);
  TrainStepResult train_row_parallel(const ParameterTensors& grads, const int32_t* tokens, const int64_t* pos,
                                     const int32_t* targets, int64_t B, int64_t T, const TrainStepOptions& opt);
  // Gradients of the activations (sized by ensure_grad_buffers).
  void ensure_grad_buffers(int64_t B, int64_t S, int64_t T);
  // The bf16 matmuls with their weight copies up to date (null in f32 compute), for a Scope.
  Bf16Matmuls* fresh_bf16_matmuls();

  ModelWeights weights_;
  std::vector<double> inv_freq_;  // [HS/2]
  bool training_ = false;             // run() applies dropout (inside train_step only)
  bool checkpoint_ = false;
  std::vector<uint64_t> drop_seeds_;  // [1 + 3 L] this step's dropout seeds (empty: no dropout)
  std::vector<double> balance_;       // [L] a training forward's balance loss per MoE layer
  Tensor grad_arena_;                 // backward scratch: gradients of activations, SIGReg buffers
  int64_t grad_B_ = 0, grad_S_ = 0, grad_T_ = 0, grad_chunk_ = 0;
  int64_t classifier_chunk_ = 0;      // set_classifier_chunk
  bool fused_projections_ = true;     // set_fused_projections
  ConditionActivations cond_acts_;    // the condition prologue's saved activations
  std::vector<int32_t> types_;        // [S] type embedding row of each position (with conditions)
  bool keep_ = false;
  ActivationTensors acts_;
  std::unique_ptr<Bf16Matmuls> bf16_;  // bf16 compute (set_compute_dtype), else null
  bool row_parallel_ = false;
  struct RowPart {                       // one extra part of a row-parallel step
    std::unique_ptr<Transformer> model;  // shares weights_' storage
    Tensor grads;                        // its gradient arena, laid out as the weights
  };
  std::vector<RowPart> row_parts_;
  bool bf16_stale_ = false;            // the weights changed since the copies were made
  DType kv_dtype_ = DType::F32;        // set_kv_dtype
};

// What the model implements beyond a plain Llama/soma model (programs that run it pass this on).
Capabilities model_capabilities();
// Throws Unsupported for the first config feature the model does not implement yet.
void require_model_support(const ModelConfig& cfg);

// A MoE layer's tensors (or their gradients) in `p`.
MoEParams moe_params(const LayerParams& p);

}  // namespace lm
