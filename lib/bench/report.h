// lm-bench as a library call: what to measure (BenchOptions), one run of it (run_bench) into
// a BenchReport, and that report for people (text, part by part as it is measured) or as one
// JSON object with stable keys. Each figure is measured once; the two formats only print it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/model_bench.h"

namespace lm {

struct BenchOptions {
  // sgemm, bandwidth, forward, train, decode. Forward and train add sgemm (their figures are
  // fractions of its peak), decode adds bandwidth.
  std::vector<std::string> what{"sgemm", "bandwidth"};
  std::string model = "stories15m";  // a preset or config JSON (random weights) or a checkpoint
  std::vector<std::string> sets;     // --set overrides of the model's config
  std::string config_format = "auto";  // of a config JSON --model (--config-format)
  std::vector<int64_t> sizes{256, 512, 1024, 2048};  // square sgemm sizes
  int64_t bandwidth_mib = 1024;
  int64_t batch = 8, seq = 256;  // forward and train
  bool checkpointing = false;    // train
  DType dtype = DType::F32;      // forward and train: the matmuls' operands (Transformer::set_compute_dtype)
  int64_t decode_tokens = 128;   // per timed decode run (at most the model's max_seq_len)
  std::optional<DType> kv_dtype;  // decode's KV cache (Transformer::set_kv_dtype); none: the weights' type
  bool panels = true;            // decode and forward on the matrices' panels, as lm-generate (--no-panels)
  int64_t prompt_tokens = 128;   // forward: prompt processing as llama-bench -p (at most max_seq_len)
  int warmup = 1, repeats = 5;
};

struct BenchReport {
  CpuInfo cpu;
  int threads = 0;
  std::string blas;
  std::string gemm;  // what lm::sgemm runs (gemm_config), e.g. "oneDNN 2.6.3 avx512_core_bf16"
  // The FMA peak of each vector ISA the CPU has (fma_peak_gflops: a register-only loop on
  // `threads` threads), measured with sgemm; MFU figures are against the best of them.
  struct FmaPeak {
    std::string isa;  // "avx512", "avx2"
    double gflops = 0;
  };
  std::vector<FmaPeak> fma_peaks;
  std::vector<SgemmBench> sgemm;
  double sgemm_peak_gflops = 0;  // the best of `sgemm`
  std::optional<BandwidthBench> bandwidth;
  struct Model {
    std::string name;
    std::vector<std::string> overrides;
    int64_t params = 0;
    int64_t active_params = 0;  // used per token (MoE: the selected experts); = params dense, 0 unknown
  };
  std::optional<Model> model;
  std::optional<ForwardBench> forward;
  std::optional<PromptBench> prompt;  // with forward, for causal models
  std::optional<TrainBench> train;
  std::optional<DecodeBench> decode;

  // The best of fma_peaks (nullptr when none was measured): what MFU is a fraction of.
  const FmaPeak* best_fma_peak() const;
};

// The parts of a report, in the order run_bench measures them.
enum class BenchPart { Header, Sgemm, Bandwidth, Model, Forward, Train, Decode };

// Measures what `opts` asks for. The model is loaded before anything is timed, so a bad
// --model or --set fails first (lm::load_user_config: a bad preset or override is a usage
// error). `on_part`, when given, is called with the report so far after each part.
BenchReport run_bench(const BenchOptions& opts, const std::function<void(const BenchReport&, BenchPart)>& on_part = {});

// One part of the report as text lines (empty when the report has no such part).
std::string bench_report_text(const BenchReport& r, BenchPart part);
// The whole report as one JSON object (indented): version, threads, cpu {model, cores, simd},
// blas, gemm, and when measured fma_peak {isa: gflops}, fma_peak_gflops, fma_peak_isa,
// sgemm [{m, n, k, calls, min_batch_s, gflops, fraction_of_peak, fraction_of_fma_peak, time}],
// sgemm_peak_gflops, bandwidth {bytes, gbytes_per_s, time}, model {name, overrides, params},
// forward, prompt, train, decode (see the man page; forward, prompt and train carry mfu, the
// fraction of fma_peak_gflops); every time is {repeats, median_s, min_s, max_s, mean_s, stddev_s}.
std::string bench_report_json(const BenchReport& r);

}  // namespace lm
