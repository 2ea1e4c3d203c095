#include "model/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "model/accounting.h"
#include "model/presets.h"
#include "version.h"

namespace lm {

namespace {

using json = nlohmann::ordered_json;

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string number(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

std::vector<int64_t> layers_where(const ModelConfig& c, bool (ModelConfig::*pred)(int64_t) const) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < c.n_layers; ++l)
    if ((c.*pred)(l)) out.push_back(l);
  return out;
}

std::string layer_list(const std::vector<int64_t>& layers, int64_t n_layers) {
  if (layers.empty()) return "none";
  if (static_cast<int64_t>(layers.size()) == n_layers) return cat("all ", n_layers);
  std::string s;
  for (size_t i = 0; i < layers.size() && i < 8; ++i) s += cat(i ? " " : "", layers[i]);
  if (layers.size() > 8) s += " ...";
  return cat(layers.size(), " of ", n_layers, " (", s, ")");
}

class Table {
 public:
  void section(const std::string& title) { out_ << (first_ ? "" : "\n") << title << '\n', first_ = false; }
  void row(const std::string& key, const std::string& value) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  %-26s%s", key.c_str(), key.size() >= 26 ? " " : "");  // a long key keeps a gap
    out_ << buf << value << '\n';
  }
  // Right-aligned counts so the digits line up.
  void count(const std::string& key, int64_t n, const std::string& note = "") {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  %-26s%17s", key.c_str(), with_commas(n).c_str());
    out_ << buf << (note.empty() ? "" : "  " + note) << '\n';
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  bool first_ = true;
};

std::string bytes_pair(double f32, double bf16) { return human_bytes(f32) + " f32, " + human_bytes(bf16) + " bf16"; }

}  // namespace

std::string inspect_text(const ConfigInput& in, const InspectOptions& o) {
  const ModelConfig& c = in.config;
  const ParamCounts p = count_params(c);
  const FlopCounts f = count_flops(c, o.context);
  const TrainingMemory m = training_memory(c, o.batch, o.seq);
  Table t;

  if (in.kind == ConfigInput::Kind::Preset)
    t.section(cat(in.name, " (preset)"));
  else
    t.section(cat(c.name.empty() ? "model" : c.name, " (", kind_name(in.kind), " ", quote(in.name), ")"));
  if (!in.description.empty()) t.row("about", in.description);
  if (!in.overrides.empty()) t.row("--set", join(in.overrides, " "));
  if (in.kind == ConfigInput::Kind::Checkpoint) {
    const CheckpointConfig& k = in.checkpoint;
    if (k.from_metadata) {
      t.row("config", "from metadata 'lmkit.config'");
    } else {
      t.row("inferred from tensors", join(k.inferred));
      t.row("assumed (defaults)", join(k.assumed));
    }
  }

  t.section("shape");
  t.row("dim (C)", std::to_string(c.dim));
  t.row("n_layers (L)", std::to_string(c.n_layers));
  t.row("n_heads (NH)", std::to_string(c.n_heads));
  t.row("n_kv_heads (NKV)", cat(c.kv_heads(), c.kv_heads() == c.n_heads ? " (MHA)" : " (GQA)"));
  t.row("head size (HS)", std::to_string(c.head_size()));
  t.row("ffn hidden (F)", cat(c.ffn_hidden(), " (", name_of(c.ffn_type), c.ffn_bias ? ", bias" : "", ")"));
  t.row("vocab_size (V)", std::to_string(c.vocab_size));
  t.row("max_seq_len", std::to_string(c.max_seq_len));
  t.row("norm", cat(name_of(c.norm_type), c.norm_bias ? " with bias" : "", ", eps ", number(c.norm_eps)));
  t.row("attention", cat(c.attn_bias ? "bias" : "no bias",
                         c.qk_norm ? (c.qk_norm_weight ? ", qk-norm" : ", qk-norm (no weight)") : "",
                         c.causal ? ", causal" : ", bidirectional",
                         c.doc_mask ? (c.doc_mask_boundary == DocMaskBoundary::Start ? ", document mask (EOS starts a document)"
                                                                                     : ", document mask")
                                    : ""));
  t.row("rope", cat("theta ", number(c.rope_theta), ", scale ", number(c.rope_scale_factor), ", scaling ",
                    name_of(c.rope_scaling.type)));
  t.row("embeddings", cat(c.tie_embeddings ? "tied" : "untied", c.output_bias ? ", output bias" : ""));
  std::string extra_eos;
  for (int64_t id : c.extra_eos_ids) extra_eos += cat(extra_eos.empty() ? " (also " : ", ", id);
  if (!extra_eos.empty()) extra_eos += ")";
  t.row("special tokens", cat("bos ", c.bos_id, ", eos ", c.eos_id, extra_eos, ", pad ", c.pad_id));
  if (c.moe.n_experts > 0)
    t.row("moe", cat(c.moe.n_experts, " experts of ", c.moe_hidden(), ", top ", c.moe.top_k,
                     c.moe.shared_expert ? " + shared" : "", ", ", name_of(c.moe.routing), " routing",
                     c.moe.aux_loss_coef > 0 ? cat(", balance loss ", number(c.moe.aux_loss_coef)) : std::string(),
                     ", layers ", layer_list(layers_where(c, &ModelConfig::is_moe_layer), c.n_layers)));
  if (c.nope_layer_interval > 0)
    t.row("NoPE layers", layer_list(layers_where(c, &ModelConfig::is_nope_layer), c.n_layers));
  if (c.attn_chunk_size > 0) t.row("attention chunk", std::to_string(c.attn_chunk_size));
  if (!c.conditions.empty()) {
    std::string list;
    for (const ConditionConfig& cond : c.conditions) {
      list += cat(list.empty() ? "" : ", ", cond.name, " (", name_of(cond.proj_layer_type), " ", cond.input_dim);
      if (cond.proj_layer_type == ProjLayerType::Formula) list += cat(", ", cond.positions(), " positions");
      list += ")";
    }
    t.row("conditions", cat(list, "; up to ", c.condition_positions(), " positions before the tokens"));
  }
  if (c.rope_mode == RopeMode::Blockwise)
    t.row("positions", cat("block-wise (", c.atom_block_size, ") between [ATOMS] ", c.atoms_token_id, " and [LATTICE] ",
                           c.lattice_token_id));
  if (c.sigreg.enabled)
    t.row("sigreg", cat("t_max ", number(c.sigreg.t_max), ", points ", c.sigreg.points, ", slices ", c.sigreg.slices,
                        ", coefficient ", number(c.sigreg.coefficient)));
  const std::vector<std::string> features = unsupported_features(c, Capabilities::none());
  if (!features.empty()) t.row("features", join(features, "; "));

  t.section("parameters");
  t.count("embedding", p.embedding, c.tie_embeddings ? "(tied with the output)" : "");
  t.count("attention", p.attention);
  if (p.ffn) t.count("feed-forward", p.ffn);
  if (p.moe_router) t.count("moe router", p.moe_router);
  if (p.moe_experts) t.count("moe experts", p.moe_experts);
  if (p.moe_shared) t.count("moe shared experts", p.moe_shared);
  t.count("norms", p.norms);
  if (p.output) t.count("output", p.output);
  if (p.conditions) t.count("conditions", p.conditions);
  if (p.vision) t.count("vision projection", p.vision);
  t.count("total", p.total);
  const PresetInfo* info = in.kind == ConfigInput::Kind::Preset ? preset_info(in.name) : nullptr;
  if (info && info->outside_params > 0)
    t.count("published total", p.total + info->outside_params,
            cat("(+ ", with_commas(info->outside_params), " ", info->outside_what, ")"));
  if (p.active != p.total) {
    t.count("active per token", p.active);
    t.count("read per decoded token", decode_params_per_token(c), "(the selected experts; the others stay unread)");
  }
  t.count("non-embedding", p.non_embedding);

  t.section(cat("compute per token (context ", f.context, ")"));
  t.row("forward", cat(human_flops(f.forward_per_token), " (matmul ", human_flops(f.matmul_per_token), ", attention ",
                       human_flops(f.attention_per_token), ")"));
  t.row("training (3x forward)", human_flops(f.training_per_token));

  t.section("memory");
  t.row("weights", bytes_pair(4.0 * p.total, 2.0 * p.total));
  t.row(cat("training, batch ", m.batch, " x ", m.seq), cat(human_bytes(m.total), " (AdamW f32: weights ",
                                                            human_bytes(m.weights), ", grads ", human_bytes(m.grads),
                                                            ", moments ", human_bytes(m.adam_moments),
                                                            ", activations ", human_bytes(m.activations), ")"));
  t.row("kv cache per token", bytes_pair(kv_cache_bytes_per_token(c, 4), kv_cache_bytes_per_token(c, 2)));
  t.row(cat("kv cache at ", c.max_seq_len), bytes_pair(kv_cache_bytes(c, c.max_seq_len, 4), kv_cache_bytes(c, c.max_seq_len, 2)));
  return t.str();
}

std::string inspect_json(const ConfigInput& in, const InspectOptions& o) {
  const ModelConfig& c = in.config;
  const ParamCounts p = count_params(c);
  const FlopCounts f = count_flops(c, o.context);
  const TrainingMemory m = training_memory(c, o.batch, o.seq);
  auto n = [](double v) { return static_cast<int64_t>(std::llround(v)); };

  json r;
  r["version"] = kInspectReportVersion;
  r["lmkit_version"] = kVersion;
  json src = {{"kind", kind_name(in.kind)}, {"name", in.name}, {"description", in.description}, {"overrides", in.overrides}};
  if (in.kind == ConfigInput::Kind::Checkpoint) {
    src["from_metadata"] = in.checkpoint.from_metadata;
    src["inferred"] = in.checkpoint.inferred;
    src["assumed"] = in.checkpoint.assumed;
  }
  r["source"] = src;
  r["config"] = json::parse(config_to_json(c));
  r["derived"] = {{"head_size", c.head_size()},
                  {"kv_heads", c.kv_heads()},
                  {"ffn_hidden", c.ffn_hidden()},
                  {"moe_hidden", c.moe.n_experts > 0 ? c.moe_hidden() : 0},
                  {"moe_layers", layers_where(c, &ModelConfig::is_moe_layer)},
                  {"nope_layers", layers_where(c, &ModelConfig::is_nope_layer)},
                  {"features", unsupported_features(c, Capabilities::none())}};
  r["params"] = {{"embedding", p.embedding},     {"attention", p.attention},     {"ffn", p.ffn},
                 {"moe_router", p.moe_router},   {"moe_experts", p.moe_experts}, {"moe_shared", p.moe_shared},
                 {"norms", p.norms},             {"output", p.output},           {"conditions", p.conditions},
                 {"vision", p.vision},           {"total", p.total},             {"active", p.active},
                 {"non_embedding", p.non_embedding}};
  // Parameters a preset's published figure counts outside the config (Llama 4's vision encoder).
  const PresetInfo* info = in.kind == ConfigInput::Kind::Preset ? preset_info(in.name) : nullptr;
  r["params"]["outside_config"] = info ? info->outside_params : 0;
  r["params"]["decode_per_token"] = decode_params_per_token(c);
  r["flops"] = {{"context", f.context},
                {"matmul_per_token", n(f.matmul_per_token)},
                {"attention_per_token", n(f.attention_per_token)},
                {"forward_per_token", n(f.forward_per_token)},
                {"training_per_token", n(f.training_per_token)}};
  r["memory"] = {
      {"weights_f32", 4 * p.total},
      {"weights_bf16", 2 * p.total},
      {"training",
       {{"batch", m.batch}, {"seq", m.seq}, {"weights", n(m.weights)}, {"grads", n(m.grads)},
        {"adam_moments", n(m.adam_moments)}, {"activations", n(m.activations)}, {"total", n(m.total)}}},
      {"kv_cache",
       {{"per_token_f32", n(kv_cache_bytes_per_token(c, 4))},
        {"per_token_bf16", n(kv_cache_bytes_per_token(c, 2))},
        {"tokens", c.max_seq_len},
        {"max_seq_len_f32", n(kv_cache_bytes(c, c.max_seq_len, 4))},
        {"max_seq_len_bf16", n(kv_cache_bytes(c, c.max_seq_len, 2))}}}};
  return r.dump(2) + "\n";
}

std::string preset_list_text() {
  size_t width = 0;
  for (const PresetInfo& p : presets()) width = std::max(width, p.name.size());
  std::string out;
  for (const PresetInfo& p : presets()) out += p.name + std::string(width + 2 - p.name.size(), ' ') + p.summary + "\n";
  return out;
}

}  // namespace lm
