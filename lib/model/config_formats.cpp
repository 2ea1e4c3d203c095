// The seeds' config serialisations (docs/seed-configs.md): one key table per seed dataclass
// (model/key_table.h's rows, as convert/config_io.cpp's HF, Meta and GGUF tables): each row is
// the outside key, the lmkit field, its type, the seed's default, whether the seed's field takes
// None, whether it has math (else accepted and noted), whether it marks the format (detection),
// and the transform each way. Detection, the reader (unknown keys, required keys, types, the
// seed's defaults, then the rows' `in`) and the writer (the rows' `out`) all walk that table.
#include "model/config_formats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "model/key_table.h"

namespace lm {

namespace {

using ojson = nlohmann::ordered_json;
using Row = OrderedKeyRow;

int64_t as_int(const ojson& v) { return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>()); }
ojson null_if(bool none, const ojson& v) { return none ? ojson(nullptr) : v; }
const ojson kOmit = omitted<ojson>();

// A row for a plain field: the same value both ways, `def` the seed's default.
#define SEED_KEY(key, member, type, def)                                                                   \
  Row {                                                                                                    \
    key, #member, KeyType::type, false, ojson(def), [](const ModelConfig& c) { return ojson(c.member); },  \
        [](ModelConfig& c, const ojson& v, const std::string&) { c.member = v.get<std::decay_t<decltype(c.member)>>(); } \
  }
// A field the seed requires (no default).
#define SEED_REQUIRED(key, member, type)                                                                    \
  Row {                                                                                                    \
    key, #member, KeyType::type, true, ojson(), [](const ModelConfig& c) { return ojson(c.member); },      \
        [](ModelConfig& c, const ojson& v, const std::string&) { c.member = v.get<std::decay_t<decltype(c.member)>>(); } \
  }
// A field without math: accepted (with the seed's type and default) and noted; written back at
// the seed's default (no `out`), or left out (`write` false) where the seed's own serialisation
// leaves it out; `check` (may be null) refuses a value the seed does not know.
Row no_math(const char* key, KeyType type, bool takes_null, ojson def, bool write = true,
            void (*check)(ModelConfig&, const ojson&, const std::string&) = nullptr) {
  Row r{key, "", type, false, std::move(def), nullptr, check};
  if (!write) r.out = [](const ModelConfig&) { return omitted<ojson>(); };
  r.nullable = takes_null;
  r.math = false;
  return r;
}
Row nullable(Row r, ojson null_value = ojson()) {
  r.nullable = true;
  r.null_value = std::move(null_value);
  return r;
}
Row marker(Row r) {
  r.marker = true;
  return r;
}
// The row of `key` (a rule across keys names them; a key the table lacks is a bug, not a no-op).
const Row& row_named(const std::vector<Row>& rows, const char* key) {
  for (const Row& r : rows)
    if (std::string(r.key) == key) return r;
  fail(ErrorKind::Runtime, cat("internal: no seed config row ", quote(key)));
}

// ---------------------------------------------------------------------------------------------
// materium ModelArgs (seed 000), in field order. Implicit: RMSNorm, SwiGLU (Meta's width rule
// when hidden_dim is None), no biases, tied embeddings, RoPE theta 10000.

ModelConfig materium_base() {
  ModelConfig c;
  c.ffn_dim_multiplier = 0;
  c.head_dim = 0;
  c.norm_type = NormType::RMSNorm;
  c.norm_bias = false;
  c.ffn_type = FfnType::SwiGLU;
  c.attn_bias = c.ffn_bias = c.qk_norm = c.output_bias = c.doc_mask = false;
  c.tie_embeddings = true;
  c.causal = true;
  c.logits_soft_cap = 0;
  c.rope_theta = 10000;
  c.rope_scale_factor = 1;
  c.loss_weights = false;  // materium passes its weights to the constructor; lmkit keeps them in the checkpoint
  return c;
}

ojson resolve(const ojson& doc, const std::vector<Row>& table, const std::string& what, std::vector<std::string>* noted,
              const std::string& path = "");

// materium ConditionConfig: every field required (read by the condition_config row).
const std::vector<Row>& materium_condition_rows() {
  static const std::vector<Row> rows = {
      {"proj_layer_type", "", KeyType::String, true, ojson(), nullptr, nullptr},
      {"input_dim", "", KeyType::Int, true, ojson(), nullptr, nullptr},
      {"out_dim", "", KeyType::Int, true, ojson(), nullptr, nullptr},
  };
  return rows;
}


// One ConditionConfig of condition_config, read and written.
ConditionConfig read_condition(const ModelConfig& c, const std::string& name, const ojson& cc, const std::string& what) {
  const std::string where = cat(what, ": condition_config.", name);
  if (!cc.is_object()) fail_data(where + ": expected a ConditionConfig object");
  const ojson v = resolve(cc, materium_condition_rows(), where, nullptr);
  const auto& rows = materium_condition_rows();
  ConditionConfig cond;
  cond.name = name;
  const std::string type = v[rows[0].key].get<std::string>();
  if (type == "linear")
    cond.proj_layer_type = ProjLayerType::Linear;
  else if (type == "embedding")
    cond.proj_layer_type = ProjLayerType::Embedding;
  else if (type == "formula")
    cond.proj_layer_type = ProjLayerType::Formula;
  else
    fail_data(cat(where, ": unknown proj_layer_type ", quote(type)));
  cond.input_dim = as_int(v[rows[1].key]);
  cond.out_dim = as_int(v[rows[2].key]);
  if (cond.out_dim != c.dim)
    fail_data(cat(where, ": out_dim ", cond.out_dim, " is not dim ", c.dim, " (materium projects every condition to dim)"));
  cond.max_elements = 0;
  return cond;
}

ojson write_condition(const ModelConfig& c, const ConditionConfig& cond) {
  const auto& rows = materium_condition_rows();
  ojson j = ojson::object();
  j[rows[0].key] = name_of(cond.proj_layer_type);
  j[rows[1].key] = cond.input_dim;
  j[rows[2].key] = cond.out_dim > 0 ? cond.out_dim : c.dim;
  return j;
}

const std::vector<Row>& materium_rows() {
  static const std::vector<Row> rows = {
      SEED_KEY("dim", dim, Int, 4096),
      SEED_KEY("n_layers", n_layers, Int, 32),
      SEED_KEY("n_heads", n_heads, Int, 32),
      nullable({"n_kv_heads", "n_kv_heads", KeyType::Int, false, ojson(),
                [](const ModelConfig& c) { return null_if(c.n_kv_heads == 0, c.n_kv_heads); },
                [](ModelConfig& c, const ojson& v, const std::string&) { c.n_kv_heads = v.get<int64_t>(); }},
               0),
      SEED_KEY("vocab_size", vocab_size, Int, 32000),
      // None: Meta's rule from multiple_of, as materium's FeedForward; a size that rule does not
      // give is written out.
      nullable({"hidden_dim", "hidden_dim", KeyType::Int, false, ojson(),
                [](const ModelConfig& c) {
                  ModelConfig meta = c;
                  meta.hidden_dim = 0;
                  meta.ffn_dim_multiplier = 0;
                  const bool derived = c.ffn_type == FfnType::SwiGLU && c.ffn_hidden() == meta.ffn_hidden();
                  return null_if(derived, c.ffn_hidden());
                },
                [](ModelConfig& c, const ojson& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
               0),
      SEED_KEY("multiple_of", multiple_of, Int, 256),
      SEED_KEY("norm_eps", norm_eps, Number, 1e-05),
      SEED_KEY("max_seq_len", max_seq_len, Int, 2048),
      // materium drops the embeddings, the attention probabilities and both residual branches with it.
      {"dropout", "dropout", KeyType::Number, false, ojson(0.1), [](const ModelConfig& c) { return ojson(c.dropout); },
       [](ModelConfig& c, const ojson& v, const std::string&) { c.dropout = c.attn_dropout = c.emb_dropout = v.get<double>(); }},
      nullable(SEED_KEY("pad_id", pad_id, Int, -1), -1),
      marker(nullable(
          {"condition_config", "conditions", KeyType::Object, false, ojson(),
           [](const ModelConfig& c) {
             ojson conds = ojson::object();
             for (const ConditionConfig& cond : c.conditions)
               conds[cond.name] = write_condition(c, cond);
             return null_if(c.conditions.empty(), conds);
           },
           [](ModelConfig& c, const ojson& all, const std::string& what) {
             for (const auto& [name, cc] : all.items()) c.conditions.push_back(read_condition(c, name, cc, what));
           }},
          ojson::object())),
      {"rope_mode", "rope_mode", KeyType::String, false, ojson("STANDARD"),
       [](const ModelConfig& c) {  // the enum's name, as to_dict()
         return ojson(c.rope_mode == RopeMode::Blockwise ? "BLOCKWISE" : "STANDARD");
       },
       [](ModelConfig& c, const ojson& v, const std::string& what) {
         const std::string mode = v.get<std::string>();
         if (mode != "STANDARD" && mode != "standard" && mode != "BLOCKWISE" && mode != "blockwise")
           fail_data(cat(what, ": 'rope_mode' ", quote(mode), " is not a RopeMode (STANDARD, BLOCKWISE)"));
         c.rope_mode = mode == "BLOCKWISE" || mode == "blockwise" ? RopeMode::Blockwise : RopeMode::Standard;
       }},
      nullable({"atoms_token_id", "atoms_token_id", KeyType::Int, false, ojson(),
                [](const ModelConfig& c) { return null_if(c.atoms_token_id < 0, c.atoms_token_id); },
                [](ModelConfig& c, const ojson& v, const std::string&) { c.atoms_token_id = v.get<int64_t>(); }},
               -1),
      nullable({"lattice_token_id", "lattice_token_id", KeyType::Int, false, ojson(),
                [](const ModelConfig& c) { return null_if(c.lattice_token_id < 0, c.lattice_token_id); },
                [](ModelConfig& c, const ojson& v, const std::string&) { c.lattice_token_id = v.get<int64_t>(); }},
               -1),
      SEED_KEY("atom_block_size", atom_block_size, Int, 4),
  };
  return rows;
}

// ---------------------------------------------------------------------------------------------
// xlstm-jax LlamaConfig (seed 001). Implicit: RMSNorm with flax's epsilon 1e-6, SwiGLU with
// Meta's width rule, untied embeddings, QK-norm with weights.

ModelConfig xlstm_base() {
  ModelConfig c;
  c.n_kv_heads = 0;
  c.hidden_dim = 0;
  c.norm_type = NormType::RMSNorm;
  c.norm_eps = 1e-6;  // flax nn.RMSNorm's default epsilon
  c.norm_bias = false;
  c.ffn_type = FfnType::SwiGLU;
  c.qk_norm_weight = true;
  c.tie_embeddings = false;
  c.output_bias = false;
  c.rope_scale_factor = 1;
  c.attn_dropout = 0;
  return c;
}

// xlstm_jax.models.configs.ParallelConfig's defaults: what a write-back puts under "parallel".
constexpr const char* kXlstmParallelDefaults =
    R"({"data_axis_size": -1, "fsdp_axis_size": 1, "pipeline_axis_size": 1, "model_axis_size": 1,
        "data_axis_name": "dp", "fsdp_axis_name": "fsdp", "pipeline_axis_name": "pipe", "model_axis_name": "tp",
        "remat": [], "fsdp_modules": [], "fsdp_min_weight_size": 262144, "fsdp_gather_dtype": null,
        "fsdp_grad_scatter_dtype": null, "tp_async_dense": true})";

const std::vector<Row>& xlstm_rows() {
  static const std::vector<Row> rows = {
      SEED_REQUIRED("vocab_size", vocab_size, Int),
      marker(SEED_REQUIRED("embedding_dim", dim, Int)),
      marker(SEED_REQUIRED("num_blocks", n_layers, Int)),
      // The number of heads is embedding_dim // head_dim.
      {"head_dim", "head_dim", KeyType::Int, false, ojson(128), [](const ModelConfig& c) { return ojson(c.head_size()); },
       [](ModelConfig& c, const ojson& v, const std::string& what) {
         const int64_t HS = v.get<int64_t>();
         if (HS <= 0) fail_data(cat(what, ": head_dim must be positive, got ", HS));
         if (c.dim % HS != 0)
           fail_data(cat(what, ": embedding_dim ", c.dim, " is not a multiple of head_dim ", HS,
                         " (the number of heads is embedding_dim // head_dim)"));
         c.head_dim = HS;
         c.n_heads = c.dim / HS;
       }},
      SEED_KEY("qk_norm", qk_norm, Bool, false),
      SEED_KEY("causal", causal, Bool, true),
      SEED_KEY("theta", rope_theta, Number, 10000.0),
      SEED_KEY("ffn_multiple_of", multiple_of, Int, 64),
      {"ffn_dim_multiplier", "ffn_dim_multiplier", KeyType::Number, false, ojson(1.0),
       [](const ModelConfig& c) { return ojson(c.ffn_dim_multiplier > 0 ? c.ffn_dim_multiplier : 1.0); },
       [](ModelConfig& c, const ojson& v, const std::string&) { c.ffn_dim_multiplier = v.get<double>(); }},
      {"use_bias", "attn_bias", KeyType::Bool, false, ojson(false), [](const ModelConfig& c) { return ojson(c.attn_bias); },
       [](ModelConfig& c, const ojson& v, const std::string&) { c.attn_bias = c.ffn_bias = v.get<bool>(); }},
      no_math("scan_blocks", KeyType::Bool, false, true),
      no_math("attention_backend", KeyType::String, false, "xla", true,
              [](ModelConfig&, const ojson& v, const std::string& what) {
                const std::string backend = v.get<std::string>();
                if (backend != "xla" && backend != "pallas_triton" && backend != "cudnn")
                  fail_data(cat(what, ": unknown attention_backend ", quote(backend)));
              }),
      {"mask_across_document_boundaries", "doc_mask", KeyType::Bool, false, ojson(false),
       [](const ModelConfig& c) { return ojson(c.doc_mask); },
       [](ModelConfig& c, const ojson& v, const std::string&) {
         c.doc_mask = v.get<bool>();
         if (c.doc_mask) c.doc_mask_boundary = DocMaskBoundary::Start;  // segment ids = cumsum(tokens == eod)
       }},
      no_math("dtype", KeyType::String, false, "float32", true,
              [](ModelConfig&, const ojson& v, const std::string& what) {
                const std::string dtype = v.get<std::string>();
                if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16")
                  fail_data(cat(what, ": unknown dtype ", quote(dtype)));
              }),
      SEED_KEY("dropout_rate", dropout, Number, 0.0),
      {"add_embedding_dropout", "emb_dropout", KeyType::Bool, false, ojson(false),
       [](const ModelConfig& c) { return ojson(c.emb_dropout > 0); },
       [](ModelConfig& c, const ojson& v, const std::string&) { c.emb_dropout = v.get<bool>() ? c.dropout : 0.0; }},
      nullable({"logits_soft_cap", "logits_soft_cap", KeyType::Number, false, ojson(),
                [](const ModelConfig& c) { return null_if(c.logits_soft_cap == 0, c.logits_soft_cap); },
                [](ModelConfig& c, const ojson& v, const std::string&) { c.logits_soft_cap = v.get<double>(); }},
               0.0),
      [] {  // written back as ParallelConfig's defaults
        Row r = no_math("parallel", KeyType::Object, true, nullptr);
        r.out = [](const ModelConfig&) { return ojson::parse(kXlstmParallelDefaults); };
        return r;
      }(),
  };
  return rows;
}

// ---------------------------------------------------------------------------------------------
// MobileLLMConfig (seed 003's table; the fields after norm_eps are its public code version's,
// which its own serialisation of the table leaves out). Implicit: RMSNorm, SwiGLU, no biases,
// QK-norm with weights (the code's RMSNorm(head_dim)), head size embed_dim // num_heads.

ModelConfig mobilellm_base() {
  ModelConfig c;
  c.head_dim = 0;  // embed_dim // num_heads: the code's property
  c.norm_type = NormType::RMSNorm;
  c.norm_bias = false;
  c.ffn_type = FfnType::SwiGLU;
  c.attn_bias = c.ffn_bias = c.output_bias = c.doc_mask = false;
  c.qk_norm_weight = true;
  c.causal = true;
  c.logits_soft_cap = 0;
  c.rope_scale_factor = 1;
  c.rope_scaling.type = RopeScalingType::None;
  return c;
}

const std::vector<Row>& mobilellm_rows() {
  static const std::vector<Row> rows = {
      {"vocab_size", "vocab_size", KeyType::Int, false, ojson(128256), [](const ModelConfig& c) { return ojson(c.vocab_size); },
       [](ModelConfig& c, const ojson& v, const std::string&) {
         c.vocab_size = v.get<int64_t>();
         if (c.vocab_size == 128256) {  // the Llama 3 tokenizer's specials, as the mobilellm presets set them
           c.bos_id = 128000;
           c.eos_id = 128001;
         }
       }},
      SEED_REQUIRED("num_layers", n_layers, Int),
      SEED_REQUIRED("num_heads", n_heads, Int),
      {"num_kv_heads", "n_kv_heads", KeyType::Int, true, ojson(), [](const ModelConfig& c) { return ojson(c.kv_heads()); },
       [](ModelConfig& c, const ojson& v, const std::string&) { c.n_kv_heads = v.get<int64_t>(); }},
      marker({"embed_dim", "dim", KeyType::Int, true, ojson(), [](const ModelConfig& c) { return ojson(c.dim); },
              [](ModelConfig& c, const ojson& v, const std::string& what) {
                c.dim = v.get<int64_t>();
                if (c.n_heads <= 0 || c.n_kv_heads <= 0)
                  fail_data(cat(what, ": num_heads and num_kv_heads must be positive, got ", c.n_heads, " and ", c.n_kv_heads));
                if (c.dim % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0)
                  fail_data(cat(what, ": embed_dim must be a multiple of num_heads, num_heads of num_kv_heads"));
              }}),
      {"hidden_dim", "hidden_dim", KeyType::Int, true, ojson(), [](const ModelConfig& c) { return ojson(c.ffn_hidden()); },
       [](ModelConfig& c, const ojson& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }},
      SEED_KEY("max_seq_len", max_seq_len, Int, 32768),
      SEED_KEY("rope_base", rope_theta, Number, 500000.0),
      SEED_KEY("use_qk_norm", qk_norm, Bool, true),
      SEED_KEY("tie_word_embeddings", tie_embeddings, Bool, true),
      SEED_KEY("dropout", dropout, Number, 0.0),
      SEED_KEY("norm_eps", norm_eps, Number, 1e-05),
      // The code version's name for tie_word_embeddings (mobilellm_check refuses the two disagreeing).
      nullable({"use_weight_sharing", "tie_embeddings", KeyType::Bool, false, ojson(), [](const ModelConfig&) { return kOmit; },
                [](ModelConfig& c, const ojson& v, const std::string&) { c.tie_embeddings = v.get<bool>(); }}),
      nullable({"rope_scaling", "rope_scaling", KeyType::Any, false, ojson(), [](const ModelConfig&) { return kOmit; },
                [](ModelConfig&, const ojson& v, const std::string& what) {
                  std::string s = v.dump();
                  if (s.size() > 40) s = s.substr(0, 37) + "...";
                  fail_data(cat(what, ": rope_scaling ", s, ": the seed does not define its form"));
                }}),
      SEED_KEY("attention_dropout", attn_dropout, Number, 0.0),
      {"use_moe", "moe", KeyType::Bool, false, ojson(false), [](const ModelConfig&) { return kOmit; },
       [](ModelConfig&, const ojson& v, const std::string& what) {
         if (v.get<bool>()) fail_data(cat(what, ": use_moe: the seed does not define MobileLLM's expert routing"));
       }},
      no_math("num_experts", KeyType::Int, false, 1, false),
      no_math("num_experts_per_tok", KeyType::Int, false, 1, false),
      no_math("moe_intermediate_size", KeyType::Int, true, nullptr, false),
      no_math("initializer_range", KeyType::Number, false, 0.02, false),
      no_math("use_gradient_checkpointing", KeyType::Bool, false, false, false),
      no_math("gradient_checkpointing_mode", KeyType::String, false, "quantized", false,
              [](ModelConfig&, const ojson& v, const std::string& what) {
                const std::string mode = v.get<std::string>();
                if (mode != "standard" && mode != "quantized") fail_data(cat(what, ": unknown gradient_checkpointing_mode ", quote(mode)));
              }),
  };
  return rows;
}

// The rules across two keys, before the rows are read (`doc` as given, `g` with the defaults).
void mobilellm_check(const ojson& doc, const ojson& g, const std::string& what) {
  const auto& rows = mobilellm_rows();
  const char* tie = row_named(rows, "tie_word_embeddings").key;
  const char* sharing = row_named(rows, "use_weight_sharing").key;
  if (!g[sharing].is_null() && doc.contains(tie) && doc[tie] != g[sharing])
    fail_data(cat(what, ": ", tie, " and ", sharing, " disagree"));
  const char* mode_key = row_named(rows, "gradient_checkpointing_mode").key;
  const std::string mode = g[mode_key].get<std::string>();
  if (g[row_named(rows, "use_gradient_checkpointing").key].get<bool>() && mode != "standard")
    fail_data(cat(what, ": ", mode_key, " ", quote(mode),
                  " stores quantized activations, which changes the gradients (lm-train --checkpointing is exact)"));
}

// ---------------------------------------------------------------------------------------------
// soma-models V1 ModelConfig (seed 002) and its SIGRegConfig under "sig_reg". Implicit:
// V1_MAX_SEQ_LEN 1024, LayerNorm with biases (eps 1e-5 as the soma-v1 preset), erf GELU, biases
// everywhere, untied embeddings, SIGReg always added, PAD 256 and EOS 257.

ModelConfig soma_base() {
  ModelConfig c;
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
  c.emb_dropout = 0;
  c.sigreg.enabled = true;  // compute_loss always adds it
  c.bos_id = -1;
  c.eos_id = 257;
  c.pad_id = 256;
  return c;
}

const std::vector<Row>& sigreg_rows() {
  static const std::vector<Row> rows = {
      SEED_KEY("t_max", sigreg.t_max, Number, 3.0),
      SEED_KEY("points", sigreg.points, Int, 17),
      SEED_KEY("slices", sigreg.slices, Int, 256),
      SEED_KEY("coefficient", sigreg.coefficient, Number, 0.02),
  };
  return rows;
}

const std::vector<Row>& soma_rows() {
  static const std::vector<Row> rows = {
      marker({"dropout_rate", "dropout", KeyType::Number, true, ojson(), [](const ModelConfig& c) { return ojson(c.dropout); },
              [](ModelConfig& c, const ojson& v, const std::string&) { c.dropout = c.attn_dropout = v.get<double>(); }}),
      SEED_KEY("embedding_dim", dim, Int, 2048),
      marker({"pwff_hidden_dim", "hidden_dim", KeyType::Int, false, ojson(8192),
              [](const ModelConfig& c) { return ojson(c.ffn_hidden()); },
              [](ModelConfig& c, const ojson& v, const std::string&) { c.hidden_dim = v.get<int64_t>(); }}),
      SEED_KEY("num_layers", n_layers, Int, 24),
      SEED_KEY("num_heads", n_heads, Int, 8),
      {"vocab_size", "vocab_size", KeyType::Int, false, ojson(264), [](const ModelConfig& c) { return ojson(c.vocab_size); },
       [](ModelConfig& c, const ojson& v, const std::string& what) {
         c.vocab_size = v.get<int64_t>();
         if (c.vocab_size < 258) fail_data(cat(what, ": vocab_size ", c.vocab_size, " leaves no room for PAD 256 and EOS 257"));
       }},
      marker(SEED_KEY("max_wavelength", rope_theta, Number, 10000.0)),
      SEED_KEY("scale_factor", rope_scale_factor, Number, 1.0),
      nullable({"sig_reg", "sigreg", KeyType::Object, false, ojson(),
                [](const ModelConfig& c) { return write_object(sigreg_rows(), c); },
                [](ModelConfig& c, const ojson& v, const std::string& what) {
                  const std::string sr_what = what.substr(0, what.rfind("soma ModelConfig")) + "soma SIGRegConfig";
                  read_object(sigreg_rows(), resolve(v, sigreg_rows(), sr_what, nullptr), c, sr_what, nullptr);
                }},
               ojson::object()),
  };
  return rows;
}

#undef SEED_KEY
#undef SEED_REQUIRED

// ---------------------------------------------------------------------------------------------
// The formats

struct SeedFormatInfo {
  SeedFormat format;
  const char* name;        // the --config-format spelling
  const char* class_name;  // the seed class a message names
  const std::vector<Row>& (*rows)();
  ModelConfig (*base)();   // the fields the seed fixes (no key)
  bool all_markers;        // detected when every marker key is present (else any one)
  // Not detected when the document has a marker key of this format that is not one of its own.
  std::optional<SeedFormat> yields_to;
  void (*check)(const ojson& doc, const ojson& g, const std::string& what);  // may be null
};

const SeedFormatInfo kFormats[] = {
    {SeedFormat::Materium, "materium", "materium ModelArgs", materium_rows, materium_base, false, std::nullopt, nullptr},
    {SeedFormat::XlstmJax, "xlstm-jax", "xlstm-jax LlamaConfig", xlstm_rows, xlstm_base, true, std::nullopt, nullptr},
    {SeedFormat::MobileLLM, "mobilellm", "MobileLLMConfig", mobilellm_rows, mobilellm_base, false, std::nullopt, mobilellm_check},
    {SeedFormat::Soma, "soma", "soma ModelConfig", soma_rows, soma_base, false, SeedFormat::XlstmJax, nullptr},
};

const SeedFormatInfo& info(SeedFormat f) {
  for (const SeedFormatInfo& i : kFormats)
    if (i.format == f) return i;
  return kFormats[0];
}

// ---------------------------------------------------------------------------------------------
// Reading: the document checked against a table

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
    case KeyType::TokenId: return v.is_number_integer();
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
    case KeyType::TokenId: return "a token id";
    case KeyType::Any: return "a value";
  }
  return "?";
}

// Every key of `table` with the document's value or the seed's default, in table order (an
// integer written as 6.0 becomes 6). `what` starts every message ("'file.json': materium
// ModelArgs"); keys without math that the document gives are appended to *noted (with `path`
// before them, e.g. "sig_reg.").
ojson resolve(const ojson& doc, const std::vector<Row>& table, const std::string& what, std::vector<std::string>* noted,
              const std::string& path) {
  if (!doc.is_object()) fail_data(cat(what, ": expected a JSON object, got ", describe(doc)));
  for (const auto& [k, v] : doc.items()) {
    const Row* known = nullptr;
    std::string best;
    size_t best_d = std::numeric_limits<size_t>::max();
    for (const Row& s : table) {
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
  for (const Row& s : table) {
    if (doc.contains(s.key)) {
      const ojson& v = doc[s.key];
      g[s.key] = s.type == KeyType::Int && v.is_number_float() ? ojson(static_cast<int64_t>(v.get<double>())) : v;
      if (!s.math && noted) noted->push_back(path + s.key);
    } else if (s.required) {
      fail_data(cat(what, ": ", quote(s.key), " is required (the seed gives it no default)"));
    } else {
      g[s.key] = s.absent;
    }
  }
  return g;
}

ModelConfig read_format(const ojson& doc, SeedFormat f, const std::string& what, std::vector<std::string>* noted) {
  const SeedFormatInfo& fi = info(f);
  std::vector<std::string> notes;
  const ojson g = resolve(doc, fi.rows(), what, &notes);
  if (fi.check) fi.check(doc, g, what);
  ModelConfig c = fi.base();
  read_object(fi.rows(), g, c, what, nullptr);
  if (noted) noted->insert(noted->end(), notes.begin(), notes.end());
  return c;
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

const char* name_of(SeedFormat f) { return info(f).name; }

std::optional<SeedFormat> seed_format_from_name(const std::string& name) {
  for (const SeedFormatInfo& i : kFormats)
    if (name == i.name) return i.format;
  return std::nullopt;
}

std::vector<std::string> seed_format_names() {
  std::vector<std::string> out;
  for (const SeedFormatInfo& i : kFormats) out.emplace_back(i.name);
  return out;
}

std::optional<SeedFormat> detect_seed_format(const std::string& text, const std::string& source) {
  const std::string prefix = source.empty() ? "" : quote(source) + ": ";
  const nlohmann::json doc = parse_json_strict(text, prefix);
  if (!doc.is_object()) return std::nullopt;
  // By the marker rows of each table (docs/seed-configs.md, "Detection").
  auto marked = [&](const SeedFormatInfo& fi) {
    size_t markers = 0, present = 0;
    for (const Row& r : fi.rows())
      if (r.marker) ++markers, present += doc.contains(r.key);
    return fi.all_markers ? present == markers : present > 0;
  };
  auto yields = [&](const SeedFormatInfo& fi) {
    if (!fi.yields_to) return false;
    const std::set<std::string> own = keys_of(fi.rows());
    for (const Row& r : info(*fi.yields_to).rows())
      if (r.marker && !own.count(r.key) && doc.contains(r.key)) return true;
    return false;
  };
  std::vector<SeedFormat> found;
  for (const SeedFormatInfo& fi : kFormats)
    if (marked(fi) && !yields(fi)) found.push_back(fi.format);
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
  out.config = read_format(doc, format, prefix + info(format).class_name, &out.noted);
  return out;
}

std::string config_to_seed_json(const ModelConfig& cfg, SeedFormat format, int indent) {
  const SeedFormatInfo& fi = info(format);
  validate(cfg, fi.class_name);  // the sizes below divide by n_heads
  const ojson doc = write_object(fi.rows(), cfg);
  ModelConfig back;
  try {
    back = read_format(doc, format, fi.class_name, nullptr);
  } catch (const Error& e) {  // a value the seed refuses (say a soma vocabulary below 258)
    fail(ErrorKind::Unsupported, cat("the config has no ", fi.name, " equivalent: ", e.what()));
  }
  const std::string diff = first_difference(cfg, back);
  if (!diff.empty()) fail(ErrorKind::Unsupported, cat(diff, " has no ", fi.name, " equivalent"));
  return doc.dump(indent) + (indent >= 0 ? "\n" : "");
}

}  // namespace lm
