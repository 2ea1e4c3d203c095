// Checkpoint -> config: metadata first, else inference from Meta-style tensor names/shapes.
#include "model/config_infer.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/loss_weights.h"

namespace lm {

namespace {

class Inferrer {
 public:
  explicit Inferrer(const SafeTensorsFile& f) : f_(f), file_(quote(display_name(f.path()))) {}

  const TensorInfo* find(const std::string& name) const { return f_.find(name); }
  bool has(const std::string& name) const { return f_.contains(name); }

  // The tensor's shape, which must have `rank` dims.
  const Shape& shape(const std::string& name, size_t rank) const {
    const TensorInfo* t = find(name);
    if (!t) fail_data(cat(file_, ": no tensor ", quote(name), " (needed to infer the config)"));
    if (t->shape.size() != rank)
      fail_data(cat(file_, ": tensor ", quote(name), " has shape ", shape_str(t->shape), ", expected ", rank, " dims"));
    return t->shape;
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
  const SafeTensorsFile& st() const { return f_; }

 private:
  const SafeTensorsFile& f_;
  std::string file_;
};

// Layer indices present as "layers.N." prefixes.
int64_t count_layers(const Inferrer& in) {
  int64_t max_index = -1;
  for (const TensorInfo& t : in.st().tensors()) {
    if (t.name.rfind("layers.", 0) != 0) continue;
    const size_t end = t.name.find('.', 7);
    const std::string digits = t.name.substr(7, end == std::string::npos ? std::string::npos : end - 7);
    if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    max_index = std::max<int64_t>(max_index, std::stoll(digits));
  }
  return max_index + 1;
}

std::string L(int64_t i, const char* rest) { return cat("layers.", i, ".", rest); }

}  // namespace

CheckpointConfig config_from_checkpoint(const SafeTensorsFile& file, const std::vector<std::string>& overrides) {
  CheckpointConfig out;
  std::set<std::string> set_keys;
  for (const std::string& a : overrides) set_keys.insert(override_key(a));
  out.overridden.assign(set_keys.begin(), set_keys.end());
  const std::string name = display_name(file.path());

  if (auto meta = file.metadata_value(kConfigMetadataKey)) {
    out.config = config_from_json(*meta, name + " (metadata " + kConfigMetadataKey + ")");
    out.from_metadata = true;
    apply_overrides(out.config, overrides);
    return out;
  }

  Inferrer in(file);
  ModelConfig hints;
  apply_overrides(hints, overrides);  // reports bad --set before any inference error
  if (!in.has("tok_embeddings.weight"))
    fail(ErrorKind::Data,
         cat(in.file(), ": no ", quote(kConfigMetadataKey), " metadata and no 'tok_embeddings.weight': cannot infer the model config"),
         "lmkit infers configs from Meta-style names (tok_embeddings, layers.N.attention.wq, ...)");

  ModelConfig c;
  std::vector<std::string>& inferred = out.inferred;
  const Shape& emb = in.shape("tok_embeddings.weight", 2);
  c.vocab_size = emb[0];
  c.dim = emb[1];
  inferred.insert(inferred.end(), {"vocab_size", "dim"});
  const int64_t C = c.dim;

  c.n_layers = count_layers(in);
  if (c.n_layers == 0) fail_data(cat(in.file(), ": no 'layers.N.' tensors: cannot infer n_layers"));
  inferred.push_back("n_layers");

  // Attention: wq [NH*HS, C], wk/wv [NKV*HS, C], wo [C, NH*HS].
  const int64_t Q = in.shape(L(0, "attention.wq.weight"), 2)[0];
  const int64_t KV = in.shape(L(0, "attention.wk.weight"), 2)[0];
  int64_t HS = 0;
  const bool q_norm = in.has(L(0, "attention.q_norm.weight"));
  if (set_keys.count("head_dim") && hints.head_dim > 0) {
    HS = hints.head_dim;
  } else if (set_keys.count("n_heads") && hints.n_heads > 0) {
    HS = in.divide(Q, hints.n_heads, cat("wq has ", Q, " rows, not a multiple of n_heads ", hints.n_heads));
  } else if (q_norm) {
    HS = in.shape(L(0, "attention.q_norm.weight"), 1)[0];
    inferred.push_back("n_heads");
  } else {
    fail(ErrorKind::Data,
         cat("cannot infer n_heads from ", in.file(), ": wq has ", Q, " rows, which any head count dividing it fits"),
         "give it: --set n_heads=N (or --set head_dim=N)");
  }
  c.n_heads = in.divide(Q, HS, cat("wq has ", Q, " rows, not a multiple of the head size ", HS));
  c.n_kv_heads = in.divide(KV, HS, cat("wk has ", KV, " rows, not a multiple of the head size ", HS));
  if (c.n_kv_heads == c.n_heads) c.n_kv_heads = 0;
  c.head_dim = (Q == C && C % c.n_heads == 0) ? 0 : HS;
  inferred.insert(inferred.end(), {"n_kv_heads", "head_dim"});

  // Biases, norms, FFN kind, from layer 0; every layer is then checked against them.
  c.attn_bias = in.has(L(0, "attention.wq.bias"));
  c.norm_bias = in.has(L(0, "attention_norm.bias"));
  if (c.norm_bias) {
    c.norm_type = NormType::LayerNorm;
    inferred.push_back("norm_type");
  }
  c.qk_norm = q_norm;
  c.qk_norm_weight = true;
  const bool dense0 = in.has(L(0, "feed_forward.w1.weight"));
  const std::string ffn0 = dense0 ? "feed_forward.w1" : "feed_forward.experts.0.w1";
  c.ffn_type = in.has(L(0, (dense0 ? std::string("feed_forward.w3.weight") : "feed_forward.experts.0.w3.weight").c_str()))
                   ? FfnType::SwiGLU
                   : FfnType::GELU;
  c.ffn_bias = in.has(L(0, (ffn0 + ".bias").c_str()));
  inferred.insert(inferred.end(), {"attn_bias", "norm_bias", "qk_norm", "ffn_type", "ffn_bias"});

  // MoE layers: a router [E, C] and experts.N.w1 [Fe, C].
  std::vector<int64_t> moe_layers;
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (in.has(L(l, "feed_forward.router.weight"))) moe_layers.push_back(l);
  if (!moe_layers.empty()) {
    const int64_t step = moe_layers[0] + 1;
    c.moe.interleave_step = step;
    c.moe.n_experts = in.shape(L(moe_layers[0], "feed_forward.router.weight"), 2)[0];
    c.moe.hidden_dim = in.shape(L(moe_layers[0], "feed_forward.experts.0.w1.weight"), 2)[0];
    c.moe.shared_expert = in.has(L(moe_layers[0], "feed_forward.shared_expert.w1.weight"));
    for (int64_t l = 0; l < c.n_layers; ++l)
      if (c.is_moe_layer(l) != std::binary_search(moe_layers.begin(), moe_layers.end(), l))
        fail_data(cat(in.file(), ": MoE layers (", moe_layers.size(), " routers) are not every ", step,
                      "-th layer: layer ", l, " breaks the pattern"));
    inferred.insert(inferred.end(), {"moe.n_experts", "moe.hidden_dim", "moe.shared_expert", "moe.interleave_step"});
    out.assumed.push_back("moe.top_k");
  }
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (!c.is_moe_layer(l)) {
      c.hidden_dim = in.shape(L(l, "feed_forward.w1.weight"), 2)[0];
      inferred.push_back("hidden_dim");
      break;
    }

  // Every layer has the same shapes.
  const int64_t qd = c.n_heads * HS, kvd = c.kv_heads() * HS;
  auto check_ffn = [&](int64_t l, const std::string& prefix, int64_t F) {
    in.expect(L(l, (prefix + ".w1.weight").c_str()), {F, C});
    in.expect(L(l, (prefix + ".w2.weight").c_str()), {C, F});
    if (c.ffn_type == FfnType::SwiGLU) in.expect(L(l, (prefix + ".w3.weight").c_str()), {F, C});
    if (c.ffn_bias) {
      in.expect(L(l, (prefix + ".w1.bias").c_str()), {F});
      in.expect(L(l, (prefix + ".w2.bias").c_str()), {C});
      if (c.ffn_type == FfnType::SwiGLU) in.expect(L(l, (prefix + ".w3.bias").c_str()), {F});
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
      in.expect(cat("layers.", l, ".", norm, ".weight"), {C});
      if (c.norm_bias) in.expect(cat("layers.", l, ".", norm, ".bias"), {C});
    }
    if (c.is_moe_layer(l)) {
      in.expect(L(l, "feed_forward.router.weight"), {c.moe.n_experts, C});
      for (int64_t e = 0; e < c.moe.n_experts; ++e) check_ffn(l, cat("feed_forward.experts.", e), c.moe_hidden());
      if (c.moe.shared_expert) check_ffn(l, "feed_forward.shared_expert", c.moe_hidden());
    } else {
      check_ffn(l, "feed_forward", c.ffn_hidden());
    }
  }
  in.expect("norm.weight", {C});
  if (c.norm_bias) in.expect("norm.bias", {C});
  c.tie_embeddings = !in.has("output.weight");
  if (!c.tie_embeddings) in.expect("output.weight", {c.vocab_size, C});
  c.output_bias = in.has("output.bias");
  if (c.output_bias) in.expect("output.bias", {c.vocab_size});
  c.loss_weights = in.has(kLossWeightsTensor);  // materium's per-token-id loss weights, carried as a tensor
  if (c.loss_weights) in.expect(kLossWeightsTensor, {c.vocab_size});
  inferred.insert(inferred.end(), {"tie_embeddings", "output_bias", "loss_weights"});

  // Nothing in tensor shapes says these: they keep their defaults unless --set.
  for (const char* k : {"norm_eps", "rope_theta", "rope_scaling.type", "max_seq_len", "bos_id", "eos_id", "pad_id",
                        "causal", "nope_layer_interval", "attn_chunk_size", "logits_soft_cap"})
    out.assumed.push_back(k);
  if (!c.norm_bias) out.assumed.push_back("norm_type");
  if (c.qk_norm) out.assumed.push_back("qk_norm_weight");
  if (c.ffn_type == FfnType::GELU) out.assumed.push_back("gelu_approximate");
  if (c.bos_id >= c.vocab_size) c.bos_id = -1;  // the Llama defaults may not fit a small vocabulary
  if (c.eos_id >= c.vocab_size) c.eos_id = -1;

  // Overrides last; those that would contradict the tensors are refused.
  const ModelConfig shapes = c;
  apply_overrides(c, overrides);
  auto contradicts = [&](const char* key, double got, int64_t want) {
    if (got != static_cast<double>(want))
      fail_data(cat("--set ", key, " contradicts ", in.file(), ": the tensors say ", want, ", got ", static_cast<int64_t>(got)));
  };
  contradicts("dim", c.dim, shapes.dim);
  contradicts("vocab_size", c.vocab_size, shapes.vocab_size);
  contradicts("n_layers", c.n_layers, shapes.n_layers);
  if (c.n_heads > 0) {
    contradicts("n_heads * head size", static_cast<double>(c.n_heads) * static_cast<double>(c.head_size()), qd);
    contradicts("n_kv_heads * head size", static_cast<double>(c.kv_heads()) * static_cast<double>(c.head_size()), kvd);
  }
  contradicts("hidden_dim", c.ffn_hidden(), shapes.ffn_hidden());
  std::erase_if(out.assumed, [&](const std::string& k) { return set_keys.count(k) > 0; });
  std::erase_if(out.inferred, [&](const std::string& k) { return set_keys.count(k) > 0; });
  out.config = c;
  return out;
}

}  // namespace lm
