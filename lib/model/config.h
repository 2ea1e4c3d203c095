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

// Llama 3.1 style frequency scaling of RoPE ("llama3"), or plain position interpolation ("linear").
struct RopeScaling {
  std::string type = "none";  // "none" | "llama3" | "linear"
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_seq_len = 8192;
};

// soma-models V1 SIGReg regulariser on the embeddings (loss = CE + coefficient * SIGReg).
struct SigRegConfig {
  bool enabled = false;
  double t_max = 3.0;
  int64_t points = 17;
  int64_t slices = 256;
  double coefficient = 0.02;
};

// Llama 4 style mixture of experts on some layers.
struct MoEConfig {
  int64_t n_experts = 0;        // 0 = dense model
  int64_t top_k = 1;
  int64_t hidden_dim = 0;       // expert FFN size (0 = the dense F)
  bool shared_expert = false;   // an always-on expert added to the routed output
  int64_t interleave_step = 1;  // layer i is MoE when (i + 1) % interleave_step == 0
};

// materium: a named condition projected to C and prepended as an embedding.
struct ConditionConfig {
  std::string name;
  int64_t dim = 0;
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
  std::string norm_type = "rmsnorm";  // "rmsnorm" | "layernorm"
  double norm_eps = 1e-5;
  bool norm_bias = false;             // LayerNorm with bias (soma V1)
  std::string ffn_type = "swiglu";    // "swiglu" (w1 gate, w3 up, w2 down) | "gelu" (two-layer)
  std::string gelu_approximate = "none";  // "none" (erf) | "tanh"
  bool attn_bias = false;             // bias in q/k/v/o projections
  bool ffn_bias = false;              // bias in feed-forward projections
  bool qk_norm = false;               // RMSNorm over HS on q and k before RoPE
  bool tie_embeddings = false;
  bool causal = true;
  bool doc_mask = false;              // attention masked across document boundaries (EOS)
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

  // Llama 4 style
  int64_t nope_layer_interval = 0;     // every N-th layer (i+1) % N == 0 has no RoPE; 0 = off
  int64_t attn_chunk_size = 0;         // chunked local attention on RoPE layers; 0 = off
  bool attn_temperature_tuning = false;  // scale q on NoPE layers by log(floor((pos+1)/floor_scale)+1)*attn_scale+1
  double attn_floor_scale = 8192;
  double attn_scale = 0.1;
  MoEConfig moe;
  int64_t vision_dim = 0;              // precomputed vision embeddings of this width merged by mask; 0 = off

  // materium
  std::vector<ConditionConfig> conditions;
  bool block_pos_ids = false;          // position ids restart in blocks between [ATOMS] and [LATTICE]
  int64_t atoms_token_id = -1;
  int64_t lattice_token_id = -1;
  bool loss_weights = false;           // per-token-id loss weights

  // Derived sizes.
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t head_size() const { return head_dim > 0 ? head_dim : dim / n_heads; }
  int64_t ffn_hidden() const;  // hidden_dim, or Meta's round_up(int(m * int(8C/3)), multiple_of) for swiglu, 4C for gelu
  int64_t moe_hidden() const { return moe.hidden_dim > 0 ? moe.hidden_dim : ffn_hidden(); }
  bool is_moe_layer(int64_t layer) const;
  bool is_nope_layer(int64_t layer) const;
};

}  // namespace lm
