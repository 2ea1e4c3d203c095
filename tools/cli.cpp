#include "cli.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ext/stdio_sync_filebuf.h>
#include <iostream>
#include <new>
#include <optional>

#include "core/error.h"
#include "core/threads.h"
#include "io/stream.h"
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

CLI::Option* Tool::add_dtype_option(lm::DType& dtype, const std::string& help) {
  return app_
      .add_option_function<std::string>(
          "--dtype", [&dtype](const std::string& name) { dtype = name == "bf16" ? lm::DType::BF16 : lm::DType::F32; },
          help + "; bf16 runs on the CPU's AVX512_BF16 dot products, and where it has none on the same bf16 "
                 "operands widened to f32 (same rounding, slower than f32)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->default_str("f32");
}

CLI::Option* Tool::add_kv_dtype_option(std::optional<lm::DType>& dtype, const std::string& help) {
  return app_
      .add_option_function<std::string>(
          "--kv-dtype",
          [&dtype](const std::string& name) {
            dtype = name == "auto"   ? std::nullopt
                    : name == "bf16" ? std::optional(lm::DType::BF16)
                    : name == "f16"  ? std::optional(lm::DType::F16)
                                     : std::optional(lm::DType::F32);
          },
          help + ": auto (f32 for f32 weights, bf16 for bf16, f16 for f16 and quantized ones), f32 (exact), "
                 "bf16 or f16 (half the bytes every step reads back; f16 keeps 3 more bits but ends at 65504, "
                 "beyond which generation stops with an error)")
      ->type_name("TYPE")
      ->check(CLI::IsMember({"auto", "f32", "bf16", "f16"}))
      ->default_str("auto");
}

void Tool::warn(const std::string& message) const {
  if (!report) return;
  std::fflush(stdout);
  std::cerr << one_line(name_ + ": warning: " + message) << '\n';
}

namespace {

void print_error(const std::string& tool, const std::string& message, const std::string& hint = {}) {
  std::fflush(stdout);
  std::cerr << error_line(tool, message, hint) << '\n';
}

// stdout through a stream that keeps the errno of its first failed write(2). glibc's own
// stdout remembers only that a write failed; by the time the program checks at exit, errno
// holds whatever a later call left there (lm-train --json > /dev/full reported "No such file
// or directory" instead of "No space left on device"). printf and std::cout both go through
// it while a Tool runs.
int g_stdout_errno = 0;

ssize_t write_stdout(void*, const char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t k = ::write(STDOUT_FILENO, buf + done, n - done);
    if (k >= 0) {
      done += static_cast<size_t>(k);
    } else if (errno != EINTR) {
      if (g_stdout_errno == 0) g_stdout_errno = errno;
      return 0;  // fopencookie: 0 is the error return; the FILE is marked failed
    }
  }
  return static_cast<ssize_t>(n);
}

class CheckedStdout {
 public:
  CheckedStdout() {
    file_ = ::fopencookie(nullptr, "w", cookie_io_functions_t{nullptr, write_stdout, nullptr, nullptr});
    if (!file_) return;  // keep the plain stdout
    std::setvbuf(file_, nullptr, ::isatty(STDOUT_FILENO) == 1 ? _IOLBF : _IOFBF, BUFSIZ);
    std::fflush(stdout);
    saved_file_ = stdout;
    stdout = file_;
    buf_.emplace(file_);
    saved_buf_ = std::cout.rdbuf(&*buf_);
  }
  ~CheckedStdout() {
    if (!file_) return;
    std::cout.flush();
    std::cout.rdbuf(saved_buf_);
    stdout = saved_file_;
    std::fclose(file_);
  }
  CheckedStdout(const CheckedStdout&) = delete;
  CheckedStdout& operator=(const CheckedStdout&) = delete;

 private:
  FILE* file_ = nullptr;
  FILE* saved_file_ = nullptr;
  std::optional<__gnu_cxx::stdio_sync_filebuf<char>> buf_;
  std::streambuf* saved_buf_ = nullptr;
};

// Everything written to stdout so far reached it: flushes, and throws the Io error naming the
// errno of the write that failed.
void check_stdout() {
  std::cout.flush();
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return;
  if (g_stdout_errno != 0) errno = g_stdout_errno;
  fail_io("cannot write", "<stdout>");
}

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

}  // namespace

int Tool::run(int argc, char** argv, const std::function<int()>& body) {
  lm::take_termination_signals();  // before any thread starts (lib/io/stream.h says why)
  const CheckedStdout checked_stdout;
  // What a program prints without running (help, version, the option list): a failed write
  // of it is an error too.
  auto print = [&](const std::string& text) -> int {
    if (!report) return 0;
    std::cout << text;
    try {
      check_stdout();
    } catch (const Error& e) {
      print_error(name_, e.what());
      return exit_code_for(e.kind());
    }
    return 0;
  };
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--lmkit-options") == 0) {
      print_option_list(app_);
      return print("");
    }
  }
  try {
    app_.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return print(app_.help());
  } catch (const CLI::CallForAllHelp&) {
    return print(app_.help("", CLI::AppFormatMode::All));
  } catch (const CLI::CallForVersion&) {
    return print(app_.version() + "\n");
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (!msg.empty()) msg[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[0])));
    if (report) print_error(name_, msg, "run '" + name_ + " --help' for usage");
    return 2;
  }
  // Past the body, a termination signal that is ending the process wins: its removal of the
  // temporary files may be what made the body fail (a rename finding its file gone).
  int code;
  try {
    if (threads_option_) set_threads(threads);
    code = body();
    check_stdout();
  } catch (const Error& e) {
    lm::wait_if_ending_by_signal();
    if (report) print_error(name_, e.what(), e.hint());
    return exit_code_for(e.kind());
  } catch (const std::bad_alloc&) {
    lm::wait_if_ending_by_signal();
    if (report) print_error(name_, "cannot allocate memory: out of memory");
    return 1;
  } catch (const std::exception& e) {
    lm::wait_if_ending_by_signal();
    if (report) print_error(name_, std::string("internal error: ") + e.what());
    return 1;
  }
  lm::wait_if_ending_by_signal();
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
