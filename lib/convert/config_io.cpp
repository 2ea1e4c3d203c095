#include "convert/config_io.h"

#include <sys/stat.h>

#include "model/config_formats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
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
#include "model/key_table.h"
#include "model/presets.h"
#include "model/rope.h"
#include "tokenizer/utf8.h"

namespace lm::convert {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Key tables: one per keyed format. A row carries one outside key both ways.

const json kOmit = omitted<json>();

// A row for a plain field: the same value both ways.
#define LM_KEY(key, member, type, absent)                                                        \
  KeyRow {                                                                                       \
    key, #member, KeyType::type, false, json(absent), [](const ModelConfig& c) { return json(c.member); }, \
        [](ModelConfig& c, const json& v, const std::string&) { c.member = v.get<std::decay_t<decltype(c.member)>>(); } \
  }
#define LM_REQUIRED(key, member, type)                                                           \
  KeyRow {                                                                                       \
    key, #member, KeyType::type, true, json(), [](const ModelConfig& c) { return json(c.member); }, \
        [](ModelConfig& c, const json& v, const std::string&) { c.member = v.get<std::decay_t<decltype(c.member)>>(); } \
  }
// A special token id: -1 (none) is left out.
#define LM_TOKEN(key, member, type, absent)                                                      \
  KeyRow {                                                                                       \
    key, #member, KeyType::type, false, json(absent),                                               \
        [](const ModelConfig& c) { return c.member >= 0 ? json(c.member) : kOmit; },             \
        [](ModelConfig& c, const json& v, const std::string&) { c.member = v.get<int64_t>(); }   \
  }

int64_t n_kv_from(const ModelConfig& c, int64_t kv) { return kv == c.n_heads ? 0 : kv; }  // lmkit: 0 = MHA
// lmkit: head_dim 0 = dim / n_heads.
// Whether `hd` is dim / n_heads exactly (no product that could overflow: the values come from files).
bool is_dim_over_heads(const ModelConfig& c, int64_t hd) { return c.n_heads > 0 && c.dim % c.n_heads == 0 && c.dim / c.n_heads == hd; }
int64_t head_dim_from(const ModelConfig& c, int64_t hd) { return hd > 0 && is_dim_over_heads(c, hd) ? 0 : hd; }
// The head size of a config being read, when its keys so far give one (n_heads may still be 0 or
// negative from the file: validation refuses that later, and ModelConfig::head_size divides by it).
std::optional<int64_t> head_size_read(const ModelConfig& c) {
  if (c.head_dim > 0) return c.head_dim;
  if (c.n_heads > 0) return c.dim / c.n_heads;
  return std::nullopt;
}
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


// Token ids given as one id or a list of them (Hugging Face's eos_token_id: Llama 3 Instruct's
// [128001, 128008, 128009]); an empty list is none.
std::vector<int64_t> token_id_list(const json& v, const std::string& src, const char* key) {
  std::vector<int64_t> ids;
  for (const json& x : v.is_array() ? v : json::array({v})) {
    if (!x.is_number_integer()) fail_data(cat(src, ": ", quote(key), ": expected a token id or a list of them, got ", v.dump()));
    ids.push_back(x.get<int64_t>());
  }
  return ids;
}

// Hugging Face's eos_token_id (config.json and generation_config.json): the first id is eos_id,
// the others extra_eos_ids; written back as a list when there are extra ids.
KeyRow hf_eos_row(json absent) {
  return {"eos_token_id", "eos_id", KeyType::Any, false, std::move(absent),
          [](const ModelConfig& c) -> json {
            if (c.eos_id < 0) return kOmit;
            if (c.extra_eos_ids.empty()) return json(c.eos_id);
            json a = json::array({c.eos_id});
            for (int64_t id : c.extra_eos_ids) a.push_back(id);
            return a;
          },
          [](ModelConfig& c, const json& v, const std::string& src) {
            const std::vector<int64_t> ids = token_id_list(v, src, "eos_token_id");
            c.eos_id = ids.empty() ? -1 : ids[0];
            c.extra_eos_ids.clear();
            for (size_t i = 1; i < ids.size(); ++i)
              if (ids[i] != c.eos_id && std::find(c.extra_eos_ids.begin(), c.extra_eos_ids.end(), ids[i]) == c.extra_eos_ids.end())
                c.extra_eos_ids.push_back(ids[i]);
          }};
}

// GGUF's eot and eom ids (llama.cpp ends generation at them as at eos): extra_eos_ids, in
// the order eom, eot as read; written as eot = the last extra id, eom = the one before it.
void add_extra_eos(ModelConfig& c, const json& v) {
  const int64_t id = v.get<int64_t>();
  if (c.eos_id < 0) c.eos_id = id;
  else if (id != c.eos_id && std::find(c.extra_eos_ids.begin(), c.extra_eos_ids.end(), id) == c.extra_eos_ids.end())
    c.extra_eos_ids.push_back(id);
}

// Hugging Face LlamaConfig (transformers' configuration_llama.py; absent keys take its defaults,
// except the special tokens, which are none unless given).
const std::vector<KeyRow>& hf_keys() {
  static const std::vector<KeyRow> rows = {
      {"model_type", "", KeyType::String, false, json(), [](const ModelConfig&) { return json("llama"); },
       [](ModelConfig&, const json& v, const std::string& src) {
         const std::string mt = v.get<std::string>();
         if (mt != "llama" && mt != "mistral")
           fail(ErrorKind::Unsupported, cat(src, ": model_type ", quote(mt), " is not a Llama"),
                "give the config with --config (an lmkit config JSON or a preset)");
       }},
      {"architectures", "", KeyType::Any, false, json(), [](const ModelConfig&) { return json::array({"LlamaForCausalLM"}); },
       nullptr},
      {"_name_or_path", "name", KeyType::String, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.name = v.get<std::string>(); }},
      LM_REQUIRED("hidden_size", dim, Int),
      LM_REQUIRED("num_hidden_layers", n_layers, Int),
      LM_REQUIRED("num_attention_heads", n_heads, Int),
      {"num_key_value_heads", "n_kv_heads", KeyType::Int, false, json(), [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"head_dim", "head_dim", KeyType::Int, false, json(), [](const ModelConfig& c) { return json(c.head_size()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.head_dim = head_dim_from(c, v.get<int64_t>()); }},
      LM_REQUIRED("vocab_size", vocab_size, Int),
      {"intermediate_size", "hidden_dim", KeyType::Int, true, json(), [](const ModelConfig& c) { return json(c.ffn_hidden()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
      LM_KEY("rms_norm_eps", norm_eps, Number, 1e-6),
      LM_KEY("rope_theta", rope_theta, Number, 10000),
      LM_KEY("max_position_embeddings", max_seq_len, Int, 2048),
      {"rope_scaling", "rope_scaling", KeyType::Object, false, json(),
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
      {"hidden_act", "", KeyType::String, false, json(), [](const ModelConfig&) { return json("silu"); },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v != "silu") fail(ErrorKind::Unsupported, cat(src, ": hidden_act ", v.dump(), " (lmkit's SwiGLU uses silu)"));
       }},
      LM_TOKEN("bos_token_id", bos_id, TokenId, -1),
      hf_eos_row(json(-1)),
      LM_TOKEN("pad_token_id", pad_id, TokenId, -1),
  };
  return rows;
}

// Hugging Face MixtralConfig (transformers' configuration_mixtral.py): LlamaConfig's keys with
// Mixtral's defaults and its experts (intermediate_size is the experts' width).
const std::vector<KeyRow>& hf_mixtral_keys() {
  static const std::vector<KeyRow> rows = [] {
    std::vector<KeyRow> r;
    for (const KeyRow& k : hf_keys()) {
      const std::string key = k.key;
      if (key == "model_type" || key == "architectures" || key == "intermediate_size" || key == "mlp_bias") continue;
      KeyRow row = k;
      if (key == "rms_norm_eps") row.absent = json(1e-5);
      if (key == "rope_theta") row.absent = json(1e6);
      if (key == "max_position_embeddings") row.absent = json(4096 * 32);
      if (key == "num_key_value_heads") row.absent = json(8);
      r.push_back(row);
    }
    r.insert(r.begin(),
             {{"model_type", "", KeyType::String, true, json(), [](const ModelConfig&) { return json("mixtral"); }, nullptr},
              {"architectures", "", KeyType::Any, false, json(), [](const ModelConfig&) { return json::array({"MixtralForCausalLM"}); },
               nullptr}});
    r.push_back({"num_local_experts", "moe.n_experts", KeyType::Int, false, json(8), [](const ModelConfig& c) { return json(c.moe.n_experts); },
                 [](ModelConfig& c, const json& v, const std::string&) {
                   c.moe.n_experts = v.get<int64_t>();
                   c.moe.routing = MoERouting::Softmax;  // MixtralSparseMoeBlock: softmax, top-k renormalised
                   c.moe.shared_expert = false;
                   c.moe.interleave_step = 1;
                 }});
    r.push_back({"num_experts_per_tok", "moe.top_k", KeyType::Int, false, json(2), [](const ModelConfig& c) { return json(c.moe.top_k); },
                 [](ModelConfig& c, const json& v, const std::string&) { c.moe.top_k = v.get<int64_t>(); }});
    r.push_back({"intermediate_size", "moe.hidden_dim", KeyType::Int, false, json(14336),
                 [](const ModelConfig& c) { return json(c.moe_hidden()); },
                 [](ModelConfig& c, const json& v, const std::string&) { c.moe.hidden_dim = v.get<int64_t>(); }});
    r.push_back({"sliding_window", "", KeyType::Any, false, json(), [](const ModelConfig&) { return json(nullptr); },
                 [](ModelConfig&, const json& v, const std::string& src) {
                   fail(ErrorKind::Unsupported, cat(src, ": sliding_window ", v.dump(), ": sliding-window attention is not supported"));
                 }});
    // Training-time router options (the balance loss's coefficient and its switch, jitter): not the model's function.
    r.push_back({"router_aux_loss_coef", "", KeyType::Number, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr});
    r.push_back({"output_router_logits", "", KeyType::Bool, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr});
    r.push_back({"router_jitter_noise", "", KeyType::Number, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr});
    return r;
  }();
  return rows;
}

// The NoPE interval that gives exactly these layers' RoPE flags (1 = RoPE, 0 = NoPE, as
// Llama4TextConfig.no_rope_layers), or -1 when no interval does; 0 = every layer has RoPE.
int64_t nope_interval_of(const json& flags) {
  const int64_t L = static_cast<int64_t>(flags.size());
  int64_t n = 0;
  for (int64_t i = 0; i < L && !n; ++i)
    if (flags[i] == 0) n = i + 1;
  for (int64_t i = 0; i < L; ++i)
    if ((flags[i] != 0) != (n == 0 || (i + 1) % n != 0)) return -1;
  return n;
}

// Hugging Face Llama 4 text models (transformers' configuration_llama4.py Llama4TextConfig,
// model_type "llama4_text"; absent keys take its defaults; docs/llama4.md §12). Rows run in
// order: the layer lists are checked against the sizes read before them.
const std::vector<KeyRow>& hf_llama4_keys() {
  static const std::vector<KeyRow> rows = {
      {"model_type", "", KeyType::String, true, json(), [](const ModelConfig&) { return json("llama4_text"); }, nullptr},
      {"architectures", "", KeyType::Any, false, json(), [](const ModelConfig&) { return json::array({"Llama4ForCausalLM"}); },
       nullptr},
      {"_name_or_path", "name", KeyType::String, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.name = v.get<std::string>(); }},
      LM_KEY("vocab_size", vocab_size, Int, 202048),
      LM_KEY("hidden_size", dim, Int, 5120),
      {"intermediate_size", "moe.hidden_dim", KeyType::Int, false, json(8192), [](const ModelConfig& c) { return json(c.moe_hidden()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.hidden_dim = v.get<int64_t>(); }},
      {"intermediate_size_mlp", "hidden_dim", KeyType::Int, false, json(16384), [](const ModelConfig& c) { return json(c.ffn_hidden()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
      LM_KEY("num_hidden_layers", n_layers, Int, 48),
      LM_KEY("num_attention_heads", n_heads, Int, 40),
      {"num_key_value_heads", "n_kv_heads", KeyType::Int, false, json(8), [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"head_dim", "head_dim", KeyType::Int, false, json(128), [](const ModelConfig& c) { return json(c.head_size()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.head_dim = head_dim_from(c, v.get<int64_t>()); }},
      {"hidden_act", "", KeyType::String, false, json(), [](const ModelConfig&) { return json("silu"); },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v != "silu") fail(ErrorKind::Unsupported, cat(src, ": hidden_act ", v.dump(), " (lmkit's SwiGLU uses silu)"));
       }},
      LM_KEY("max_position_embeddings", max_seq_len, Int, 131072),
      LM_KEY("rms_norm_eps", norm_eps, Number, 1e-5),
      LM_TOKEN("pad_token_id", pad_id, TokenId, -1),
      LM_TOKEN("bos_token_id", bos_id, TokenId, 1),
      hf_eos_row(json(2)),
      LM_KEY("tie_word_embeddings", tie_embeddings, Bool, false),
      LM_KEY("rope_theta", rope_theta, Number, 500000),
      {"rope_scaling", "rope_scaling", KeyType::Object, false, json(),
       [](const ModelConfig& c) -> json {
         if (c.rope_scaling.type != RopeScalingType::Llama3) return json(nullptr);
         json j = write_object(hf_rope_llama3_keys(), c);
         j["rope_type"] = "llama3";
         return j;
       },
       [](ModelConfig& c, const json& rs, const std::string& src) {
         const char* type_key = rs.contains("rope_type") ? "rope_type" : "type";
         const std::string t = rs.contains(type_key) && rs[type_key].is_string() ? rs[type_key].get<std::string>() : "";
         if (t == "llama3") {
           c.rope_scaling.type = RopeScalingType::Llama3;
           read_object(hf_rope_llama3_keys(), rs, c, src, nullptr);
         } else if (t != "default") {
           fail(ErrorKind::Unsupported, cat(src, ": rope_scaling type ", quote(t), " is not supported for Llama 4 (llama3 is)"));
         }
       }},
      LM_KEY("attention_dropout", attn_dropout, Number, 0.0),
      LM_KEY("attention_bias", attn_bias, Bool, false),
      {"num_experts_per_tok", "moe.top_k", KeyType::Int, false, json(1), [](const ModelConfig& c) { return json(c.moe.top_k); },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.top_k = v.get<int64_t>(); }},
      {"num_local_experts", "moe.n_experts", KeyType::Int, false, json(16), [](const ModelConfig& c) { return json(c.moe.n_experts); },
       [](ModelConfig& c, const json& v, const std::string&) {
         c.moe.n_experts = v.get<int64_t>();
         c.moe.shared_expert = true;  // Llama4TextMoe always has one (routing: sigmoid, lmkit's default)
       }},
      {"interleave_moe_layer_step", "moe.interleave_step", KeyType::Int, false, json(1),
       [](const ModelConfig& c) { return json(c.moe.interleave_step); },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.interleave_step = v.get<int64_t>(); }},
      {"moe_layers", "moe", KeyType::Any, false, json(),
       [](const ModelConfig& c) {
         json a = json::array();
         for (int64_t l = 0; l < c.n_layers; ++l)
           if (c.is_moe_layer(l)) a.push_back(l);
         return a;
       },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (!v.is_array()) fail_data(cat(src, ": 'moe_layers': expected a list of layer indices, got ", v.dump()));
         if (v.empty()) {  // a dense model
           c.moe = MoEConfig{};
           return;
         }
         auto layers = [&c] {
           json want = json::array();
           for (int64_t l = 0; l < c.n_layers; ++l)
             if (c.is_moe_layer(l)) want.push_back(l);
           return want;
         };
         // Dense first layers (moe.first_dense_layers): the interleave from the first listed layer on.
         if (v != layers() && v[0].is_number_integer() && v[0].get<int64_t>() > 0) {
           c.moe.first_dense_layers = v[0].get<int64_t>();
           if (v != layers()) c.moe.first_dense_layers = 0;
         }
         if (v != layers())
           fail(ErrorKind::Unsupported, cat(src, ": moe_layers ", v.dump(), " are not every ", c.moe.interleave_step,
                                            ". layer (interleave_moe_layer_step): lmkit places MoE layers by the interleave"));
       }},
      {"use_qk_norm", "qk_norm", KeyType::Bool, false, json(true), [](const ModelConfig& c) { return json(c.qk_norm); },
       [](ModelConfig& c, const json& v, const std::string&) {
         c.qk_norm = v.get<bool>();
         if (c.qk_norm) c.qk_norm_weight = false;  // Llama4TextL2Norm: weightless
       }},
      {"no_rope_layer_interval", "nope_layer_interval", KeyType::Int, false, json(4),
       [](const ModelConfig& c) { return json(c.nope_layer_interval > 0 ? c.nope_layer_interval : c.n_layers + 1); },
       [](ModelConfig& c, const json& v, const std::string&) { c.nope_layer_interval = v.get<int64_t>(); }},
      {"no_rope_layers", "nope_layer_interval", KeyType::Any, false, json(),
       [](const ModelConfig& c) {
         json a = json::array();
         for (int64_t l = 0; l < c.n_layers; ++l) a.push_back(c.is_nope_layer(l) ? 0 : 1);
         return a;
       },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (!v.is_array()) fail_data(cat(src, ": 'no_rope_layers': expected a list of 0 and 1, got ", v.dump()));
         if (v.empty()) return;  // transformers: the interval's
         if (static_cast<int64_t>(v.size()) != c.n_layers)
           fail_data(cat(src, ": 'no_rope_layers' has ", v.size(), " entries for ", c.n_layers, " layers"));
         const int64_t n = nope_interval_of(v);
         if (n < 0)
           fail(ErrorKind::Unsupported, cat(src, ": no_rope_layers ", v.dump(), " are not every n-th layer for any n "
                                            "(lmkit's NoPE layers are those with (i + 1) % nope_layer_interval == 0)"));
         c.nope_layer_interval = n;
       }},
      {"attention_chunk_size", "attn_chunk_size", KeyType::Int, false, json(8192),
       [](const ModelConfig& c) { return c.attn_chunk_size > 0 ? json(c.attn_chunk_size) : json(nullptr); },
       [](ModelConfig& c, const json& v, const std::string&) { c.attn_chunk_size = v.get<int64_t>(); }, json(0)},
      {"layer_types", "", KeyType::Any, false, json(),
       [](const ModelConfig& c) {
         json a = json::array();
         for (int64_t l = 0; l < c.n_layers; ++l) a.push_back(c.is_nope_layer(l) ? "full_attention" : "chunked_attention");
         return a;
       },
       [](ModelConfig& c, const json& v, const std::string& src) {
         json want = json::array();
         for (int64_t l = 0; l < c.n_layers; ++l) want.push_back(c.is_nope_layer(l) ? "full_attention" : "chunked_attention");
         if (v != want)
           fail(ErrorKind::Unsupported, cat(src, ": layer_types ", v.dump(), " are not chunked on the RoPE layers and full "
                                            "on the NoPE layers (Llama4TextConfig's rule)"));
       }},
      {"attn_temperature_tuning", "attn_temperature_tuning", KeyType::Any, false, json(true),
       [](const ModelConfig& c) { return json(c.attn_temperature_tuning); },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (v.is_boolean()) c.attn_temperature_tuning = v.get<bool>();
         else if (v.is_number()) c.attn_temperature_tuning = v.get<double>() != 0;  // older configs: 4 = on
         else fail_data(cat(src, ": 'attn_temperature_tuning': expected true, false or a number, got ", v.dump()));
       }},
      LM_KEY("floor_scale", attn_floor_scale, Number, 8192),
      LM_KEY("attn_scale", attn_scale, Number, 0.1),
      // Not read by transformers' Llama 4 model (training-time router options): not imported.
      {"router_aux_loss_coef", "", KeyType::Number, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr},
      {"output_router_logits", "", KeyType::Bool, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr},
      {"router_jitter_noise", "", KeyType::Number, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr},
  };
  return rows;
}

// Llama 3.1's apply_scaling constants, which Meta's use_scaled_rope switches on.
const RopeScaling kLlama31Scaling{RopeScalingType::Llama3, 8, 1, 4, 8192};

// Meta params.json (llama-models' ModelArgs; absent keys take its defaults).
const std::vector<KeyRow>& params_keys() {
  static const std::vector<KeyRow> rows = {
      LM_REQUIRED("dim", dim, Int),
      LM_REQUIRED("n_layers", n_layers, Int),
      LM_REQUIRED("n_heads", n_heads, Int),
      {"n_kv_heads", "n_kv_heads", KeyType::Int, false, json(), [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"vocab_size", "vocab_size", KeyType::Int, false, json(-1), [](const ModelConfig& c) { return json(c.vocab_size); },
       [](ModelConfig& c, const json& v, const std::string&) { c.vocab_size = std::max<int64_t>(0, v.get<int64_t>()); }},
      LM_KEY("multiple_of", multiple_of, Int, 256),
      {"ffn_dim_multiplier", "ffn_dim_multiplier", KeyType::Number, false, json(0),
       [](const ModelConfig& c) { return c.ffn_dim_multiplier != 0 ? json(c.ffn_dim_multiplier) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.ffn_dim_multiplier = v.get<double>(); }},
      LM_KEY("norm_eps", norm_eps, Number, 1e-5),
      LM_KEY("rope_theta", rope_theta, Number, 10000),
      {"use_scaled_rope", "rope_scaling", KeyType::Bool, false, json(false),
       [](const ModelConfig& c) { return json(c.rope_scaling.type == RopeScalingType::Llama3); },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (v.get<bool>()) c.rope_scaling = kLlama31Scaling;
       }},
      LM_KEY("max_seq_len", max_seq_len, Int, 2048),
      {"max_batch_size", "", KeyType::Int, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr},
  };
  return rows;
}

// Llama 4's rope scaling constants (llama-models models/llama4/model.py apply_scaling): Llama
// 3.1's with factor rope_scaling_factor (default 16) and high_freq_factor rope_high_freq_factor
// (default 1).
const RopeScaling kLlama4Scaling{RopeScalingType::Llama3, 16, 1, 1, 8192};

// Meta's expert width rule after MoE.__init__'s hidden_dim = int(ffn_exp * dim) (docs/llama4.md
// §7): the ffn_exp row leaves that start in moe.hidden_dim, the moe_args row finishes it.
int64_t meta_expert_width(int64_t start, double ffn_dim_multiplier, bool auto_scale_f, double capacity_factor,
                          int64_t multiple_of) {
  int64_t h = (2 * start) / 3;
  h = static_cast<int64_t>(ffn_dim_multiplier * static_cast<double>(h));
  if (auto_scale_f) h = static_cast<int64_t>(static_cast<double>(h) / (capacity_factor + 1));
  if (multiple_of > 0) h += (multiple_of - h % multiple_of) % multiple_of;
  return h;
}

// params.json's moe_args (llama-models models/llama4/args.py MoEArgs). The rows carry only
// what the lmkit config keeps; capacity_factor and auto_scale_F are inputs of the width rule,
// read by the moe_args row.
const std::vector<KeyRow>& params_moe_keys() {
  static const std::vector<KeyRow> rows = {
      LM_REQUIRED("num_experts", moe.n_experts, Int),
      {"capacity_factor", "", KeyType::Number, false, json(1.0), [](const ModelConfig&) { return json(1.0); }, nullptr},
      {"auto_scale_F", "", KeyType::Bool, false, json(true), [](const ModelConfig&) { return json(false); }, nullptr},
      LM_KEY("top_k", moe.top_k, Int, 1),
      LM_KEY("interleave_moe_layer_step", moe.interleave_step, Int, 1),
  };
  return rows;
}

// Llama 4's params.json (llama-models models/llama4/args.py ModelArgs; absent keys take its
// defaults). Rows run in order: the moe_args row needs dim, multiple_of, ffn_dim_multiplier and
// ffn_exp before it.
const std::vector<KeyRow>& params_llama4_keys() {
  static const std::vector<KeyRow> rows = {
      LM_REQUIRED("dim", dim, Int),
      LM_REQUIRED("n_layers", n_layers, Int),
      LM_REQUIRED("n_heads", n_heads, Int),
      {"head_dim", "", KeyType::Int, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         // Meta's Attention uses dim // n_heads whatever head_dim says.
         if (!is_dim_over_heads(c, v.get<int64_t>()))
           fail_data(cat(src, ": head_dim ", v.get<int64_t>(), " is not dim / n_heads (Meta's attention uses dim // n_heads)"));
       }},
      {"n_kv_heads", "n_kv_heads", KeyType::Int, false, json(), [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"vocab_size", "vocab_size", KeyType::Int, false, json(-1), [](const ModelConfig& c) { return json(c.vocab_size); },
       [](ModelConfig& c, const json& v, const std::string&) { c.vocab_size = std::max<int64_t>(0, v.get<int64_t>()); }},
      LM_KEY("multiple_of", multiple_of, Int, 256),
      {"ffn_dim_multiplier", "ffn_dim_multiplier", KeyType::Number, false, json(0),
       [](const ModelConfig& c) { return c.ffn_dim_multiplier != 0 ? json(c.ffn_dim_multiplier) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.ffn_dim_multiplier = v.get<double>(); }},
      // The experts' starting width int(ffn_exp * dim); written back by the moe_args search.
      {"ffn_exp", "moe.hidden_dim", KeyType::Number, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) {
         c.moe.hidden_dim = static_cast<int64_t>(v.get<double>() * static_cast<double>(c.dim));
       }},
      LM_KEY("norm_eps", norm_eps, Number, 1e-5),
      LM_KEY("rope_theta", rope_theta, Number, 500000),
      {"use_scaled_rope", "rope_scaling", KeyType::Bool, false, json(false),
       [](const ModelConfig& c) { return json(c.rope_scaling.type == RopeScalingType::Llama3); },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (v.get<bool>()) c.rope_scaling = kLlama4Scaling;
       }},
      {"rope_scaling_factor", "rope_scaling.factor", KeyType::Number, false, json(),
       [](const ModelConfig& c) { return c.rope_scaling.type == RopeScalingType::Llama3 ? json(c.rope_scaling.factor) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (c.rope_scaling.type == RopeScalingType::Llama3) c.rope_scaling.factor = v.get<double>();
       }},
      {"rope_high_freq_factor", "rope_scaling.high_freq_factor", KeyType::Number, false, json(),
       [](const ModelConfig& c) {
         return c.rope_scaling.type == RopeScalingType::Llama3 ? json(c.rope_scaling.high_freq_factor) : kOmit;
       },
       [](ModelConfig& c, const json& v, const std::string&) {
         if (c.rope_scaling.type == RopeScalingType::Llama3) c.rope_scaling.high_freq_factor = v.get<double>();
       }},
      {"nope_layer_interval", "nope_layer_interval", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.nope_layer_interval > 0 ? json(c.nope_layer_interval) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.nope_layer_interval = v.get<int64_t>(); }},
      // Llama 4's QK-norm is weightless (an L2 norm of each head, docs/llama4.md §2).
      {"use_qk_norm", "qk_norm", KeyType::Bool, false, json(false), [](const ModelConfig& c) { return json(c.qk_norm); },
       [](ModelConfig& c, const json& v, const std::string&) {
         c.qk_norm = v.get<bool>();
         if (c.qk_norm) c.qk_norm_weight = false;
       }},
      LM_KEY("attn_temperature_tuning", attn_temperature_tuning, Bool, false),
      LM_KEY("floor_scale", attn_floor_scale, Number, 8192),
      LM_KEY("attn_scale", attn_scale, Number, 0.1),
      {"attention_chunk_size", "attn_chunk_size", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.attn_chunk_size > 0 ? json(c.attn_chunk_size) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.attn_chunk_size = v.get<int64_t>(); }},
      LM_KEY("max_seq_len", max_seq_len, Int, 2048),
      {"max_batch_size", "", KeyType::Int, false, json(), [](const ModelConfig&) { return kOmit; }, nullptr},
      // The encoder's arguments: only output_dim (the features' width) concerns lmkit.
      {"vision_args", "vision_dim", KeyType::Object, false, json(),
       [](const ModelConfig& c) { return c.vision_dim > 0 ? json{{"output_dim", c.vision_dim}} : kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (!v.contains("output_dim") || !v["output_dim"].is_number_integer())
           fail_data(cat(src, ": vision_args has no integer output_dim (the image features' width)"));
         c.vision_dim = v["output_dim"].get<int64_t>();
       }},
      {"quantization_args", "", KeyType::Any, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json&, const std::string& src) {
         fail(ErrorKind::Unsupported, cat(src, ": quantization_args: quantized Meta checkpoints are not supported"));
       }},
      {"lora_args", "", KeyType::Any, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json&, const std::string& src) {
         fail(ErrorKind::Unsupported, cat(src, ": lora_args: LoRA checkpoints are not supported"));
       }},
      {"moe_args", "moe", KeyType::Object, false, json(),
       [](const ModelConfig& c) -> json {
         if (c.moe.n_experts == 0) return kOmit;
         json j = write_object(params_moe_keys(), c);
         return j;
       },
       [](ModelConfig& c, const json& v, const std::string& src) {
         const std::set<std::string> known = keys_of(params_moe_keys());
         for (const auto& [k, x] : v.items())
           if (!known.count(k)) fail_data(cat(src, ": moe_args: unknown key ", quote(k)));
         read_object(params_moe_keys(), v, c, src + ": moe_args", nullptr);
         if (c.moe.hidden_dim <= 0) fail_data(cat(src, ": moe_args needs ffn_exp (the experts' width is int(ffn_exp * dim) by Meta's rule)"));
         if (c.ffn_dim_multiplier <= 0)
           fail_data(cat(src, ": moe_args needs ffn_dim_multiplier (Meta's MoE width rule requires it)"));
         const double capacity = v.contains("capacity_factor") ? v["capacity_factor"].get<double>() : 1.0;
         const bool auto_scale = v.contains("auto_scale_F") ? v["auto_scale_F"].get<bool>() : true;
         c.moe.hidden_dim = meta_expert_width(c.moe.hidden_dim, c.ffn_dim_multiplier, auto_scale, capacity, c.multiple_of);
         c.moe.shared_expert = true;  // Llama 4's MoE always has one (routing: sigmoid, lmkit's default)
       }},
  };
  return rows;
}

// GGUF key/values of llama.cpp's llama and llama4 architectures (gguf-py constants.py; llama.cpp
// src/llama-model.cpp and src/models/llama4.cpp read them). Int is written as u32, Number as f32.
// Read, they become --set assignments the config inference checks against the tensors. The
// architecture's own keys carry its name as prefix ("llama.", "llama4."): the rows below are
// written with {A} for it. Rows run in order: the expert count comes before the widths.
std::vector<KeyRow> gguf_rows_for(const std::string& arch, const std::vector<KeyRow>& templ) {
  static std::vector<std::unique_ptr<std::string>> storage;  // the expanded keys live as long as the tables
  std::vector<KeyRow> rows;
  for (KeyRow r : templ) {
    std::string k = r.key;
    if (k.rfind("{A}.", 0) == 0) {
      storage.push_back(std::make_unique<std::string>(arch + k.substr(3)));
      r.key = storage.back()->c_str();
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

const std::vector<KeyRow>& gguf_key_template() {
  static const std::vector<KeyRow> rows = {
      {"general.architecture", "", KeyType::String, true, json(), [](const ModelConfig& c) { return json(gguf_architecture(c)); },
       nullptr},
      {"general.name", "name", KeyType::String, false, json("gguf"),
       [](const ModelConfig& c) { return json(c.name.empty() ? "lmkit" : c.name); },
       [](ModelConfig& c, const json& v, const std::string&) { c.name = v.get<std::string>(); }},
      LM_KEY("{A}.context_length", max_seq_len, Int, nullptr),
      LM_KEY("{A}.embedding_length", dim, Int, nullptr),
      LM_KEY("{A}.block_count", n_layers, Int, nullptr),
      // Mixture of experts: Mixtral-style under llama (softmax over the selected logits, every
      // layer, no shared expert); Llama 4's under llama4 (the assumptions are applied after).
      {"{A}.expert_count", "moe.n_experts", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.moe.n_experts > 0 ? json(c.moe.n_experts) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.n_experts = v.get<int64_t>(); }},
      {"{A}.expert_used_count", "moe.top_k", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.moe.n_experts > 0 ? json(c.moe.top_k) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.top_k = v.get<int64_t>(); }},
      // llama: the dense width, or Mixtral's expert width; llama4: the dense layers' width
      // (transformers' intermediate_size_mlp).
      {"{A}.feed_forward_length", "hidden_dim", KeyType::Int, false, json(),
       [](const ModelConfig& c) {
         return json(c.moe.n_experts > 0 && gguf_architecture(c) == "llama" ? c.moe_hidden() : c.ffn_hidden());
       },
       [](ModelConfig& c, const json& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
      {"{A}.expert_feed_forward_length", "moe.hidden_dim", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.moe.n_experts > 0 && gguf_architecture(c) == "llama4" ? json(c.moe_hidden()) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.hidden_dim = v.get<int64_t>(); }},
      {"{A}.interleave_moe_layer_step", "moe.interleave_step", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.moe.n_experts > 0 && gguf_architecture(c) == "llama4" ? json(c.moe.interleave_step) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.moe.interleave_step = v.get<int64_t>(); }},
      LM_KEY("{A}.attention.head_count", n_heads, Int, nullptr),
      {"{A}.attention.head_count_kv", "n_kv_heads", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return json(c.kv_heads()); },
       [](ModelConfig& c, const json& v, const std::string&) { c.n_kv_heads = n_kv_from(c, v.get<int64_t>()); }},
      {"{A}.attention.key_length", "head_dim", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.head_size() * c.n_heads != c.dim ? json(c.head_size()) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.head_dim = head_dim_from(c, v.get<int64_t>()); }},
      {"{A}.attention.value_length", "", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.head_size() * c.n_heads != c.dim ? json(c.head_size()) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         const auto hs = head_size_read(c);
         if (hs && v.get<int64_t>() != *hs)
           fail(ErrorKind::Unsupported, cat(src, ": attention.value_length ", v.get<int64_t>(), " differs from the head size ",
                                            *hs, " (lmkit's attention has one head size)"));
       }},
      LM_KEY("{A}.attention.layer_norm_rms_epsilon", norm_eps, Number, nullptr),
      {"{A}.rope.dimension_count", "", KeyType::Int, false, json(), [](const ModelConfig& c) { return json(c.head_size()); },
       [](ModelConfig& c, const json& v, const std::string& src) {
         const auto hs = head_size_read(c);
         if (hs && v.get<int64_t>() != *hs)
           fail(ErrorKind::Unsupported, cat(src, ": rope.dimension_count ", v.get<int64_t>(), " is not the head size ",
                                            *hs, " (RoPE on part of a head is not supported)"));
       }},
      LM_KEY("{A}.rope.freq_base", rope_theta, Number, nullptr),
      {"{A}.rope.scaling.type", "rope_scaling.type", KeyType::String, false, json(),
       [](const ModelConfig& c) { return linear_rope_factor(c) != 1 ? json("linear") : kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (v == "linear")
           c.rope_scaling.type = RopeScalingType::Linear;
         else if (v != "none")
           fail(ErrorKind::Unsupported, cat(src, ": rope.scaling.type ", quote(v.get<std::string>()), " is not supported"));
       }},
      {"{A}.rope.scaling.factor", "rope_scaling.factor", KeyType::Number, false, json(),
       [](const ModelConfig& c) { return linear_rope_factor(c) != 1 ? json(linear_rope_factor(c)) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { c.rope_scaling.factor = v.get<double>(); }},
      LM_KEY("{A}.vocab_size", vocab_size, Int, nullptr),
      // llama4 (src/models/llama4.cpp): present and 0 selects llama.cpp's unchunked variant: no
      // chunking, n_no_rope_layer_step = block_count (so the last layer is NoPE, despite the
      // "always use rope" comment), and temperature tuning on that layer with constants the
      // variant never sets: hparams' defaults, 0 in current llama.cpp (whose attn_temp set_input
      // asserts they are non-zero: it cannot run such a file) and 8192 / 0.1 in older versions.
      // No definition to follow: refused. Any other value is overridden by llama.cpp's 8192.
      {"{A}.attention.sliding_window", "", KeyType::Int, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v.get<int64_t>() == 0)
           fail(ErrorKind::Unsupported,
                cat(src, ": attention.sliding_window 0 (llama.cpp's unchunked llama4 variant) is not supported: llama.cpp makes "
                         "the last layer NoPE with temperature-tuning constants it leaves unset (0 in current versions, which "
                         "cannot run the file; 8192 and 0.1 in older ones), so the model is not defined"));
       }},
      {"{A}.attention.sliding_window_pattern", "", KeyType::Any, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const json& v, const std::string& src) {
         if (v != json(4))
           fail(ErrorKind::Unsupported, cat(src, ": attention.sliding_window_pattern ", v.dump(),
                                            ": lmkit chunks exactly the RoPE layers, and llama.cpp's NoPE layers are every 4th"));
       }},
      {"{A}.rope.freq_base_swa", "", KeyType::Number, false, json(), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig& c, const json& v, const std::string& src) {
         if (static_cast<float>(v.get<double>()) != static_cast<float>(c.rope_theta))
           fail(ErrorKind::Unsupported, cat(src, ": rope.freq_base_swa ", v.get<double>(), " differs from rope.freq_base ",
                                            c.rope_theta, " (lmkit has one RoPE base)"));
       }},
      {"tokenizer.ggml.model", "", KeyType::String, false, json(), [](const ModelConfig&) { return json("none"); }, nullptr},
      LM_TOKEN("tokenizer.ggml.bos_token_id", bos_id, Int, nullptr),
      LM_TOKEN("tokenizer.ggml.eos_token_id", eos_id, Int, nullptr),
      LM_TOKEN("tokenizer.ggml.padding_token_id", pad_id, Int, nullptr),
      {"tokenizer.ggml.eom_token_id", "extra_eos_ids", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.extra_eos_ids.size() == 2 ? json(c.extra_eos_ids[0]) : kOmit; },
       [](ModelConfig& c, const json& v, const std::string&) { add_extra_eos(c, v); }},
      {"tokenizer.ggml.eot_token_id", "extra_eos_ids", KeyType::Int, false, json(),
       [](const ModelConfig& c) { return c.extra_eos_ids.empty() ? kOmit : json(c.extra_eos_ids.back()); },
       [](ModelConfig& c, const json& v, const std::string&) { add_extra_eos(c, v); }},
  };
  return rows;
}

const std::vector<KeyRow>& gguf_keys(const std::string& arch) {
  static const std::vector<KeyRow> llama = gguf_rows_for("llama", gguf_key_template());
  static const std::vector<KeyRow> llama4 = gguf_rows_for("llama4", gguf_key_template());
  return arch == "llama4" ? llama4 : llama;
}

#undef LM_KEY
#undef LM_REQUIRED
#undef LM_TOKEN

// ---------------------------------------------------------------------------------------------
// Helpers of the formats' readers and writers (the table walks are model/key_table.h's).

json parse_object(const std::string& text, const std::string& source) {
  json j = parse_json_strict(text, cat(quote(source), ": "));
  if (!j.is_object()) fail_data(cat(quote(source), ": expected a JSON object"));
  return j;
}

// A config with a Llama 4 feature: written in Llama 4's params.json and Llama4TextConfig.
bool has_llama4_features(const ModelConfig& c) {
  return c.moe.n_experts > 0 || c.nope_layer_interval > 0 || c.attn_chunk_size > 0 || c.attn_temperature_tuning ||
         c.vision_dim > 0 || (c.qk_norm && !c.qk_norm_weight);
}
// Mixtral's mixture of experts (every layer routed, softmax over the selected logits, no shared
// expert) on an otherwise plain Llama: Hugging Face's MixtralForCausalLM, GGUF's llama.
bool is_mixtral_config(const ModelConfig& c) {
  if (c.moe.n_experts == 0 || c.moe.routing != MoERouting::Softmax || c.moe.shared_expert || c.moe.interleave_step != 1 ||
      c.moe.first_dense_layers != 0)
    return false;
  ModelConfig dense = c;
  dense.moe = MoEConfig{};
  return !has_llama4_features(dense);
}
// Written in Llama 4's params.json: a Llama 4 feature, or rope scaling constants other than
// Llama 3.1's (only Llama 4's ModelArgs names them: rope_scaling_factor, rope_high_freq_factor).
bool params_as_llama4(const ModelConfig& c) {
  return has_llama4_features(c) ||
         (c.rope_scaling.type == RopeScalingType::Llama3 && !(c.rope_scaling == kLlama31Scaling));
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
    case KeyType::Int: case KeyType::TokenId: return GGUFValue::u32(static_cast<uint32_t>(v.get<int64_t>()));
    case KeyType::Number: return GGUFValue::f32(static_cast<float>(v.get<double>()));
    case KeyType::Bool: return GGUFValue::boolean(v.get<bool>());
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

bool is_llama4_config(const ModelConfig& cfg) { return has_llama4_features(cfg) && !is_mixtral_config(cfg); }
bool is_mixtral(const ModelConfig& cfg) { return is_mixtral_config(cfg); }

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
  const json type = j.contains("model_type") ? j["model_type"] : json();
  if (type == "llama4") {
    // Llama4ForConditionalGeneration (transformers' Llama4Config): the text model's config under
    // text_config; the projector maps vision_config.vision_output_dim features to the text
    // model's width (lmkit's vision_projection); the encoder itself is not lmkit's.
    if (!j.contains("text_config") || !j["text_config"].is_object())
      fail_data(cat(quote(source), ": model_type 'llama4' without a text_config object"));
    read_object(hf_llama4_keys(), j["text_config"], c, cat(quote(source), ": text_config"), nullptr);
    if (j.contains("vision_config") && !j["vision_config"].is_null()) {
      const json& v = j["vision_config"];
      if (!v.is_object() || !v.contains("vision_output_dim") || !v["vision_output_dim"].is_number_integer())
        fail_data(cat(quote(source), ": vision_config has no integer vision_output_dim (the image features' width)"));
      c.vision_dim = v["vision_output_dim"].get<int64_t>();
      const json id = j.contains("image_token_index") ? j["image_token_index"] : json(200092);  // Llama4Config's default
      if (!id.is_number_integer()) fail_data(cat(quote(source), ": 'image_token_index': expected a token id, got ", id.dump()));
      c.image_token_id = id.get<int64_t>();
    }
    return c;
  }
  if (type == "llama4_text") {
    read_object(hf_llama4_keys(), j, c, quote(source), nullptr);
    return c;
  }
  if (type == "mixtral") {
    read_object(hf_mixtral_keys(), j, c, quote(source), nullptr);
    return c;
  }
  read_object(hf_keys(), j, c, quote(source), nullptr);
  return c;
}

void apply_hf_generation_config(ModelConfig& c, const std::string& text, const std::string& source,
                                std::vector<std::string>* notes, const std::string& config_name) {
  const json j = parse_object(text, source);
  // The special-token rows of config.json's table, for the keys the file gives.
  std::vector<KeyRow> rows;
  std::set<std::string> read;
  for (const KeyRow& r : hf_keys()) {
    const std::string k = r.key;
    if ((k == "bos_token_id" || k == "eos_token_id" || k == "pad_token_id") && j.contains(k) && !j[k].is_null()) {
      rows.push_back(r);
      read.insert(k);
    }
  }
  ModelConfig g = c;
  read_object(rows, j, g, quote(source), nullptr);
  auto same = [&](const char* key, int64_t have, int64_t got) {
    if (have >= 0 && got != have)
      fail(ErrorKind::Data, cat(quote(source), ": ", key, " ", got, " differs from ", config_name, "'s ", have),
                "lmkit's checkpoint holds one; fix either file");
  };
  if (read.count("bos_token_id")) {
    same("bos_token_id", c.bos_id, g.bos_id);
    c.bos_id = g.bos_id;
  }
  if (read.count("pad_token_id")) {
    same("pad_token_id", c.pad_id, g.pad_id);
    c.pad_id = g.pad_id;
  }
  if (read.count("eos_token_id")) {
    // transformers stops at generation_config's ids; config.json's stay too (they were eos_id
    // before): the union, config.json's first.
    std::vector<int64_t> ids;
    if (g.eos_id >= 0) ids.push_back(g.eos_id);
    ids.insert(ids.end(), g.extra_eos_ids.begin(), g.extra_eos_ids.end());
    for (int64_t id : ids) add_extra_eos(c, json(id));
  }
  std::vector<std::string> others;
  for (const auto& [k, v] : j.items())
    if (!read.count(k) && k != "transformers_version" && k != "_from_model_config" && k[0] != '_') others.push_back(k);
  if (notes && !others.empty()) {
    std::string list;
    for (const std::string& k : others) list += (list.empty() ? "" : ", ") + k;
    notes->push_back(cat(source, ": not carried (sampling is lm-generate's options): ", list));
  }
}

std::string generation_config_to_hf_json(const ModelConfig& c) {
  // config.json's special-token rows (one spelling of each key, the eos list included);
  // nlohmann's object keeps its keys sorted, as transformers' to_json_string(sort_keys=True).
  std::vector<KeyRow> rows;
  for (const KeyRow& r : hf_keys()) {
    const std::string k = r.key;
    if (k == "bos_token_id" || k == "eos_token_id" || k == "pad_token_id") rows.push_back(r);
  }
  const json j = write_object(rows, c);  // an id the model has not (< 0) is omitted
  return j.empty() ? "{}\n" : j.dump(2) + "\n";
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
  if (is_mixtral_config(c)) {  // MixtralConfig: a Llama with Mixtral's experts
    ModelConfig dense = c;
    dense.moe = MoEConfig{};
    dense.hidden_dim = 0;
    why = hf_unsupported(dense);
    no(c.attn_bias, "attention biases (attn_bias: Mixtral has none)");
    return why;
  }
  if (has_llama4_features(c)) {  // Llama4TextConfig
    no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type))));
    no(c.norm_bias || c.ffn_bias || c.output_bias, "norm, feed-forward or classifier biases");
    no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type))));
    no(c.qk_norm && c.qk_norm_weight, "QK-norm weights (Llama 4's QK-norm is weightless)");
    no(c.moe.n_experts > 0 && !c.moe.shared_expert, "experts without a shared expert");
    no(c.vision_dim > 0, "vision_projection (llama4_text is the text model; the projector belongs to model_type llama4)");
    no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
    no(!c.causal || c.doc_mask, "non-causal or document-masked attention");
    no(c.rope_scale_factor != 1 || c.rope_scaling.type == RopeScalingType::Linear, "linear RoPE scaling");
    no(!c.conditions.empty(), "materium conditions (conditions)");
    no(c.rope_mode != RopeMode::Standard, cat("rope_mode ", quote(name_of(c.rope_mode))));
    return why;
  }

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
  if (!why.empty())
    fail_unsupported(is_mixtral_config(c)           ? "config.json: a Hugging Face Mixtral has no "
                     : has_llama4_features(c) ? "config.json: a Hugging Face Llama 4 text model has no "
                                              : "config.json: a Hugging Face Llama has no ",
                     why);
  validate(c, "config.json");  // the sizes below divide by n_heads
  json j = write_object(is_mixtral_config(c) ? hf_mixtral_keys() : has_llama4_features(c) ? hf_llama4_keys() : hf_keys(), c);
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

// ---- Meta ----

namespace {

// Llama 4's params.json: it has a key only Llama 4's ModelArgs has (docs/llama4.md §12); its
// defaults then are Llama 4's. A config with a Llama 4 feature is written in it.
bool is_llama4_params(const json& j) {
  const std::set<std::string> l3 = keys_of(params_keys());
  for (const auto& [k, v] : j.items())
    if (!l3.count(k) && keys_of(params_llama4_keys()).count(k)) return true;
  return false;
}

}  // namespace

ModelConfig config_from_params_json(const std::string& text, const std::string& source) {
  json j = parse_object(text, source);
  if (j.size() == 1 && j.contains("model") && j["model"].is_object()) j = json(j["model"]);  // {"model": {...}}
  ModelConfig c;
  if (!is_llama4_params(j)) {
    read_object(params_keys(), j, c, quote(source), nullptr);
    return c;
  }
  // Llama 4: every key must be one lmkit honours or knows to have no effect on the math.
  const std::set<std::string> known = keys_of(params_llama4_keys());
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) fail_data(cat(quote(source), ": Llama 4 params.json: unknown key ", quote(k)));
  read_object(params_llama4_keys(), j, c, quote(source), nullptr);
  if (c.moe.n_experts == 0) c.moe.hidden_dim = 0;  // ffn_exp concerns the experts only
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
  no(c.hidden_dim > 0 && c.multiple_of > 0 && c.hidden_dim != meta_hidden(c),  // multiple_of 0: validate refuses
     cat("hidden_dim ", c.hidden_dim, " (params.json derives ", meta_hidden(c), " from multiple_of and ffn_dim_multiplier)"));
  no(c.rope_scaling.type != RopeScalingType::None &&
         (c.rope_scaling.type != RopeScalingType::Llama3 || c.rope_scaling.low_freq_factor != 1 ||
          c.rope_scaling.original_max_seq_len != 8192),
     "rope_scaling other than llama3 with low_freq_factor 1 and original_max_seq_len 8192 (use_scaled_rope)");
  no(c.rope_scale_factor != 1, "rope_scale_factor");
  no(c.logits_soft_cap != 0, "a logits soft cap");
  no(c.qk_norm && c.qk_norm_weight, "QK-norm weights (qk_norm_weight; Llama 4's QK-norm has none)");
  no(!c.conditions.empty(), "materium conditions (conditions)");
  no(c.rope_mode != RopeMode::Standard, cat("rope_mode ", quote(name_of(c.rope_mode))));
  if (params_as_llama4(c)) {  // Llama 4's ModelArgs
    no(c.moe.n_experts > 0 && !c.moe.shared_expert, "experts without a shared expert (Llama 4's MoE has one)");
    no(c.moe.n_experts > 0 && c.moe.first_dense_layers > 0,
       cat("moe.first_dense_layers ", c.moe.first_dense_layers, " (Llama 4's ModelArgs places MoE layers by interleave_moe_layer_step alone)"));
    no(c.moe.n_experts > 0 && c.ffn_dim_multiplier <= 0, "experts without ffn_dim_multiplier (Meta's width rule needs it)");
    no(c.image_token_id >= 0, "an image_token_id (Meta marks image places with a mask)");
    no(!c.causal || c.doc_mask, "non-causal or document-masked attention");
  }
  return why;
}

std::string config_to_params_json(const ModelConfig& c) {
  const std::vector<std::string> why = params_unsupported(c);
  if (!why.empty()) fail_unsupported("params.json: Meta's params have no ", why);
  validate(c, "params.json");  // the sizes below divide by n_heads
  if (!params_as_llama4(c)) return write_object(params_keys(), c).dump(2) + "\n";
  json j = write_object(params_llama4_keys(), c);
  if (c.moe.n_experts > 0) {
    // ffn_exp for the expert width: the smallest int(ffn_exp * dim) the rule (auto_scale_F off)
    // takes to moe_hidden(); written as n + 0.5 over dim, which int() takes back to n.
    const int64_t want = c.moe_hidden();
    int64_t start = 0;
    for (int64_t n = 1; n <= 4 * want + 4 * c.multiple_of + 8 && !start; ++n)
      if (meta_expert_width(n, c.ffn_dim_multiplier, false, 1.0, c.multiple_of) == want) start = n;
    if (!start)
      fail(ErrorKind::Unsupported, cat("params.json: Meta's width rule gives no expert width ", want,
                                       " with ffn_dim_multiplier ", c.ffn_dim_multiplier, " and multiple_of ", c.multiple_of));
    json out = json::object();
    for (const auto& [k, v] : j.items()) {
      if (k == "norm_eps") out["ffn_exp"] = (static_cast<double>(start) + 0.5) / static_cast<double>(c.dim);
      out[k] = v;
    }
    j = std::move(out);
  }
  const std::string text = j.dump(2) + "\n";
  // The file must read back as the same model.
  ModelConfig back = config_from_params_json(text, "params.json");
  back.name = c.name;
  if (back.vocab_size == 0) back.vocab_size = c.vocab_size;
  if (!(back.moe == c.moe) || back.ffn_hidden() != c.ffn_hidden() || back.qk_norm != c.qk_norm ||
      back.nope_layer_interval != c.nope_layer_interval || back.attn_chunk_size != c.attn_chunk_size ||
      !(back.rope_scaling == c.rope_scaling))
    fail(ErrorKind::Unsupported, "params.json: the config does not survive Meta's Llama 4 params (internal)");
  return text;
}

// ---- --config ----

std::string config_convention(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  std::set<std::string> lmkit_keys;
  for (const std::string& k : config_keys()) lmkit_keys.insert(k.substr(0, k.find('.')));
  // Hugging Face's by a key only it has that every config.json carries (a required one, or
  // model_type): a lmkit config with a stray HF spelling stays lmkit's, to be told its mistake.
  std::set<std::string> hf_markers;
  std::set<std::string> meta = keys_of(params_keys());
  for (const std::string& k : keys_of(params_llama4_keys())) meta.insert(k);
  for (const std::vector<KeyRow>* rows : {&hf_keys(), &hf_llama4_keys()})
    for (const KeyRow& r : *rows)
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

ModelConfig load_config_arg(const std::string& arg, const std::string& format, std::string* convention) {
  std::string unused;
  std::string& read_as = convention ? *convention : unused;
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
      read_as = "preset";
      return *p;
    }
    if (arg.find('/') != std::string::npos || arg.find(".json") != std::string::npos) fail_io("cannot open", arg);
    fail(ErrorKind::Usage, cat("--config ", quote(arg), " is neither a file nor a preset"),
         "presets are listed by 'lm-inspect-config --list-presets'");
  }
  const std::string text = read_text_file(arg);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') {  // a checkpoint
    not_json(cat("the checkpoint ", quote(arg)));
    read_as = "checkpoint";
    return load_config_input(arg, {}).config;
  }
  const std::optional<SeedFormat> seed = format == "auto" ? detect_seed_format(text, arg) : seed_named;
  if (seed) {
    read_as = name_of(*seed);
    return config_from_seed_json(text, *seed, arg).config;
  }
  const std::string conv = format == "auto" ? config_convention(text, arg) : format;
  read_as = conv;
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

namespace {

// Llama 3.1-style RoPE scalings in use (factor, low_freq_factor, high_freq_factor, original
// context): Llama 3.1, Llama 3.2, Llama 4. A GGUF file holds the scaling only as rope_freqs
// factors (convert_hf_to_gguf.py LlamaModel), so these are the candidates they are matched to.
const RopeScaling kKnownLlama3Scalings[] = {
    {RopeScalingType::Llama3, 8, 1, 4, 8192},
    {RopeScalingType::Llama3, 32, 1, 4, 8192},
    {RopeScalingType::Llama3, 16, 1, 1, 8192},
};

bool factors_match(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::fabs(got[i] - want[i]) > 1e-6f * std::fabs(want[i])) return false;
  return true;
}

// llama.cpp's model-wide assumptions for its llama4 architecture (src/models/llama4.cpp): no key
// holds them. Applied to `c`; the fields set are appended to `given`, and one note says so.
void apply_llama4_assumptions(ModelConfig& c, std::vector<std::string>& given, std::vector<std::string>* notes) {
  c.attn_chunk_size = 8192;
  c.nope_layer_interval = 4;
  c.attn_temperature_tuning = true;
  c.attn_floor_scale = 8192;
  c.attn_scale = 0.1;
  c.qk_norm = c.moe.n_experts != 128;  // llama.cpp: on unless the model is the 128-expert one
  c.qk_norm_weight = false;
  c.moe.shared_expert = c.moe.n_experts > 0;
  c.moe.routing = MoERouting::Sigmoid;
  c.moe.first_dense_layers = 0;  // llama.cpp's llama4 has no leading dense layers
  for (const char* f : {"attn_chunk_size", "nope_layer_interval", "attn_temperature_tuning", "attn_floor_scale", "attn_scale",
                        "qk_norm", "qk_norm_weight", "moe.shared_expert", "moe.routing", "moe.first_dense_layers"})
    given.push_back(f);
  if (notes)
    notes->push_back(cat("GGUF llama4: assumed as llama.cpp hard-codes them (no key holds them): attention chunks of 8192 on the "
                         "RoPE layers, a NoPE layer every 4th, temperature tuning (floor 8192, scale 0.1), QK-norm ",
                         c.qk_norm ? "on" : "off", " (expert count ", c.moe.n_experts, c.qk_norm ? " is not 128)" : " is 128)",
                         ", sigmoid routing with a shared expert"));
}

}  // namespace

std::string gguf_architecture(const ModelConfig& c) { return is_llama4_config(c) ? "llama4" : "llama"; }

std::vector<std::string> gguf_config_assignments(const GGUFFile& f, const std::vector<float>* rope_factors,
                                                 std::vector<std::string>* notes) {
  const GGUFValue* a = f.find("general.architecture");
  if (!a || a->type != GGUFValue::String) fail_data(cat(quote(f.path()), ": no 'general.architecture' string"));
  const std::string arch = a->s;
  if (arch != "llama" && arch != "llama4")
    fail(ErrorKind::Unsupported, cat(quote(f.path()), ": GGUF architecture ", quote(arch), " is not supported (llama and llama4 are)"));
  ModelConfig c;
  std::vector<std::string> given;
  read_rows(
      gguf_keys(arch),
      [&](const char* key) -> std::optional<json> {
        const GGUFValue* v = f.find(key);
        if (v && !gguf_text(*v)) fail_data(cat(quote(f.path()), ": ", quote(key), ": not valid UTF-8"));
        return v ? std::optional<json>(gguf_json(*v)) : std::nullopt;
      },
      c, quote(f.path()), &given);
  const bool moe = c.moe.n_experts > 0;
  if (arch == "llama" && moe) {
    // Mixtral (src/models/llama.cpp): every layer routed, softmax weights renormalised over the
    // selected experts, no shared expert; feed_forward_length is the experts' width.
    c.moe.hidden_dim = c.hidden_dim;
    c.moe.routing = MoERouting::Softmax;
    c.moe.shared_expert = false;
    c.moe.interleave_step = 1;
    c.moe.first_dense_layers = 0;
    std::erase(given, std::string("hidden_dim"));
    for (const char* k : {"moe.hidden_dim", "moe.routing", "moe.shared_expert", "moe.interleave_step", "moe.first_dense_layers"})
      given.push_back(k);
  }
  if (arch == "llama4") {
    if (!moe) fail(ErrorKind::Unsupported, cat(quote(f.path()), ": llama4 without experts (llama.cpp refuses it too)"));
    // The dense width only when some layer is dense: otherwise nothing in the file uses it.
    bool any_dense = false;
    for (int64_t l = 0; l < c.n_layers; ++l) any_dense = any_dense || !c.is_moe_layer(l);
    if (!any_dense) std::erase(given, std::string("hidden_dim"));
    apply_llama4_assumptions(c, given, notes);
  }
  if (rope_factors) {
    if (c.rope_scaling.type != RopeScalingType::None)
      fail(ErrorKind::Unsupported, cat(quote(f.path()), ": rope_freqs.weight together with rope.scaling.type"));
    bool found = false;
    for (const RopeScaling& s : kKnownLlama3Scalings) {
      ModelConfig t = c;
      t.rope_scaling = s;
      if (factors_match(*rope_factors, gguf_rope_factors(t))) {
        c.rope_scaling = s;
        found = true;
        break;
      }
    }
    if (!found)
      fail(ErrorKind::Unsupported, cat(quote(f.path()), ": rope_freqs.weight is none of the llama3 RoPE scalings lmkit knows "
                                       "(factor/low/high 8/1/4, 32/1/4, 16/1/1 with original context 8192)"));
    for (const char* k : {"rope_scaling.type", "rope_scaling.factor", "rope_scaling.low_freq_factor", "rope_scaling.high_freq_factor",
                          "rope_scaling.original_max_seq_len"})
      given.push_back(k);
    if (notes)
      notes->push_back(cat("GGUF rope_freqs.weight matches llama3 RoPE scaling factor ", c.rope_scaling.factor, ", low_freq_factor ",
                           c.rope_scaling.low_freq_factor, ", high_freq_factor ", c.rope_scaling.high_freq_factor,
                           ", original_max_seq_len ", c.rope_scaling.original_max_seq_len));
  }
  return assignments(c, given);
}

std::vector<float> gguf_rope_factors(const ModelConfig& c) {
  ModelConfig plain = c;
  plain.rope_scaling = RopeScaling{};
  const std::vector<double> base = rope_inv_freq(plain), scaled = rope_inv_freq(c);
  std::vector<float> out(base.size());
  for (size_t i = 0; i < base.size(); ++i) out[i] = static_cast<float>(base[i] / scaled[i]);
  return out;
}

void check_gguf_rope_factors(const ModelConfig& c, const std::vector<float>& factors, const std::string& source) {
  if (c.rope_scaling.type != RopeScalingType::Llama3)
    fail_data(cat(quote(source), ": rope_freqs.weight, but the config (lmkit.config) has no llama3 RoPE scaling"));
  if (!factors_match(factors, gguf_rope_factors(c)))
    fail_data(cat(quote(source), ": rope_freqs.weight differs from the config's llama3 RoPE scaling (lmkit.config)"));
}

std::vector<std::string> gguf_unsupported(const ModelConfig& c) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& m) {
    if (bad) why.push_back(m);
  };
  const std::string arch = gguf_architecture(c);
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type)), " (", arch, " has RMSNorm)"));
  no(c.norm_bias, "norm biases (norm_bias)");
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type)), " (", arch, " has SwiGLU)"));
  no(c.ffn_bias, "feed-forward biases (ffn_bias)");
  no(c.output_bias, "a classifier bias (output_bias)");
  no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
  no(!c.causal, "non-causal attention (causal = false)");
  no(c.rope_scaling.type == RopeScalingType::Linear && c.rope_scale_factor != 1, "both rope_scale_factor and linear rope_scaling");
  no(!c.conditions.empty(), "materium conditions (conditions)");
  no(c.rope_mode != RopeMode::Standard, cat("rope_mode ", quote(name_of(c.rope_mode))));
  no(c.extra_eos_ids.size() > 2, cat(c.extra_eos_ids.size(), " extra_eos_ids (GGUF holds eos_id and two more: ",
                                     "tokenizer.ggml.eom_token_id and eot_token_id)"));
  if (arch == "llama") {
    no(c.qk_norm, "QK-norm (qk_norm)");
    no(c.nope_layer_interval > 0, "NoPE layers (nope_layer_interval)");
    no(c.attn_chunk_size > 0, "chunked attention (attn_chunk_size)");
    no(c.attn_temperature_tuning, "attention temperature tuning (attn_temperature_tuning)");
    no(c.vision_dim > 0, "image features (vision_dim, image_token_id)");
    return why;
  }
  // llama4: llama.cpp runs what src/models/llama4.cpp hard-codes, whatever a file would say; a
  // config it would run differently is refused, not written.
  const char* runs = " (llama.cpp's llama4 runs ";
  no(c.moe.n_experts == 0, "a model without experts (llama.cpp's llama4 requires moe.n_experts > 0)");
  no(c.moe.n_experts > 0 && !c.moe.shared_expert, "experts without a shared expert (llama.cpp's llama4 always adds one)");
  no(c.moe.first_dense_layers > 0, cat("moe.first_dense_layers ", c.moe.first_dense_layers,
                                       " (llama.cpp's llama4 places MoE layers by interleave_moe_layer_step alone)"));
  no(c.moe.n_experts > 0 && c.moe.routing != MoERouting::Sigmoid, "softmax routing with Llama 4 features (llama4 routes by sigmoid)");
  no(c.attn_chunk_size != 8192, cat("attn_chunk_size ", c.attn_chunk_size, runs, "chunks of 8192)"));
  no(c.nope_layer_interval != 4, cat("nope_layer_interval ", c.nope_layer_interval, runs, "a NoPE layer every 4th)"));
  no(!c.attn_temperature_tuning || c.attn_floor_scale != 8192 || c.attn_scale != 0.1,
     cat("temperature tuning ", c.attn_temperature_tuning ? "on" : "off", " with floor ", c.attn_floor_scale, " and scale ",
         c.attn_scale, runs, "it on with floor 8192 and scale 0.1)"));
  const bool want_qk = c.moe.n_experts != 128;
  no(c.qk_norm != want_qk, cat("qk_norm ", c.qk_norm ? "on" : "off", " with ", c.moe.n_experts, " experts", runs,
                               "QK-norm exactly when the expert count is not 128)"));
  no(c.qk_norm && c.qk_norm_weight, "QK-norm weights (llama4's QK-norm has none)");
  no(c.attn_bias, "attention biases (attn_bias)");
  no(c.vision_dim > 0, "image features (vision_dim: llama.cpp keeps the projector in a separate mmproj file)");
  no(c.rope_scaling.type == RopeScalingType::Linear || c.rope_scale_factor != 1, "linear RoPE scaling");
  return why;
}

void set_gguf_metadata(GGUFWriter& w, const ModelConfig& c, const std::string& config_json, uint32_t file_type, bool quantized,
                       const std::string& tokenizer_json) {
  // general.* first, as llama.cpp's writer orders them.
  for (bool general : {true, false}) {
    for (const KeyRow& r : gguf_keys(gguf_architecture(c))) {
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
