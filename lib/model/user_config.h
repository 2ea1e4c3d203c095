// A program's model config from the user's words: which mistakes are whose. A preset name
// and --set overrides are typed on the command line; a config file or a checkpoint is data.
#pragma once

#include <string>
#include <vector>

#include "model/config_input.h"

namespace lm {

// load_config_input, with the exit code set by who made the mistake: a name that is no
// preset, a preset made invalid by --set, or --set overrides that make a valid config file or
// checkpoint invalid are usage errors (exit 2, blame_overrides); a config file or checkpoint
// that is invalid without any override, or anything read from stdin ("-", which cannot be
// read twice), stays a data error (exit 1). The message is load_config_input's.
ConfigInput load_user_config(const std::string& input, const std::vector<std::string>& overrides,
                             const std::string& format = "auto");

}  // namespace lm
