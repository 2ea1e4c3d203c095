// Model config: derived sizes, JSON in/out through one field table, --set overrides,
// validation and the features a program can refuse.
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json.h"

namespace lm {

using json = nlohmann::ordered_json;

namespace {
// The JSON spelling of each enumerated field's values, indexed by the enum's value.
constexpr const char* kNormTypeNames[] = {"rmsnorm", "layernorm"};
constexpr const char* kFfnTypeNames[] = {"swiglu", "gelu"};
constexpr const char* kGeluApproxNames[] = {"none", "tanh"};
constexpr const char* kRopeScalingTypeNames[] = {"none", "llama3", "linear"};
constexpr const char* kMoERoutingNames[] = {"sigmoid", "softmax"};
constexpr const char* kDocMaskBoundaryNames[] = {"end", "start"};
constexpr const char* kRopeModeNames[] = {"standard", "blockwise"};
constexpr const char* kProjLayerTypeNames[] = {"linear", "embedding", "formula"};

// Read, never written (ModelConfig has no such field): see config_from_json.
constexpr const char* kLegacyBlockPosIds = "block_pos_ids";
}  // namespace

const char* name_of(NormType v) { return kNormTypeNames[static_cast<size_t>(v)]; }
const char* name_of(FfnType v) { return kFfnTypeNames[static_cast<size_t>(v)]; }
const char* name_of(GeluApprox v) { return kGeluApproxNames[static_cast<size_t>(v)]; }
const char* name_of(RopeScalingType v) { return kRopeScalingTypeNames[static_cast<size_t>(v)]; }
const char* name_of(MoERouting v) { return kMoERoutingNames[static_cast<size_t>(v)]; }
const char* name_of(DocMaskBoundary v) { return kDocMaskBoundaryNames[static_cast<size_t>(v)]; }
const char* name_of(RopeMode v) { return kRopeModeNames[static_cast<size_t>(v)]; }
const char* name_of(ProjLayerType v) { return kProjLayerTypeNames[static_cast<size_t>(v)]; }

int64_t ModelConfig::ffn_hidden() const {
  if (hidden_dim > 0) return hidden_dim;
  if (ffn_type == FfnType::GELU) return 4 * dim;
  // Meta's llama/model.py FeedForward: int(2 * 4C / 3), times ffn_dim_multiplier, rounded up to multiple_of.
  int64_t hidden = (8 * dim) / 3;
  if (ffn_dim_multiplier > 0) hidden = static_cast<int64_t>(ffn_dim_multiplier * static_cast<double>(hidden));
  if (multiple_of > 0) hidden = multiple_of * ((hidden + multiple_of - 1) / multiple_of);
  return hidden;
}

bool ModelConfig::is_eos(int64_t id) const {
  return id >= 0 && (id == eos_id || std::find(extra_eos_ids.begin(), extra_eos_ids.end(), id) != extra_eos_ids.end());
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return moe.n_experts > 0 && moe.interleave_step > 0 && (layer + 1) % moe.interleave_step == 0;
}

bool ModelConfig::is_nope_layer(int64_t layer) const {
  return nope_layer_interval > 0 && (layer + 1) % nope_layer_interval == 0;
}

int64_t ModelConfig::condition_positions() const {
  int64_t k = 0;
  for (const ConditionConfig& c : conditions) k += c.positions();
  return k;
}

namespace {

// ---------------------------------------------------------------------------------------------
// The field table: every JSON key, its type and where it lives. Order = output order.

enum class Kind { Int, Double, Bool, String, Enum, Conditions, IntList };

// An enumerated field's spellings: names[i] is the enum value i (stored as one byte).
struct EnumNames {
  const char* const* names;
  size_t count;
};
template <size_t N>
constexpr EnumNames enum_names(const char* const (&names)[N]) {
  return {names, N};
}

struct Field {
  const char* key;  // dotted for nested structs
  Kind kind;
  void* (*ref)(ModelConfig&);
  EnumNames values{};  // Kind::Enum only
};

#define LM_FIELD(key, member, kind) \
  Field { key, Kind::kind, [](ModelConfig& c) -> void* { return &c.member; } }
#define LM_ENUM(key, member, names)                                                                  \
  Field {                                                                                            \
    key, Kind::Enum, [](ModelConfig& c) -> void* { return &c.member; }, enum_names(names)            \
  }

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      LM_FIELD("name", name, String),
      LM_FIELD("dim", dim, Int),
      LM_FIELD("n_layers", n_layers, Int),
      LM_FIELD("n_heads", n_heads, Int),
      LM_FIELD("n_kv_heads", n_kv_heads, Int),
      LM_FIELD("head_dim", head_dim, Int),
      LM_FIELD("vocab_size", vocab_size, Int),
      LM_FIELD("hidden_dim", hidden_dim, Int),
      LM_FIELD("multiple_of", multiple_of, Int),
      LM_FIELD("ffn_dim_multiplier", ffn_dim_multiplier, Double),
      LM_FIELD("max_seq_len", max_seq_len, Int),
      LM_ENUM("norm_type", norm_type, kNormTypeNames),
      LM_FIELD("norm_eps", norm_eps, Double),
      LM_FIELD("norm_bias", norm_bias, Bool),
      LM_ENUM("ffn_type", ffn_type, kFfnTypeNames),
      LM_ENUM("gelu_approximate", gelu_approximate, kGeluApproxNames),
      LM_FIELD("attn_bias", attn_bias, Bool),
      LM_FIELD("ffn_bias", ffn_bias, Bool),
      LM_FIELD("qk_norm", qk_norm, Bool),
      LM_FIELD("qk_norm_weight", qk_norm_weight, Bool),
      LM_FIELD("tie_embeddings", tie_embeddings, Bool),
      LM_FIELD("output_bias", output_bias, Bool),
      LM_FIELD("causal", causal, Bool),
      LM_FIELD("doc_mask", doc_mask, Bool),
      LM_ENUM("doc_mask_boundary", doc_mask_boundary, kDocMaskBoundaryNames),
      LM_FIELD("logits_soft_cap", logits_soft_cap, Double),
      LM_FIELD("rope_theta", rope_theta, Double),
      LM_FIELD("rope_scale_factor", rope_scale_factor, Double),
      LM_ENUM("rope_scaling.type", rope_scaling.type, kRopeScalingTypeNames),
      LM_FIELD("rope_scaling.factor", rope_scaling.factor, Double),
      LM_FIELD("rope_scaling.low_freq_factor", rope_scaling.low_freq_factor, Double),
      LM_FIELD("rope_scaling.high_freq_factor", rope_scaling.high_freq_factor, Double),
      LM_FIELD("rope_scaling.original_max_seq_len", rope_scaling.original_max_seq_len, Int),
      LM_FIELD("dropout", dropout, Double),
      LM_FIELD("attn_dropout", attn_dropout, Double),
      LM_FIELD("emb_dropout", emb_dropout, Double),
      LM_FIELD("sigreg.enabled", sigreg.enabled, Bool),
      LM_FIELD("sigreg.t_max", sigreg.t_max, Double),
      LM_FIELD("sigreg.points", sigreg.points, Int),
      LM_FIELD("sigreg.slices", sigreg.slices, Int),
      LM_FIELD("sigreg.coefficient", sigreg.coefficient, Double),
      LM_FIELD("bos_id", bos_id, Int),
      LM_FIELD("eos_id", eos_id, Int),
      LM_FIELD("pad_id", pad_id, Int),
      LM_FIELD("extra_eos_ids", extra_eos_ids, IntList),
      LM_FIELD("nope_layer_interval", nope_layer_interval, Int),
      LM_FIELD("attn_chunk_size", attn_chunk_size, Int),
      LM_FIELD("attn_temperature_tuning", attn_temperature_tuning, Bool),
      LM_FIELD("attn_floor_scale", attn_floor_scale, Double),
      LM_FIELD("attn_scale", attn_scale, Double),
      LM_FIELD("moe.n_experts", moe.n_experts, Int),
      LM_FIELD("moe.top_k", moe.top_k, Int),
      LM_FIELD("moe.hidden_dim", moe.hidden_dim, Int),
      LM_FIELD("moe.shared_expert", moe.shared_expert, Bool),
      LM_FIELD("moe.interleave_step", moe.interleave_step, Int),
      LM_ENUM("moe.routing", moe.routing, kMoERoutingNames),
      LM_FIELD("moe.aux_loss_coef", moe.aux_loss_coef, Double),
      LM_FIELD("vision_dim", vision_dim, Int),
      LM_FIELD("image_token_id", image_token_id, Int),
      LM_FIELD("conditions", conditions, Conditions),
      LM_ENUM("rope_mode", rope_mode, kRopeModeNames),
      LM_FIELD("atoms_token_id", atoms_token_id, Int),
      LM_FIELD("lattice_token_id", lattice_token_id, Int),
      LM_FIELD("atom_block_size", atom_block_size, Int),
      LM_FIELD("loss_weights", loss_weights, Bool),
  };
  return table;
}

#undef LM_FIELD
#undef LM_ENUM

// "'rmsnorm', 'layernorm'"
std::string enum_list(const EnumNames& e) {
  std::string list;
  for (size_t i = 0; i < e.count; ++i) list += (i ? ", " : "") + quote(e.names[i]);
  return list;
}

const Field* find_field(const std::string& key) {
  for (const Field& f : fields())
    if (key == f.key) return &f;
  return nullptr;
}

// Prefixes of dotted keys: the nested objects ("rope_scaling", "sigreg", "moe").
bool is_group(const std::string& key) {
  const std::string prefix = key + ".";
  for (const Field& f : fields())
    if (std::string(f.key).rfind(prefix, 0) == 0) return true;
  return false;
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

// "did you mean 'n_heads'?" for the closest known key (within a few edits), else the list hint.
std::string suggest_key(const std::string& key) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  std::vector<std::string> candidates = config_keys();
  for (const char* g : {"rope_scaling", "sigreg", "moe"}) candidates.emplace_back(g);
  for (const std::string& k : candidates) {
    const size_t d = edit_distance(key, k);
    if (d < best_d) best_d = d, best = k;
  }
  if (best_d <= std::max<size_t>(2, key.size() / 3)) return "did you mean " + quote(best) + "?";
  return "'lm-inspect-config --config tiny' prints every key";
}

std::string describe(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);  // never throws on bad UTF-8
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

[[noreturn]] void type_error(ErrorKind kind, const std::string& prefix, const std::string& key, const char* expected,
                             const json& v) {
  fail(kind, cat(prefix, quote(key), ": expected ", expected, ", got ", describe(v)));
}

int64_t to_int(const json& v, ErrorKind kind, const std::string& prefix, const std::string& key) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      type_error(kind, prefix, key, "an integer", v);
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {  // 6.0 is an integer; 6.5 is not
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
  }
  type_error(kind, prefix, key, "an integer", v);
}

void set_field(ModelConfig& cfg, const Field& f, const json& v, ErrorKind kind, const std::string& prefix);

// The keys of a condition object (docs/materium.md); the first three are required.
constexpr const char* kConditionKeys[] = {"name", "proj_layer_type", "input_dim", "out_dim", "max_elements"};

uint8_t to_enum(const json& v, const EnumNames& names, ErrorKind kind, const std::string& prefix, const std::string& key) {
  const std::string expected = "one of " + enum_list(names);
  if (v.is_string()) {
    const std::string name = v.get<std::string>();
    for (size_t i = 0; i < names.count; ++i)
      if (name == names.names[i]) return static_cast<uint8_t>(i);
  }
  type_error(kind, prefix, key, expected.c_str(), v);
}

std::vector<ConditionConfig> to_conditions(const json& v, ErrorKind kind, const std::string& prefix) {
  if (!v.is_array()) type_error(kind, prefix, "conditions", "an array of condition objects", v);
  std::vector<ConditionConfig> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string where = cat("conditions[", i, "]");
    const json& item = v[i];
    if (!item.is_object())
      type_error(kind, prefix, where, "an object with \"name\", \"proj_layer_type\" and \"input_dim\"", item);
    ConditionConfig c;
    for (const auto& [k, x] : item.items()) {
      const std::string key = where + "." + k;
      if (k == "name") {
        if (!x.is_string()) type_error(kind, prefix, key, "a string", x);
        c.name = x.get<std::string>();
      } else if (k == "proj_layer_type") {
        c.proj_layer_type = static_cast<ProjLayerType>(to_enum(x, enum_names(kProjLayerTypeNames), kind, prefix, key));
      } else if (k == "input_dim") {
        c.input_dim = to_int(x, kind, prefix, key);
      } else if (k == "out_dim") {
        c.out_dim = to_int(x, kind, prefix, key);
      } else if (k == "max_elements") {
        c.max_elements = to_int(x, kind, prefix, key);
      } else {
        std::string best;
        size_t best_d = std::numeric_limits<size_t>::max();
        for (const char* known : kConditionKeys)
          if (const size_t d = edit_distance(k, known); d < best_d) best_d = d, best = known;
        if (k == "dim")  // the key of the condition schema before proj_layer_type (never ran)
          fail(kind, cat(prefix, where, ": unknown key ", quote(k)),
               "did you mean 'input_dim'? a condition is {\"name\", \"proj_layer_type\", \"input_dim\"} (docs/materium.md)");
        fail(kind, cat(prefix, where, ": unknown key ", quote(k)),
             best_d <= std::max<size_t>(2, k.size() / 3)
                 ? "did you mean " + quote(best) + "?"
                 : "a condition has \"name\", \"proj_layer_type\", \"input_dim\", \"out_dim\" and \"max_elements\"");
      }
    }
    for (const char* required : {"name", "proj_layer_type", "input_dim"})
      if (!item.contains(required)) fail(kind, cat(prefix, where, ": ", quote(required), " is required"));
    out.push_back(std::move(c));
  }
  return out;
}

void set_field(ModelConfig& cfg, const Field& f, const json& v, ErrorKind kind, const std::string& prefix) {
  void* p = f.ref(cfg);
  switch (f.kind) {
    case Kind::Int:
      *static_cast<int64_t*>(p) = to_int(v, kind, prefix, f.key);
      break;
    case Kind::Double:
      if (!v.is_number()) type_error(kind, prefix, f.key, "a number", v);
      *static_cast<double*>(p) = v.get<double>();
      break;
    case Kind::Bool:
      if (!v.is_boolean()) type_error(kind, prefix, f.key, "true or false", v);
      *static_cast<bool*>(p) = v.get<bool>();
      break;
    case Kind::String:
      if (!v.is_string()) type_error(kind, prefix, f.key, "a string", v);
      *static_cast<std::string*>(p) = v.get<std::string>();
      break;
    case Kind::Enum:
      *static_cast<uint8_t*>(p) = to_enum(v, f.values, kind, prefix, f.key);
      break;
    case Kind::Conditions:
      *static_cast<std::vector<ConditionConfig>*>(p) = to_conditions(v, kind, prefix);
      break;
    case Kind::IntList: {
      if (!v.is_array()) type_error(kind, prefix, f.key, "a list of integers", v);
      std::vector<int64_t> list;
      for (const json& x : v) list.push_back(to_int(x, kind, prefix, f.key));
      *static_cast<std::vector<int64_t>*>(p) = std::move(list);
      break;
    }
  }
}

// Sets `key` (possibly a group such as "rope_scaling" with an object value, merged key by key).
void assign(ModelConfig& cfg, const std::string& key, const json& v, ErrorKind kind, const std::string& prefix) {
  if (const Field* f = find_field(key)) return set_field(cfg, *f, v, kind, prefix);
  if (is_group(key)) {
    if (!v.is_object()) type_error(kind, prefix, key, "an object", v);
    for (const auto& [k, x] : v.items()) assign(cfg, key + "." + k, x, kind, prefix);
    return;
  }
  fail(kind, cat(prefix, "unknown key ", quote(key)), suggest_key(key));
}

json field_value(const ModelConfig& c, const Field& f) {
  void* p = f.ref(const_cast<ModelConfig&>(c));
  switch (f.kind) {
    case Kind::Int:
      return *static_cast<const int64_t*>(p);
    case Kind::Double:
      return *static_cast<const double*>(p);
    case Kind::Bool:
      return *static_cast<const bool*>(p);
    case Kind::String:
      return *static_cast<const std::string*>(p);
    case Kind::Enum:
      return f.values.names[*static_cast<const uint8_t*>(p)];
    case Kind::Conditions: {
      json a = json::array();
      for (const auto& cond : *static_cast<const std::vector<ConditionConfig>*>(p))
        a.push_back(json{{"name", cond.name},
                         {"proj_layer_type", name_of(cond.proj_layer_type)},
                         {"input_dim", cond.input_dim},
                         {"out_dim", cond.out_dim},
                         {"max_elements", cond.max_elements}});
      return a;
    }
    case Kind::IntList:
      return *static_cast<const std::vector<int64_t>*>(p);
  }
  return nullptr;
}

std::string source_prefix(const std::string& source) { return source.empty() ? "" : quote(source) + ": "; }

}  // namespace

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const Field& f : fields()) keys.emplace_back(f.key);
  return keys;
}

ModelConfig config_from_json(const std::string& text, const std::string& source) {
  const std::string prefix = source_prefix(source);
  const json doc = parse_json_strict(text, prefix);
  if (!doc.is_object()) fail_data(cat(prefix, "expected a JSON object, got ", describe(doc)));
  ModelConfig cfg;
  int legacy_block_pos_ids = -1;  // -1 absent, else the value
  for (const auto& [k, v] : doc.items()) {
    const auto dot = k.find('.');
    if (dot != std::string::npos && find_field(k))  // dotted keys are for --set; files nest
      fail(ErrorKind::Data, cat(prefix, "unknown key ", quote(k)),
           cat("nested fields are nested objects: {\"", k.substr(0, dot), "\": {\"", k.substr(dot + 1), "\": ...}}"));
    if (k == kLegacyBlockPosIds) {
      if (!v.is_boolean()) type_error(ErrorKind::Data, prefix, k, "true or false", v);
      legacy_block_pos_ids = v.get<bool>() ? 1 : 0;
      continue;
    }
    assign(cfg, k, v, ErrorKind::Data, prefix);
  }
  if (legacy_block_pos_ids >= 0) {
    const bool blockwise = legacy_block_pos_ids == 1;
    if (!doc.contains("rope_mode")) {
      if (blockwise) cfg.rope_mode = RopeMode::Blockwise;
    } else if (blockwise != (cfg.rope_mode == RopeMode::Blockwise)) {
      fail_data(cat(prefix, kLegacyBlockPosIds, " (", blockwise ? "true" : "false", ") contradicts rope_mode ",
                    quote(name_of(cfg.rope_mode))));
    }
  }
  return cfg;
}

std::string config_to_json(const ModelConfig& cfg, int indent) {
  json out = json::object();
  for (const Field& f : fields()) {
    const std::string key = f.key;
    const auto dot = key.find('.');
    if (dot == std::string::npos)
      out[key] = field_value(cfg, f);
    else
      out[key.substr(0, dot)][key.substr(dot + 1)] = field_value(cfg, f);
  }
  return out.dump(indent);
}

std::string override_key(const std::string& assignment) {
  const auto eq = assignment.find('=');
  return eq == std::string::npos ? assignment : assignment.substr(0, eq);
}

void apply_override(ModelConfig& cfg, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const std::string prefix = "--set " + quote(assignment) + ": ";
  if (eq == std::string::npos || eq == 0)
    fail(ErrorKind::Usage, prefix + "expected key=value", "e.g. --set n_kv_heads=4 or --set rope_scaling.type=llama3");
  try {  // a string field holding it could not be written as JSON (config_to_json, checkpoints)
    (void)json(assignment).dump();
  } catch (const json::type_error&) {
    fail_usage(prefix + "not valid UTF-8");
  }
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  json value;
  bool is_json = true;
  try {
    value = parse_json_strict(text, prefix);
  } catch (const Error& e) {
    // JSON refused for its depth or a repeated key is an error; text that is not JSON at all is
    // taken as it is below.
    if (json::accept(text)) fail_usage(e.what());
    is_json = false;
  }
  const Field* f = find_field(key);
  // Not JSON (a bare word such as layernorm), or a string field given a number (name=42): the text itself.
  if (!is_json || (f && (f->kind == Kind::String || f->kind == Kind::Enum) && !value.is_string()))
    value = text;
  assign(cfg, key, value, ErrorKind::Usage, prefix);
}

void apply_overrides(ModelConfig& cfg, const std::vector<std::string>& assignments) {
  for (const std::string& a : assignments) apply_override(cfg, a);
}

// ---------------------------------------------------------------------------------------------
// Validation

namespace {

// docs/materium.md "Validation" (tests/fixtures/reference.py materium_problems: the same rules).
void materium_errors(const ModelConfig& c, std::vector<std::string>& errs) {
  std::set<std::string> names;
  for (size_t i = 0; i < c.conditions.size(); ++i) {
    const ConditionConfig& cond = c.conditions[i];
    const std::string where = cat("conditions[", i, "]");
    const bool word = !cond.name.empty() && std::all_of(cond.name.begin(), cond.name.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
    });
    const bool mask = cond.name.size() >= 5 && cond.name.compare(cond.name.size() - 5, 5, "_mask") == 0;
    if (!word)
      errs.push_back(cat(where, ".name ", quote(cond.name), " must be letters, digits and '_'"));
    else if (mask)
      errs.push_back(cat(where, ".name ", quote(cond.name), " must not end in '_mask'"));
    else if (names.count(cond.name))
      errs.push_back(cat(where, ": duplicate name ", quote(cond.name)));
    names.insert(cond.name);
    if (cond.input_dim <= 0) errs.push_back(cat(where, ".input_dim must be positive, got ", cond.input_dim));
    if (cond.out_dim != 0 && cond.out_dim != c.dim)
      errs.push_back(cat(where, ".out_dim (", cond.out_dim, ") must equal dim (", c.dim, ")"));
    if (cond.proj_layer_type == ProjLayerType::Formula) {
      if (cond.max_elements < 0 || cond.max_elements > cond.input_dim)
        errs.push_back(cat(where, ".max_elements (", cond.max_elements, ") must be in 0..input_dim (", cond.input_dim, ")"));
    } else if (cond.max_elements != 0) {
      errs.push_back(cat(where, ".max_elements is for formula conditions only, got ", cond.max_elements));
    }
  }
  const bool blockwise = c.rope_mode == RopeMode::Blockwise;
  if (blockwise) {
    for (const auto& [key, id] : {std::pair{"atoms_token_id", c.atoms_token_id}, std::pair{"lattice_token_id", c.lattice_token_id}})
      if (id < 0 || id >= c.vocab_size)
        errs.push_back(cat("rope_mode blockwise needs ", key, " in [0, vocab_size ", c.vocab_size, "), got ", id));
    if (c.atoms_token_id == c.lattice_token_id) errs.push_back("atoms_token_id and lattice_token_id must differ");
    if (c.atom_block_size < 1) errs.push_back(cat("atom_block_size must be positive, got ", c.atom_block_size));
  }
  if (!c.conditions.empty() || blockwise) {
    if (!c.causal) errs.push_back("conditions and blockwise positions need causal attention");
    if (c.doc_mask) errs.push_back("conditions and blockwise positions do not combine with doc_mask");
  }
  // Condition positions are places in the row: they would shift the chunks and the image places.
  if (!c.conditions.empty() && c.attn_chunk_size > 0)
    errs.push_back("materium conditions do not combine with chunked attention (attn_chunk_size)");
  if (!c.conditions.empty() && c.vision_dim > 0)
    errs.push_back("materium conditions do not combine with vision inputs (vision_dim)");
}

}  // namespace

std::vector<std::string> validation_errors(const ModelConfig& c) {
  std::vector<std::string> errs;
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) errs.push_back(cat(key, " must be positive, got ", v));
  };
  auto non_negative = [&](const char* key, int64_t v) {
    if (v < 0) errs.push_back(cat(key, " must be >= 0, got ", v));
  };
  auto probability = [&](const char* key, double v) {
    if (!(v >= 0 && v < 1)) errs.push_back(cat(key, " must be in [0, 1), got ", v));
  };
  auto token_id = [&](const char* key, int64_t v) {
    if (v < -1) errs.push_back(cat(key, " must be a token id or -1 (none), got ", v));
    else if (c.vocab_size > 0 && v >= c.vocab_size)
      errs.push_back(cat(key, " (", v, ") is not below vocab_size (", c.vocab_size, ")"));
  };

  positive("dim", c.dim);
  positive("n_layers", c.n_layers);
  positive("n_heads", c.n_heads);
  positive("vocab_size", c.vocab_size);
  positive("max_seq_len", c.max_seq_len);
  non_negative("n_kv_heads", c.n_kv_heads);
  non_negative("head_dim", c.head_dim);
  non_negative("hidden_dim", c.hidden_dim);
  if (c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads != 0)
    errs.push_back(cat("n_heads (", c.n_heads, ") is not a multiple of n_kv_heads (", c.n_kv_heads, ")"));
  if (c.n_heads > 0 && c.dim > 0 && c.head_dim == 0 && c.dim % c.n_heads != 0)
    errs.push_back(cat("dim (", c.dim, ") is not divisible by n_heads (", c.n_heads, "); set head_dim explicitly"));
  const bool all_nope = c.nope_layer_interval == 1;
  if (c.n_heads > 0 && c.dim > 0 && c.head_dim >= 0 && !all_nope && c.head_size() % 2 != 0)
    errs.push_back(cat("head size (", c.head_size(), ") must be even: RoPE rotates pairs"));
  if (c.hidden_dim == 0 && c.ffn_type == FfnType::SwiGLU) {
    positive("multiple_of", c.multiple_of);
    if (!(c.ffn_dim_multiplier >= 0)) errs.push_back(cat("ffn_dim_multiplier must be >= 0 (0 = unset), got ", c.ffn_dim_multiplier));
  }

  if (!(c.norm_eps > 0)) errs.push_back(cat("norm_eps must be > 0, got ", c.norm_eps));
  if (c.norm_bias && c.norm_type != NormType::LayerNorm) errs.push_back("norm_bias needs norm_type 'layernorm'");
  if (!(c.logits_soft_cap >= 0)) errs.push_back(cat("logits_soft_cap must be >= 0 (0 = off), got ", c.logits_soft_cap));

  if (!(c.rope_theta > 0)) errs.push_back(cat("rope_theta must be > 0, got ", c.rope_theta));
  if (!(c.rope_scale_factor > 0)) errs.push_back(cat("rope_scale_factor must be > 0, got ", c.rope_scale_factor));
  if (c.rope_scaling.type != RopeScalingType::None && !(c.rope_scaling.factor > 0))
    errs.push_back(cat("rope_scaling.factor must be > 0, got ", c.rope_scaling.factor));
  if (c.rope_scaling.type == RopeScalingType::Llama3) {
    if (!(c.rope_scaling.low_freq_factor > 0))
      errs.push_back(cat("rope_scaling.low_freq_factor must be > 0, got ", c.rope_scaling.low_freq_factor));
    if (!(c.rope_scaling.high_freq_factor >= c.rope_scaling.low_freq_factor))
      errs.push_back(cat("rope_scaling.high_freq_factor (", c.rope_scaling.high_freq_factor,
                         ") is below rope_scaling.low_freq_factor (", c.rope_scaling.low_freq_factor, ")"));
    positive("rope_scaling.original_max_seq_len", c.rope_scaling.original_max_seq_len);
  }

  probability("dropout", c.dropout);
  probability("attn_dropout", c.attn_dropout);
  probability("emb_dropout", c.emb_dropout);
  if (c.sigreg.enabled) {
    if (!(c.sigreg.t_max > 0)) errs.push_back(cat("sigreg.t_max must be > 0, got ", c.sigreg.t_max));
    if (c.sigreg.points < 2) errs.push_back(cat("sigreg.points must be >= 2, got ", c.sigreg.points));
    positive("sigreg.slices", c.sigreg.slices);
    if (!(c.sigreg.coefficient >= 0)) errs.push_back(cat("sigreg.coefficient must be >= 0, got ", c.sigreg.coefficient));
  }

  token_id("bos_id", c.bos_id);
  token_id("eos_id", c.eos_id);
  token_id("pad_id", c.pad_id);
  if (!c.extra_eos_ids.empty() && c.eos_id < 0) errs.push_back("extra_eos_ids without an eos_id (list the first as eos_id)");
  for (size_t i = 0; i < c.extra_eos_ids.size(); ++i) {
    const int64_t id = c.extra_eos_ids[i];
    if (id < 0) errs.push_back(cat("extra_eos_ids holds ", id, ": expected token ids"));
    else token_id("extra_eos_ids", id);
    if (id == c.eos_id) errs.push_back(cat("extra_eos_ids holds eos_id (", id, ") again"));
    if (std::find(c.extra_eos_ids.begin(), c.extra_eos_ids.begin() + static_cast<std::ptrdiff_t>(i), id) !=
        c.extra_eos_ids.begin() + static_cast<std::ptrdiff_t>(i))
      errs.push_back(cat("extra_eos_ids holds ", id, " twice"));
  }

  non_negative("nope_layer_interval", c.nope_layer_interval);
  non_negative("attn_chunk_size", c.attn_chunk_size);
  if (c.attn_chunk_size > 0 && !c.causal)
    errs.push_back("attn_chunk_size needs causal attention (a chunk is a causal window)");
  if (c.attn_temperature_tuning) {  // without NoPE layers it has no effect (Meta, transformers): accepted
    if (!(c.attn_floor_scale > 0)) errs.push_back(cat("attn_floor_scale must be > 0, got ", c.attn_floor_scale));
    if (!std::isfinite(c.attn_scale)) errs.push_back(cat("attn_scale must be finite, got ", c.attn_scale));
  }

  non_negative("moe.n_experts", c.moe.n_experts);
  if (c.moe.n_experts > 0) {
    if (c.moe.top_k < 1) errs.push_back(cat("moe.top_k must be >= 1, got ", c.moe.top_k));
    else if (c.moe.top_k > c.moe.n_experts)
      errs.push_back(cat("moe.top_k (", c.moe.top_k, ") exceeds moe.n_experts (", c.moe.n_experts, ")"));
    non_negative("moe.hidden_dim", c.moe.hidden_dim);
    if (c.moe.interleave_step < 1) errs.push_back(cat("moe.interleave_step must be >= 1, got ", c.moe.interleave_step));
    else if (c.n_layers > 0 && c.moe.interleave_step > c.n_layers)
      errs.push_back(cat("moe.interleave_step (", c.moe.interleave_step, ") leaves no MoE layer among ", c.n_layers,
                         " layers"));
    if (c.ffn_type != FfnType::SwiGLU || c.ffn_bias)
      errs.push_back("mixture of experts needs ffn_type 'swiglu' without ffn_bias (experts are bias-free SwiGLU FFNs)");
    if (!(c.moe.aux_loss_coef >= 0) || !std::isfinite(c.moe.aux_loss_coef))
      errs.push_back(cat("moe.aux_loss_coef must be >= 0, got ", c.moe.aux_loss_coef));
    if (!c.conditions.empty()) errs.push_back("materium conditions do not combine with mixture of experts");
  }

  non_negative("vision_dim", c.vision_dim);
  token_id("image_token_id", c.image_token_id);
  if (c.image_token_id >= 0 && c.vision_dim <= 0) errs.push_back("image_token_id needs vision_dim > 0");
  if (c.rope_mode != RopeMode::Blockwise) {  // blockwise: materium_errors says what it needs of them
    token_id("atoms_token_id", c.atoms_token_id);
    token_id("lattice_token_id", c.lattice_token_id);
  }
  materium_errors(c, errs);

  // Bounds that keep every size product of the accounting inside int64 (and sane).
  if (errs.empty()) {
    auto capped = [&](const char* key, int64_t v, int64_t cap) {
      if (v > cap) errs.push_back(cat(key, " (", v, ") is too large: the limit is ", cap));
    };
    constexpr int64_t kSize = int64_t(1) << 24, kVocab = int64_t(1) << 31, kSeq = int64_t(1) << 40;
    capped("dim", c.dim, kSize);
    capped("n_layers", c.n_layers, kSize);
    capped("n_heads", c.n_heads, kSize);
    capped("n_kv_heads", c.n_kv_heads, kSize);
    capped("head_dim", c.head_dim, kSize);
    capped("hidden_dim", c.hidden_dim, kSize);
    capped("multiple_of", c.multiple_of, kSize);
    capped("vocab_size", c.vocab_size, kVocab);
    capped("max_seq_len", c.max_seq_len, kSeq);
    capped("attn_chunk_size", c.attn_chunk_size, kSeq);
    capped("moe.n_experts", c.moe.n_experts, kSize);
    capped("moe.hidden_dim", c.moe.hidden_dim, kSize);
    capped("vision_dim", c.vision_dim, kSize);
    capped("atom_block_size", c.atom_block_size, kSeq);
    for (size_t i = 0; i < c.conditions.size(); ++i)
      capped(cat("conditions[", i, "].input_dim").c_str(), c.conditions[i].input_dim, kSize);
    if (static_cast<int64_t>(c.conditions.size()) > kSize)
      errs.push_back(cat("conditions: ", c.conditions.size(), " are too many: the limit is ", kSize));
    if (errs.empty() && !c.conditions.empty()) {  // sizes capped: K cannot overflow
      const int64_t K = c.condition_positions();
      if (K >= c.max_seq_len)
        errs.push_back(cat("the conditions take ", K, " positions, which leaves no room for tokens within max_seq_len (",
                           c.max_seq_len, ")"));
    }
    if (c.ffn_dim_multiplier > 64) errs.push_back(cat("ffn_dim_multiplier (", c.ffn_dim_multiplier, ") is too large: the limit is 64"));
  }
  if (errs.empty()) {  // an upper bound of the parameter count, in floating point
    const double C = static_cast<double>(c.dim), V = static_cast<double>(c.vocab_size), L = static_cast<double>(c.n_layers);
    const double Q = static_cast<double>(c.n_heads) * static_cast<double>(c.head_size());
    const double KV = static_cast<double>(c.kv_heads()) * static_cast<double>(c.head_size());
    const double F = static_cast<double>(c.ffn_hidden()), FM = static_cast<double>(c.moe_hidden());
    const double E = static_cast<double>(c.moe.n_experts);
    const double moe = E > 0 ? E * C + (E + 1) * (3 * C * FM + 2 * FM + C) : 0;
    double bound = 2 * V * C + V + 2 * C + L * (2 * C * (Q + KV) + 2 * (Q + KV) + 4 * C + 3 * C * F + 2 * F + C + moe);
    for (const ConditionConfig& cond : c.conditions) {
      const double in = static_cast<double>(cond.input_dim);
      bound += (cond.proj_layer_type == ProjLayerType::Formula ? (in + 1) * C + 4 * C * C + 3 * C : in * C) + C;
    }
    if (!c.conditions.empty()) bound += static_cast<double>(c.conditions.size() + 1) * C;
    bound += static_cast<double>(c.vision_dim) * C;
    if (bound > 0x1p50) errs.push_back(cat("the model is too large: up to ", bound, " parameters (the limit is 2^50)"));
  }
  return errs;
}

void validate(const ModelConfig& cfg, const std::string& source) {
  const std::vector<std::string> errs = validation_errors(cfg);
  if (errs.empty()) return;
  std::string hint;
  for (size_t i = 1; i < errs.size(); ++i) hint += (i == 1 ? "also: " : "; ") + errs[i];
  fail(ErrorKind::Data, source_prefix(source) + errs[0], hint);
}

// ---------------------------------------------------------------------------------------------
// Features

std::vector<std::string> unsupported_features(const ModelConfig& c, const Capabilities& s) {
  std::vector<std::string> out;
  if (c.moe.n_experts > 0 && !s.moe) out.push_back(cat("mixture of experts (moe.n_experts = ", c.moe.n_experts, ")"));
  if (c.nope_layer_interval > 0 && !s.nope_layers)
    out.push_back(cat("NoPE layers (nope_layer_interval = ", c.nope_layer_interval, ")"));
  if (c.attn_chunk_size > 0 && !s.chunked_attention)
    out.push_back(cat("chunked attention (attn_chunk_size = ", c.attn_chunk_size, ")"));
  if (c.attn_temperature_tuning && !s.temperature_tuning) out.push_back("attention temperature tuning (attn_temperature_tuning)");
  if (c.vision_dim > 0 && !s.vision) out.push_back(cat("vision embeddings (vision_dim = ", c.vision_dim, ")"));
  if (!c.conditions.empty() && !s.conditions)
    out.push_back(cat("condition embeddings (", c.conditions.size(), c.conditions.size() == 1 ? " condition)" : " conditions)"));
  if (c.rope_mode == RopeMode::Blockwise && !s.blockwise_positions)
    out.push_back("block-wise positions (rope_mode blockwise)");
  return out;
}

Capabilities program_capabilities() {
  Capabilities caps = Capabilities::all();
  return caps;
}

void require_supported(const ModelConfig& cfg, const Capabilities& supported, const std::string& program) {
  const std::vector<std::string> missing = unsupported_features(cfg, supported);
  if (missing.empty()) return;
  std::string hint;
  for (size_t i = 1; i < missing.size(); ++i) hint += (i == 1 ? "also not supported yet: " : ", ") + missing[i];
  fail(ErrorKind::Unsupported, cat(program, " does not support ", missing[0], " yet"), hint);
}

}  // namespace lm
