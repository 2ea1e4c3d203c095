#include "core/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lm {

void fail_io(const std::string& what, const std::string& path) {
  const int err = errno;
  std::string msg = what + " " + quote(path);
  if (err != 0) msg += cat(": ", std::strerror(err));
  throw Error(ErrorKind::Io, msg);
}

std::string one_line(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((u < 0x20 && c != '\t') || u == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

std::string error_line(const std::string& program, const std::string& message, const std::string& hint) {
  std::string line = program;
  line.append(": error: ").append(message);
  if (!hint.empty()) line.append("; ").append(hint);
  return one_line(line);
}

}  // namespace lm
