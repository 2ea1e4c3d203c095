// The model config: one superset that expresses every seed architecture (Llama 2/3,
// MobileLLM, soma-models V1, the xlstm-jax Llama, Llama 4 style MoE, materium's
// conditioned Llama). Every field has a default that gives a plain Llama; the JSON
// keys are exactly the field names below (nested structs as nested objects).
//
// Shape letters used across lib/model: B batch, T time, C dim, V vocab, L layers,
// NH query heads, NKV kv heads, HS head size, F ffn hidden size, E experts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lm {

// Enumerated config fields: parsed once from their JSON spelling at load (config_from_json,
// --set), compared as enums everywhere else. name_of() gives the JSON spelling back.
enum class NormType : uint8_t { RMSNorm, LayerNorm };            // "rmsnorm" | "layernorm"
enum class FfnType : uint8_t { SwiGLU, GELU };                   // "swiglu" | "gelu"
enum class GeluApprox : uint8_t { None, Tanh };                  // "none" (erf) | "tanh"
enum class RopeScalingType : uint8_t { None, Llama3, Linear };   // "none" | "llama3" | "linear"
enum class MoERouting : uint8_t { Sigmoid, Softmax };            // "sigmoid" (Llama 4) | "softmax" (Mixtral)
enum class DocMaskBoundary : uint8_t { End, Start };             // "end" | "start"
enum class RopeMode : uint8_t { Standard, Blockwise };           // "standard" | "blockwise"
enum class ProjLayerType : uint8_t { Linear, Embedding, Formula };  // "linear" | "embedding" | "formula"
const char* name_of(NormType v);
const char* name_of(FfnType v);
const char* name_of(GeluApprox v);
const char* name_of(RopeScalingType v);
const char* name_of(MoERouting v);
const char* name_of(DocMaskBoundary v);
const char* name_of(RopeMode v);
const char* name_of(ProjLayerType v);

// Llama 3.1 style frequency scaling of RoPE ("llama3"), or plain position interpolation ("linear").
struct RopeScaling {
  RopeScalingType type = RopeScalingType::None;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_seq_len = 8192;

  bool operator==(const RopeScaling&) const = default;
};

// soma-models V1 SIGReg regulariser on the embeddings (loss = CE + coefficient * SIGReg).
struct SigRegConfig {
  bool enabled = false;
  double t_max = 3.0;
  int64_t points = 17;
  int64_t slices = 256;
  double coefficient = 0.02;

  bool operator==(const SigRegConfig&) const = default;
};

// Mixture of experts on some layers (docs/llama4.md §5, §6). Router: a bias-free [E, C] linear;
// the top_k experts of each token run, each a bias-free SwiGLU FFN of width moe_hidden(); the
// shared expert (same width) runs on every token. MoE needs ffn_type swiglu and no ffn_bias.
struct MoEConfig {
  int64_t n_experts = 0;        // E; 0 = dense model
  int64_t top_k = 1;            // K
  int64_t hidden_dim = 0;       // Fe, the expert FFN width (0 = the dense F)
  bool shared_expert = false;   // an always-on expert added to the routed output
  int64_t interleave_step = 1;  // layer i is MoE when (i + 1) % interleave_step == 0
  // sigmoid: sigmoid(logit_e) scales expert e's input (Llama 4); softmax: the softmax over the
  // selected logits weights the experts' outputs (Mixtral).
  MoERouting routing = MoERouting::Sigmoid;
  double aux_loss_coef = 0;     // Switch-style load-balancing loss in the training objective (§6)

  bool operator==(const MoEConfig&) const = default;
};

// materium: a named condition whose value is embedded at positions prepended before the
// tokens (docs/materium.md; the JSON object has exactly these keys, the first three required).
//   linear:    input_dim floats x -> W x, W [C, input_dim] (no bias); one position
//   embedding: a class k < input_dim -> row k of an [input_dim, C] table; one position
//   formula:   up to positions() (element token id, count in 1..input_dim) pairs, one position
//              each: MLP(tok_embeddings[element] + count_table[count]) (unused slots: zeros)
// A null value (unknown for a record) puts the learned mask embedding at every position.
struct ConditionConfig {
  std::string name;          // [A-Za-z0-9_]+, not ending in "_mask"; names the tensors
  ProjLayerType proj_layer_type = ProjLayerType::Linear;
  int64_t input_dim = 0;
  int64_t out_dim = 0;       // 0 = dim; otherwise it must equal dim (materium's ConditionConfig field)
  int64_t max_elements = 0;  // formula: its positions (0 = input_dim); 0 for the other types

  // Positions the condition takes when present: 1, or a formula's slots.
  int64_t positions() const {
    return proj_layer_type != ProjLayerType::Formula ? 1 : max_elements > 0 ? max_elements : input_dim;
  }
  bool operator==(const ConditionConfig&) const = default;
};

struct ModelConfig {
  std::string name;  // preset or free-form label

  // Shape
  int64_t dim = 4096;         // C
  int64_t n_layers = 32;      // L
  int64_t n_heads = 32;       // NH
  int64_t n_kv_heads = 0;     // NKV; 0 = n_heads (MHA)
  int64_t head_dim = 0;       // HS; 0 = dim / n_heads
  int64_t vocab_size = 32000; // V
  int64_t hidden_dim = 0;     // F; 0 = derived from multiple_of / ffn_dim_multiplier as Meta does
  int64_t multiple_of = 256;
  double ffn_dim_multiplier = 0;  // 0 = unset (1.0)
  int64_t max_seq_len = 2048;

  // Layers
  NormType norm_type = NormType::RMSNorm;
  double norm_eps = 1e-5;
  bool norm_bias = false;             // LayerNorm with bias (soma V1)
  FfnType ffn_type = FfnType::SwiGLU;  // swiglu: w1 gate, w3 up, w2 down; gelu: two-layer
  GeluApprox gelu_approximate = GeluApprox::None;
  bool attn_bias = false;             // bias in q/k/v/o projections
  bool ffn_bias = false;              // bias in feed-forward projections
  bool qk_norm = false;               // RMSNorm over HS on q and k before RoPE (RoPE layers only)
  bool qk_norm_weight = true;         // the q/k norms carry a learnable [HS] scale each (shared by the
                                      // heads); false = Llama 4 / MobileLLM-R1's weightless L2 norm
                                      // (RoPE preserves the per-head norm, so before/after RoPE agree)
  bool tie_embeddings = false;
  bool output_bias = false;           // a [V] bias on the classifier (soma V1's predictor)
  bool causal = true;
  bool doc_mask = false;              // attention masked across document boundaries (EOS)
  DocMaskBoundary doc_mask_boundary = DocMaskBoundary::End;  // end: an EOS ends its document (lmkit);
                                      // start: an EOS starts the next one (xlstm-jax)
  double logits_soft_cap = 0;         // 0 = off; else cap * tanh(logits / cap)

  // Positions
  double rope_theta = 10000;          // soma's max_wavelength
  double rope_scale_factor = 1.0;     // positions divided by this (soma's scale_factor)
  RopeScaling rope_scaling;

  // Regularisation
  double dropout = 0;                 // residual dropout
  double attn_dropout = 0;
  double emb_dropout = 0;
  SigRegConfig sigreg;

  // Special tokens (-1 = none)
  int64_t bos_id = 1;
  int64_t eos_id = 2;
  int64_t pad_id = -1;
  std::vector<int64_t> extra_eos_ids;  // further ids that end a sequence as eos_id does, in generation
                                       // (Hugging Face's eos_token_id lists: Llama 3's <|eot_id|>, ...)
  // Whether `id` ends a generated sequence: eos_id or one of extra_eos_ids.
  bool is_eos(int64_t id) const;

  // Llama 4 style
  int64_t nope_layer_interval = 0;     // every N-th layer (i+1) % N == 0 has no RoPE and no QK-norm; 0 = off
  int64_t attn_chunk_size = 0;         // chunked local attention on RoPE layers (by place in the row); 0 = off
  bool attn_temperature_tuning = false;  // scale q on NoPE layers by log(floor((pos+1)/floor_scale)+1)*attn_scale+1
                                         // (no effect without NoPE layers)
  double attn_floor_scale = 8192;
  double attn_scale = 0.1;
  MoEConfig moe;
  int64_t vision_dim = 0;              // Dv: precomputed image features of this width, projected by
                                       // vision_projection [C, Dv] over the image places; 0 = off
  int64_t image_token_id = -1;         // the token whose places receive image features; -1 = the places
                                       // come with the input (VisionRow::places). docs/llama4.md §8

  // materium (docs/materium.md)
  std::vector<ConditionConfig> conditions;  // in order: the order of their positions and type rows
  RopeMode rope_mode = RopeMode::Standard;  // blockwise: ids cycle through atom_block_size values
                                       // strictly between the first [ATOMS] and the first [LATTICE]
  int64_t atoms_token_id = -1;
  int64_t lattice_token_id = -1;
  int64_t atom_block_size = 4;
  bool loss_weights = false;           // per-token-id loss weights

  // Derived sizes.
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t head_size() const { return head_dim > 0 ? head_dim : dim / n_heads; }
  int64_t ffn_hidden() const;  // hidden_dim, or Meta's round_up(int(m * int(8C/3)), multiple_of) for swiglu, 4C for gelu
  int64_t moe_hidden() const { return moe.hidden_dim > 0 ? moe.hidden_dim : ffn_hidden(); }
  bool is_moe_layer(int64_t layer) const;
  bool is_nope_layer(int64_t layer) const;
  // The attention span of a layer: attn_chunk_size on chunked (RoPE) layers, else 0 (unbounded).
  int64_t layer_chunk(int64_t layer) const { return attn_chunk_size > 0 && !is_nope_layer(layer) ? attn_chunk_size : 0; }
  // Condition positions of a batch where every condition is present (K at most).
  int64_t condition_positions() const;
  // Conditions or block-wise positions: the model computes its own position ids.
  bool is_materium() const { return !conditions.empty() || rope_mode == RopeMode::Blockwise; }

  bool operator==(const ModelConfig&) const = default;
};

// ---- JSON (keys = field names above; nested structs as nested objects) ----
//
// Errors are Data errors that start with the quoted `source` (a file name, or e.g. "preset 'x'"):
// unknown keys (with the closest known key as a hint), duplicate keys, wrong types naming the
// key ("'n_heads': expected an integer, got \"six\""), and non-object documents. Missing keys keep
// their defaults. The result is not validated: call validate().
ModelConfig config_from_json(const std::string& text, const std::string& source);
// The legacy key "block_pos_ids" (every checkpoint before rope_mode carries `false`) is read,
// never written: true means rope_mode "blockwise", false nothing; contradicting an explicit
// rope_mode is an error.
// Every field, resolved (nothing omitted), in declaration order; `indent` < 0 = one line.
std::string config_to_json(const ModelConfig& cfg, int indent = 2);
// Every settable key, dotted for nested fields ("rope_scaling.type"), in declaration order.
std::vector<std::string> config_keys();

// ---- Overrides: "key=value" (--set) ----
// Nested keys by dots; the value is parsed as JSON when it parses, else taken as a string
// ("norm_type=layernorm"). Unknown keys and wrong types are Usage errors.
void apply_override(ModelConfig& cfg, const std::string& assignment);
void apply_overrides(ModelConfig& cfg, const std::vector<std::string>& assignments);
// The key of an assignment ("rope_scaling.type=llama3" -> "rope_scaling.type").
std::string override_key(const std::string& assignment);

// ---- Validation ----
// Every problem, one message each, e.g. "n_heads (6) is not a multiple of n_kv_heads (4)".
std::vector<std::string> validation_errors(const ModelConfig& cfg);
// Throws a Data error "'source': <first problem>" (the others in the hint) when invalid.
void validate(const ModelConfig& cfg, const std::string& source);

// ---- Features a program can run ----
// What a program implements beyond a plain Llama/soma model. Programs pass what they run;
// unsupported_features() names each config feature outside that set, so a program refuses
// the config ("not supported yet") instead of silently ignoring part of it.
struct Capabilities {
  bool moe = false;                 // moe.n_experts > 0
  bool nope_layers = false;         // nope_layer_interval > 0
  bool chunked_attention = false;   // attn_chunk_size > 0
  bool temperature_tuning = false;  // attn_temperature_tuning
  bool vision = false;              // vision_dim > 0
  bool conditions = false;          // conditions non-empty
  bool blockwise_positions = false; // rope_mode blockwise

  static Capabilities none() { return {}; }
  static Capabilities all() { return {true, true, true, true, true, true, true}; }
};
// E.g. {"mixture of experts (moe.n_experts = 16)", "NoPE layers (nope_layer_interval = 4)"}.
std::vector<std::string> unsupported_features(const ModelConfig& cfg, const Capabilities& supported);
// Throws an Unsupported error "<program> does not support <feature> yet" for the first one.
void require_supported(const ModelConfig& cfg, const Capabilities& supported, const std::string& program);
// What the programs (lm-train, lm-eval-loss, lm-generate, lm-bench) run: everything the model
// does except what needs inputs beside the tokens that they do not read yet. materium's
// condition values come with --conditions (docs/materium.md). Vision models run
// (lm-eval-loss and lm-generate read image features with --vision, and run text only without
// it, docs/llama4.md §8); lm-train, which has no --vision, still refuses them.
Capabilities program_capabilities();

}  // namespace lm
