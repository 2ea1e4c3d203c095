// lm: git-style dispatcher. `lm SUB ARGS...` runs `lm-SUB ARGS...`, looking first
// beside this executable, then on PATH.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "version.h"

namespace {
const char* const kPrograms[] = {"tokenize", "convert-checkpoint", "train", "generate", "eval-loss", "inspect-config",
                                 "bench"};

void usage(FILE* out) {
  std::fprintf(out, "usage: lm <command> [args...]\n\nRuns lm-<command>. Commands:\n");
  for (const char* p : kPrograms) std::fprintf(out, "  %s\n", p);
  std::fprintf(out, "\nSee 'lm-<command> --help' or 'man lm-<command>'.\n");
}

int usage_error(const std::string& message, const std::string& hint) {
  std::fprintf(stderr, "%s\n", lm::error_line("lm", message, hint).c_str());
  return 2;
}

// Help and version output: a failed write is an error (exit 1), as in the lm-* programs.
int flushed_stdout() {
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return 0;
  std::fprintf(stderr, "%s\n", lm::error_line("lm", "cannot write '<stdout>': " + std::string(std::strerror(errno))).c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command", "run 'lm --help' for the list");
  const std::string sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    usage(stdout);
    return flushed_stdout();
  }
  if (sub == "--version") {
    std::printf("lm (lmkit) %s\n", lm::kVersion);
    return flushed_stdout();
  }
  if (sub.empty() || sub[0] == '-' || sub.find('/') != std::string::npos)
    return usage_error("unknown option " + lm::quote(sub), "run 'lm --help' for usage");
  const std::string prog = "lm-" + sub;
  std::vector<char*> args;
  args.push_back(const_cast<char*>(prog.c_str()));
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);

  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir = dir.substr(0, dir.rfind('/'));
    const std::string beside = dir + "/" + prog;
    if (::access(beside.c_str(), X_OK) == 0) ::execv(beside.c_str(), args.data());
  }
  ::execvp(prog.c_str(), args.data());
  return usage_error(lm::quote(sub) + " is not an lm command (no " + prog + " found)", "run 'lm --help' for the list");
}
