// The model's parameters: a table of named tensors built from a config (llm.c's
// ParameterTensors), views into one aligned float arena, loaded from and saved to
// safetensors checkpoints with Meta names (docs/checkpoint-format.md), or initialised
// randomly. Shape letters as in config.h: V vocab, C dim, L layers, NH/NKV query/kv
// heads, HS head size, F ffn hidden; E experts, Fe expert width (MoE layers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/rows.h"
#include "core/tensor.h"
#include "model/config.h"

namespace lm {

class SafeTensorsFile;
class SafeTensorsWriter;

// What a tensor is, independent of any naming scheme (Serde maps these to other layouts).
enum class ParamKind : uint8_t {
  TokEmbeddings,  // [V, C]
  VisionProjection,  // [C, Dv]  vision_dim > 0 (image features -> embeddings)
  AttnNormW,      // [C]
  AttnNormB,      // [C]        norm_bias
  Wq,             // [NH*HS, C]
  Bq,             // [NH*HS]    attn_bias
  Wk,             // [NKV*HS, C]
  Bk,             // [NKV*HS]   attn_bias
  Wv,             // [NKV*HS, C]
  Bv,             // [NKV*HS]   attn_bias
  Wo,             // [C, NH*HS]
  Bo,             // [C]        attn_bias
  QNormW,         // [HS]       qk_norm && qk_norm_weight, not on NoPE layers
  KNormW,         // [HS]       qk_norm && qk_norm_weight, not on NoPE layers
  FfnNormW,       // [C]
  FfnNormB,       // [C]        norm_bias
  W1,             // [F, C]     swiglu gate / gelu up
  B1,             // [F]        ffn_bias
  W2,             // [C, F]     down
  B2,             // [C]        ffn_bias
  W3,             // [F, C]     swiglu up
  B3,             // [F]        swiglu && ffn_bias
  Router,         // [E, C]     MoE layers (no bias); w1/w2/w3 above are absent there
  ExpertsW1,      // [E, Fe, C] MoE layers: each expert's gate, stacked
  ExpertsW2,      // [E, C, Fe] down
  ExpertsW3,      // [E, Fe, C] up
  SharedW1,       // [Fe, C]    MoE layers with moe.shared_expert
  SharedW2,       // [C, Fe]
  SharedW3,       // [Fe, C]
  NormW,          // [C]        final norm
  NormB,          // [C]        norm_bias
  Output,         // [V, C]     absent when tie_embeddings
  OutputB,        // [V]        output_bias
  // materium conditions (docs/materium.md); ParamInfo::condition is the condition's index.
  CondLinearW,    // [C, input_dim]      linear condition (no bias)
  CondEmbedding,  // [input_dim, C]      embedding condition (class table)
  CondCountEmb,   // [input_dim + 1, C]  formula: count table (row n for count n)
  CondMlpW1,      // [2C, C]             formula MLP in
  CondMlpB1,      // [2C]
  CondMlpW2,      // [C, 2C]             formula MLP out
  CondMlpB2,      // [C]
  CondMaskEmb,    // [C]                 every condition: the embedding of a null value
  TypeEmbeddings, // [N + 1, C]          with N >= 1 conditions: row 0 tokens, row i + 1 condition i
};

// The kinds the forward pass reads through ModelWeights::matrices() (which may be stored in
// types other than f32): token embeddings, attention and feed-forward projections, output.
bool param_is_matrix(ParamKind kind);

struct ParamInfo {
  std::string name;    // Meta name, e.g. "layers.0.attention.wq.weight"
  ParamKind kind;
  int64_t layer;       // -1 for tensors outside the layers
  Shape shape;
  int64_t numel;
  int64_t offset;      // in floats from the arena start; a multiple of 16 (64 bytes); in table
                       // order, except a bias-free SwiGLU layer's w3 right after its w1
  int64_t condition = -1;  // the condition's index for condition tensors, else -1
};

// Views of one layer's parameters; optional tensors are null when the config has none.
struct LayerParams {
  float* attention_norm_w = nullptr;  // [C]
  float* attention_norm_b = nullptr;  // [C]
  float* wq = nullptr;                // [NH*HS, C]
  float* bq = nullptr;                // [NH*HS]
  float* wk = nullptr;                // [NKV*HS, C]
  float* bk = nullptr;                // [NKV*HS]
  float* wv = nullptr;                // [NKV*HS, C]
  float* bv = nullptr;                // [NKV*HS]
  float* wo = nullptr;                // [C, NH*HS]
  float* bo = nullptr;                // [C]
  float* q_norm_w = nullptr;          // [HS]   (null on NoPE layers)
  float* k_norm_w = nullptr;          // [HS]
  float* ffn_norm_w = nullptr;        // [C]
  float* ffn_norm_b = nullptr;        // [C]
  float* w1 = nullptr;                // [F, C]
  float* b1 = nullptr;                // [F]
  float* w2 = nullptr;                // [C, F]
  float* b2 = nullptr;                // [C]
  float* w3 = nullptr;                // [F, C]
  float* b3 = nullptr;                // [F]
  // MoE layers instead of w1..b3 (docs/llama4.md §10).
  float* router = nullptr;            // [E, C]
  float* experts_w1 = nullptr;        // [E, Fe, C]
  float* experts_w2 = nullptr;        // [E, C, Fe]
  float* experts_w3 = nullptr;        // [E, Fe, C]
  float* shared_w1 = nullptr;         // [Fe, C]  with moe.shared_expert
  float* shared_w2 = nullptr;         // [C, Fe]
  float* shared_w3 = nullptr;         // [Fe, C]
};

// Views of one condition's parameters (the ones of its proj_layer_type; the others null).
struct ConditionParams {
  float* linear_w = nullptr;   // [C, input_dim]      linear
  float* embedding = nullptr;  // [input_dim, C]      embedding
  float* count_emb = nullptr;  // [input_dim + 1, C]  formula
  float* mlp_w1 = nullptr;     // [2C, C]             formula
  float* mlp_b1 = nullptr;     // [2C]
  float* mlp_w2 = nullptr;     // [C, 2C]
  float* mlp_b2 = nullptr;     // [C]
  float* mask_emb = nullptr;   // [C]
};

struct ParameterTensors {
  float* tok_embeddings = nullptr;  // [V, C]
  float* vision_projection = nullptr;  // [C, Dv]
  std::vector<LayerParams> layers;  // [L]
  float* norm_w = nullptr;          // [C]
  float* norm_b = nullptr;          // [C]
  float* output = nullptr;          // [V, C]; == tok_embeddings when tied
  float* output_b = nullptr;        // [V]
  std::vector<ConditionParams> conditions;  // [N], config order
  float* type_embeddings = nullptr;         // [N + 1, C] when N >= 1
};

// The table of a config's parameters, in checkpoint order (embeddings, layers, final norm, output,
// then materium's condition tensors and type embeddings).
class ParameterLayout {
 public:
  ParameterLayout() = default;
  explicit ParameterLayout(const ModelConfig& cfg);

  const std::vector<ParamInfo>& tensors() const { return tensors_; }
  const ParamInfo* find(const std::string& name) const;
  int64_t arena_floats() const { return arena_floats_; }  // with alignment padding
  int64_t num_parameters() const { return num_parameters_; }

  // Named views into an arena of arena_floats() floats laid out by this table.
  ParameterTensors bind(float* base) const;
  // Named views from one pointer per table entry (ptrs.size() == tensors().size()).
  ParameterTensors bind(const std::vector<float*>& ptrs) const;

 private:
  std::vector<ParamInfo> tensors_;
  int64_t arena_floats_ = 0;
  int64_t num_parameters_ = 0;
  int64_t n_layers_ = 0;
  int64_t n_conditions_ = 0;
  bool tied_ = false;
};

struct InitOptions {
  float std = 0.02f;             // normal(0, std) for embeddings and linear weights
  bool scaled_residual = true;   // GPT-2: wo and w2 get std / sqrt(2 L)
};

// The matrices the forward pass reads through the row kernel (core/rows.h), in their stored
// type: f32 views of the float tensors, or f16, bf16, q8_0, q4_0 rows kept as loaded (for
// inference: the point is fewer bytes per token).
struct LayerMatrices {
  WeightView wq, wk, wv, wo, w1, w2, w3;  // w3 empty (data null) without SwiGLU
};
struct ModelMatrices {
  WeightView tok_embeddings;  // [V, C]
  WeightView output;          // [V, C]; == tok_embeddings when tied
  std::vector<LayerMatrices> layers;
};

// One tensor as stored: a float32 tensor, or the rows of a matrix in another WeightType
// (`bytes` holds rows * weight_row_bytes(type, cols) bytes, rows back to back).
struct StoredTensor {
  WeightType type = WeightType::F32;
  Tensor bytes;
  bool to_arena = false;  // F32: copy into the arena (a converted tensor), not kept as a view
};

// The checkpoint metadata key that names the types of tensors stored as raw bytes (U8
// [rows, row bytes]): a JSON object {"<tensor name>": "q8_0" | "q4_0", ...} (docs/checkpoint-format.md).
inline constexpr const char* kWeightTypesMetadataKey = "lmkit.weight_types";

// A model's weights: the config, its layout, and float32 tensors that live either in the
// arena (initialised, converted from f16/bf16/unaligned data, or made writable) or
// straight in a checkpoint's mapping (aligned f32: no copy, read-only). For inference the
// matrices (token embeddings, attention and feed-forward projections, output) may instead be
// kept in their stored type (f16, bf16, q8_0, q4_0): their float views in params() are then
// null, matrices() has them, and training refuses such weights.
class ModelWeights {
 public:
  ModelWeights() = default;

  // Opens a checkpoint: config from the `lmkit.config` metadata (validated), tensors as
  // from_checkpoint. Data errors name the file and the tensor.
  static ModelWeights load(const std::string& path);
  // The tensors of `file` for `cfg`: every tensor of the layout must be present with its
  // exact shape and a float dtype (F32, F16, BF16), and no other tensor may be, except
  // "loss_weights" [V], which must be present exactly when cfg.loss_weights.
  // keep_types: F16/BF16 matrices and typed ones (kWeightTypesMetadataKey) stay as stored;
  // without, F16/BF16 are widened to f32 and typed tensors refused.
  static ModelWeights from_checkpoint(const SafeTensorsFile& file, const ModelConfig& cfg, bool keep_types = false);
  // Opens a checkpoint keeping the matrices' stored types (for inference).
  static ModelWeights load_typed(const std::string& path);
  // The tensors of the layout, in its order: F32 tensors of each entry's shape, or matrices
  // of another type (Data errors, starting with `where`, for wrong sizes or non-matrix kinds).
  static ModelWeights from_stored(const ModelConfig& cfg, std::vector<StoredTensor> tensors, const std::string& where);
  // The same weights with every matrix stored as `type` (f32 matrices quantized with ggml's
  // reference quantizers; other types decoded first). Norms, biases and tables stay f32.
  ModelWeights cast(WeightType type) const;
  // Random weights (InitOptions), norms 1, biases 0; deterministic for a seed.
  static ModelWeights random(const ModelConfig& cfg, uint64_t seed, const InitOptions& opts = {});

  // A writer holding every tensor (no copies) and the metadata format=pt, lmkit.config and,
  // when not empty, lmkit.tokenizer (JSON text, passed through as is).
  SafeTensorsWriter writer(const std::string& tokenizer_json = {}) const;
  // Atomic for files; "-" = stdout.
  void save(const std::string& path, const std::string& tokenizer_json = {}) const;

  const ModelConfig& config() const { return cfg_; }
  const ParameterLayout& layout() const { return layout_; }
  const ParameterTensors& params() const { return params_; }
  const ModelMatrices& matrices() const { return matrices_; }
  // True when every tensor is f32 (what training and the float views need).
  bool all_f32() const;
  // The type of table entry i, and the bytes it occupies as stored.
  WeightType type(size_t i) const { return types_.at(i); }
  int64_t stored_bytes(size_t i) const;
  // "f32", or the non-f32 types present, e.g. "q8_0" or "f16+q8_0".
  std::string types_summary() const;
  // The tokenizer spec found in the checkpoint (JSON text), "" when none.
  const std::string& tokenizer_json() const { return tokenizer_json_; }
  void set_tokenizer_json(std::string json) { tokenizer_json_ = std::move(json); }

  // Per-token-id loss weights [V] (model/loss_weights.h): present exactly when
  // config().loss_weights, null otherwise. Not a parameter: not trained, not in layout();
  // saved as the tensor "loss_weights" [V] F32. random() gives every id the weight 1.
  const float* loss_weights() const { return loss_weights_.raw() ? loss_weights_.data<float>() : nullptr; }
  // Sets them (checked with check_loss_weights; errors start with `where`) and turns
  // config().loss_weights on.
  void set_loss_weights(const std::vector<float>& w, const std::string& where);

  // Panels (core/panels.h) of the matrices that the row kernel reads (attention and feed-forward projections, the output;
  // the token embeddings only when they are the output), for inference: matrices() then
  // carries them, and every product on the row kernel computes from them, at any number of
  // rows (batch-1 and batched decode alike). A second copy of those matrices (the rows stay
  // for the GEMM path); copies of the weights share it. Without the panel kernels in this
  // build (AVX-512; bf16: AVX512_BF16; the block types: AVX512_VNNI), nothing. arena()
  // drops them (the weights may change).
  void add_panels();
  bool has_panels() const { return !panels_.empty(); }

  // True when every tensor lives in the arena (so it may be written, e.g. by an optimiser).
  bool writable() const { return mapped_.empty(); }
  // Copies every mapped tensor into the arena.
  void make_writable();
  // The arena, arena_floats() long, laid out by layout(); requires writable().
  float* arena();
  // A read-only view of table entry i (for writers and comparisons).
  Tensor tensor(size_t i) const;

 private:
  void allocate_arena();
  void rebind();
  WeightView view(size_t i) const;
  void require_f32(const char* what) const;

  ModelConfig cfg_;
  ParameterLayout layout_;
  Tensor arena_;                  // owning, 64-byte aligned; undefined when all tensors are mapped
  std::vector<float*> ptrs_;      // one per layout entry
  std::vector<Tensor> mapped_;    // keeps the mapping alive while any entry points into it
  ParameterTensors params_;
  std::vector<WeightType> types_;    // one per layout entry
  std::vector<StoredTensor> typed_;  // one per layout entry; bytes of the non-f32 ones
  ModelMatrices matrices_;
  std::vector<std::shared_ptr<const WeightPanels>> panels_;  // one per layout entry (add_panels), or empty
  std::string tokenizer_json_;
  Tensor loss_weights_;           // [V] F32 when cfg_.loss_weights
};

}  // namespace lm
