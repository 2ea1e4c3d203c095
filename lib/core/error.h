// One error type for the whole library. Only a program's main() catches it and
// maps its kind to an exit code (see exit_code_for); the library never prints or exits.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lm {

enum class ErrorKind {
  Usage,        // bad option value or combination: exit 2
  Io,           // cannot open/read/write a file: exit 1
  Data,         // malformed or inconsistent input data: exit 1
  Unsupported,  // valid input that this build cannot handle yet: exit 1
  Runtime,      // numerical failure, resource exhaustion: exit 1
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, std::string hint = {})
      : std::runtime_error(message), kind_(kind), hint_(std::move(hint)) {}
  ErrorKind kind() const noexcept { return kind_; }
  const std::string& hint() const noexcept { return hint_; }

 private:
  ErrorKind kind_;
  std::string hint_;
};

// The single place where error kinds become process exit codes.
inline int exit_code_for(ErrorKind kind) { return kind == ErrorKind::Usage ? 2 : 1; }

// cat("got ", n, ", expected ", m): message building without iostream noise at call sites.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// 'name' quoted the way git quotes paths and keys in messages.
inline std::string quote(const std::string& s) { return "'" + s + "'"; }

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message, std::string hint = {}) {
  throw Error(kind, message, std::move(hint));
}
[[noreturn]] inline void fail_data(const std::string& message) { fail(ErrorKind::Data, message); }
[[noreturn]] inline void fail_usage(const std::string& message) { fail(ErrorKind::Usage, message); }
[[noreturn]] void fail_io(const std::string& what, const std::string& path);  // appends strerror(errno)

// Whose mistake: --set overrides are the user's words (a usage error, exit 2), a file's
// contents are data (exit 1), but a loader reports both as Data. Runs load(overrides); when
// that fails with a Data error and load({}) (the same input without the overrides) does not,
// the overrides made the input invalid: the error is rethrown as Usage. Otherwise the error
// is rethrown as it was. Only for inputs that can be read twice (not stdin).
template <class Load>
auto blame_overrides(const std::vector<std::string>& overrides, Load&& load) -> decltype(load(overrides)) {
  try {
    return load(overrides);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Data || overrides.empty()) throw;
    try {
      load(std::vector<std::string>{});
    } catch (const Error&) {
      throw e;  // invalid without the overrides too: the input's own fault
    }
    throw Error(ErrorKind::Usage, e.what(), e.hint());
  }
}

// `text` with control characters shown escaped (\n, \r, \xHH): a file name or a value that
// holds a newline cannot turn one message into two lines.
std::string one_line(const std::string& text);
// The line a program prints on stderr for an error: "<program>: error: <message>", then
// "; <hint>" when there is a hint, as one line (one_line).
std::string error_line(const std::string& program, const std::string& message, const std::string& hint = {});

}  // namespace lm
