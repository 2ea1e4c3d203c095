// lm: git-style dispatcher. `lm SUB ARGS...` runs `lm-SUB ARGS...`, looking first
// beside this executable, then on PATH.
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "version.h"

namespace {
const char* const kPrograms[] = {"tokenize", "convert-checkpoint", "train", "generate", "eval-loss", "inspect-config",
                                 "bench"};

void usage(FILE* out) {
  std::fprintf(out, "usage: lm <command> [args...]\n\nRuns lm-<command>. Commands:\n");
  for (const char* p : kPrograms) std::fprintf(out, "  %s\n", p);
  std::fprintf(out, "\nSee 'lm-<command> --help' or 'man lm-<command>'.\n");
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    usage(stdout);
    return 0;
  }
  if (sub == "--version") {
    std::printf("lm (lmkit) %s\n", lm::kVersion);
    return 0;
  }
  if (sub.empty() || sub[0] == '-' || sub.find('/') != std::string::npos) {
    std::fprintf(stderr, "lm: error: unknown option '%s'\nhint: run 'lm --help' for usage\n", sub.c_str());
    return 2;
  }
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
  std::fprintf(stderr, "lm: error: '%s' is not an lm command (no %s found)\nhint: run 'lm --help' for the list\n",
               sub.c_str(), prog.c_str());
  return 2;
}
