#include "model/user_config.h"

#include <sys/stat.h>

#include "core/error.h"

namespace lm {

ConfigInput load_user_config(const std::string& input, const std::vector<std::string>& overrides,
                             const std::string& format) {
  struct stat st {};
  if (input == "-") return load_config_input(input, overrides, format);  // stdin cannot be read twice: as it comes
  if (::stat(input.c_str(), &st) == 0)  // a config file or checkpoint (a header: cheap to read again)
    return blame_overrides(overrides, [&](const std::vector<std::string>& sets) { return load_config_input(input, sets, format); });
  try {  // a preset: valid by itself, so any Data error is the name's or the overrides'
    return load_config_input(input, overrides, format);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Data) throw;
    throw Error(ErrorKind::Usage, e.what(), e.hint());
  }
}

}  // namespace lm
