#include "convert/config_io.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <type_traits>

#include "core/error.h"
#include "core/json.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/metadata_keys.h"
#include "io/stream.h"
#include "model/config_input.h"
#include "model/presets.h"
#include "tokenizer/utf8.h"

namespace lm::convert {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Key tables: one per keyed format. A row carries one outside key both ways.

enum class Type { Int, Number, Bool, String, TokenId, Object, Any };

struct KeyRow {
  const char* key;    // the outside key, e.g. "rope_theta", "llama.rope.freq_base"
  const char* field;  // the lmkit config key it carries (config_keys() spelling); "" = none
  Type type;
  bool required;
  json absent;        // what an absent (or null) key means, handed to `in`; null = nothing to set
  // lmkit -> outside: the value to write (kOmit = leave the key out).
  json (*out)(const ModelConfig& c);
  // outside -> lmkit: `v` already checked against `type`; `src` is the quoted source for messages.
  // nullptr = the key is ignored on the way in.
  void (*in)(ModelConfig& c, const json& v, const std::string& src);
};

const json kOmit = json(json::value_t::discarded);

// A row for a plain field: the same value both ways.
#define LM_KEY(key, member, type, absent)                                                        \
  KeyRow {                                                                                       \
    key, #member, Type::type, false, json(absent), [](const ModelConfig& c) { return json(c.member); }, \
        [](ModelConfig& c, const json& v, const std::string&) { c.member = v.get<std::decay_t<decltype(c.member)>>(); } \
  }
#define LM_REQUIRED(key, member, type)                                                           \
  KeyRow {                                                                                       \
    key, #member, Type::type, true, json(), [](const ModelConfig& c) { return json(c.member); }, \
        [](ModelConfig& c, const json& v, const std::string&) { c.member = v.get<std::decay_t<decltype(c.member)>>(); } \
  }
// A special token id: -1 (none) is left out.
#define LM_TOKEN(key, member, type, absent)                                                      \
  KeyRow {                                                                                       \
    key, #member, Type::type, false, json(absent),                                               \
        [](const ModelConfig& c) { return c.member >= 0 ? json(c.member) : kOmit; },             \
        [](ModelConfig& c, const json& v, const std::string&) { c.member = v.get<int64_t>(); }   \
  }

int64_t n_kv_from(const ModelConfig& c, int64_t kv) { return kv == c.n_heads ? 0 : kv; }  // lmkit: 0 = MHA
// lmkit: head_dim 0 = dim / n_heads.
int64_t head_dim_from(const ModelConfig& c, int64_t hd) { return hd > 0 && c.n_heads > 0 && hd * c.n_heads == c.dim ? 0 : hd; }
// The linear position scaling of `c`, whichever field carries it (1 = none).
double linear_rope_factor(const ModelConfig& c) {
  return c.rope_scaling.type == RopeScalingType::Linear ? c.rope_scaling.factor : c.rope_scale_factor;
}

// Hugging Face rope_scaling objects: {"rope_type": "llama3", ...} and {"rope_type": "linear", "factor"}.
const std::vector<KeyRow>& hf_rope_llama3_keys() {
  static const std::vector<KeyRow> rows = {
      LM_KEY("factor", rope_scaling.factor, Number, 8),
      LM_KEY("low_freq_factor", rope_scaling.low_freq_factor, Number, 1),
      LM_KEY("high_freq_factor", rope_scaling.high_freq_factor, Number, 4),
      LM_KEY("original_max_position_embeddings", rope_scaling.original_max_seq_len, Int, 8192),
  };
  return rows;
}
const std::vector<KeyRow>& hf_rope_linear_keys() {
  static const std::vector<KeyRow> rows = {LM_KEY("factor", rope_scaling.factor, Number, 1)};
  return rows;
}

json write_object(const std::vector<KeyRow>& rows, const ModelConfig& c);
void read_object(const std::vector<KeyRow>& rows, const json& j, ModelConfig& c, const std::string& src,
                 std::vector<std::string>* given);

// Hugging Face LlamaConfig (transformers' configuration_llama.py; absent keys take its defaults,
// except the special tokens, which are none unless given).
const std::vector<KeyRow>& hf_keys() {
  static const std::vector<KeyRow> rows = {
      {"model_type", "", Type::String, false, json(), [](const ModelConfig&) { return json("llama"); },
       [](ModelConfig&, const json& v, const std::string& src) {
         const std::string mt = v.get<std::string>();
         if (mt != "llama" && mt != "mistral")
           fail(ErrorKind::Unsupported, cat(src, ": model_type ", quote(mt), " is not a Llama"),
                "give the config with --config (an lmkit config JSON or a preset)");
       }},
      {"architectures", "", Type::Any, false, json(), [](const ModelConfig&) { return json::array({"LlamaForCausalLM"}); },
       nullptr},
      {"_name_or_path", "name", Type::String, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.name = v.get<std::string>(); }},
      LM_REQUIRED("hidden_size", dim, Int),
      LM_REQUIRED("num_hidden_layers", n_layers, Int),
      LM_REQUIRED("num_attention_heads", n_heads, Int),
      {"num_key_value_heads", "n_kv_heads", Type::Int, false, json(), [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"head_dim", "head_dim", Type::Int, false, json(), [](const ModelConfig& c) { return json(c.head_size()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.head_dim = head_dim_from(c, v.get<int64_t>()); }},
      LM_REQUIRED("vocab_size", vocab_size, Int),
      {"intermediate_size", "hidden_dim", Type::Int, true, json(), [](const ModelConfig& c) { return json(c.ffn_hidden()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
      LM_KEY("rms_norm_eps", norm_eps, Number, 1e-6),
      LM_KEY("rope_theta", rope_theta, Number, 10000),
      LM_KEY("max_position_embeddings", max_seq_len, Int, 2048),
      {"rope_scaling", "rope_scaling", Type::Object, false, json(),
       [](const ModelConfig& c) -> json {
         if (c.rope_scaling.type == RopeScalingType::Llama3) {
           json j = write_object(hf_rope_llama3_keys(), c);
           j["rope_type"] = "llama3";
           return j;
         }
         if (linear_rope_factor(c) == 1) return json(nullptr);
         ModelConfig linear = c;
         linear.rope_scaling.factor = linear_rope_factor(c);
         json j = write_object(hf_rope_linear_keys(), linear);
         j["rope_type"] = "linear";
         return j;
       },
       [](ModelConfig& c, const json& rs, const std::string& src) {
         const char* type_key = rs.contains("rope_type") ? "rope_type" : "type";
         const json type = rs.contains(type_key) ? rs[type_key] : json("");
         if (!type.is_string()) fail_data(cat(src, ": rope_scaling.", type_key, ": expected a string, got ", type.dump()));
         const std::string t = type.get<std::string>();
         if (t == "llama3") {
           c.rope_scaling.type = RopeScalingType::Llama3;
           read_object(hf_rope_llama3_keys(), rs, c, src, nullptr);
         } else if (t == "linear") {
           c.rope_scaling.type = RopeScalingType::Linear;
           read_object(hf_rope_linear_keys(), rs, c, src, nullptr);
         } else if (t != "default") {
           fail(ErrorKind::Unsupported, cat(src, ": rope_scaling type ", quote(t), " is not supported (llama3 and linear are)"));
         }
       }},
      LM_KEY("tie_word_embeddings", tie_embeddings, Bool, false),
      LM_KEY("attention_bias", attn_bias, Bool, false),
      LM_KEY("mlp_bias", ffn_bias, Bool, false),
      {"hidden_act", "", Type::String, false, json(), [](const ModelConfig&) { return json("silu"); },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v != "silu") fail(ErrorKind::Unsupported, cat(src, ": hidden_act ", v.dump(), " (lmkit's SwiGLU uses silu)"));
       }},
      LM_TOKEN("bos_token_id", bos_id, TokenId, -1),
      LM_TOKEN("eos_token_id", eos_id, TokenId, -1),
      LM_TOKEN("pad_token_id", pad_id, TokenId, -1),
  };
  return rows;
}

// Llama 3.1's apply_scaling constants, which Meta's use_scaled_rope switches on.
const RopeScaling kLlama31Scaling{RopeScalingType::Llama3, 8, 1, 4, 8192};

// Llama 4's ModelArgs (llama-models models/llama4/args.py) add these keys to Llama 3's; a
// params.json holding any of them is Llama 4's, with Llama 4's defaults.
constexpr const char* kLlama4OnlyParams[] = {"moe_args", "nope_layer_interval", "attention_chunk_size", "use_qk_norm",
                                             "attn_temperature_tuning", "floor_scale", "attn_scale", "ffn_exp",
                                             "rope_scaling_factor", "rope_high_freq_factor", "vision_args"};
// Llama 4's apply_scaling: Llama 3.1's with factor 16 and high_freq_factor 1 unless given.
const RopeScaling kLlama4Scaling{RopeScalingType::Llama3, 16, 1, 1, 8192};

bool llama4_features(const ModelConfig& c) {
  return c.nope_layer_interval > 0 || c.attn_chunk_size > 0 || c.attn_temperature_tuning || c.qk_norm;
}
// Whether a params.json written for `c` names its rope_scaling constants (Llama 4's keys).
bool llama4_rope_keys(const ModelConfig& c) {
  return c.rope_scaling.type == RopeScalingType::Llama3 && (llama4_features(c) || !(c.rope_scaling == kLlama31Scaling));
}

// Meta params.json (llama-models' ModelArgs; absent keys take its defaults).
const std::vector<KeyRow>& params_keys() {
  static const std::vector<KeyRow> rows = {
      {"moe_args", "", Type::Any, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json&, const std::string& src) {
         fail(ErrorKind::Unsupported, cat(src, ": mixture-of-experts params (moe_args) are not supported"));
       }},
      LM_REQUIRED("dim", dim, Int),
      LM_REQUIRED("n_layers", n_layers, Int),
      LM_REQUIRED("n_heads", n_heads, Int),
      {"n_kv_heads", "n_kv_heads", Type::Int, false, json(), [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"vocab_size", "vocab_size", Type::Int, false, json(-1), [](const ModelConfig& c) { return json(c.vocab_size); },
       [](ModelConfig& c, const json& v, const std::string&) { c.vocab_size = std::max<int64_t>(0, v.get<int64_t>()); }},
      LM_KEY("multiple_of", multiple_of, Int, 256),
      {"ffn_dim_multiplier", "ffn_dim_multiplier", Type::Number, false, json(0),
       [](const ModelConfig& c) { return c.ffn_dim_multiplier != 0 ? json(c.ffn_dim_multiplier) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.ffn_dim_multiplier = v.get<double>(); }},
      LM_KEY("norm_eps", norm_eps, Number, 1e-5),
      LM_KEY("rope_theta", rope_theta, Number, 10000),
      {"use_scaled_rope", "rope_scaling", Type::Bool, false, json(false),
       [](const ModelConfig& c) { return json(c.rope_scaling.type == RopeScalingType::Llama3); },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (v.get<bool>()) c.rope_scaling = kLlama31Scaling;
       }},
      // Llama 4's rope_scaling constants (its apply_scaling); written whenever they are not 3.1's.
      {"rope_scaling_factor", "rope_scaling.factor", Type::Number, false, json(),
       [](const ModelConfig& c) { return llama4_rope_keys(c) ? json(c.rope_scaling.factor) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (c.rope_scaling.type == RopeScalingType::Llama3) c.rope_scaling.factor = v.get<double>();  // use_scaled_rope
       }},
      {"rope_high_freq_factor", "rope_scaling.high_freq_factor", Type::Number, false, json(),
       [](const ModelConfig& c) { return llama4_rope_keys(c) ? json(c.rope_scaling.high_freq_factor) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (c.rope_scaling.type == RopeScalingType::Llama3) c.rope_scaling.high_freq_factor = v.get<double>();
       }},
      // Llama 4's QK-norm is weightless (its L2Norm), on the RoPE layers.
      {"use_qk_norm", "qk_norm", Type::Bool, false, json(false), [](const ModelConfig& c) { return c.qk_norm ? json(true) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) {
         c.qk_norm = v.get<bool>();
         if (c.qk_norm) c.qk_norm_weight = false;
       }},
      {"nope_layer_interval", "nope_layer_interval", Type::Int, false, json(),
       [](const ModelConfig& c) { return c.nope_layer_interval > 0 ? json(c.nope_layer_interval) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.nope_layer_interval = v.get<int64_t>(); }},
      {"attention_chunk_size", "attn_chunk_size", Type::Int, false, json(),
       [](const ModelConfig& c) { return c.attn_chunk_size > 0 ? json(c.attn_chunk_size) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.attn_chunk_size = v.get<int64_t>(); }},
      {"attn_temperature_tuning", "attn_temperature_tuning", Type::Bool, false, json(),
       [](const ModelConfig& c) { return c.attn_temperature_tuning ? json(true) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.attn_temperature_tuning = v.get<bool>(); }},
      {"floor_scale", "attn_floor_scale", Type::Number, false, json(8192),
       [](const ModelConfig& c) { return c.attn_temperature_tuning ? json(c.attn_floor_scale) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.attn_floor_scale = v.get<double>(); }},
      {"attn_scale", "attn_scale", Type::Number, false, json(0.1),
       [](const ModelConfig& c) { return c.attn_temperature_tuning ? json(c.attn_scale) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.attn_scale = v.get<double>(); }},
      {"vision_args", "vision_dim", Type::Object, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {  // the rest describes the encoder
         const auto d = v.find("output_dim");
         if (d == v.end() || !d->is_number_integer()) fail_data(cat(src, ": vision_args.output_dim: expected an integer"));
         c.vision_dim = d->get<int64_t>();
       }},
      {"quantization_args", "", Type::Any, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json&, const std::string& src) {
         fail(ErrorKind::Unsupported, cat(src, ": quantized params (quantization_args) are not supported"));
       }},
      {"lora_args", "", Type::Any, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json&, const std::string& src) {
         fail(ErrorKind::Unsupported, cat(src, ": LoRA params (lora_args) are not supported"));
       }},
      LM_KEY("max_seq_len", max_seq_len, Int, 2048),
      {"max_batch_size", "", Type::Int, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr},
  };
  return rows;
}

// GGUF key/values of llama.cpp's llama architecture (gguf-py constants.py). Int is written as
// u32, Number as f32. Read, they become --set assignments the config inference checks against
// the tensors.
const std::vector<KeyRow>& gguf_keys() {
  static const std::vector<KeyRow> rows = {
      {"general.architecture", "", Type::String, true, json(), [](const ModelConfig&) { return json("llama"); },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v != "llama")
           fail(ErrorKind::Unsupported, cat(src, ": GGUF architecture ", quote(v.get<std::string>()), " is not supported (llama is)"));
       }},
      {"general.name", "name", Type::String, false, json("gguf"),
       [](const ModelConfig& c) { return json(c.name.empty() ? "lmkit" : c.name); },
       [](ModelConfig& c, const json& v, const std::string&) { c.name = v.get<std::string>(); }},
      LM_KEY("llama.context_length", max_seq_len, Int, nullptr),
      LM_KEY("llama.embedding_length", dim, Int, nullptr),
      LM_KEY("llama.block_count", n_layers, Int, nullptr),
      {"llama.feed_forward_length", "hidden_dim", Type::Int, false, json(), [](const ModelConfig& c) { return json(c.ffn_hidden()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
      LM_KEY("llama.attention.head_count", n_heads, Int, nullptr),
      {"llama.attention.head_count_kv", "n_kv_heads", Type::Int, false, json(),
       [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"llama.attention.key_length", "head_dim", Type::Int, false, json(),
       [](const ModelConfig& c) { return c.head_size() * c.n_heads != c.dim ? json(c.head_size()) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.head_dim = head_dim_from(c, v.get<int64_t>()); }},
      {"llama.attention.value_length", "", Type::Int, false, json(),
       [](const ModelConfig& c) { return c.head_size() * c.n_heads != c.dim ? json(c.head_size()) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (v.get<int64_t>() != c.head_size())
           fail(ErrorKind::Unsupported, cat(src, ": llama.attention.value_length ", v.get<int64_t>(), " differs from the head size ",
                                            c.head_size(), " (lmkit's attention has one head size)"));
       }},
      LM_KEY("llama.attention.layer_norm_rms_epsilon", norm_eps, Number, nullptr),
      {"llama.rope.dimension_count", "", Type::Int, false, json(), [](const ModelConfig& c) { return json(c.head_size()); },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (v.get<int64_t>() != c.head_size())
           fail(ErrorKind::Unsupported, cat(src, ": llama.rope.dimension_count ", v.get<int64_t>(), " is not the head size ",
                                            c.head_size(), " (RoPE on part of a head is not supported)"));
       }},
      LM_KEY("llama.rope.freq_base", rope_theta, Number, nullptr),
      {"llama.rope.scaling.type", "rope_scaling.type", Type::String, false, json(),
       [](const ModelConfig& c) { return linear_rope_factor(c) != 1 ? json("linear") : kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (v == "linear")
           c.rope_scaling.type = RopeScalingType::Linear;
         else if (v != "none")
           fail(ErrorKind::Unsupported, cat(src, ": llama.rope.scaling.type ", quote(v.get<std::string>()), " is not supported"));
       }},
      {"llama.rope.scaling.factor", "rope_scaling.factor", Type::Number, false, json(),
       [](const ModelConfig& c) { return linear_rope_factor(c) != 1 ? json(linear_rope_factor(c)) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.rope_scaling.factor = v.get<double>(); }},
      LM_KEY("llama.vocab_size", vocab_size, Int, nullptr),
      {"llama.expert_count", "", Type::Int, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v.get<int64_t>() > 0)
           fail(ErrorKind::Unsupported, cat(src, ": mixture of experts (llama.expert_count ", v.get<int64_t>(), ") is not supported"));
       }},
      {"tokenizer.ggml.model", "", Type::String, false, json(), [](const ModelConfig&) { return json("none"); }, nullptr},
      LM_TOKEN("tokenizer.ggml.bos_token_id", bos_id, Int, nullptr),
      LM_TOKEN("tokenizer.ggml.eos_token_id", eos_id, Int, nullptr),
      LM_TOKEN("tokenizer.ggml.padding_token_id", pad_id, Int, nullptr),
  };
  return rows;
}

#undef LM_KEY
#undef LM_REQUIRED
#undef LM_TOKEN

// ---------------------------------------------------------------------------------------------
// The two directions, for any table.

// `v` checked against the row's type; a token id given as a list (HF eos_token_id) is its first.
json checked(const KeyRow& r, const json& v, const std::string& src) {
  auto bad = [&](const char* what) -> json {
    fail_data(cat(src, ": ", quote(r.key), ": expected ", what, ", got ", v.dump()));
  };
  switch (r.type) {
    case Type::Int: return v.is_number_integer() ? v : bad("an integer");
    case Type::Number: return v.is_number() ? v : bad("a number");
    case Type::Bool: return v.is_boolean() ? v : bad("true or false");
    case Type::String: return v.is_string() ? v : bad("a string");
    case Type::Object: return v.is_object() ? v : bad("an object or null");
    case Type::TokenId: {
      const json& id = v.is_array() && !v.empty() ? v[0] : v;
      return id.is_number_integer() ? id : bad("a token id");
    }
    case Type::Any: return v;
  }
  return v;
}

// Reads every row from `lookup` (nullopt = the key is absent). `given` (may be null) collects the
// fields the source set, an absent key's default included.
void read_rows(const std::vector<KeyRow>& rows, const std::function<std::optional<json>(const char*)>& lookup, ModelConfig& c,
               const std::string& src, std::vector<std::string>* given) {
  for (const KeyRow& r : rows) {
    std::optional<json> v = lookup(r.key);
    if (v && v->is_null()) v.reset();
    if (!v) {
      if (r.required) fail_data(cat(src, ": no ", quote(r.key)));
      if (r.absent.is_null()) continue;
      v = r.absent;
    }
    if (!r.in) continue;
    r.in(c, checked(r, *v, src), src);
    if (given && *r.field) given->push_back(r.field);
  }
}

void read_object(const std::vector<KeyRow>& rows, const json& j, ModelConfig& c, const std::string& src,
                 std::vector<std::string>* given) {
  read_rows(
      rows,
      [&](const char* key) -> std::optional<json> {
        const auto it = j.find(key);
        return it == j.end() ? std::nullopt : std::optional<json>(*it);
      },
      c, src, given);
}

json write_object(const std::vector<KeyRow>& rows, const ModelConfig& c) {
  json j = json::object();
  for (const KeyRow& r : rows) {
    json v = r.out(c);
    if (!v.is_discarded()) j[r.key] = std::move(v);
  }
  return j;
}

json parse_object(const std::string& text, const std::string& source) {
  json j = parse_json_strict(text, cat(quote(source), ": "));
  if (!j.is_object()) fail_data(cat(quote(source), ": expected a JSON object"));
  return j;
}

std::set<std::string> keys_of(const std::vector<KeyRow>& rows) {
  std::set<std::string> keys;
  for (const KeyRow& r : rows) keys.insert(r.key);
  return keys;
}

// Meta's rule for the SwiGLU hidden size (ModelConfig::ffn_hidden with hidden_dim unset).
int64_t meta_hidden(const ModelConfig& c) {
  ModelConfig d = c;
  d.hidden_dim = 0;
  return d.ffn_hidden();
}

// A GGUF metadata value as JSON (arrays element by element). An f32 becomes the shortest decimal
// that reads back as the same float: GGUF's 1e-5f is the config's 1e-5, not 9.99999975e-06.
json gguf_json(const GGUFValue& v) {
  switch (v.type) {
    case GGUFValue::U8: case GGUFValue::U16: case GGUFValue::U32: case GGUFValue::U64: return json(v.u);
    case GGUFValue::I8: case GGUFValue::I16: case GGUFValue::I32: case GGUFValue::I64: return json(v.i);
    case GGUFValue::Bool: return json(v.u != 0);
    case GGUFValue::String: return json(v.s);
    case GGUFValue::F64: return json(v.f);
    case GGUFValue::F32: {
      const float x = static_cast<float>(v.f);
      for (int digits = 1; digits <= 9; ++digits) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(x));
        if (std::strtof(buf, nullptr) == x) return json(std::strtod(buf, nullptr));
      }
      return json(v.f);
    }
    case GGUFValue::Array: {
      json a = json::array();
      for (const GGUFValue& e : v.array) a.push_back(gguf_json(e));
      return a;
    }
  }
  return json();
}

GGUFValue gguf_value(const KeyRow& r, const json& v) {
  switch (r.type) {
    case Type::Int: case Type::TokenId: return GGUFValue::u32(static_cast<uint32_t>(v.get<int64_t>()));
    case Type::Number: return GGUFValue::f32(static_cast<float>(v.get<double>()));
    case Type::Bool: return GGUFValue::boolean(v.get<bool>());
    default: return GGUFValue::str(v.get<std::string>());
  }
}

// --set assignments for `fields` of `c` ("n_heads=32", "name=\"x\"").
std::vector<std::string> assignments(const ModelConfig& c, const std::vector<std::string>& fields) {
  const json all = json::parse(config_to_json(c, -1));
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& f : fields) {
    if (!seen.insert(f).second) continue;
    const json* v = &all;
    for (size_t start = 0;;) {
      const size_t dot = f.find('.', start);
      v = &v->at(f.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    out.push_back(f + "=" + v->dump());
  }
  return out;
}

}  // namespace

void fail_unsupported(const std::string& what, const std::vector<std::string>& why) {
  std::string hint;
  for (size_t i = 1; i < why.size(); ++i) hint += (i > 1 ? "; " : "also: ") + why[i];
  fail(ErrorKind::Unsupported, what + why.at(0), hint);
}

// ---- Hugging Face ----

ModelConfig config_from_hf_json(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  ModelConfig c;
  c.name = "";
  read_object(hf_keys(), j, c, quote(source), nullptr);
  return c;
}

// What Llama 4 and materium added to the model, which Llama 2/3 formats have no key for.
void no_llama4_or_materium(const ModelConfig& c, std::vector<std::string>& why) {
  auto no = [&](bool bad, const std::string& m) {
    if (bad) why.push_back(m);
  };
  no(c.nope_layer_interval > 0, "NoPE layers (nope_layer_interval)");
  no(c.attn_chunk_size > 0, "chunked attention (attn_chunk_size)");
  no(c.attn_temperature_tuning, "attention temperature tuning (attn_temperature_tuning)");
  no(c.vision_dim > 0, "image features (vision_dim, image_token_id)");
  no(!c.conditions.empty(), "materium conditions (conditions)");
  no(c.rope_mode != RopeMode::Standard, cat("rope_mode ", quote(name_of(c.rope_mode))));
}

std::vector<std::string> hf_unsupported(const ModelConfig& c) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& m) {
    if (bad) why.push_back(m);
  };
  no_llama4_or_materium(c, why);
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type))));
  no(c.norm_bias, "norm biases (norm_bias)");
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type))));
  no(c.qk_norm, "QK-norm (qk_norm)");
  no(c.output_bias, "a classifier bias (output_bias)");
  no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
  no(!c.causal, "non-causal attention (causal = false)");
  no(c.rope_scale_factor != 1 && c.rope_scaling.type != RopeScalingType::None, "both rope_scale_factor and rope_scaling");
  no(c.moe.n_experts > 0, "mixture of experts");
  return why;
}

std::string config_to_hf_json(const ModelConfig& c, const std::string& torch_dtype) {
  const std::vector<std::string> why = hf_unsupported(c);
  if (!why.empty()) fail_unsupported("config.json: a Hugging Face Llama has no ", why);
  json j = write_object(hf_keys(), c);
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

// ---- Meta ----

ModelConfig config_from_params_json(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  ModelConfig c;
  read_object(params_keys(), j, c, quote(source), nullptr);
  const bool llama4 = std::any_of(std::begin(kLlama4OnlyParams), std::end(kLlama4OnlyParams),
                                  [&](const char* k) { return j.contains(k) && !j[k].is_null(); });
  if (llama4) {
    auto absent = [&](const char* k) { return !j.contains(k) || j[k].is_null(); };
    if (absent("rope_theta")) c.rope_theta = 500000;
    if (c.rope_scaling.type == RopeScalingType::Llama3) {  // use_scaled_rope
      if (absent("rope_scaling_factor")) c.rope_scaling.factor = kLlama4Scaling.factor;
      if (absent("rope_high_freq_factor")) c.rope_scaling.high_freq_factor = kLlama4Scaling.high_freq_factor;
    }
  }
  return c;
}

std::vector<std::string> params_unsupported(const ModelConfig& c) {
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
  no(c.rope_scaling.type != RopeScalingType::None &&
         (c.rope_scaling.type != RopeScalingType::Llama3 || c.rope_scaling.low_freq_factor != 1 ||
          c.rope_scaling.original_max_seq_len != 8192),
     "rope_scaling other than llama3 with low_freq_factor 1 and original_max_seq_len 8192 (use_scaled_rope)");
  no(c.rope_scale_factor != 1, "rope_scale_factor");
  no(c.logits_soft_cap != 0, "a logits soft cap");
  no(c.qk_norm && c.qk_norm_weight, "QK-norm weights (qk_norm_weight; Llama 4's QK-norm has none)");
  no(c.moe.n_experts > 0, "mixture of experts (moe)");
  no(c.vision_dim > 0, "image features (vision_dim: vision_args describes the encoder too)");
  no(!c.conditions.empty(), "materium conditions (conditions)");
  no(c.rope_mode != RopeMode::Standard, cat("rope_mode ", quote(name_of(c.rope_mode))));
  return why;
}

std::string config_to_params_json(const ModelConfig& c) {
  const std::vector<std::string> why = params_unsupported(c);
  if (!why.empty()) fail_unsupported("params.json: Meta's params have no ", why);
  return write_object(params_keys(), c).dump(2) + "\n";
}

// ---- --config ----

std::string config_convention(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  std::set<std::string> lmkit_keys;
  for (const std::string& k : config_keys()) lmkit_keys.insert(k.substr(0, k.find('.')));
  // Hugging Face's by a key only it has that every config.json carries (a required one, or
  // model_type): a lmkit config with a stray HF spelling stays lmkit's, to be told its mistake.
  std::set<std::string> hf_markers;
  const std::set<std::string> meta = keys_of(params_keys());
  for (const KeyRow& r : hf_keys())
    if ((r.required || std::string(r.key) == "model_type") && !lmkit_keys.count(r.key) && !meta.count(r.key))
      hf_markers.insert(r.key);
  bool any_hf_only = false, all_lmkit = true, all_meta = true;
  for (const auto& [k, v] : j.items()) {
    if (hf_markers.count(k)) any_hf_only = true;
    if (!lmkit_keys.count(k)) all_lmkit = false;
    if (!meta.count(k)) all_meta = false;
  }
  if (any_hf_only) return "hf";
  if (!all_lmkit && all_meta) return "meta";
  return "lmkit";
}

ModelConfig load_config_arg(const std::string& arg) {
  struct stat st {};
  if (::stat(arg.c_str(), &st) != 0) {
    if (auto p = find_preset(arg)) return *p;
    if (arg.find('/') != std::string::npos || arg.find(".json") != std::string::npos) fail_io("cannot open", arg);
    fail(ErrorKind::Usage, cat("--config ", quote(arg), " is neither a file nor a preset"),
         "presets are listed by 'lm-inspect-config --list-presets'");
  }
  const std::string text = read_text_file(arg);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') return load_config_input(arg, {}).config;  // a checkpoint
  const std::string conv = config_convention(text, arg);
  if (conv == "hf") return config_from_hf_json(text, arg);
  if (conv == "meta") return config_from_params_json(text, arg);
  return config_from_json(text, arg);
}

// ---- GGUF ----

bool gguf_has_lmkit_config(const GGUFFile& f) {
  const GGUFValue* v = f.find(kConfigMetadataKey);
  return v && v->type == GGUFValue::String;
}

namespace {

// GGUF strings are raw bytes; the config (and its JSON) holds only UTF-8.
bool gguf_text(const GGUFValue& v) {
  if (v.type == GGUFValue::String) return utf8::well_formed(v.s);
  if (v.type == GGUFValue::Array) return std::all_of(v.array.begin(), v.array.end(), gguf_text);
  return true;
}

}  // namespace

std::vector<std::string> gguf_config_assignments(const GGUFFile& f) {
  ModelConfig c;
  std::vector<std::string> given;
  read_rows(
      gguf_keys(),
      [&](const char* key) -> std::optional<json> {
        const GGUFValue* v = f.find(key);
        if (v && !gguf_text(*v)) fail_data(cat(quote(f.path()), ": ", quote(key), ": not valid UTF-8"));
        return v ? std::optional<json>(gguf_json(*v)) : std::nullopt;
      },
      c, quote(f.path()), &given);
  return assignments(c, given);
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
  no_llama4_or_materium(c, why);
  return why;
}

void set_gguf_metadata(GGUFWriter& w, const ModelConfig& c, const std::string& config_json, uint32_t file_type, bool quantized,
                       const std::string& tokenizer_json) {
  // general.* first, as llama.cpp's writer orders them.
  for (bool general : {true, false}) {
    for (const KeyRow& r : gguf_keys()) {
      if ((std::string(r.key).rfind("general.", 0) == 0) != general) continue;
      const json v = r.out(c);
      if (!v.is_discarded()) w.set(r.key, gguf_value(r, v));
    }
    if (general) {
      w.set("general.file_type", GGUFValue::u32(file_type));
      if (quantized) w.set("general.quantization_version", GGUFValue::u32(2));
    }
  }
  w.set(kConfigMetadataKey, GGUFValue::str(config_json.empty() ? config_to_json(c, -1) : config_json));
  if (!tokenizer_json.empty()) w.set(kTokenizerMetadataKey, GGUFValue::str(tokenizer_json));
}

// ---- llama2.c ----

ModelConfig config_from_llama2c(const Llama2cHeader& h) {
  ModelConfig c;
  c.name = "llama2c";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = n_kv_from(c, h.n_kv_heads);
  c.vocab_size = std::abs(static_cast<int64_t>(h.vocab_size));
  c.max_seq_len = h.seq_len;
  c.tie_embeddings = h.shared_classifier;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.bos_id = c.vocab_size > 1 ? 1 : -1;
  c.eos_id = c.vocab_size > 2 ? 2 : -1;
  return c;
}

std::vector<std::string> llama2c_unsupported(const ModelConfig& c) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& msg) {
    if (bad) why.push_back(msg);
  };
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type)), " (run.c has RMSNorm)"));
  no(c.norm_bias, "norm biases (norm_bias)");
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type)), " (run.c has SwiGLU)"));
  no(c.attn_bias, "attention biases (attn_bias)");
  no(c.ffn_bias, "feed-forward biases (ffn_bias)");
  no(c.output_bias, "a classifier bias (output_bias)");
  no(c.qk_norm, "QK-norm (qk_norm)");
  no(c.head_dim > 0 && c.head_dim != c.dim / c.n_heads, cat("head_dim ", c.head_dim, " (run.c uses dim / n_heads)"));
  no(c.norm_eps != 1e-5, cat("norm_eps ", c.norm_eps, " (run.c uses 1e-5)"));
  no(c.rope_theta != 10000, cat("rope_theta ", c.rope_theta, " (run.c uses 10000)"));
  no(c.rope_scaling.type != RopeScalingType::None, cat("rope_scaling.type ", quote(name_of(c.rope_scaling.type))));
  no(c.rope_scale_factor != 1, cat("rope_scale_factor ", c.rope_scale_factor));
  no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
  no(!c.causal, "non-causal attention (causal = false)");
  no(c.moe.n_experts > 0, "mixture of experts (moe.n_experts)");
  no_llama4_or_materium(c, why);
  for (int64_t v : {c.dim, c.ffn_hidden(), c.n_layers, c.n_heads, c.kv_heads(), c.vocab_size, c.max_seq_len})
    no(v > INT32_MAX, cat("a size of ", v, " (the header holds int32)"));
  return why;
}

Llama2cHeader llama2c_header(const ModelConfig& c) {
  const std::vector<std::string> why = llama2c_unsupported(c);
  if (!why.empty()) fail_unsupported("a llama2.c v0 checkpoint cannot hold ", why);
  Llama2cHeader h;
  h.dim = static_cast<int32_t>(c.dim);
  h.hidden_dim = static_cast<int32_t>(c.ffn_hidden());
  h.n_layers = static_cast<int32_t>(c.n_layers);
  h.n_heads = static_cast<int32_t>(c.n_heads);
  h.n_kv_heads = static_cast<int32_t>(c.kv_heads());
  h.vocab_size = static_cast<int32_t>(c.vocab_size);
  h.seq_len = static_cast<int32_t>(c.max_seq_len);
  h.shared_classifier = c.tie_embeddings;
  return h;
}

}  // namespace lm::convert
