// Key tables: one outside config format (Hugging Face config.json, Meta params.json, GGUF
// metadata, a seed's own serialisation) as rows that carry one outside key both ways. The
// reader and the writer of a format both walk its table, so each key is spelled once.
//
// Included by the format readers only (convert/config_io.cpp, model/config_formats.cpp): it
// brings nlohmann/json. `Json` is nlohmann::json (HF, Meta, GGUF) or nlohmann::ordered_json
// (the seeds, whose serialisations keep their dataclass's field order).
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"

namespace lm {

enum class KeyType : uint8_t { Int, Number, Bool, String, TokenId, Object, Any };

template <class Json>
struct BasicKeyRow {
  const char* key;    // the outside key, e.g. "rope_theta", "llama.rope.freq_base"
  const char* field;  // the lmkit config key it carries (config_keys() spelling); "" = none
  KeyType type;
  bool required;
  Json absent;        // what an absent (or null) key means, handed to `in`; null = nothing to set
  // lmkit -> outside: the value to write (discarded = leave the key out); nullptr = `absent`
  // (a seed's field without math, written back at the seed's default).
  Json (*out)(const ModelConfig& c);
  // outside -> lmkit: `v` already checked against `type`; `src` is the quoted source for messages.
  // nullptr = the key is ignored on the way in.
  void (*in)(ModelConfig& c, const Json& v, const std::string& src);
  // What an explicit null means when it is not what an absent key means (Llama4TextConfig's
  // attention_chunk_size: absent = 8192, null = none); null = the same as absent.
  Json null_value = Json();
  // The seeds' dataclasses: null is a value the field takes (Optional[...]), and a field
  // without math (compilation, sharding, initialisation) is accepted and noted, not kept.
  bool nullable = false;
  bool math = true;
  // The seeds: the key tells the format apart from the others (detection).
  bool marker = false;
};

using KeyRow = BasicKeyRow<nlohmann::json>;
using OrderedKeyRow = BasicKeyRow<nlohmann::ordered_json>;

// `out` for "leave the key out".
template <class Json>
Json omitted() {
  return Json(Json::value_t::discarded);
}

// `v` checked against the row's type; a token id given as a list (HF eos_token_id) is its first.
template <class Json>
Json checked_value(const BasicKeyRow<Json>& r, const Json& v, const std::string& src) {
  auto bad = [&](const char* what) -> Json {
    fail_data(cat(src, ": ", quote(r.key), ": expected ", what, ", got ", v.dump()));
  };
  switch (r.type) {
    case KeyType::Int: return v.is_number_integer() ? v : bad("an integer");
    case KeyType::Number: return v.is_number() ? v : bad("a number");
    case KeyType::Bool: return v.is_boolean() ? v : bad("true or false");
    case KeyType::String: return v.is_string() ? v : bad("a string");
    case KeyType::Object: return v.is_object() ? v : bad("an object or null");
    case KeyType::TokenId: {
      const Json& id = v.is_array() && !v.empty() ? v[0] : v;
      return id.is_number_integer() ? id : bad("a token id");
    }
    case KeyType::Any: return v;
  }
  return v;
}

// Reads every row from `lookup` (nullopt = the key is absent). `given` (may be null) collects the
// fields the source set, an absent key's default included.
template <class Json>
void read_rows(const std::vector<BasicKeyRow<Json>>& rows,
               const std::type_identity_t<std::function<std::optional<Json>(const char*)>>& lookup, ModelConfig& c, const std::string& src, std::vector<std::string>* given) {
  for (const BasicKeyRow<Json>& r : rows) {
    std::optional<Json> v = lookup(r.key);
    if (v && v->is_null()) {
      if (r.null_value.is_null()) v.reset();
      else v = r.null_value;
    }
    if (!v) {
      if (r.required) fail_data(cat(src, ": no ", quote(r.key)));
      if (r.absent.is_null()) continue;
      v = r.absent;
    }
    if (!r.in) continue;
    r.in(c, checked_value(r, *v, src), src);
    if (given && *r.field) given->push_back(r.field);
  }
}

template <class Json>
void read_object(const std::vector<BasicKeyRow<Json>>& rows, const Json& j, ModelConfig& c, const std::string& src,
                 std::vector<std::string>* given) {
  read_rows<Json>(
      rows,
      [&](const char* key) -> std::optional<Json> {
        const auto it = j.find(key);
        return it == j.end() ? std::nullopt : std::optional<Json>(*it);
      },
      c, src, given);
}

// Every row's `out`, in table order (an ordered_json keeps it).
template <class Json>
Json write_object(const std::vector<BasicKeyRow<Json>>& rows, const ModelConfig& c) {
  Json j = Json::object();
  for (const BasicKeyRow<Json>& r : rows) {
    Json v = r.out ? r.out(c) : r.absent;
    if (!v.is_discarded()) j[r.key] = std::move(v);
  }
  return j;
}

template <class Json>
std::set<std::string> keys_of(const std::vector<BasicKeyRow<Json>>& rows) {
  std::set<std::string> keys;
  for (const BasicKeyRow<Json>& r : rows) keys.insert(r.key);
  return keys;
}

}  // namespace lm
