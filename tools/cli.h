// CLI glue shared by every lm-* program: CLI11 setup, common options, the mapping
// from lm::Error to "lm-x: error: ..." and exit codes, and stdout hygiene. This is the one
// place a program prints an error or a warning: always one line on stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <string>

#include "core/dtype.h"

namespace lm::cli {

class Tool {
 public:
  Tool(std::string name, const std::string& description);

  CLI::App& app() { return app_; }
  const std::string& name() const { return name_; }

  // --threads N (default: all cores); applied before the body runs.
  void add_threads_option();
  // -q/--quiet, counted.
  void add_quiet_option();
  // --dtype f32|bf16 into `dtype`: the matmuls' operand type (Transformer::set_compute_dtype;
  // bf16: bfloat16 operands, f32 accumulation). `help` says where it applies.
  CLI::Option* add_dtype_option(lm::DType& dtype, const std::string& help);
  // --kv-dtype auto|f32|bf16|f16 into `dtype` (auto: none, the weights' type; Transformer::set_kv_dtype).
  CLI::Option* add_kv_dtype_option(std::optional<lm::DType>& dtype, const std::string& help);

  int threads = 0;
  int quiet = 0;
  // false: print no help, version or error (an MPI rank other than 0; rank 0 reports).
  bool report = true;

  // Parses argv, runs `body`, and turns every failure into one line on stderr
  // (lm::error_line: "lm-x: error: <what>: <why>", and "; <hint>" when the error has one)
  // and an exit code: 0 ok, 1 runtime/data/io, 2 usage (CLI11 parse errors included). A
  // failed write to stdout (help and version output included) is an Io error naming the
  // errno of the write that failed.
  int run(int argc, char** argv, const std::function<int()>& body);

  // "lm-x: warning: <message>" as one line on stderr (nothing when !report).
  void warn(const std::string& message) const;

 private:
  std::string name_;
  CLI::App app_;
  bool threads_option_ = false;
};

bool stdout_is_terminal();
bool stderr_is_terminal();
// zstd's rule: refuse binary data on a terminal unless forced. `path` "-" means stdout.
void refuse_binary_on_terminal(const std::string& path, bool force);

}  // namespace lm::cli
