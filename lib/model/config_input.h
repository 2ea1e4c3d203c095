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
  std::string format = "lmkit"; // Kind::Json: "lmkit" or the seed format the file is in
  std::vector<std::string> noted;  // a seed file's keys without math (accepted, not kept)
};

const char* kind_name(ConfigInput::Kind kind);  // "preset", "json", "checkpoint"

// An existing file is read by content: *.json or text starting with '{' is config JSON,
// anything else must be safetensors (whose reader reports what is wrong with it). Otherwise
// `input` must name a preset. Throws Data/Io errors naming the input; validation errors start
// with the quoted input name. `format` (--config-format) says what a config JSON file is:
// "auto" (a seed's serialisation by its marker keys, docs/seed-configs.md, else lmkit's),
// "lmkit", or a seed format's name ("materium", "xlstm-jax", "mobilellm", "soma"); anything
// but "auto" with a preset or a checkpoint is a Usage error.
ConfigInput load_config_input(const std::string& input, const std::vector<std::string>& overrides,
                              const std::string& format = "auto");
// The --config-format values: "auto", "lmkit", then seed_format_names().
std::vector<std::string> config_format_names();

}  // namespace lm
