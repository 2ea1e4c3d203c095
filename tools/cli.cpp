#include "cli.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>

#include "core/error.h"
#include "core/threads.h"
#include "version.h"

namespace lm::cli {

Tool::Tool(std::string name, const std::string& description) : name_(std::move(name)), app_(description, name_) {
  app_.set_version_flag("--version", name_ + " (lmkit) " + std::string(kVersion));
  app_.get_formatter()->column_width(32);
  app_.option_defaults()->always_capture_default();  // --help shows every default
}

void Tool::add_threads_option() {
  app_.add_option("--threads", threads, "Worker threads for BLAS and parallel loops (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  threads_option_ = true;
}

void Tool::add_quiet_option() { app_.add_flag("-q,--quiet", quiet, "Print nothing but errors on stderr"); }

namespace {

// Machine-readable option list for shell completion and the docs-in-sync tests:
// one line per option: its names, whether it takes a value, and its description.
void print_option_list(const CLI::App& app) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;  // hidden
    std::string names;
    for (const auto& s : opt->get_snames()) names += (names.empty() ? "-" : " -") + s;
    for (const auto& l : opt->get_lnames()) names += (names.empty() ? "--" : " --") + l;
    if (names.empty()) names = opt->get_name();  // positional
    const bool takes_value = opt->get_items_expected_max() > 0;
    std::cout << names << '\t' << (opt->get_positional() ? "positional" : takes_value ? "value" : "flag") << '\t'
              << opt->get_description() << '\n';
  }
}

void print_error(const std::string& tool, const std::string& msg, const std::string& hint = {}) {
  std::fflush(stdout);
  std::cerr << tool << ": error: " << msg << '\n';
  if (!hint.empty()) std::cerr << "hint: " << hint << '\n';
}

}  // namespace

int Tool::run(int argc, char** argv, const std::function<int()>& body) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--lmkit-options") == 0) {
      print_option_list(app_);
      return 0;
    }
  }
  try {
    app_.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    if (report) std::cout << app_.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    if (report) std::cout << app_.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::CallForVersion&) {
    if (report) std::cout << app_.version() << '\n';
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (!msg.empty()) msg[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[0])));
    if (report) print_error(name_, msg, "run '" + name_ + " --help' for usage");
    return 2;
  }
  int code;
  try {
    if (threads_option_) set_threads(threads);
    code = body();
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) fail_io("cannot write", "<stdout>");
  } catch (const Error& e) {
    if (report) print_error(name_, e.what(), e.hint());
    return exit_code_for(e.kind());
  } catch (const std::bad_alloc&) {
    if (report) print_error(name_, "out of memory");
    return 1;
  } catch (const std::exception& e) {
    if (report) print_error(name_, std::string("internal error: ") + e.what());
    return 1;
  }
  return code;
}

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }
bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void refuse_binary_on_terminal(const std::string& path, bool force) {
  if (path == "-" && !force && stdout_is_terminal())
    fail(ErrorKind::Usage, "refusing to write binary data to a terminal",
         "redirect the output, use -o FILE, or --force");
}

}  // namespace lm::cli
