// The seeds' own config serialisations (docs/seed-configs.md), read into and written back from
// lmkit's ModelConfig: materium's ModelArgs.to_dict(), xlstm-jax's LlamaConfig.to_dict(),
// MobileLLM's MobileLLMConfig and soma-models' ModelConfig (+ SIGRegConfig under "sig_reg").
// Each format is a key table (the seed dataclass's fields, in order, with their types and the
// seed's defaults) plus the mapping onto lmkit's fields; tests/seed-configs/seed_configs.py is
// the same mapping in Python, and the files beside it are what these functions must give.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace lm {

enum class SeedFormat : uint8_t { Materium, XlstmJax, MobileLLM, Soma };

// The --config-format spelling: "materium", "xlstm-jax", "mobilellm", "soma".
const char* name_of(SeedFormat f);
std::optional<SeedFormat> seed_format_from_name(const std::string& name);
// Every seed format's name, in the order above.
std::vector<std::string> seed_format_names();

struct SeedConfig {
  ModelConfig config;              // not validated (callers validate, after any --set)
  SeedFormat format = SeedFormat::Materium;
  std::vector<std::string> noted;  // keys the file gives that have no effect on the math (accepted, not kept)
};

// The seed format a config JSON object is in, by its marker keys (docs/seed-configs.md,
// "Detection"): nullopt when it has none of them. Two formats' markers at once are a Data
// error: "'source': the config looks like materium and mobilellm: name its format with
// --config-format".
std::optional<SeedFormat> detect_seed_format(const std::string& text, const std::string& source);

// Reads `text` in `format`. A key the seed's dataclass does not have, a missing required key, a
// wrong type, or a value lmkit cannot honour is a Data error "'source': <seed class>: <what>".
// Missing keys take the seed's defaults; lmkit fields the seed does not name take what the
// seed's model does.
SeedConfig config_from_seed_json(const std::string& text, SeedFormat format, const std::string& source);

// `cfg` as the seed's serialisation: every field of its dataclass, in order (fields without
// math at the seed's defaults), `indent` < 0 = one line. It exists exactly when reading it back
// gives the same model (the same config up to its name and to equivalent spellings: head_dim 0
// and dim / n_heads, derived and explicit sizes, fields of a feature that is off); otherwise an
// Unsupported error names the first lmkit field the format cannot carry ("rope_theta = 500000
// has no materium equivalent"). An invalid config is a Data error (validate()).
std::string config_to_seed_json(const ModelConfig& cfg, SeedFormat format, int indent = 2);

}  // namespace lm
