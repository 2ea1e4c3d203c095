#include "convert/config_io.h"

#include "model/config_formats.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <sys/stat.h>

#include "core/error.h"
#include "core/json.h"
#include "io/gguf.h"
#include "model/config_input.h"
#include "model/presets.h"

namespace lm::convert {

namespace {

using json = nlohmann::json;

json parse_object(const std::string& text, const std::string& source) {
  json j = parse_json_strict(text, cat(quote(source), ": "));
  if (!j.is_object()) fail_data(cat(quote(source), ": expected a JSON object"));
  return j;
}

int64_t get_int(const json& j, const char* key, const std::string& source, bool required, int64_t fallback = 0) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail_data(cat(quote(source), ": no ", quote(key)));
    return fallback;
  }
  if (!j[key].is_number_integer()) fail_data(cat(quote(source), ": ", quote(key), ": expected an integer, got ", j[key].dump()));
  return j[key].get<int64_t>();
}

double get_num(const json& j, const char* key, const std::string& source, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) fail_data(cat(quote(source), ": ", quote(key), ": expected a number, got ", j[key].dump()));
  return j[key].get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& source, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail_data(cat(quote(source), ": ", quote(key), ": expected true or false, got ", j[key].dump()));
  return j[key].get<bool>();
}

// A token id that may be given as a list (HF eos_token_id) or null.
int64_t get_token(const json& j, const char* key, const std::string& source, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key].is_array() && !j[key].empty() ? j[key][0] : j[key];
  if (!v.is_number_integer()) fail_data(cat(quote(source), ": ", quote(key), ": expected a token id, got ", j[key].dump()));
  return v.get<int64_t>();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_io("cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Meta's rule for the SwiGLU hidden size (ModelConfig::ffn_hidden with hidden_dim unset).
int64_t meta_hidden(const ModelConfig& c) {
  ModelConfig d = c;
  d.hidden_dim = 0;
  return d.ffn_hidden();
}

const std::set<std::string> kParamsKeys = {"dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of",
                                           "ffn_dim_multiplier", "norm_eps", "rope_theta", "use_scaled_rope",
                                           "max_seq_len", "max_batch_size", "use_qk_norm"};

}  // namespace

void fail_unsupported(const std::string& what, const std::vector<std::string>& why) {
  std::string hint;
  for (size_t i = 1; i < why.size(); ++i) hint += (i > 1 ? "; " : "also: ") + why[i];
  fail(ErrorKind::Unsupported, what + why.at(0), hint);
}

ModelConfig config_from_hf_json(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string mt = j["model_type"].get<std::string>();
    if (mt != "llama" && mt != "mistral")
      fail(ErrorKind::Unsupported, cat(quote(source), ": model_type ", quote(mt), " is not a Llama"),
           "give the config with --config (an lmkit config JSON or a preset)");
  }
  ModelConfig c;
  c.name = j.contains("_name_or_path") && j["_name_or_path"].is_string() ? j["_name_or_path"].get<std::string>() : "";
  c.dim = get_int(j, "hidden_size", source, true);
  c.n_layers = get_int(j, "num_hidden_layers", source, true);
  c.n_heads = get_int(j, "num_attention_heads", source, true);
  const int64_t kv = get_int(j, "num_key_value_heads", source, false, c.n_heads);
  c.n_kv_heads = kv == c.n_heads ? 0 : kv;
  const int64_t hd = get_int(j, "head_dim", source, false, 0);
  c.head_dim = (hd > 0 && c.n_heads > 0 && hd * c.n_heads == c.dim) ? 0 : hd;
  c.vocab_size = get_int(j, "vocab_size", source, true);
  c.hidden_dim = get_int(j, "intermediate_size", source, true);
  c.norm_eps = get_num(j, "rms_norm_eps", source, 1e-6);
  c.rope_theta = get_num(j, "rope_theta", source, 10000);
  c.max_seq_len = get_int(j, "max_position_embeddings", source, false, 2048);
  c.tie_embeddings = get_bool(j, "tie_word_embeddings", source, false);
  c.attn_bias = get_bool(j, "attention_bias", source, false);
  c.ffn_bias = get_bool(j, "mlp_bias", source, false);
  c.bos_id = get_token(j, "bos_token_id", source, -1);
  c.eos_id = get_token(j, "eos_token_id", source, -1);
  c.pad_id = get_token(j, "pad_token_id", source, -1);
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    fail(ErrorKind::Unsupported, cat(quote(source), ": hidden_act ", j["hidden_act"].dump(), " (lmkit's SwiGLU uses silu)"));
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    if (!rs.is_object()) fail_data(cat(quote(source), ": rope_scaling: expected an object or null"));
    std::string type = rs.contains("rope_type") ? rs["rope_type"].get<std::string>()
                       : rs.contains("type")    ? rs["type"].get<std::string>()
                                                : "";
    if (type == "llama3") {
      c.rope_scaling.type = RopeScalingType::Llama3;
      c.rope_scaling.factor = get_num(rs, "factor", source, 8);
      c.rope_scaling.low_freq_factor = get_num(rs, "low_freq_factor", source, 1);
      c.rope_scaling.high_freq_factor = get_num(rs, "high_freq_factor", source, 4);
      c.rope_scaling.original_max_seq_len = get_int(rs, "original_max_position_embeddings", source, false, 8192);
    } else if (type == "linear") {
      c.rope_scaling.type = RopeScalingType::Linear;
      c.rope_scaling.factor = get_num(rs, "factor", source, 1);
    } else if (type != "default") {
      fail(ErrorKind::Unsupported, cat(quote(source), ": rope_scaling type ", quote(type), " is not supported (llama3 and linear are)"));
    }
  }
  return c;
}

std::string config_to_hf_json(const ModelConfig& c, const std::string& torch_dtype) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& m) {
    if (bad) why.push_back(m);
  };
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type))));
  no(c.norm_bias, "norm biases (norm_bias)");
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type))));
  no(c.qk_norm, "QK-norm (qk_norm)");
  no(c.output_bias, "a classifier bias (output_bias)");
  no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
  no(!c.causal, "non-causal attention (causal = false)");
  no(c.rope_scale_factor != 1 && c.rope_scaling.type != RopeScalingType::None, "both rope_scale_factor and rope_scaling");
  no(c.moe.n_experts > 0, "mixture of experts");
  if (!why.empty()) fail_unsupported("config.json: a Hugging Face Llama has no ", why);
  json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.ffn_hidden();
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.kv_heads();
  j["head_dim"] = c.head_size();
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == RopeScalingType::Llama3)
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_seq_len}};
  else if (c.rope_scaling.type == RopeScalingType::Linear)
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling.factor}};
  else if (c.rope_scale_factor != 1)
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scale_factor}};
  else
    j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["attention_bias"] = c.attn_bias;
  j["mlp_bias"] = c.ffn_bias;
  j["hidden_act"] = "silu";
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_id >= 0) j["eos_token_id"] = c.eos_id;
  if (c.pad_id >= 0) j["pad_token_id"] = c.pad_id;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

ModelConfig config_from_params_json(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  if (j.contains("moe_args")) fail(ErrorKind::Unsupported, cat(quote(source), ": mixture-of-experts params (moe_args) are not supported"));
  ModelConfig c;
  c.dim = get_int(j, "dim", source, true);
  c.n_layers = get_int(j, "n_layers", source, true);
  c.n_heads = get_int(j, "n_heads", source, true);
  const int64_t kv = get_int(j, "n_kv_heads", source, false, 0);
  c.n_kv_heads = kv == c.n_heads ? 0 : kv;
  c.vocab_size = std::max<int64_t>(0, get_int(j, "vocab_size", source, false, -1));
  c.multiple_of = get_int(j, "multiple_of", source, false, 256);
  c.ffn_dim_multiplier = get_num(j, "ffn_dim_multiplier", source, 0);
  c.norm_eps = get_num(j, "norm_eps", source, 1e-5);
  c.rope_theta = get_num(j, "rope_theta", source, 10000);
  c.max_seq_len = get_int(j, "max_seq_len", source, false, 2048);
  if (get_bool(j, "use_scaled_rope", source, false)) {
    c.rope_scaling.type = RopeScalingType::Llama3;  // Llama 3.1's apply_scaling constants
    c.rope_scaling.factor = 8;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_max_seq_len = 8192;
  }
  c.qk_norm = get_bool(j, "use_qk_norm", source, false);
  return c;
}

std::string config_to_params_json(const ModelConfig& c) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& m) {
    if (bad) why.push_back(m);
  };
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type))));
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type))));
  no(c.norm_bias || c.attn_bias || c.ffn_bias || c.output_bias, "biases");
  no(c.head_dim > 0 && c.head_dim * c.n_heads != c.dim, cat("head_dim ", c.head_dim, " (params.json derives dim / n_heads)"));
  no(c.hidden_dim > 0 && c.hidden_dim != meta_hidden(c),
     cat("hidden_dim ", c.hidden_dim, " (params.json derives ", meta_hidden(c), " from multiple_of and ffn_dim_multiplier)"));
  const RopeScaling llama31{RopeScalingType::Llama3, 8, 1, 4, 8192};
  no(c.rope_scaling.type != RopeScalingType::None && !(c.rope_scaling == llama31), "rope_scaling other than Llama 3.1's (use_scaled_rope)");
  no(c.rope_scale_factor != 1, "rope_scale_factor");
  no(c.logits_soft_cap != 0, "a logits soft cap");
  if (!why.empty()) fail_unsupported("params.json: Meta's params have no ", why);
  json j;
  j["dim"] = c.dim;
  j["n_layers"] = c.n_layers;
  j["n_heads"] = c.n_heads;
  j["n_kv_heads"] = c.kv_heads();
  j["vocab_size"] = c.vocab_size;
  j["multiple_of"] = c.multiple_of;
  if (c.ffn_dim_multiplier != 0) j["ffn_dim_multiplier"] = c.ffn_dim_multiplier;
  j["norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["use_scaled_rope"] = c.rope_scaling.type == RopeScalingType::Llama3;
  if (c.qk_norm) j["use_qk_norm"] = true;
  j["max_seq_len"] = c.max_seq_len;
  return j.dump(2) + "\n";
}

std::string config_convention(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  if (j.contains("hidden_size") || j.contains("num_hidden_layers") || j.contains("model_type")) return "hf";
  std::set<std::string> lmkit_keys;
  for (const std::string& k : config_keys()) lmkit_keys.insert(k.substr(0, k.find('.')));
  bool all_lmkit = true, all_params = true;
  for (const auto& [k, v] : j.items()) {
    if (!lmkit_keys.count(k)) all_lmkit = false;
    if (!kParamsKeys.count(k)) all_params = false;
  }
  if (!all_lmkit && all_params) return "meta";
  return "lmkit";
}

ModelConfig load_config_arg(const std::string& arg, const std::string& format) {
  const std::optional<SeedFormat> seed_named = seed_format_from_name(format);
  if (format != "auto" && format != "lmkit" && format != "hf" && format != "meta" && !seed_named)
    fail_usage(cat("--config-format: unknown format ", quote(format)));
  auto not_json = [&](const std::string& what) {
    if (format != "auto") fail_usage(cat("--config-format ", format, " is for a config JSON file, not ", what));
  };
  struct stat st {};
  if (::stat(arg.c_str(), &st) != 0) {
    if (auto p = find_preset(arg)) {
      not_json(cat("the preset ", quote(arg)));
      return *p;
    }
    if (arg.find('/') != std::string::npos || arg.find(".json") != std::string::npos) fail_io("cannot open", arg);
    fail(ErrorKind::Usage, cat("--config ", quote(arg), " is neither a file nor a preset"),
         "presets are listed by 'lm-inspect-config --list-presets'");
  }
  const std::string text = read_text(arg);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') {  // a checkpoint
    not_json(cat("the checkpoint ", quote(arg)));
    return load_config_input(arg, {}).config;
  }
  const std::optional<SeedFormat> seed = format == "auto" ? detect_seed_format(text, arg) : seed_named;
  if (seed) return config_from_seed_json(text, *seed, arg).config;
  const std::string conv = format == "auto" ? config_convention(text, arg) : format;
  if (conv == "hf") return config_from_hf_json(text, arg);
  if (conv == "meta") return config_from_params_json(text, arg);
  return config_from_json(text, arg);
}

ModelConfig infer_config(const std::vector<Node>& nodes, const std::vector<std::string>& sets, const std::string& source) {
  std::map<std::string, Shape> shapes;
  for (const Node& n : nodes) shapes[n.name] = n.shape;
  const std::string src = quote(source);
  auto shape = [&](const std::string& name, size_t rank) -> const Shape& {
    const auto it = shapes.find(name);
    if (it == shapes.end()) fail_data(cat(src, ": no tensor ", quote(name), " (needed to infer the config)"));
    if (it->second.size() != rank)
      fail_data(cat(src, ": tensor ", quote(name), " has shape ", shape_str(it->second), ", expected ", rank, " dimensions"));
    return it->second;
  };
  auto has = [&](const std::string& n) { return shapes.count(n) > 0; };
  ModelConfig hints;
  apply_overrides(hints, sets);
  std::set<std::string> set_keys;
  for (const auto& a : sets) set_keys.insert(override_key(a));

  if (!has("tok_embeddings.weight"))
    fail(ErrorKind::Data, cat(src, ": no model config and no 'tok_embeddings.weight' to infer one from"),
         "give it: --config FILE|PRESET");
  ModelConfig c;
  c.name = "";
  c.vocab_size = shape("tok_embeddings.weight", 2)[0];
  c.dim = shape("tok_embeddings.weight", 2)[1];
  int64_t L = 0;
  for (const auto& [name, s] : shapes) {
    if (name.rfind("layers.", 0) != 0) continue;
    const size_t end = name.find('.', 7);
    const std::string digits = name.substr(7, end == std::string::npos ? std::string::npos : end - 7);
    if (digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    L = std::max<int64_t>(L, std::stoll(digits) + 1);
    if (name.find(".feed_forward.router.") != std::string::npos || name.find(".experts.") != std::string::npos)
      fail(ErrorKind::Unsupported, cat(src, ": mixture-of-experts tensors (", quote(name), ") are not supported"));
  }
  if (L == 0) fail_data(cat(src, ": no 'layers.N.' tensors: cannot infer n_layers"));
  c.n_layers = L;
  const int64_t Q = shape("layers.0.attention.wq.weight", 2)[0];
  const int64_t KV = shape("layers.0.attention.wk.weight", 2)[0];
  int64_t HS = 0;
  if (set_keys.count("head_dim") && hints.head_dim > 0)
    HS = hints.head_dim;
  else if (set_keys.count("n_heads") && hints.n_heads > 0 && Q % hints.n_heads == 0)
    HS = Q / hints.n_heads;
  else if (has("layers.0.attention.q_norm.weight"))
    HS = shape("layers.0.attention.q_norm.weight", 1)[0];
  else
    fail(ErrorKind::Data, cat("cannot infer n_heads from ", src, ": wq has ", Q, " rows, which any head count dividing it fits"),
         "give it: --set n_heads=N (or --config FILE|PRESET)");
  if (HS <= 0 || Q % HS != 0 || KV % HS != 0)
    fail_data(cat(src, ": wq (", Q, " rows) and wk (", KV, " rows) are not whole heads of size ", HS));
  c.n_heads = Q / HS;
  c.n_kv_heads = KV / HS == c.n_heads ? 0 : KV / HS;
  c.head_dim = (Q == c.dim) ? 0 : HS;
  c.attn_bias = has("layers.0.attention.wq.bias");
  c.norm_bias = has("layers.0.attention_norm.bias");
  if (c.norm_bias) c.norm_type = NormType::LayerNorm;
  c.qk_norm = has("layers.0.attention.q_norm.weight");
  c.ffn_type = has("layers.0.feed_forward.w3.weight") ? FfnType::SwiGLU : FfnType::GELU;
  c.ffn_bias = has("layers.0.feed_forward.w1.bias");
  c.hidden_dim = shape("layers.0.feed_forward.w1.weight", 2)[0];
  c.tie_embeddings = !has("output.weight");
  c.output_bias = has("output.bias");
  if (c.bos_id >= c.vocab_size) c.bos_id = -1;
  if (c.eos_id >= c.vocab_size) c.eos_id = -1;
  apply_overrides(c, sets);
  return c;
}

bool gguf_has_lmkit_config(const GGUFFile& f) {
  const GGUFValue* v = f.find("lmkit.config");
  return v && v->type == GGUFValue::String;
}

std::vector<std::string> gguf_config_assignments(const GGUFFile& f) {
  const std::string src = quote(f.path());
  const GGUFValue* arch = f.find("general.architecture");
  if (!arch) fail_data(cat(src, ": no general.architecture key"));
  const std::string a = arch->as_string("general.architecture");
  if (a != "llama") fail(ErrorKind::Unsupported, cat(src, ": GGUF architecture ", quote(a), " is not supported (llama is)"));
  std::vector<std::string> out;
  auto num = [&](const char* key, const char* field) {
    if (const GGUFValue* v = f.find(key)) {
      if (v->type == GGUFValue::F32 || v->type == GGUFValue::F64) {
        std::ostringstream s;
        s.precision(9);
        s << v->f;
        out.push_back(cat(field, "=", s.str()));
      } else {
        out.push_back(cat(field, "=", v->as_int(key)));
      }
    }
  };
  num("llama.attention.head_count", "n_heads");
  num("llama.attention.key_length", "head_dim");
  num("llama.attention.layer_norm_rms_epsilon", "norm_eps");
  num("llama.rope.freq_base", "rope_theta");
  num("llama.context_length", "max_seq_len");
  num("tokenizer.ggml.bos_token_id", "bos_id");
  num("tokenizer.ggml.eos_token_id", "eos_id");
  num("tokenizer.ggml.padding_token_id", "pad_id");
  if (const GGUFValue* t = f.find("llama.rope.scaling.type")) {
    const std::string type = t->as_string("llama.rope.scaling.type");
    if (type == "linear") {
      out.push_back("rope_scaling.type=linear");
      num("llama.rope.scaling.factor", "rope_scaling.factor");
    } else if (type != "none") {
      fail(ErrorKind::Unsupported, cat(src, ": llama.rope.scaling.type ", quote(type), " is not supported"));
    }
  }
  out.push_back("name=" + (f.find("general.name") && f.find("general.name")->type == GGUFValue::String
                               ? f.find("general.name")->s
                               : std::string("gguf")));
  return out;
}

std::vector<std::string> gguf_unsupported(const ModelConfig& c) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& m) {
    if (bad) why.push_back(m);
  };
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type)), " (llama has RMSNorm)"));
  no(c.norm_bias, "norm biases (norm_bias)");
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type)), " (llama has SwiGLU)"));
  no(c.ffn_bias, "feed-forward biases (ffn_bias)");
  no(c.output_bias, "a classifier bias (output_bias)");
  no(c.qk_norm, "QK-norm (qk_norm)");
  no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
  no(!c.causal, "non-causal attention (causal = false)");
  no(c.rope_scaling.type == RopeScalingType::Llama3, "llama3 RoPE scaling (it needs a rope_freqs tensor lmkit does not write yet)");
  no(c.rope_scaling.type == RopeScalingType::Linear && c.rope_scale_factor != 1, "both rope_scale_factor and linear rope_scaling");
  no(c.moe.n_experts > 0, "mixture of experts (moe.n_experts)");
  return why;
}

void set_gguf_metadata(GGUFWriter& w, const ModelConfig& c, const std::string& config_json, uint32_t file_type, bool quantized,
                       const std::string& tokenizer_json) {
  auto u32 = [](int64_t v) { return GGUFValue::u32(static_cast<uint32_t>(v)); };
  w.set("general.architecture", GGUFValue::str("llama"));
  w.set("general.name", GGUFValue::str(c.name.empty() ? "lmkit" : c.name));
  w.set("general.file_type", u32(file_type));
  if (quantized) w.set("general.quantization_version", u32(2));
  w.set("llama.context_length", u32(c.max_seq_len));
  w.set("llama.embedding_length", u32(c.dim));
  w.set("llama.block_count", u32(c.n_layers));
  w.set("llama.feed_forward_length", u32(c.ffn_hidden()));
  w.set("llama.attention.head_count", u32(c.n_heads));
  w.set("llama.attention.head_count_kv", u32(c.kv_heads()));
  if (c.head_size() * c.n_heads != c.dim) {
    w.set("llama.attention.key_length", u32(c.head_size()));
    w.set("llama.attention.value_length", u32(c.head_size()));
  }
  w.set("llama.attention.layer_norm_rms_epsilon", GGUFValue::f32(static_cast<float>(c.norm_eps)));
  w.set("llama.rope.dimension_count", u32(c.head_size()));
  w.set("llama.rope.freq_base", GGUFValue::f32(static_cast<float>(c.rope_theta)));
  const double linear = c.rope_scaling.type == RopeScalingType::Linear ? c.rope_scaling.factor : c.rope_scale_factor;
  if (linear != 1) {
    w.set("llama.rope.scaling.type", GGUFValue::str("linear"));
    w.set("llama.rope.scaling.factor", GGUFValue::f32(static_cast<float>(linear)));
  }
  w.set("llama.vocab_size", u32(c.vocab_size));
  w.set("tokenizer.ggml.model", GGUFValue::str("none"));
  if (c.bos_id >= 0) w.set("tokenizer.ggml.bos_token_id", u32(c.bos_id));
  if (c.eos_id >= 0) w.set("tokenizer.ggml.eos_token_id", u32(c.eos_id));
  if (c.pad_id >= 0) w.set("tokenizer.ggml.padding_token_id", u32(c.pad_id));
  w.set("lmkit.config", GGUFValue::str(config_json.empty() ? config_to_json(c, -1) : config_json));
  if (!tokenizer_json.empty()) w.set("lmkit.tokenizer", GGUFValue::str(tokenizer_json));
}

}  // namespace lm::convert
