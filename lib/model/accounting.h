// Parameter, FLOP and memory accounting for a ModelConfig: exact parameter counts by
// component, and documented estimates for compute and memory. Conventions:
//
// Parameters: every learnable tensor once. Tied embeddings count once (under `embedding`).
//   attention = wq, wk, wv, wo (+ their biases with attn_bias, + the [HS] q/k norm scales with
//   qk_norm && qk_norm_weight); ffn = w1, w2 (+ w3 for SwiGLU) (+ biases with ffn_bias) on dense
//   layers; MoE layers hold the router [E, C] (no bias), E routed experts and the optional shared
//   expert, each an FFN of moe_hidden(); norms = two per layer plus the final one, [C] each
//   (+ [C] bias with norm_bias); output = classifier [V, C] (+ [V] bias) when untied;
//   conditions = per materium condition its projection (linear [C, input_dim]; embedding
//   [input_dim, C]; formula: count table [input_dim + 1, C] and the MLP's 4C^2 + 3C) plus its
//   [C] mask embedding, and the [N + 1, C] type embeddings; vision = a bias-free [C, vision_dim]
//   projection. `active` is what one token uses: total minus the routed experts it skips
//   (E - top_k per MoE layer).
//
// FLOPs per token (forward): 2 x (every matmul weight the token multiplies: q, k, v, o, the FFN
//   or router + top_k (+ shared) experts, and the classifier [V, C] even when tied) + attention:
//   per layer 2 x NH x HS x S for q.k scores and 2 x NH x HS x S for the weighted sum of values,
//   where S is the number of keys the token attends to: the context length, capped at
//   attn_chunk_size on chunked layers. This is the cost of a token that sees the full context
//   (PaLM's 6N + 12 L H Q T convention, the one llama2.c's estimate_mfu uses); averaged over a
//   causal sequence of length T the attention term is about half. Embedding lookups, norms,
//   biases, softmax, activation functions and RoPE are not counted (lower order), nor condition
//   or vision projections (per sequence, not per token).
// FLOPs per token (training) = 3 x forward (backward = 2 x forward).
//
// Memory (bytes): weights = params x 4 (f32) or x 2 (bf16). Training with AdamW in f32 =
//   weights + grads + 2 moments (16 bytes per parameter) + activations. Activations are an
//   estimate of what a forward saves for backward without recomputation, in f32, per token
//   (llm.c's ActivationTensors): per layer 2C (norm outputs) + 4 (norm statistics) +
//   (NH + 2 NKV) HS (q, k, v) + NH HS (attention output) + NH S (softmax probabilities over the
//   S attended keys, S = T or the chunk) + 2C (residual sums) + the FFN's 3F (SwiGLU: gate, up,
//   product) or 2F (GELU: pre- and post-activation), MoE layers counting (top_k + shared) experts
//   of moe_hidden() plus E router logits; plus C for the embedding output, C + 2 for the final
//   norm and 2V for logits and probabilities; times batch x seq tokens. materium: the K
//   condition positions (every condition present) go through the embedding and the layers
//   too (seq + K positions, attention spans of seq + K keys); the head only sees the tokens.
//   (For FLOPs per token the context already counts them: K + T <= max_seq_len.)
// KV cache: 2 (k and v) x NKV x HS values per layer per token; a chunked layer keeps at most
//   attn_chunk_size positions.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace lm {

struct ParamCounts {
  int64_t embedding = 0;   // token embedding [V, C]
  int64_t attention = 0;   // all layers
  int64_t ffn = 0;         // dense FFN layers
  int64_t moe_router = 0;  // MoE layers
  int64_t moe_experts = 0; // routed experts, all of them
  int64_t moe_shared = 0;  // shared experts
  int64_t norms = 0;       // incl. biases
  int64_t output = 0;      // 0 when tied
  int64_t conditions = 0;
  int64_t vision = 0;
  int64_t total = 0;
  int64_t active = 0;      // per token (MoE: top_k of the routed experts)
  int64_t non_embedding = 0;  // total - embedding - output
};

// The functions below expect a validated config (validation bounds every size so that the
// counts cannot overflow).
ParamCounts count_params(const ModelConfig& cfg);

struct FlopCounts {
  int64_t context = 0;           // keys attended (S before chunking)
  double matmul_per_token = 0;   // 2 x active matmul weights (incl. the classifier)
  double attention_per_token = 0;
  double forward_per_token = 0;  // matmul + attention
  double training_per_token = 0; // 3 x forward
};

// `context` <= 0 means cfg.max_seq_len.
FlopCounts count_flops(const ModelConfig& cfg, int64_t context = 0);

struct TrainingMemory {
  int64_t batch = 0, seq = 0;
  double weights = 0, grads = 0, adam_moments = 0, activations = 0, total = 0;  // bytes, f32
};

// `seq` (tokens per row) <= 0 means cfg.max_seq_len less the condition positions.
TrainingMemory training_memory(const ModelConfig& cfg, int64_t batch, int64_t seq = 0);

// Bytes of k and v for one position in every layer, at `bytes_per_value` (4 f32, 2 bf16).
double kv_cache_bytes_per_token(const ModelConfig& cfg, int bytes_per_value);
// Bytes for `tokens` positions (chunked layers capped at their chunk); tokens <= 0 = max_seq_len.
double kv_cache_bytes(const ModelConfig& cfg, int64_t tokens, int bytes_per_value);

// 6738415616 -> "6,738,415,616".
std::string with_commas(int64_t n);
// 13476831232 -> "12.55 GiB"; below 1 KiB, "512 B".
std::string human_bytes(double bytes);
// 1.3e10 -> "13.00 GFLOP".
std::string human_flops(double flops);

}  // namespace lm
