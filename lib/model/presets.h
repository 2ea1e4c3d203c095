// Named model configs: the seed architectures at their published sizes, plus `tiny` for
// demos and tests. Every preset validates (tests/unit/test_config.cpp checks it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace lm {

struct PresetInfo {
  std::string name;
  std::string summary;  // one line: what it is
  std::string source;   // where the numbers come from
  // Parameters the published model counts that the config does not hold (Llama 4's vision
  // encoder: lmkit takes its features precomputed), so that the accounting's total plus these
  // is the published figure; 0 for most presets.
  int64_t outside_params = 0;
  std::string outside_what;  // what they are, e.g. "vision encoder"
};

// All presets, in listing order.
const std::vector<PresetInfo>& presets();
std::vector<std::string> preset_names();
// The config (with `name` set), or nullopt when `name` is not a preset.
std::optional<ModelConfig> find_preset(const std::string& name);
// The config; throws a Usage error "unknown preset 'x'" with the list as a hint.
ModelConfig preset(const std::string& name);
const PresetInfo* preset_info(const std::string& name);

}  // namespace lm
