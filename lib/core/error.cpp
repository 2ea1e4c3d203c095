#include "core/error.h"

#include <cerrno>
#include <cstring>

namespace lm {

void fail_io(const std::string& what, const std::string& path) {
  const int err = errno;
  std::string msg = what + " " + quote(path);
  if (err != 0) msg += cat(": ", std::strerror(err));
  throw Error(ErrorKind::Io, msg);
}

}  // namespace lm
