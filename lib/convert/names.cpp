#include "convert/names.h"

#include <map>

#include "core/error.h"
#include "core/regex.h"

namespace lm::convert {

namespace {

constexpr uint8_t T = kTranspose, Q = kRopeQ, K = kRopeK, ONE = kRopeOne;

// The table. Sources: formats.md §2-§5 (HF, GGUF, llama2.c, Flax), soma-models V1's canonical
// safetensors layout and its torch modules (encoder.layers.N.{norm_1,attention,norm_2,pwff},
// final_norm, predictor; LayerNorm gamma/beta; linears stored [in, out]; RoPE on the
// half-split layout, like Hugging Face).
const std::vector<NameRow> kTable = {
    // lmkit                              hf                                                   flax                                                      soma                                                       soma-torch                                             gguf                            llama2c
    {"tok_embeddings.weight",             {"model.embed_tokens.weight"},                      {"model.embed_tokens.embedding"},                        {"embedding.weight"},                                      {"embedding.weight"},                                  "token_embd.weight",            "token_embedding_table"},
    {"layers.{L}.attention_norm.weight",  {"model.layers.{L}.input_layernorm.weight"},        {"model.layers.{L}.input_layernorm.scale"},              {"encoder.layers.{L}.norm_1.gamma"},                       {"encoder.layers.{L}.norm_1.weight"},                  "blk.{L}.attn_norm.weight",     "rms_att_weight"},
    {"layers.{L}.attention_norm.bias",    {"model.layers.{L}.input_layernorm.bias"},          {"model.layers.{L}.input_layernorm.bias"},               {"encoder.layers.{L}.norm_1.beta"},                        {"encoder.layers.{L}.norm_1.bias"},                    nullptr,                        nullptr},
    {"layers.{L}.attention.wq.weight",    {"model.layers.{L}.self_attn.q_proj.weight", Q},    {"model.layers.{L}.self_attn.q_proj.kernel", T | Q},     {"encoder.layers.{L}.attention.query.weight", T | Q},      {"encoder.layers.{L}.attention.query.weight", Q},      "blk.{L}.attn_q.weight",        "wq"},
    {"layers.{L}.attention.wq.bias",      {"model.layers.{L}.self_attn.q_proj.bias", Q},      {"model.layers.{L}.self_attn.q_proj.bias", Q},           {"encoder.layers.{L}.attention.query.bias", Q},            {"encoder.layers.{L}.attention.query.bias", Q},        "blk.{L}.attn_q.bias",          nullptr},
    {"layers.{L}.attention.wk.weight",    {"model.layers.{L}.self_attn.k_proj.weight", K},    {"model.layers.{L}.self_attn.k_proj.kernel", T | K},     {"encoder.layers.{L}.attention.key.weight", T | K},        {"encoder.layers.{L}.attention.key.weight", K},        "blk.{L}.attn_k.weight",        "wk"},
    {"layers.{L}.attention.wk.bias",      {"model.layers.{L}.self_attn.k_proj.bias", K},      {"model.layers.{L}.self_attn.k_proj.bias", K},           {"encoder.layers.{L}.attention.key.bias", K},              {"encoder.layers.{L}.attention.key.bias", K},          "blk.{L}.attn_k.bias",          nullptr},
    {"layers.{L}.attention.wv.weight",    {"model.layers.{L}.self_attn.v_proj.weight"},       {"model.layers.{L}.self_attn.v_proj.kernel", T},         {"encoder.layers.{L}.attention.value.weight", T},          {"encoder.layers.{L}.attention.value.weight"},         "blk.{L}.attn_v.weight",        "wv"},
    {"layers.{L}.attention.wv.bias",      {"model.layers.{L}.self_attn.v_proj.bias"},         {"model.layers.{L}.self_attn.v_proj.bias"},              {"encoder.layers.{L}.attention.value.bias"},               {"encoder.layers.{L}.attention.value.bias"},           "blk.{L}.attn_v.bias",          nullptr},
    {"layers.{L}.attention.wo.weight",    {"model.layers.{L}.self_attn.o_proj.weight"},       {"model.layers.{L}.self_attn.o_proj.kernel", T},         {"encoder.layers.{L}.attention.output.weight", T},         {"encoder.layers.{L}.attention.output.weight"},        "blk.{L}.attn_output.weight",   "wo"},
    {"layers.{L}.attention.wo.bias",      {"model.layers.{L}.self_attn.o_proj.bias"},         {"model.layers.{L}.self_attn.o_proj.bias"},              {"encoder.layers.{L}.attention.output.bias"},              {"encoder.layers.{L}.attention.output.bias"},          "blk.{L}.attn_output.bias",     nullptr},
    {"layers.{L}.attention.q_norm.weight",{"model.layers.{L}.self_attn.q_norm.weight", ONE},  {"model.layers.{L}.self_attn.q_norm.scale", ONE},        {},                                                        {},                                                    "blk.{L}.attn_q_norm.weight",   nullptr},
    {"layers.{L}.attention.k_norm.weight",{"model.layers.{L}.self_attn.k_norm.weight", ONE},  {"model.layers.{L}.self_attn.k_norm.scale", ONE},        {},                                                        {},                                                    "blk.{L}.attn_k_norm.weight",   nullptr},
    {"layers.{L}.ffn_norm.weight",        {"model.layers.{L}.post_attention_layernorm.weight"}, {"model.layers.{L}.post_attention_layernorm.scale"},   {"encoder.layers.{L}.norm_2.gamma"},                       {"encoder.layers.{L}.norm_2.weight"},                  "blk.{L}.ffn_norm.weight",      "rms_ffn_weight"},
    {"layers.{L}.ffn_norm.bias",          {"model.layers.{L}.post_attention_layernorm.bias"}, {"model.layers.{L}.post_attention_layernorm.bias"},      {"encoder.layers.{L}.norm_2.beta"},                        {"encoder.layers.{L}.norm_2.bias"},                    nullptr,                        nullptr},
    {"layers.{L}.feed_forward.w1.weight", {"model.layers.{L}.mlp.gate_proj.weight"},          {"model.layers.{L}.mlp.gate_proj.kernel", T},            {"encoder.layers.{L}.pwff.linear_inner.weight", T},        {"encoder.layers.{L}.pwff.linear_inner.weight"},       "blk.{L}.ffn_gate.weight",      "w1"},
    {"layers.{L}.feed_forward.w1.bias",   {"model.layers.{L}.mlp.gate_proj.bias"},            {"model.layers.{L}.mlp.gate_proj.bias"},                 {"encoder.layers.{L}.pwff.linear_inner.bias"},             {"encoder.layers.{L}.pwff.linear_inner.bias"},         nullptr,                        nullptr},
    {"layers.{L}.feed_forward.w2.weight", {"model.layers.{L}.mlp.down_proj.weight"},          {"model.layers.{L}.mlp.down_proj.kernel", T},            {"encoder.layers.{L}.pwff.linear_outer.weight", T},        {"encoder.layers.{L}.pwff.linear_outer.weight"},       "blk.{L}.ffn_down.weight",      "w2"},
    {"layers.{L}.feed_forward.w2.bias",   {"model.layers.{L}.mlp.down_proj.bias"},            {"model.layers.{L}.mlp.down_proj.bias"},                 {"encoder.layers.{L}.pwff.linear_outer.bias"},             {"encoder.layers.{L}.pwff.linear_outer.bias"},         nullptr,                        nullptr},
    {"layers.{L}.feed_forward.w3.weight", {"model.layers.{L}.mlp.up_proj.weight"},            {"model.layers.{L}.mlp.up_proj.kernel", T},              {},                                                        {},                                                    "blk.{L}.ffn_up.weight",        "w3"},
    {"layers.{L}.feed_forward.w3.bias",   {"model.layers.{L}.mlp.up_proj.bias"},              {"model.layers.{L}.mlp.up_proj.bias"},                   {},                                                        {},                                                    nullptr,                        nullptr},
    {"norm.weight",                       {"model.norm.weight"},                              {"model.norm.scale"},                                    {"final_norm.gamma"},                                      {"final_norm.weight"},                                 "output_norm.weight",           "rms_final_weight"},
    {"norm.bias",                         {"model.norm.bias"},                                {"model.norm.bias"},                                     {"final_norm.beta"},                                       {"final_norm.bias"},                                   nullptr,                        nullptr},
    {"output.weight",                     {"lm_head.weight"},                                 {"lm_head.kernel", T},                                   {"predictor.weight", T},                                   {"predictor.weight"},                                  "output.weight",                "wcls"},
    {"output.bias",                       {"lm_head.bias"},                                   {"lm_head.bias"},                                        {"predictor.bias"},                                        {"predictor.bias"},                                    nullptr,                        nullptr},
    // Llama 4 (docs/llama4.md §10, §12): the router as Hugging Face's Mixtral names it (llama4_text:
    // feed_forward.router, see name_in) and the shared expert as llama4_text names it (its stacked
    // experts are fused and transposed: layout extras; Mixtral's are per expert: stacked on import);
    // GGUF as llama.cpp's llama4 architecture names them; the vision projection is lmkit's and
    // Meta's name (transformers' text model has none).
    {"layers.{L}.feed_forward.router.weight",             {"model.layers.{L}.block_sparse_moe.gate.weight"},                  {}, {}, {}, "blk.{L}.ffn_gate_inp.weight",  nullptr},
    {"layers.{L}.feed_forward.experts.w1.weight",         {},                                                                 {}, {}, {}, "blk.{L}.ffn_gate_exps.weight", nullptr},
    {"layers.{L}.feed_forward.experts.w3.weight",         {},                                                                 {}, {}, {}, "blk.{L}.ffn_up_exps.weight",   nullptr},
    {"layers.{L}.feed_forward.experts.w2.weight",         {},                                                                 {}, {}, {}, "blk.{L}.ffn_down_exps.weight", nullptr},
    {"layers.{L}.feed_forward.shared_expert.w1.weight",   {"model.layers.{L}.feed_forward.shared_expert.gate_proj.weight"},   {}, {}, {}, "blk.{L}.ffn_gate_shexp.weight", nullptr},
    {"layers.{L}.feed_forward.shared_expert.w3.weight",   {"model.layers.{L}.feed_forward.shared_expert.up_proj.weight"},     {}, {}, {}, "blk.{L}.ffn_up_shexp.weight",  nullptr},
    {"layers.{L}.feed_forward.shared_expert.w2.weight",   {"model.layers.{L}.feed_forward.shared_expert.down_proj.weight"},   {}, {}, {}, "blk.{L}.ffn_down_shexp.weight", nullptr},
    {"vision_projection.weight",                          {},                                                                 {}, {}, {}, nullptr,                        nullptr},
};

const std::vector<LayoutInfo> kLayouts = {
    {Layout::Lmkit, "lmkit", "lmkit's checkpoint: Meta names, [out, in] linears, config in the metadata"},
    {Layout::Meta, "meta", "Meta consolidated Llama names (and the load hooks of Meta's models: fused wqkv, fc1/fc2, w_gate/w_value/w_out)"},
    {Layout::HF, "hf", "Hugging Face Llama (model.layers.N.self_attn.q_proj.weight, lm_head), q/k rows in the half-split RoPE layout"},
    {Layout::HFLlama4, "hf-llama4", "Hugging Face Llama 4 text model (llama4_text): q/k not permuted, feed_forward.*, router, experts.gate_up_proj/down_proj [E, in, out], shared_expert"},
    {Layout::Flax, "flax", "Flax parameter tree of the Hugging Face Llama modules: Dense kernel [in, out], norm scale, Embed embedding"},
    {Layout::Soma, "soma", "soma-models V1 canonical safetensors: LayerNorm gamma/beta, linears [in, out], half-split RoPE"},
    {Layout::SomaTorch, "soma-torch", "soma-models V1 PyTorch state dict: LayerNorm weight/bias, linears [out, in], half-split RoPE"},
    {Layout::GGUF, "gguf", "llama.cpp GGUF file (arch llama): blk.N.attn_q.weight, ..., F32/F16/BF16/Q8_0"},
    {Layout::Llama2c, "llama2c", "llama2.c checkpoint: legacy v0 written; v0, v1 and v2 (Q8_0) read"},
    {Layout::Raw, "raw", "names as they are: only the rules given on the command line apply"},
};

std::string regex_escape(const std::string& s) {
  static const std::string special = R"(\^$.|?*+()[]{}/)";
  std::string out;
  for (char c : s) {
    if (special.find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// "layers.{L}.attention.wq.weight" -> "^layers\.(\d+)\.attention\.wq\.weight$"
std::string template_regex(const char* templ) {
  return "^" + replace_all(regex_escape(templ), regex_escape("{L}"), "(\\d+)") + "$";
}
std::string template_repl(const char* templ) { return replace_all(templ, "{L}", "\\1"); }
std::string template_glob(const char* templ) { return replace_all(templ, "{L}", "*"); }

Rule rule(const char* option, const std::string& arg) { return parse_rule(option, arg); }

// Rules that run before a layout's renames on the way in: what its checkpoints carry beyond
// the table (separators, optional tensors to drop, fused tensors to split).
std::vector<Rule> import_extras(Layout layout) {
  std::vector<Rule> r;
  switch (layout) {
    case Layout::Meta:
      // The load hooks of Meta's Llama models (llama-models: TransformerBlock.load_hook,
      // Attention.load_hook, FeedForward.load_hook).
      r.push_back(rule("drop", "rope.freqs"));
      r.push_back(rule("drop", "*._extra_state"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.attention\.wqkv\.layer_norm_weight$=layers.\1.attention_norm.weight)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.mlp\.layer_norm_weight$=layers.\1.ffn_norm.weight)"));
      r.push_back(rule("split", R"(layers\.(\d+)\.attention\.wqkv\.weight=layers.\1.attention.wq.weight,layers.\1.attention.wk.weight,layers.\1.attention.wv.weight@0)"));
      r.push_back(rule("split", R"(layers\.(\d+)\.feed_forward\.mlp\.fc1_weight=layers.\1.feed_forward.w1.weight,layers.\1.feed_forward.w3.weight@0)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.mlp\.fc2_weight$=layers.\1.feed_forward.w2.weight)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.w_gate\.=layers.\1.feed_forward.w1.)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.w_value\.=layers.\1.feed_forward.w3.)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.w_out\.=layers.\1.feed_forward.w2.)"));
      // Llama 4 (llama-models models/llama4: MoE.load_hook, Experts, and the released names;
      // docs/llama4.md §12): the MoE layer's norm, the router [C, E] used as x @ W, the
      // experts [E, in, out] (released: [E*in, out]) used as x @ W, the shared expert; the vision
      // encoder and routing statistics are not lmkit's.
      r.push_back(rule("drop", "vision_embeddings.*"));
      r.push_back(rule("drop", "layers.*.feed_forward.global_gate_stats_3E"));
      r.push_back(rule("drop", "layers.*.feed_forward.running_gate_stats_3E"));
      r.push_back(rule("drop", "layers.*.feed_forward.expert_activation_DE"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.norm\.weight$=layers.\1.ffn_norm.weight)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.router_DE$=layers.\1.feed_forward.router.weight)"));
      r.push_back(rule("transpose", "layers.*.feed_forward.router.weight"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.experts\.(moe_w_in_eD_F|w1)$=layers.\1.feed_forward.experts.w1.weight)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.experts\.(moe_w_swiglu_eD_F|w3)$=layers.\1.feed_forward.experts.w3.weight)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.experts\.(moe_w_out_eF_D|w2)$=layers.\1.feed_forward.experts.w2.weight)"));
      r.push_back(rule("transpose", "layers.*.feed_forward.experts.w?.weight=experts"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.w_in_shared_FD\.=layers.\1.feed_forward.shared_expert.w1.)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.w_swiglu_FD\.=layers.\1.feed_forward.shared_expert.w3.)"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.w_out_shared_DF\.=layers.\1.feed_forward.shared_expert.w2.)"));
      break;
    case Layout::HF:
      r.push_back(rule("drop", "model.layers.*.self_attn.rotary_emb.inv_freq"));
      break;
    case Layout::HFLlama4:
      // Llama4ForConditionalGeneration: the text model under language_model., the projector
      // (vision_output_dim -> hidden_size, lmkit's vision_projection), the encoder dropped.
      r.push_back(rule("rename", R"(^language_model\.=)"));
      r.push_back(rule("rename", R"(^multi_modal_projector\.linear_1\.weight$=vision_projection.weight)"));
      r.push_back(rule("drop", "vision_model.*"));
      // transformers' Llama4TextExperts: gate_up_proj [E, C, 2Fe] and down_proj [E, Fe, C], used as x @ W.
      r.push_back(rule("drop", "model.layers.*.self_attn.rotary_emb.inv_freq"));
      r.push_back(rule("transpose", "model.layers.*.feed_forward.experts.gate_up_proj"));
      r.push_back(rule("split", R"(model\.layers\.(\d+)\.feed_forward\.experts\.gate_up_proj=layers.\1.feed_forward.experts.w1.weight,layers.\1.feed_forward.experts.w3.weight@1)"));
      r.push_back(rule("rename", R"(^model\.layers\.(\d+)\.feed_forward\.experts\.down_proj$=layers.\1.feed_forward.experts.w2.weight)"));
      r.push_back(rule("transpose", "layers.*.feed_forward.experts.w2.weight"));
      break;
    case Layout::Flax:
      // Flattened trees use '/' or '.', often under a top-level 'params' collection; HF's
      // FlaxLlamaRMSNorm names its parameter 'weight' rather than 'scale'.
      r.push_back(rule("rename", "/=."));
      r.push_back(rule("rename", R"(^params\.=)"));
      r.push_back(rule("rename", R"(^(.*norm)\.weight$=\1.scale)"));
      r.push_back(rule("drop", "model.layers.*.self_attn.rotary_emb.inv_freq"));
      break;
    default:
      break;
  }
  return r;
}

// Rules that run after a layout's renames on the way out: what its checkpoints hold beyond the
// table (the inverse of import_extras' Llama 4 rules).
std::vector<Rule> export_extras(Layout layout) {
  std::vector<Rule> r;
  switch (layout) {
    case Layout::Meta:  // Meta's module names (Transformer.state_dict() after its load hooks)
      r.push_back(rule("transpose", "layers.*.feed_forward.router.weight"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.router\.weight$=layers.\1.feed_forward.router_DE)"));
      r.push_back(rule("transpose", "layers.*.feed_forward.experts.w?.weight"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.experts\.(w[123])\.weight$=layers.\1.feed_forward.experts.\2)"));
      break;
    case Layout::HFLlama4:
      r.push_back(rule("fuse", R"(layers\.(\d+)\.feed_forward\.experts\.w1\.weight,layers.\1.feed_forward.experts.w3.weight=model.layers.\1.feed_forward.experts.gate_up_proj@1)"));
      r.push_back(rule("transpose", "model.layers.*.feed_forward.experts.gate_up_proj"));
      r.push_back(rule("transpose", "layers.*.feed_forward.experts.w2.weight"));
      r.push_back(rule("rename", R"(^layers\.(\d+)\.feed_forward\.experts\.w2\.weight$=model.layers.\1.feed_forward.experts.down_proj)"));
      break;
    default:
      break;
  }
  return r;
}

bool has_table_names(Layout l) {
  return l == Layout::HF || l == Layout::HFLlama4 || l == Layout::Flax || l == Layout::Soma || l == Layout::SomaTorch || l == Layout::GGUF;
}

}  // namespace

const std::vector<LayoutInfo>& layouts() { return kLayouts; }

const char* layout_name(Layout l) {
  for (const auto& info : kLayouts)
    if (info.id == l) return info.name;
  return "?";
}

std::string layout_names() {
  std::string s;
  for (const auto& info : kLayouts) s += (s.empty() ? "" : ", ") + std::string(info.name);
  return s;
}

Layout parse_layout(const std::string& name) {
  for (const auto& info : kLayouts)
    if (name == info.name) return info.id;
  fail(ErrorKind::Usage, cat("unknown layout ", quote(name)), "layouts are " + layout_names());
}

const std::vector<NameRow>& name_table() { return kTable; }

NameEntry name_in(const NameRow& row, Layout layout) {
  switch (layout) {
    case Layout::Lmkit:
    case Layout::Meta:
    case Layout::Llama2c:  // its arrays are mapped to lmkit's names by llama2c_tensor_name
      return {row.lmkit, kNone};
    case Layout::HF: return row.hf;
    case Layout::HFLlama4: {
      if (!row.hf.name) return {};
      static std::map<const NameRow*, std::string> names;  // rows live as long as the table
      auto [it, added] = names.try_emplace(&row);
      if (added) {
        it->second = row.hf.name;
        const size_t at = it->second.find(".mlp.");
        if (at != std::string::npos) it->second.replace(at, 5, ".feed_forward.");
        const size_t gate = it->second.find(".block_sparse_moe.gate.");
        if (gate != std::string::npos) it->second.replace(gate, 23, ".feed_forward.router.");
      }
      return {it->second.c_str(), static_cast<uint8_t>(row.hf.xform & ~(kRopeQ | kRopeK | kRopeOne))};
    }
    case Layout::Flax: return row.flax;
    case Layout::Soma: return row.soma;
    case Layout::SomaTorch: return row.soma_torch;
    case Layout::GGUF: return {row.gguf, kNone};
    case Layout::Raw: return {};
  }
  return {};
}

std::string expand(const char* templ, int64_t layer) { return replace_all(templ, "{L}", std::to_string(layer)); }

std::string llama2c_tensor_name(const std::string& array, int64_t layer) {
  for (const NameRow& row : kTable)
    if (row.llama2c && array == row.llama2c) return layer >= 0 ? expand(row.lmkit, layer) : row.lmkit;
  fail(ErrorKind::Runtime, cat("internal: no name-table row for llama2.c array ", array));
}

std::vector<Rule> import_rules(Layout layout) {
  std::vector<Rule> r = import_extras(layout);
  if (!has_table_names(layout)) return r;
  for (const NameRow& row : kTable) {
    const NameEntry e = name_in(row, layout);
    if (e.name && std::string(e.name) != row.lmkit)
      r.push_back(rule("rename", template_regex(e.name) + "=" + template_repl(row.lmkit)));
  }
  for (const NameRow& row : kTable) {
    const NameEntry e = name_in(row, layout);
    if (e.name && (e.xform & kTranspose)) r.push_back(rule("transpose", template_glob(row.lmkit)));
  }
  for (const NameRow& row : kTable) {
    const NameEntry e = name_in(row, layout);
    if (!e.name) continue;
    const char* heads = e.xform & kRopeQ ? "q" : e.xform & kRopeK ? "k" : e.xform & kRopeOne ? "1" : nullptr;
    if (heads) r.push_back(rule("rope-to-interleaved", template_glob(row.lmkit) + "=" + heads));
  }
  return r;
}

std::vector<Rule> export_rules(Layout layout) {
  std::vector<Rule> r;
  if (!has_table_names(layout)) return export_extras(layout);
  for (const NameRow& row : kTable) {
    const NameEntry e = name_in(row, layout);
    if (!e.name) continue;
    const char* heads = e.xform & kRopeQ ? "q" : e.xform & kRopeK ? "k" : e.xform & kRopeOne ? "1" : nullptr;
    if (heads) r.push_back(rule("rope-to-half", template_glob(row.lmkit) + "=" + heads));
  }
  for (const NameRow& row : kTable) {
    const NameEntry e = name_in(row, layout);
    if (e.name && (e.xform & kTranspose)) r.push_back(rule("transpose", template_glob(row.lmkit)));
  }
  for (const NameRow& row : kTable) {
    const NameEntry e = name_in(row, layout);
    if (e.name && std::string(e.name) != row.lmkit)
      r.push_back(rule("rename", template_regex(row.lmkit) + "=" + template_repl(e.name)));
  }
  for (Rule& x : export_extras(layout)) r.push_back(std::move(x));
  return r;
}

std::optional<Layout> detect_layout(const std::vector<std::string>& names, bool has_lmkit_config) {
  std::vector<Regex> lmkit;
  for (const NameRow& row : kTable) lmkit.emplace_back(template_regex(row.lmkit));
  auto is_lmkit = [&](const std::string& n) {
    for (const auto& re : lmkit)
      if (re.full_match(n)) return true;
    return false;
  };
  std::optional<Layout> best;
  size_t best_count = 0;
  for (Layout l : {Layout::Lmkit, Layout::HF, Layout::HFLlama4, Layout::Flax, Layout::Soma, Layout::SomaTorch, Layout::GGUF}) {
    std::vector<std::pair<Regex, std::string>> renames;
    for (const Rule& r : import_rules(l))
      if (r.kind == Rule::Kind::Rename) {
        std::string fmt = r.replacement;
        for (size_t p = fmt.find('\\'); p != std::string::npos; p = fmt.find('\\', p + 1))
          if (p + 1 < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[p + 1]))) fmt[p] = '$';
        renames.emplace_back(Regex(r.pattern), fmt);
      }
    size_t count = 0;
    for (std::string n : names) {
      const std::string original = n;
      for (const auto& [re, fmt] : renames)
        if (re.search(n)) n = re.replace_all(n, fmt);
      if ((l == Layout::Lmkit || n != original) && is_lmkit(n)) ++count;
    }
    if (count > best_count) {
      best_count = count;
      best = l;
    }
  }
  if (best == Layout::Lmkit && !has_lmkit_config) best = Layout::Meta;
  return best;
}

}  // namespace lm::convert
