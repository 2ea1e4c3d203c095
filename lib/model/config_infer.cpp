// Checkpoint -> config: metadata first, else inference from Meta-style tensor names and shapes,
// in steps: embedding, layer count, attention, norms and FFN kind, MoE layers, every layer's
// shapes, classifier, then the overrides.
#include "model/config_infer.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/loss_weights.h"

namespace lm {

namespace {

// The tensors under inference, with checked shape lookups whose errors name the source.
class Shapes {
 public:
  Shapes(const std::map<std::string, Shape>& shapes, const std::string& source) : shapes_(shapes), file_(quote(source)) {}

  bool has(const std::string& name) const { return shapes_.count(name) > 0; }
  // The tensor's shape, which must have `rank` dims.
  const Shape& shape(const std::string& name, size_t rank) const {
    const auto it = shapes_.find(name);
    if (it == shapes_.end()) fail_data(cat(file_, ": no tensor ", quote(name), " (needed to infer the config)"));
    if (it->second.size() != rank)
      fail_data(cat(file_, ": tensor ", quote(name), " has shape ", shape_str(it->second), ", expected ", rank, " dims"));
    return it->second;
  }
  void expect(const std::string& name, const Shape& want) const {
    const Shape& got = shape(name, want.size());
    if (got != want)
      fail_data(cat(file_, ": tensor ", quote(name), " has shape ", shape_str(got), ", expected ", shape_str(want)));
  }
  // a / b exactly, or a Data error explaining `what`.
  int64_t divide(int64_t a, int64_t b, const std::string& what) const {
    if (b <= 0 || a % b != 0) fail_data(cat(file_, ": ", what));
    return a / b;
  }
  const std::string& file() const { return file_; }
  const std::map<std::string, Shape>& all() const { return shapes_; }

 private:
  const std::map<std::string, Shape>& shapes_;
  std::string file_;
};

std::string L(int64_t layer, const std::string& rest) { return cat("layers.", layer, ".", rest); }

// What the overrides say before inference starts: head counts, and which keys they set.
struct Hints {
  ModelConfig config;
  std::set<std::string> keys;
};

// ---- the steps ----

void infer_embedding(const Shapes& in, ModelConfig& c, CheckpointConfig& out) {
  if (!in.has("tok_embeddings.weight"))
    fail(ErrorKind::Data,
         cat(in.file(), ": no model config (no ", quote(kConfigMetadataKey),
             " metadata) and no 'tok_embeddings.weight' to infer one from"),
         "lmkit infers configs from Meta-style names (tok_embeddings, layers.N.attention.wq, ...); or give the config");
  const Shape& emb = in.shape("tok_embeddings.weight", 2);
  c.vocab_size = emb[0];
  c.dim = emb[1];
  out.inferred.insert(out.inferred.end(), {"vocab_size", "dim"});
}

// The layer count: one past the highest "layers.N." prefix.
void infer_layer_count(const Shapes& in, ModelConfig& c, CheckpointConfig& out) {
  int64_t max_index = -1;
  for (const auto& [name, shape] : in.all()) {
    if (name.rfind("layers.", 0) != 0) continue;
    const size_t end = name.find('.', 7);
    const std::string digits = name.substr(7, end == std::string::npos ? std::string::npos : end - 7);
    if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    max_index = std::max<int64_t>(max_index, std::stoll(digits));
  }
  if (max_index < 0) fail_data(cat(in.file(), ": no 'layers.N.' tensors: cannot infer n_layers"));
  c.n_layers = max_index + 1;
  out.inferred.push_back("n_layers");
}

// Heads from wq [NH*HS, C] and wk [NKV*HS, C], the head size from the overrides or a q_norm
// weight [HS]. Returns HS.
int64_t infer_attention(const Shapes& in, const Hints& hints, ModelConfig& c, CheckpointConfig& out) {
  const int64_t Q = in.shape(L(0, "attention.wq.weight"), 2)[0];
  const int64_t KV = in.shape(L(0, "attention.wk.weight"), 2)[0];
  c.qk_norm = in.has(L(0, "attention.q_norm.weight"));
  c.qk_norm_weight = true;
  int64_t HS = 0;
  if (hints.keys.count("head_dim") && hints.config.head_dim > 0) {
    HS = hints.config.head_dim;
  } else if (hints.keys.count("n_heads") && hints.config.n_heads > 0) {
    HS = in.divide(Q, hints.config.n_heads, cat("wq has ", Q, " rows, not a multiple of n_heads ", hints.config.n_heads));
  } else if (c.qk_norm) {
    HS = in.shape(L(0, "attention.q_norm.weight"), 1)[0];
    out.inferred.push_back("n_heads");
  } else {
    fail(ErrorKind::Data, cat("cannot infer n_heads from ", in.file(), ": wq has ", Q, " rows, which any head count dividing it fits"),
         "give it: --set n_heads=N (or --set head_dim=N)");
  }
  c.n_heads = in.divide(Q, HS, cat("wq has ", Q, " rows, not a multiple of the head size ", HS));
  c.n_kv_heads = in.divide(KV, HS, cat("wk has ", KV, " rows, not a multiple of the head size ", HS));
  if (c.n_kv_heads == c.n_heads) c.n_kv_heads = 0;
  c.head_dim = (Q == c.dim && c.dim % c.n_heads == 0) ? 0 : HS;
  c.attn_bias = in.has(L(0, "attention.wq.bias"));
  out.inferred.insert(out.inferred.end(), {"n_kv_heads", "head_dim", "attn_bias", "qk_norm"});
  return HS;
}

// Norm kind (a bias means LayerNorm) and FFN kind (a w3 means SwiGLU), from layer 0.
void infer_layer_kinds(const Shapes& in, ModelConfig& c, CheckpointConfig& out) {
  c.norm_bias = in.has(L(0, "attention_norm.bias"));
  if (c.norm_bias) {
    c.norm_type = NormType::LayerNorm;
    out.inferred.push_back("norm_type");
  }
  const std::string ffn0 = in.has(L(0, "feed_forward.w1.weight")) ? "feed_forward." : "feed_forward.experts.";
  c.ffn_type = in.has(L(0, ffn0 + "w3.weight")) ? FfnType::SwiGLU : FfnType::GELU;
  c.ffn_bias = in.has(L(0, ffn0 + "w1.bias"));
  out.inferred.insert(out.inferred.end(), {"norm_bias", "ffn_type", "ffn_bias"});
}

// MoE layers carry a router [E, C] and stacked experts (w1 [E, F, C]); they must be every
// interleave_step-th layer, the step being the first MoE layer's index + 1, or, when that does
// not fit, every step-th layer from the first MoE layer on, the step being the gap between the
// first two (moe.first_dense_layers = the first MoE layer's index, DeepSeek-V3's dense first layers).
void infer_moe(const Shapes& in, ModelConfig& c, CheckpointConfig& out) {
  std::vector<int64_t> moe_layers;
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (in.has(L(l, "feed_forward.router.weight"))) moe_layers.push_back(l);
  if (moe_layers.empty()) return;
  const int64_t first = moe_layers[0];
  c.moe.n_experts = in.shape(L(first, "feed_forward.router.weight"), 2)[0];
  c.moe.hidden_dim = in.shape(L(first, "feed_forward.experts.w1.weight"), 3)[1];
  c.moe.shared_expert = in.has(L(first, "feed_forward.shared_expert.w1.weight"));
  auto fits = [&] {
    for (int64_t l = 0; l < c.n_layers; ++l)
      if (c.is_moe_layer(l) != std::binary_search(moe_layers.begin(), moe_layers.end(), l)) return l;
    return int64_t{-1};
  };
  c.moe.interleave_step = first + 1;
  c.moe.first_dense_layers = 0;
  int64_t breaks = fits();
  if (breaks >= 0 && moe_layers.size() >= 2 && (first + 1) % (moe_layers[1] - first) == 0) {
    c.moe.interleave_step = moe_layers[1] - first;
    c.moe.first_dense_layers = first;
    if (fits() < 0) breaks = -1;
  }
  if (breaks >= 0)
    fail_data(cat(in.file(), ": MoE layers (", moe_layers.size(), " routers) are not every ", first + 1,
                  "-th layer, nor every n-th from the first: layer ", breaks, " breaks the pattern"));
  out.inferred.insert(out.inferred.end(),
                      {"moe.n_experts", "moe.hidden_dim", "moe.shared_expert", "moe.interleave_step", "moe.first_dense_layers"});
  out.assumed.push_back("moe.top_k");
}

// The dense FFN size, from the first dense layer (all-MoE models keep the default).
void infer_dense_hidden(const Shapes& in, ModelConfig& c, CheckpointConfig& out) {
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (!c.is_moe_layer(l)) {
      c.hidden_dim = in.shape(L(l, "feed_forward.w1.weight"), 2)[0];
      out.inferred.push_back("hidden_dim");
      return;
    }
}

// Every layer has the shapes `c` implies.
void check_layers(const Shapes& in, const ModelConfig& c, int64_t HS) {
  const int64_t C = c.dim, qd = c.n_heads * HS, kvd = c.kv_heads() * HS;
  const bool swiglu = c.ffn_type == FfnType::SwiGLU;
  // One FFN (a dense one or the shared expert) of size F, or E stacked ones (stack = {E}).
  auto check_ffn = [&](int64_t l, const std::string& prefix, int64_t F, const Shape& stack) {
    auto s = [&](Shape dims) {
      dims.insert(dims.begin(), stack.begin(), stack.end());
      return dims;
    };
    in.expect(L(l, prefix + "w1.weight"), s({F, C}));
    in.expect(L(l, prefix + "w2.weight"), s({C, F}));
    if (swiglu) in.expect(L(l, prefix + "w3.weight"), s({F, C}));
    if (c.ffn_bias) {
      in.expect(L(l, prefix + "w1.bias"), s({F}));
      in.expect(L(l, prefix + "w2.bias"), s({C}));
      if (swiglu) in.expect(L(l, prefix + "w3.bias"), s({F}));
    }
  };
  for (int64_t l = 0; l < c.n_layers; ++l) {
    in.expect(L(l, "attention.wq.weight"), {qd, C});
    in.expect(L(l, "attention.wk.weight"), {kvd, C});
    in.expect(L(l, "attention.wv.weight"), {kvd, C});
    in.expect(L(l, "attention.wo.weight"), {C, qd});
    if (c.attn_bias) {
      in.expect(L(l, "attention.wq.bias"), {qd});
      in.expect(L(l, "attention.wk.bias"), {kvd});
      in.expect(L(l, "attention.wv.bias"), {kvd});
      in.expect(L(l, "attention.wo.bias"), {C});
    }
    if (c.qk_norm) {
      in.expect(L(l, "attention.q_norm.weight"), {HS});
      in.expect(L(l, "attention.k_norm.weight"), {HS});
    }
    for (const char* norm : {"attention_norm", "ffn_norm"}) {
      in.expect(L(l, cat(norm, ".weight")), {C});
      if (c.norm_bias) in.expect(L(l, cat(norm, ".bias")), {C});
    }
    if (c.is_moe_layer(l)) {
      in.expect(L(l, "feed_forward.router.weight"), {c.moe.n_experts, C});
      check_ffn(l, "feed_forward.experts.", c.moe_hidden(), {c.moe.n_experts});
      if (c.moe.shared_expert) check_ffn(l, "feed_forward.shared_expert.", c.moe_hidden(), {});
    } else {
      check_ffn(l, "feed_forward.", c.ffn_hidden(), {});
    }
  }
}

// The final norm, the classifier (absent: tied to the embedding) and materium's loss weights.
void infer_output(const Shapes& in, ModelConfig& c, CheckpointConfig& out) {
  in.expect("norm.weight", {c.dim});
  if (c.norm_bias) in.expect("norm.bias", {c.dim});
  c.tie_embeddings = !in.has("output.weight");
  if (!c.tie_embeddings) in.expect("output.weight", {c.vocab_size, c.dim});
  c.output_bias = in.has("output.bias");
  if (c.output_bias) in.expect("output.bias", {c.vocab_size});
  c.loss_weights = in.has(kLossWeightsTensor);  // per-token-id loss weights, carried as a tensor
  if (c.loss_weights) in.expect(kLossWeightsTensor, {c.vocab_size});
  out.inferred.insert(out.inferred.end(), {"tie_embeddings", "output_bias", "loss_weights"});
}

// What no tensor says keeps its default unless set; the Llama special ids may not fit.
void note_assumed(ModelConfig& c, CheckpointConfig& out) {
  for (const char* k : {"norm_eps", "rope_theta", "rope_scaling.type", "max_seq_len", "bos_id", "eos_id", "pad_id", "causal",
                        "nope_layer_interval", "attn_chunk_size", "logits_soft_cap"})
    out.assumed.push_back(k);
  if (!c.norm_bias) out.assumed.push_back("norm_type");  // RMSNorm vs bias-free LayerNorm: shapes cannot tell
  if (c.qk_norm) out.assumed.push_back("qk_norm_weight");
  if (c.ffn_type == FfnType::GELU) out.assumed.push_back("gelu_approximate");
  if (c.bos_id >= c.vocab_size) c.bos_id = -1;
  if (c.eos_id >= c.vocab_size) c.eos_id = -1;
}

// The overrides last; those that would contradict the tensors are refused.
void apply_checked_overrides(const Shapes& in, const std::vector<std::string>& overrides, int64_t HS, ModelConfig& c) {
  const ModelConfig shapes = c;
  apply_overrides(c, overrides);
  auto contradicts = [&](const char* key, double got, int64_t want) {
    if (got != static_cast<double>(want))
      fail_data(cat("--set ", key, " contradicts ", in.file(), ": the tensors say ", want, ", got ", static_cast<int64_t>(got)));
  };
  contradicts("dim", static_cast<double>(c.dim), shapes.dim);
  contradicts("vocab_size", static_cast<double>(c.vocab_size), shapes.vocab_size);
  contradicts("n_layers", static_cast<double>(c.n_layers), shapes.n_layers);
  if (c.n_heads > 0) {
    contradicts("n_heads * head size", static_cast<double>(c.n_heads) * static_cast<double>(c.head_size()), shapes.n_heads * HS);
    contradicts("n_kv_heads * head size", static_cast<double>(c.kv_heads()) * static_cast<double>(c.head_size()),
                shapes.kv_heads() * HS);
  }
  contradicts("hidden_dim", static_cast<double>(c.ffn_hidden()), shapes.ffn_hidden());
}

}  // namespace

CheckpointConfig infer_config(const std::map<std::string, Shape>& shapes, const std::vector<std::string>& overrides,
                              const std::string& source) {
  CheckpointConfig out;
  Hints hints;
  apply_overrides(hints.config, overrides);  // reports a bad --set before any inference error
  for (const std::string& a : overrides) hints.keys.insert(override_key(a));
  out.overridden.assign(hints.keys.begin(), hints.keys.end());

  const Shapes in(shapes, source);
  ModelConfig c;
  infer_embedding(in, c, out);
  infer_layer_count(in, c, out);
  const int64_t HS = infer_attention(in, hints, c, out);
  infer_layer_kinds(in, c, out);
  infer_moe(in, c, out);
  infer_dense_hidden(in, c, out);
  check_layers(in, c, HS);
  infer_output(in, c, out);
  note_assumed(c, out);
  apply_checked_overrides(in, overrides, HS, c);
  std::erase_if(out.assumed, [&](const std::string& k) { return hints.keys.count(k) > 0; });
  std::erase_if(out.inferred, [&](const std::string& k) { return hints.keys.count(k) > 0; });
  out.config = c;
  return out;
}

CheckpointConfig config_from_checkpoint(const SafeTensorsFile& file, const std::vector<std::string>& overrides) {
  const std::string name = display_name(file.path());
  if (auto meta = file.metadata_value(kConfigMetadataKey)) {
    CheckpointConfig out;
    for (const std::string& a : overrides) out.overridden.push_back(override_key(a));
    std::sort(out.overridden.begin(), out.overridden.end());
    out.overridden.erase(std::unique(out.overridden.begin(), out.overridden.end()), out.overridden.end());
    out.config = config_from_json(*meta, cat(name, " (metadata ", kConfigMetadataKey, ")"));
    out.from_metadata = true;
    apply_overrides(out.config, overrides);
    return out;
  }
  std::map<std::string, Shape> shapes;
  for (const TensorInfo& t : file.tensors()) shapes.emplace(t.name, t.shape);
  return infer_config(shapes, overrides, name);
}

}  // namespace lm
