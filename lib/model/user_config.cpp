#include "model/user_config.h"

#include <sys/stat.h>

#include "core/error.h"

namespace lm {

ConfigInput load_user_config(const std::string& input, const std::vector<std::string>& overrides) {
  try {
    return load_config_input(input, overrides);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Data) throw;
    struct stat st {};
    if (input == "-") throw;  // stdin cannot be read again to tell whose mistake it is
    if (::stat(input.c_str(), &st) == 0) {
      if (overrides.empty()) throw;
      // Read once more without the overrides (a header or a small JSON file): if that fails
      // too, the file itself is bad, and that error is the one to report.
      load_config_input(input, {});
    }
    throw Error(ErrorKind::Usage, e.what(), e.hint());
  }
}

}  // namespace lm
