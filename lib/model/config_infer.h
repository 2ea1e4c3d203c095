// The config of a checkpoint: the JSON in its safetensors metadata ("lmkit.config"), or, when
// absent, what the Meta-style tensor names and shapes tell (formats.md §4), with a record of
// which fields were inferred, which were set by --set, and which are plain defaults.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace lm {

class SafeTensorsFile;

inline constexpr const char* kConfigMetadataKey = "lmkit.config";

struct CheckpointConfig {
  ModelConfig config;
  bool from_metadata = false;            // read from the "lmkit.config" metadata
  std::vector<std::string> inferred;     // keys read off tensor names and shapes
  std::vector<std::string> overridden;   // keys given with --set
  std::vector<std::string> assumed;      // keys nothing in the file determines: defaults
};

// Throws Data errors naming the file (and tensor). Shapes alone cannot tell n_heads from
// head_dim: they come from a q_norm weight ([HS]) when present, else from the overrides
// (--set n_heads=N or --set head_dim=N), else inference fails with that hint. Overrides are
// applied last; one that contradicts the tensor shapes (e.g. dim) is an error.
CheckpointConfig config_from_checkpoint(const SafeTensorsFile& file, const std::vector<std::string>& overrides);

}  // namespace lm
