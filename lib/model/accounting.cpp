// Parameter, FLOP and memory accounting (conventions in accounting.h).
#include "model/accounting.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace lm {

namespace {

// One FFN (dense layer or one expert) of hidden size F: weights and biases.
int64_t ffn_params(const ModelConfig& c, int64_t f) {
  const int64_t C = c.dim;
  const int64_t mats = c.ffn_type == FfnType::GELU ? 2 : 3;
  int64_t n = mats * C * f;
  if (c.ffn_bias) n += (mats - 1) * f + C;  // w1 (and w3) biases [F], w2 bias [C]
  return n;
}

// Matmul weights one FFN multiplies per token.
int64_t ffn_matmul(const ModelConfig& c, int64_t f) { return (c.ffn_type == FfnType::GELU ? 2 : 3) * c.dim * f; }

int64_t attention_matmul(const ModelConfig& c) {
  const int64_t q = c.n_heads * c.head_size(), kv = c.kv_heads() * c.head_size();
  return c.dim * q * 2 + c.dim * kv * 2;  // wq, wo; wk, wv
}

int64_t span(const ModelConfig& c, int64_t layer, int64_t context) {
  const int64_t chunk = c.layer_chunk(layer);
  return chunk > 0 ? std::min(chunk, context) : context;
}

}  // namespace

ParamCounts count_params(const ModelConfig& c) {
  ParamCounts p;
  const int64_t C = c.dim, V = c.vocab_size, HS = c.head_size();
  const int64_t q = c.n_heads * HS, kv = c.kv_heads() * HS;
  const int64_t norm = c.norm_bias ? 2 * C : C;

  p.embedding = V * C;
  int64_t attn_layer = attention_matmul(c);
  if (c.attn_bias) attn_layer += q + 2 * kv + C;
  if (c.qk_norm && c.qk_norm_weight) attn_layer += 2 * HS;

  int64_t skipped = 0;  // routed experts a token does not use
  for (int64_t l = 0; l < c.n_layers; ++l) {
    p.attention += attn_layer;
    p.norms += 2 * norm;
    if (c.is_moe_layer(l)) {
      const int64_t expert = ffn_params(c, c.moe_hidden());
      p.moe_router += C * c.moe.n_experts;
      p.moe_experts += c.moe.n_experts * expert;
      if (c.moe.shared_expert) p.moe_shared += expert;
      skipped += (c.moe.n_experts - c.moe.top_k) * expert;
    } else {
      p.ffn += ffn_params(c, c.ffn_hidden());
    }
  }
  p.norms += norm;  // final norm
  if (!c.tie_embeddings) p.output = V * C;
  if (c.output_bias) p.output += V;
  for (const ConditionConfig& cond : c.conditions) {  // docs/materium.md "Checkpoint tensors"
    const int64_t in = cond.input_dim;
    p.conditions += cond.proj_layer_type == ProjLayerType::Formula ? (in + 1) * C + 4 * C * C + 3 * C : in * C;
    p.conditions += C;  // the mask embedding
  }
  if (!c.conditions.empty()) p.conditions += (static_cast<int64_t>(c.conditions.size()) + 1) * C;  // type embeddings
  p.vision = c.vision_dim * C;

  p.total = p.embedding + p.attention + p.ffn + p.moe_router + p.moe_experts + p.moe_shared + p.norms + p.output +
            p.conditions + p.vision;
  p.active = p.total - skipped;
  p.non_embedding = p.total - p.embedding - p.output;
  return p;
}

FlopCounts count_flops(const ModelConfig& c, int64_t context) {
  FlopCounts f;
  f.context = context > 0 ? context : c.max_seq_len;
  double matmul = 0, attention = 0;
  const double qdim = static_cast<double>(c.n_heads * c.head_size());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    matmul += static_cast<double>(attention_matmul(c));
    if (c.is_moe_layer(l)) {
      const int64_t experts = c.moe.top_k + (c.moe.shared_expert ? 1 : 0);
      matmul += static_cast<double>(c.dim * c.moe.n_experts + experts * ffn_matmul(c, c.moe_hidden()));
    } else {
      matmul += static_cast<double>(ffn_matmul(c, c.ffn_hidden()));
    }
    attention += 4.0 * qdim * static_cast<double>(span(c, l, f.context));  // q.k and p.v, 2 FLOPs per MAC
  }
  matmul += static_cast<double>(c.vocab_size * c.dim);  // classifier, tied or not
  f.matmul_per_token = 2.0 * matmul;
  f.attention_per_token = attention;
  f.forward_per_token = f.matmul_per_token + f.attention_per_token;
  f.training_per_token = 3.0 * f.forward_per_token;
  return f;
}

TrainingMemory training_memory(const ModelConfig& c, int64_t batch, int64_t seq) {
  TrainingMemory m;
  m.batch = batch;
  m.seq = seq > 0 ? seq : c.max_seq_len - c.condition_positions();  // materium: the tokens beside K conditions
  // materium: the K condition positions (all present) run through the layers beside the tokens.
  const double T = static_cast<double>(m.seq), S = static_cast<double>(m.seq + c.condition_positions());
  const double P = static_cast<double>(count_params(c).total);
  m.weights = 4 * P;
  m.grads = 4 * P;
  m.adam_moments = 8 * P;
  const double C = static_cast<double>(c.dim), HS = static_cast<double>(c.head_size());
  const double NH = static_cast<double>(c.n_heads), NKV = static_cast<double>(c.kv_heads());
  const double head = (C + 2) + 2.0 * static_cast<double>(c.vocab_size);  // final norm, logits + probs: tokens only
  double per_position = C;  // embedding out
  for (int64_t l = 0; l < c.n_layers; ++l) {
    double layer = 2 * C + 4 + (NH + 2 * NKV) * HS + NH * HS + NH * static_cast<double>(span(c, l, static_cast<int64_t>(S))) + 2 * C;
    const double ffn_saved = c.ffn_type == FfnType::GELU ? 2 : 3;
    if (c.is_moe_layer(l)) {
      const double experts = static_cast<double>(c.moe.top_k + (c.moe.shared_expert ? 1 : 0));
      layer += experts * ffn_saved * static_cast<double>(c.moe_hidden()) + static_cast<double>(c.moe.n_experts);
    } else {
      layer += ffn_saved * static_cast<double>(c.ffn_hidden());
    }
    per_position += layer;
  }
  m.activations = 4.0 * (per_position * S + head * T) * static_cast<double>(batch);
  m.total = m.weights + m.grads + m.adam_moments + m.activations;
  return m;
}

double kv_cache_bytes_per_token(const ModelConfig& c, int bytes_per_value) {
  return 2.0 * static_cast<double>(c.n_layers) * static_cast<double>(c.kv_heads()) * static_cast<double>(c.head_size()) *
         bytes_per_value;
}

double kv_cache_bytes(const ModelConfig& c, int64_t tokens, int bytes_per_value) {
  if (tokens <= 0) tokens = c.max_seq_len;
  double values = 0;
  for (int64_t l = 0; l < c.n_layers; ++l)
    values += 2.0 * static_cast<double>(c.kv_heads() * c.head_size()) * static_cast<double>(span(c, l, tokens));
  return values * bytes_per_value;
}

std::string with_commas(int64_t n) {
  const bool neg = n < 0;
  std::string digits = std::to_string(neg ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return neg ? "-" + out : out;
}

std::string human_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024 && u < 5) bytes /= 1024, ++u;
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

std::string human_flops(double flops) {
  static const char* units[] = {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"};
  int u = 0;
  while (flops >= 1000 && u < 6) flops /= 1000, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", flops, units[u]);
  return buf;
}

}  // namespace lm
