#include "model/config_input.h"

#include <sys/stat.h>

#include <cerrno>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/presets.h"

namespace lm {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const char* kind_name(ConfigInput::Kind kind) {
  switch (kind) {
    case ConfigInput::Kind::Preset:
      return "preset";
    case ConfigInput::Kind::Json:
      return "json";
    case ConfigInput::Kind::Checkpoint:
      return "checkpoint";
  }
  return "?";
}

ConfigInput load_config_input(const std::string& input, const std::vector<std::string>& overrides) {
  ConfigInput in;
  in.overrides = overrides;
  struct stat st {};
  const bool is_file = input == "-" || ::stat(input.c_str(), &st) == 0;
  if (!is_file) {
    if (!find_preset(input) && (input.find('/') != std::string::npos || ends_with(input, ".json") ||
                                ends_with(input, ".safetensors"))) {
      errno = ENOENT;
      fail_io("cannot open", input);
    }
    in.kind = ConfigInput::Kind::Preset;
    in.name = input;
    in.config = preset(input);  // "unknown preset 'x'" with the list
    if (const PresetInfo* info = preset_info(input)) in.description = info->summary;
    apply_overrides(in.config, overrides);
  } else {
    std::shared_ptr<MappedFile> file = MappedFile::open(input);
    in.name = display_name(input);
    if (looks_like_json(input, file->data(), file->size())) {
      in.kind = ConfigInput::Kind::Json;
      in.config = config_from_json(std::string(reinterpret_cast<const char*>(file->data()), file->size()), in.name);
      apply_overrides(in.config, overrides);
    } else {
      in.kind = ConfigInput::Kind::Checkpoint;
      auto st_file = std::make_shared<const SafeTensorsFile>(SafeTensorsFile::parse(file));
      in.checkpoint = config_from_checkpoint(*st_file, overrides);
      in.file = std::move(st_file);
      in.config = in.checkpoint.config;
    }
  }
  validate(in.config, in.name);
  return in;
}

}  // namespace lm
