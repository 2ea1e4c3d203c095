// The seeds' config serialisations (docs/seed-configs.md): one key table per seed dataclass,
// read by one mechanism (unknown keys, required keys, types, the seed's defaults, keys without
// math noted), then each format's mapping onto ModelConfig and back.
#include "model/config_formats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"

namespace lm {

namespace {

using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Key tables

enum class KeyType : uint8_t { Int, Number, Bool, String, Object, Any };

struct SeedKey {
  const char* key;
  KeyType type;
  bool nullable;         // None is a value the seed's field takes
  const char* fallback;  // the seed's default as JSON text; nullptr: required (no default)
  bool math = true;      // false: accepted and noted, not kept (compilation, sharding, initialisation...)
};

constexpr const char* kRequired = nullptr;

// materium ModelArgs (seed 000), in field order.
const std::vector<SeedKey> kMateriumKeys = {
    {"dim", KeyType::Int, false, "4096"},
    {"n_layers", KeyType::Int, false, "32"},
    {"n_heads", KeyType::Int, false, "32"},
    {"n_kv_heads", KeyType::Int, true, "null"},
    {"vocab_size", KeyType::Int, false, "32000"},
    {"hidden_dim", KeyType::Int, true, "null"},
    {"multiple_of", KeyType::Int, false, "256"},
    {"norm_eps", KeyType::Number, false, "1e-05"},
    {"max_seq_len", KeyType::Int, false, "2048"},
    {"dropout", KeyType::Number, false, "0.1"},
    {"pad_id", KeyType::Int, true, "-1"},
    {"condition_config", KeyType::Object, true, "null"},
    {"rope_mode", KeyType::String, false, "\"STANDARD\""},
    {"atoms_token_id", KeyType::Int, true, "null"},
    {"lattice_token_id", KeyType::Int, true, "null"},
    {"atom_block_size", KeyType::Int, false, "4"},
};
// materium ConditionConfig: every field required.
const std::vector<SeedKey> kMateriumConditionKeys = {
    {"proj_layer_type", KeyType::String, false, kRequired},
    {"input_dim", KeyType::Int, false, kRequired},
    {"out_dim", KeyType::Int, false, kRequired},
};

// xlstm-jax LlamaConfig (seed 001).
const std::vector<SeedKey> kXlstmKeys = {
    {"vocab_size", KeyType::Int, false, kRequired},
    {"embedding_dim", KeyType::Int, false, kRequired},
    {"num_blocks", KeyType::Int, false, kRequired},
    {"head_dim", KeyType::Int, false, "128"},
    {"qk_norm", KeyType::Bool, false, "false"},
    {"causal", KeyType::Bool, false, "true"},
    {"theta", KeyType::Number, false, "10000.0"},
    {"ffn_multiple_of", KeyType::Int, false, "64"},
    {"ffn_dim_multiplier", KeyType::Number, false, "1.0"},
    {"use_bias", KeyType::Bool, false, "false"},
    {"scan_blocks", KeyType::Bool, false, "true", false},
    {"attention_backend", KeyType::String, false, "\"xla\"", false},
    {"mask_across_document_boundaries", KeyType::Bool, false, "false"},
    {"dtype", KeyType::String, false, "\"float32\"", false},
    {"dropout_rate", KeyType::Number, false, "0.0"},
    {"add_embedding_dropout", KeyType::Bool, false, "false"},
    {"logits_soft_cap", KeyType::Number, true, "null"},
    {"parallel", KeyType::Object, true, "null", false},
};
// xlstm_jax.models.configs.ParallelConfig's defaults: what a write-back puts under "parallel".
constexpr const char* kXlstmParallelDefaults =
    R"({"data_axis_size": -1, "fsdp_axis_size": 1, "pipeline_axis_size": 1, "model_axis_size": 1,
        "data_axis_name": "dp", "fsdp_axis_name": "fsdp", "pipeline_axis_name": "pipe", "model_axis_name": "tp",
        "remat": [], "fsdp_modules": [], "fsdp_min_weight_size": 262144, "fsdp_gather_dtype": null,
        "fsdp_grad_scatter_dtype": null, "tp_async_dense": true})";

// MobileLLMConfig (seed 003's table; the fields after norm_eps are its public code version's).
const std::vector<SeedKey> kMobileLLMKeys = {
    {"vocab_size", KeyType::Int, false, "128256"},
    {"num_layers", KeyType::Int, false, kRequired},
    {"num_heads", KeyType::Int, false, kRequired},
    {"num_kv_heads", KeyType::Int, false, kRequired},
    {"embed_dim", KeyType::Int, false, kRequired},
    {"hidden_dim", KeyType::Int, false, kRequired},
    {"max_seq_len", KeyType::Int, false, "32768"},
    {"rope_base", KeyType::Number, false, "500000.0"},
    {"use_qk_norm", KeyType::Bool, false, "true"},
    {"tie_word_embeddings", KeyType::Bool, false, "true"},
    {"dropout", KeyType::Number, false, "0.0"},
    {"norm_eps", KeyType::Number, false, "1e-05"},
    {"use_weight_sharing", KeyType::Bool, true, "null"},
    {"rope_scaling", KeyType::Any, true, "null"},
    {"attention_dropout", KeyType::Number, false, "0.0"},
    {"use_moe", KeyType::Bool, false, "false"},
    {"num_experts", KeyType::Int, false, "1", false},
    {"num_experts_per_tok", KeyType::Int, false, "1", false},
    {"moe_intermediate_size", KeyType::Int, true, "null", false},
    {"initializer_range", KeyType::Number, false, "0.02", false},
    {"use_gradient_checkpointing", KeyType::Bool, false, "false", false},
    {"gradient_checkpointing_mode", KeyType::String, false, "\"quantized\"", false},
};

// soma-models V1 ModelConfig (seed 002) and its SIGRegConfig.
const std::vector<SeedKey> kSomaKeys = {
    {"dropout_rate", KeyType::Number, false, kRequired},
    {"embedding_dim", KeyType::Int, false, "2048"},
    {"pwff_hidden_dim", KeyType::Int, false, "8192"},
    {"num_layers", KeyType::Int, false, "24"},
    {"num_heads", KeyType::Int, false, "8"},
    {"vocab_size", KeyType::Int, false, "264"},
    {"max_wavelength", KeyType::Number, false, "10000.0"},
    {"scale_factor", KeyType::Number, false, "1.0"},
    {"sig_reg", KeyType::Object, true, "null"},
};
const std::vector<SeedKey> kSigRegKeys = {
    {"t_max", KeyType::Number, false, "3.0"},
    {"points", KeyType::Int, false, "17"},
    {"slices", KeyType::Int, false, "256"},
    {"coefficient", KeyType::Number, false, "0.02"},
};

// "materium ModelArgs": the seed class a message names.
const char* class_name(SeedFormat f) {
  switch (f) {
    case SeedFormat::Materium: return "materium ModelArgs";
    case SeedFormat::XlstmJax: return "xlstm-jax LlamaConfig";
    case SeedFormat::MobileLLM: return "MobileLLMConfig";
    case SeedFormat::Soma: return "soma ModelConfig";
  }
  return "?";
}

const std::vector<SeedKey>& keys_of(SeedFormat f) {
  switch (f) {
    case SeedFormat::Materium: return kMateriumKeys;
    case SeedFormat::XlstmJax: return kXlstmKeys;
    case SeedFormat::MobileLLM: return kMobileLLMKeys;
    case SeedFormat::Soma: return kSomaKeys;
  }
  return kMateriumKeys;
}

constexpr SeedFormat kFormats[] = {SeedFormat::Materium, SeedFormat::XlstmJax, SeedFormat::MobileLLM, SeedFormat::Soma};

std::string describe(const ojson& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool type_fits(const ojson& v, KeyType t) {
  switch (t) {
    case KeyType::Int:
      if (v.is_number_integer()) return !v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(INT64_MAX);
      if (v.is_number_float()) {  // 6.0 is an integer (Python json would give a float; the seeds' ints compare equal)
        const double d = v.get<double>();
        return std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15;
      }
      return false;
    case KeyType::Number: return v.is_number();
    case KeyType::Bool: return v.is_boolean();
    case KeyType::String: return v.is_string();
    case KeyType::Object: return v.is_object();
    case KeyType::Any: return true;
  }
  return false;
}

const char* type_words(KeyType t, bool nullable) {
  switch (t) {
    case KeyType::Int: return nullable ? "an integer or null" : "an integer";
    case KeyType::Number: return nullable ? "a number or null" : "a number";
    case KeyType::Bool: return nullable ? "true, false or null" : "true or false";
    case KeyType::String: return nullable ? "a string or null" : "a string";
    case KeyType::Object: return nullable ? "an object or null" : "an object";
    case KeyType::Any: return "a value";
  }
  return "?";
}

// Every key of `table` with the document's value or the seed's default, in table order. `what`
// starts every message ("'file.json': materium ModelArgs"); keys without math that the document
// gives are appended to *noted (with `path` before them, e.g. "sig_reg.").
ojson resolve(const ojson& doc, const std::vector<SeedKey>& table, const std::string& what, std::vector<std::string>* noted,
              const std::string& path = "") {
  if (!doc.is_object()) fail_data(cat(what, ": expected a JSON object, got ", describe(doc)));
  for (const auto& [k, v] : doc.items()) {
    const SeedKey* known = nullptr;
    std::string best;
    size_t best_d = std::numeric_limits<size_t>::max();
    for (const SeedKey& s : table) {
      if (k == s.key) known = &s;
      if (const size_t d = edit_distance(k, s.key); d < best_d) best_d = d, best = s.key;
    }
    if (!known)
      fail(ErrorKind::Data, cat(what, ": unknown key ", quote(k)),
           best_d <= std::max<size_t>(2, k.size() / 3) ? "did you mean " + quote(best) + "?" : "");
    if (!(known->nullable && v.is_null()) && !type_fits(v, known->type))
      fail_data(cat(what, ": ", quote(k), ": expected ", type_words(known->type, known->nullable), ", got ", describe(v)));
  }
  ojson g = ojson::object();
  for (const SeedKey& s : table) {
    if (doc.contains(s.key)) {
      g[s.key] = doc[s.key];
      if (!s.math && noted) noted->push_back(path + s.key);
    } else if (s.fallback == kRequired) {
      fail_data(cat(what, ": ", quote(s.key), " is required (the seed gives it no default)"));
    } else {
      g[s.key] = ojson::parse(s.fallback);
    }
  }
  return g;
}

int64_t as_int(const ojson& v) { return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>()); }
double as_num(const ojson& v) { return v.get<double>(); }
int64_t int_or(const ojson& v, int64_t none) { return v.is_null() ? none : as_int(v); }

// ---------------------------------------------------------------------------------------------
// The mappings (docs/seed-configs.md, one table each)

ModelConfig from_materium(const ojson& doc, const std::string& what, std::vector<std::string>* noted) {
  const ojson g = resolve(doc, kMateriumKeys, what, noted);
  const std::string mode = g["rope_mode"].get<std::string>();
  if (mode != "STANDARD" && mode != "standard" && mode != "BLOCKWISE" && mode != "blockwise")
    fail_data(cat(what, ": 'rope_mode' ", quote(mode), " is not a RopeMode (STANDARD, BLOCKWISE)"));
  ModelConfig c;
  c.dim = as_int(g["dim"]);
  c.n_layers = as_int(g["n_layers"]);
  c.n_heads = as_int(g["n_heads"]);
  c.n_kv_heads = int_or(g["n_kv_heads"], 0);
  c.vocab_size = as_int(g["vocab_size"]);
  c.hidden_dim = int_or(g["hidden_dim"], 0);  // None: Meta's rule from multiple_of, as materium's FeedForward
  c.multiple_of = as_int(g["multiple_of"]);
  c.ffn_dim_multiplier = 0;
  c.head_dim = 0;
  c.max_seq_len = as_int(g["max_seq_len"]);
  c.norm_type = NormType::RMSNorm;
  c.norm_eps = as_num(g["norm_eps"]);
  c.norm_bias = false;
  c.ffn_type = FfnType::SwiGLU;
  c.attn_bias = c.ffn_bias = c.qk_norm = c.output_bias = c.doc_mask = false;
  c.tie_embeddings = true;
  c.causal = true;
  c.logits_soft_cap = 0;
  c.rope_theta = 10000;
  c.rope_scale_factor = 1;
  // materium drops the embeddings, the attention probabilities and both residual branches with it.
  c.dropout = c.attn_dropout = c.emb_dropout = as_num(g["dropout"]);
  c.pad_id = int_or(g["pad_id"], -1);
  if (!g["condition_config"].is_null()) {
    for (const auto& [name, cc] : g["condition_config"].items()) {
      const std::string where = cat(what, ": condition_config.", name);
      if (!cc.is_object()) fail_data(where + ": expected a ConditionConfig object");
      const ojson v = resolve(cc, kMateriumConditionKeys, where, nullptr);
      ConditionConfig cond;
      cond.name = name;
      const std::string type = v["proj_layer_type"].get<std::string>();
      if (type == "linear")
        cond.proj_layer_type = ProjLayerType::Linear;
      else if (type == "embedding")
        cond.proj_layer_type = ProjLayerType::Embedding;
      else if (type == "formula")
        cond.proj_layer_type = ProjLayerType::Formula;
      else
        fail_data(cat(where, ": unknown proj_layer_type ", quote(type)));
      cond.input_dim = as_int(v["input_dim"]);
      cond.out_dim = as_int(v["out_dim"]);
      if (cond.out_dim != c.dim)
        fail_data(cat(where, ": out_dim ", cond.out_dim, " is not dim ", c.dim, " (materium projects every condition to dim)"));
      cond.max_elements = 0;
      c.conditions.push_back(std::move(cond));
    }
  }
  c.rope_mode = mode == "BLOCKWISE" || mode == "blockwise" ? RopeMode::Blockwise : RopeMode::Standard;
  c.atoms_token_id = int_or(g["atoms_token_id"], -1);
  c.lattice_token_id = int_or(g["lattice_token_id"], -1);
  c.atom_block_size = as_int(g["atom_block_size"]);
  c.loss_weights = false;  // materium passes its weights to the constructor; lmkit keeps them in the checkpoint
  return c;
}

ModelConfig from_xlstm(const ojson& doc, const std::string& what, std::vector<std::string>* noted) {
  const ojson g = resolve(doc, kXlstmKeys, what, noted);
  const int64_t C = as_int(g["embedding_dim"]), HS = as_int(g["head_dim"]);
  if (HS <= 0) fail_data(cat(what, ": head_dim must be positive, got ", HS));
  if (C % HS != 0)
    fail_data(cat(what, ": embedding_dim ", C, " is not a multiple of head_dim ", HS,
                  " (the number of heads is embedding_dim // head_dim)"));
  const std::string backend = g["attention_backend"].get<std::string>();
  if (backend != "xla" && backend != "pallas_triton" && backend != "cudnn")
    fail_data(cat(what, ": unknown attention_backend ", quote(backend)));
  const std::string dtype = g["dtype"].get<std::string>();
  if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16") fail_data(cat(what, ": unknown dtype ", quote(dtype)));
  ModelConfig c;
  c.vocab_size = as_int(g["vocab_size"]);
  c.dim = C;
  c.n_layers = as_int(g["num_blocks"]);
  c.n_heads = C / HS;
  c.n_kv_heads = 0;
  c.head_dim = HS;
  c.hidden_dim = 0;
  c.multiple_of = as_int(g["ffn_multiple_of"]);
  c.ffn_dim_multiplier = as_num(g["ffn_dim_multiplier"]);
  c.norm_type = NormType::RMSNorm;
  c.norm_eps = 1e-6;  // flax nn.RMSNorm's default epsilon
  c.norm_bias = false;
  c.ffn_type = FfnType::SwiGLU;
  c.attn_bias = c.ffn_bias = g["use_bias"].get<bool>();
  c.qk_norm = g["qk_norm"].get<bool>();
  c.qk_norm_weight = true;
  c.tie_embeddings = false;
  c.output_bias = false;
  c.causal = g["causal"].get<bool>();
  c.doc_mask = g["mask_across_document_boundaries"].get<bool>();
  if (c.doc_mask) c.doc_mask_boundary = DocMaskBoundary::Start;  // segment ids = cumsum(tokens == eod)
  c.logits_soft_cap = g["logits_soft_cap"].is_null() ? 0.0 : as_num(g["logits_soft_cap"]);
  c.rope_theta = as_num(g["theta"]);
  c.rope_scale_factor = 1;
  c.dropout = as_num(g["dropout_rate"]);
  c.attn_dropout = 0;
  c.emb_dropout = g["add_embedding_dropout"].get<bool>() ? c.dropout : 0.0;
  return c;
}

ModelConfig from_mobilellm(const ojson& doc, const std::string& what, std::vector<std::string>* noted) {
  std::vector<std::string> notes;
  const ojson g = resolve(doc, kMobileLLMKeys, what, &notes);
  bool tie = g["tie_word_embeddings"].get<bool>();
  if (!g["use_weight_sharing"].is_null()) {  // the code version's name
    if (doc.contains("tie_word_embeddings") && doc["tie_word_embeddings"] != g["use_weight_sharing"])
      fail_data(cat(what, ": tie_word_embeddings and use_weight_sharing disagree"));
    tie = g["use_weight_sharing"].get<bool>();
  }
  const int64_t C = as_int(g["embed_dim"]), NH = as_int(g["num_heads"]), NKV = as_int(g["num_kv_heads"]);
  if (NH <= 0 || NKV <= 0) fail_data(cat(what, ": num_heads and num_kv_heads must be positive, got ", NH, " and ", NKV));
  if (C % NH != 0 || NH % NKV != 0)
    fail_data(cat(what, ": embed_dim must be a multiple of num_heads, num_heads of num_kv_heads"));
  if (!g["rope_scaling"].is_null())
    fail_data(cat(what, ": rope_scaling ", describe(g["rope_scaling"]), ": the seed does not define its form"));
  if (g["use_moe"].get<bool>()) fail_data(cat(what, ": use_moe: the seed does not define MobileLLM's expert routing"));
  const std::string mode = g["gradient_checkpointing_mode"].get<std::string>();
  if (g["use_gradient_checkpointing"].get<bool>() && mode != "standard")
    fail_data(cat(what, ": gradient_checkpointing_mode ", quote(mode),
                  " stores quantized activations, which changes the gradients (lm-train --checkpointing is exact)"));
  if (mode != "standard" && mode != "quantized") fail_data(cat(what, ": unknown gradient_checkpointing_mode ", quote(mode)));
  if (noted) noted->insert(noted->end(), notes.begin(), notes.end());
  ModelConfig c;
  c.vocab_size = as_int(g["vocab_size"]);
  c.dim = C;
  c.n_layers = as_int(g["num_layers"]);
  c.n_heads = NH;
  c.n_kv_heads = NKV;
  c.head_dim = 0;  // embed_dim // num_heads: the code's property
  c.hidden_dim = as_int(g["hidden_dim"]);
  c.max_seq_len = as_int(g["max_seq_len"]);
  c.norm_type = NormType::RMSNorm;
  c.norm_eps = as_num(g["norm_eps"]);
  c.norm_bias = false;
  c.ffn_type = FfnType::SwiGLU;
  c.attn_bias = c.ffn_bias = c.output_bias = c.doc_mask = false;
  c.qk_norm = g["use_qk_norm"].get<bool>();
  c.qk_norm_weight = true;  // the code's RMSNorm(head_dim) carries a weight
  c.tie_embeddings = tie;
  c.causal = true;
  c.logits_soft_cap = 0;
  c.rope_theta = as_num(g["rope_base"]);
  c.rope_scale_factor = 1;
  c.rope_scaling.type = RopeScalingType::None;
  c.dropout = as_num(g["dropout"]);
  c.attn_dropout = as_num(g["attention_dropout"]);
  if (c.vocab_size == 128256) {  // the Llama 3 tokenizer's specials, as the mobilellm presets set them
    c.bos_id = 128000;
    c.eos_id = 128001;
  }
  return c;
}

ModelConfig from_soma(const ojson& doc, const std::string& what, std::vector<std::string>* noted) {
  const ojson g = resolve(doc, kSomaKeys, what, noted);
  const std::string sr_what = what.substr(0, what.rfind("soma ModelConfig")) + "soma SIGRegConfig";
  const ojson s = resolve(g["sig_reg"].is_null() ? ojson::object() : g["sig_reg"], kSigRegKeys, sr_what, noted, "sig_reg.");
  ModelConfig c;
  c.vocab_size = as_int(g["vocab_size"]);
  if (c.vocab_size < 258)
    fail_data(cat(what, ": vocab_size ", c.vocab_size, " leaves no room for PAD 256 and EOS 257"));
  c.dim = as_int(g["embedding_dim"]);
  c.hidden_dim = as_int(g["pwff_hidden_dim"]);
  c.n_layers = as_int(g["num_layers"]);
  c.n_heads = as_int(g["num_heads"]);
  c.n_kv_heads = 0;
  c.head_dim = 0;
  c.max_seq_len = 1024;  // V1_MAX_SEQ_LEN
  c.norm_type = NormType::LayerNorm;
  c.norm_bias = true;
  c.norm_eps = 1e-5;
  c.ffn_type = FfnType::GELU;
  c.gelu_approximate = GeluApprox::None;
  c.attn_bias = c.ffn_bias = c.output_bias = true;
  c.qk_norm = c.tie_embeddings = c.doc_mask = false;
  c.causal = true;
  c.rope_theta = as_num(g["max_wavelength"]);
  c.rope_scale_factor = as_num(g["scale_factor"]);
  c.dropout = c.attn_dropout = as_num(g["dropout_rate"]);
  c.emb_dropout = 0;
  c.sigreg.enabled = true;  // compute_loss always adds it
  c.sigreg.t_max = as_num(s["t_max"]);
  c.sigreg.points = as_int(s["points"]);
  c.sigreg.slices = as_int(s["slices"]);
  c.sigreg.coefficient = as_num(s["coefficient"]);
  c.bos_id = -1;
  c.eos_id = 257;
  c.pad_id = 256;
  return c;
}

ModelConfig read_format(const ojson& doc, SeedFormat f, const std::string& what, std::vector<std::string>* noted) {
  switch (f) {
    case SeedFormat::Materium: return from_materium(doc, what, noted);
    case SeedFormat::XlstmJax: return from_xlstm(doc, what, noted);
    case SeedFormat::MobileLLM: return from_mobilellm(doc, what, noted);
    case SeedFormat::Soma: return from_soma(doc, what, noted);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Write-back

ojson null_if(bool none, const ojson& v) { return none ? ojson(nullptr) : v; }

ojson to_materium(const ModelConfig& c) {
  ojson conds = ojson::object();
  for (const ConditionConfig& cond : c.conditions)
    conds[cond.name] = {{"proj_layer_type", name_of(cond.proj_layer_type)},
                        {"input_dim", cond.input_dim},
                        {"out_dim", cond.out_dim > 0 ? cond.out_dim : c.dim}};
  // hidden_dim None means Meta's rule without a multiplier; a size that rule does not give is written out.
  ModelConfig meta = c;
  meta.hidden_dim = 0;
  meta.ffn_dim_multiplier = 0;
  const bool derived = c.ffn_type == FfnType::SwiGLU && c.ffn_hidden() == meta.ffn_hidden();
  return {{"dim", c.dim},
          {"n_layers", c.n_layers},
          {"n_heads", c.n_heads},
          {"n_kv_heads", null_if(c.n_kv_heads == 0, c.n_kv_heads)},
          {"vocab_size", c.vocab_size},
          {"hidden_dim", null_if(derived, c.ffn_hidden())},
          {"multiple_of", c.multiple_of},
          {"norm_eps", c.norm_eps},
          {"max_seq_len", c.max_seq_len},
          {"dropout", c.dropout},
          {"pad_id", c.pad_id},
          {"condition_config", null_if(c.conditions.empty(), conds)},
          {"rope_mode", c.rope_mode == RopeMode::Blockwise ? "BLOCKWISE" : "STANDARD"},  // the enum's name, as to_dict()
          {"atoms_token_id", null_if(c.atoms_token_id < 0, c.atoms_token_id)},
          {"lattice_token_id", null_if(c.lattice_token_id < 0, c.lattice_token_id)},
          {"atom_block_size", c.atom_block_size}};
}

ojson to_xlstm(const ModelConfig& c) {
  return {{"vocab_size", c.vocab_size},
          {"embedding_dim", c.dim},
          {"num_blocks", c.n_layers},
          {"head_dim", c.head_size()},
          {"qk_norm", c.qk_norm},
          {"causal", c.causal},
          {"theta", c.rope_theta},
          {"ffn_multiple_of", c.multiple_of},
          {"ffn_dim_multiplier", c.ffn_dim_multiplier > 0 ? c.ffn_dim_multiplier : 1.0},
          {"use_bias", c.attn_bias},
          {"scan_blocks", true},
          {"attention_backend", "xla"},
          {"mask_across_document_boundaries", c.doc_mask},
          {"dtype", "float32"},
          {"dropout_rate", c.dropout},
          {"add_embedding_dropout", c.emb_dropout > 0},
          {"logits_soft_cap", null_if(c.logits_soft_cap == 0, c.logits_soft_cap)},
          {"parallel", ojson::parse(kXlstmParallelDefaults)}};
}

ojson to_mobilellm(const ModelConfig& c) {
  return {{"vocab_size", c.vocab_size},
          {"num_layers", c.n_layers},
          {"num_heads", c.n_heads},
          {"num_kv_heads", c.kv_heads()},
          {"embed_dim", c.dim},
          {"hidden_dim", c.ffn_hidden()},
          {"max_seq_len", c.max_seq_len},
          {"rope_base", c.rope_theta},
          {"use_qk_norm", c.qk_norm},
          {"tie_word_embeddings", c.tie_embeddings},
          {"dropout", c.dropout},
          {"norm_eps", c.norm_eps},
          {"attention_dropout", c.attn_dropout}};
}

ojson to_soma(const ModelConfig& c) {
  return {{"dropout_rate", c.dropout},
          {"embedding_dim", c.dim},
          {"pwff_hidden_dim", c.ffn_hidden()},
          {"num_layers", c.n_layers},
          {"num_heads", c.n_heads},
          {"vocab_size", c.vocab_size},
          {"max_wavelength", c.rope_theta},
          {"scale_factor", c.rope_scale_factor},
          {"sig_reg",
           {{"t_max", c.sigreg.t_max},
            {"points", c.sigreg.points},
            {"slices", c.sigreg.slices},
            {"coefficient", c.sigreg.coefficient}}}};
}

// The same model, one spelling: derived sizes resolved, the fields of a feature that is off at
// their defaults, no name. Two configs that normalise equal compute the same function.
ModelConfig normalized(ModelConfig c) {
  const ModelConfig d;
  c.name.clear();
  if (c.n_heads > 0 && c.dim > 0) c.head_dim = c.head_size();
  c.n_kv_heads = c.kv_heads();
  c.hidden_dim = c.ffn_hidden();
  c.multiple_of = d.multiple_of;
  c.ffn_dim_multiplier = d.ffn_dim_multiplier;
  if (c.ffn_type != FfnType::GELU) c.gelu_approximate = d.gelu_approximate;
  if (!c.qk_norm) c.qk_norm_weight = d.qk_norm_weight;
  if (!c.doc_mask) c.doc_mask_boundary = d.doc_mask_boundary;
  if (c.rope_scaling.type == RopeScalingType::None) c.rope_scaling = d.rope_scaling;
  if (!c.sigreg.enabled) c.sigreg = d.sigreg;
  if (c.moe.n_experts == 0) c.moe = d.moe;
  if (!c.attn_temperature_tuning) c.attn_floor_scale = d.attn_floor_scale, c.attn_scale = d.attn_scale;
  for (ConditionConfig& cond : c.conditions)
    if (cond.out_dim == 0) cond.out_dim = c.dim;
  if (c.rope_mode == RopeMode::Standard) {
    c.atoms_token_id = d.atoms_token_id;
    c.lattice_token_id = d.lattice_token_id;
    c.atom_block_size = d.atom_block_size;
  }
  return c;
}

// The first key (config_keys() order) whose value differs, with `cfg`'s value: "" when none.
std::string first_difference(const ModelConfig& cfg, const ModelConfig& back) {
  const ojson a = ojson::parse(config_to_json(normalized(cfg), -1)), b = ojson::parse(config_to_json(normalized(back), -1));
  const ojson original = ojson::parse(config_to_json(cfg, -1));
  for (const std::string& key : config_keys()) {
    const auto dot = key.find('.');
    auto at = [&](const ojson& j) { return dot == std::string::npos ? j[key] : j[key.substr(0, dot)][key.substr(dot + 1)]; };
    if (at(a) != at(b)) return cat(key, " = ", at(original).dump());
  }
  return "";
}

}  // namespace

const char* name_of(SeedFormat f) {
  switch (f) {
    case SeedFormat::Materium: return "materium";
    case SeedFormat::XlstmJax: return "xlstm-jax";
    case SeedFormat::MobileLLM: return "mobilellm";
    case SeedFormat::Soma: return "soma";
  }
  return "?";
}

std::optional<SeedFormat> seed_format_from_name(const std::string& name) {
  for (SeedFormat f : kFormats)
    if (name == name_of(f)) return f;
  return std::nullopt;
}

std::vector<std::string> seed_format_names() {
  std::vector<std::string> out;
  for (SeedFormat f : kFormats) out.emplace_back(name_of(f));
  return out;
}

std::optional<SeedFormat> detect_seed_format(const std::string& text, const std::string& source) {
  const std::string prefix = source.empty() ? "" : quote(source) + ": ";
  const nlohmann::json doc = parse_json_strict(text, prefix);
  if (!doc.is_object()) return std::nullopt;
  std::vector<SeedFormat> found;
  if (doc.contains("condition_config")) found.push_back(SeedFormat::Materium);
  if (doc.contains("embedding_dim") && doc.contains("num_blocks")) found.push_back(SeedFormat::XlstmJax);
  if (doc.contains("embed_dim")) found.push_back(SeedFormat::MobileLLM);
  if (!doc.contains("num_blocks") &&
      (doc.contains("dropout_rate") || doc.contains("pwff_hidden_dim") || doc.contains("max_wavelength")))
    found.push_back(SeedFormat::Soma);
  if (found.size() > 1) {
    std::string names;
    for (size_t i = 0; i < found.size(); ++i) names += (i ? " and " : "") + std::string(name_of(found[i]));
    fail(ErrorKind::Data, cat(prefix, "the config looks like ", names, ": name its format with --config-format"),
         "--config-format " + std::string(name_of(found[0])) + ", for example");
  }
  if (found.empty()) return std::nullopt;
  return found[0];
}

SeedConfig config_from_seed_json(const std::string& text, SeedFormat format, const std::string& source) {
  const std::string prefix = source.empty() ? "" : quote(source) + ": ";
  const ojson doc = parse_ordered_json_strict(text, prefix);  // in the file's key order
  SeedConfig out;
  out.format = format;
  out.config = read_format(doc, format, prefix + class_name(format), &out.noted);
  return out;
}

std::string config_to_seed_json(const ModelConfig& cfg, SeedFormat format, int indent) {
  validate(cfg, class_name(format));  // the sizes below divide by n_heads
  ojson doc;
  switch (format) {
    case SeedFormat::Materium: doc = to_materium(cfg); break;
    case SeedFormat::XlstmJax: doc = to_xlstm(cfg); break;
    case SeedFormat::MobileLLM: doc = to_mobilellm(cfg); break;
    case SeedFormat::Soma: doc = to_soma(cfg); break;
  }
  ModelConfig back;
  try {
    back = read_format(doc, format, class_name(format), nullptr);
  } catch (const Error& e) {  // a value the seed refuses (say a soma vocabulary below 258)
    fail(ErrorKind::Unsupported, cat("the config has no ", name_of(format), " equivalent: ", e.what()));
  }
  const std::string diff = first_difference(cfg, back);
  if (!diff.empty()) fail(ErrorKind::Unsupported, cat(diff, " has no ", name_of(format), " equivalent"));
  return doc.dump(indent) + (indent >= 0 ? "\n" : "");
}

}  // namespace lm
