// Where a program's model config comes from: a preset name, a config JSON file, or a
// safetensors checkpoint ("-" = stdin), plus --set overrides, validated.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/config_infer.h"

namespace lm {

class SafeTensorsFile;

struct ConfigInput {
  enum class Kind { Preset, Json, Checkpoint };
  Kind kind = Kind::Preset;
  std::string name;           // preset name or file name as shown in messages
  std::string description;    // preset summary, else empty
  ModelConfig config;         // overrides applied, validated
  std::vector<std::string> overrides;
  CheckpointConfig checkpoint;  // for Kind::Checkpoint: what was inferred/assumed
  // For Kind::Checkpoint: the file as read, for its weights (reading it again would parse the
  // header twice, and finds stdin empty).
  std::shared_ptr<const SafeTensorsFile> file;
};

const char* kind_name(ConfigInput::Kind kind);  // "preset", "json", "checkpoint"

// An existing file is read by content: *.json or text starting with '{' is config JSON,
// anything else must be safetensors (whose reader reports what is wrong with it). Otherwise
// `input` must name a preset. Throws Data/Io errors naming the input; validation errors start
// with the quoted input name.
ConfigInput load_config_input(const std::string& input, const std::vector<std::string>& overrides);

}  // namespace lm
