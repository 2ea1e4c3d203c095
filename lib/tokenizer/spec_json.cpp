#include "tokenizer/spec_json.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "io/metadata_keys.h"
#include "tokenizer/byte_v1.h"

namespace lm {

namespace {

using json = nlohmann::json;

// The JSON keys, each spelled once.
constexpr const char* kKind = "kind";
constexpr const char* kVocab = "vocab_size";
constexpr const char* kFingerprint = "fingerprint";
struct SpecialId {
  const char* key;
  int32_t TokenizerSpec::*id;
};
constexpr SpecialId kSpecials[] = {
    {"bos_id", &TokenizerSpec::bos_id},
    {"eos_id", &TokenizerSpec::eos_id},
    {"pad_id", &TokenizerSpec::pad_id},
    {"unk_id", &TokenizerSpec::unk_id},
};

}  // namespace

std::string spec_to_json(const TokenizerSpec& spec) {
  json j = json::object();
  j[kKind] = spec.kind_name();
  j[kVocab] = spec.vocab_size;
  for (const SpecialId& s : kSpecials)
    if (spec.*s.id >= 0) j[s.key] = spec.*s.id;
  if (spec.fingerprint != 0) {
    char hex[19];
    std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(spec.fingerprint));
    j[kFingerprint] = hex;
  }
  return j.dump();
}

TokenizerSpec spec_from_json(const std::string& text, const std::string& source) {
  const std::string what = cat(source, ": bad tokenizer metadata (", kTokenizerMetadataKey, "): ");
  const json j = parse_json_strict(text, what);
  if (!j.is_object()) fail_data(what + "not a JSON object");
  auto integer = [&](const char* key, int64_t lo, int64_t hi, int64_t fallback) -> int64_t {
    const auto it = j.find(key);
    if (it == j.end()) return fallback;
    if (!it->is_number_integer()) fail_data(cat(source, ": tokenizer ", quote(key), ": expected an integer"));
    const int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? hi + 1 : it->get<int64_t>();
    if (v < lo || v > hi) fail_data(cat(source, ": tokenizer ", quote(key), ": ", it->dump(), " is out of range"));
    return v;
  };
  const auto kind_it = j.find(kKind);
  if (kind_it != j.end() && !kind_it->is_string()) fail_data(cat(source, ": tokenizer ", quote(kKind), ": expected a string"));
  const std::string kind = kind_it == j.end() ? "raw" : kind_it->get<std::string>();
  TokenizerSpec spec;
  spec.vocab_size = static_cast<uint32_t>(integer(kVocab, 0, UINT32_MAX, 0));
  if (kind == "raw" || kind == "none") return spec;
  const auto k = tokenizer_kind_from_name(kind);
  if (!k) fail_data(cat(source, ": unknown tokenizer kind ", quote(kind), " in ", kTokenizerMetadataKey));
  if (*k == TokenizerKind::ByteV1) {
    const TokenizerSpec byte = byte_v1::spec();
    if (spec.vocab_size != 0 && spec.vocab_size != byte.vocab_size)
      fail_data(cat(source, ": vocab mismatch: byte-v1 has ", byte.vocab_size, " tokens, ", kTokenizerMetadataKey, " says ",
                    spec.vocab_size));
    return byte;
  }
  spec.kind = *k;
  for (const SpecialId& s : kSpecials) spec.*s.id = static_cast<int32_t>(integer(s.key, -1, INT32_MAX, -1));
  if (const auto f = j.find(kFingerprint); f != j.end()) {
    if (f->is_number_unsigned()) {
      spec.fingerprint = f->get<uint64_t>();
    } else if (f->is_string()) {
      const std::string s = f->get<std::string>();
      char* end = nullptr;
      errno = 0;
      spec.fingerprint = std::strtoull(s.c_str(), &end, 0);
      if (s.empty() || *end != '\0' || errno != 0)
        fail_data(cat(source, ": tokenizer ", quote(kFingerprint), ": ", quote(s), " is not a number"));
    } else {
      fail_data(cat(source, ": tokenizer ", quote(kFingerprint), ": expected a number or a string"));
    }
  }
  return spec;
}

}  // namespace lm
