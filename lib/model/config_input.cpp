#include "model/config_input.h"

#include <sys/stat.h>

#include <cerrno>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/config_formats.h"
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

std::vector<std::string> config_format_names() {
  std::vector<std::string> out = {"auto", "lmkit"};
  for (const std::string& n : seed_format_names()) out.push_back(n);
  return out;
}

ConfigInput load_config_input(const std::string& input, const std::vector<std::string>& overrides,
                              const std::string& format) {
  const std::optional<SeedFormat> named = seed_format_from_name(format);
  if (format != "auto" && format != "lmkit" && !named) {
    std::string all;
    for (const std::string& n : config_format_names()) all += (all.empty() ? "" : ", ") + n;
    fail_usage(cat("--config-format: unknown format ", quote(format), " (one of ", all, ")"));
  }
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
    if (format != "auto") fail_usage(cat("--config-format ", format, " is for a config JSON file, not the preset ", quote(input)));
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
      const std::string text(reinterpret_cast<const char*>(file->data()), file->size());
      const std::optional<SeedFormat> seed = format == "auto" ? detect_seed_format(text, in.name) : named;
      if (seed) {
        SeedConfig sc = config_from_seed_json(text, *seed, in.name);
        in.config = std::move(sc.config);
        in.format = name_of(*seed);
        in.noted = std::move(sc.noted);
      } else {
        in.config = config_from_json(text, in.name);
      }
      apply_overrides(in.config, overrides);
    } else {
      if (format != "auto") fail_usage(cat("--config-format ", format, " is for a config JSON file, not the checkpoint ", quote(in.name)));
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
