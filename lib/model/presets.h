// Named model configs: the seed architectures at their published sizes, plus `tiny` for
// demos and tests. Every preset validates (tests/unit/test_config.cpp checks it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace lm {

struct PresetInfo {
  std::string name;
  std::string summary;  // one line: what it is
  std::string source;   // where the numbers come from
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
