// lm-bench: the machine's limits (sgemm GFLOP/s, memory read bandwidth) and the model's
// speed against them (forward and training tokens/s vs sgemm peak, decode tokens/s vs
// bandwidth / bytes per token), measured as the median of repeated runs after a warm-up, as
// text or JSON.
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bench/model_bench.h"
#include "cli.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"
#include "io/safetensors.h"
#include "model/accounting.h"
#include "model/config_input.h"
#include "model/params.h"
#include "model/transformer.h"
#include "version.h"

namespace {

nlohmann::json timing_json(const lm::TimingStats& t) {
  return {{"repeats", t.repeats}, {"median_s", t.median}, {"min_s", t.min},
          {"max_s", t.max},       {"mean_s", t.mean},     {"stddev_s", t.stddev}};
}

// A preset or config JSON with random weights, or a checkpoint, with --set overrides. A bad
// preset name or override of a preset is a usage error (exit 2); a bad file stays a data error.
lm::ModelWeights bench_weights(const std::string& name, const std::vector<std::string>& sets) {
  struct stat st {};
  const bool is_file = ::stat(name.c_str(), &st) == 0;
  lm::ConfigInput in;
  try {
    in = lm::load_config_input(name, sets);
  } catch (const lm::Error& e) {
    if (is_file || e.kind() == lm::ErrorKind::Usage) throw;
    throw lm::Error(lm::ErrorKind::Usage, e.what(), e.hint());
  }
  if (in.kind == lm::ConfigInput::Kind::Checkpoint)
    return lm::ModelWeights::from_checkpoint(*in.file, in.config);
  return lm::ModelWeights::random(in.config, 0);
}

}  // namespace

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-bench", "Measure the machine's limits for lmkit (sgemm throughput, memory bandwidth) and a "
                                 "model's forward, training and decode speed against them");
  auto& app = tool.app();
  std::vector<std::string> what{"sgemm", "bandwidth"}, sets;
  std::vector<int64_t> sizes{256, 512, 1024, 2048};
  int64_t bandwidth_mib = 1024, batch = 8, seq = 256, decode_tokens = 128;
  std::string model_name = "stories15m";
  int warmup = 1, repeats = 5;
  bool json_out = false, checkpointing = false;
  app.add_option("benchmarks", what, "What to measure: sgemm, bandwidth, forward, train, decode (default: sgemm and "
                                     "bandwidth; forward and train add sgemm, decode adds bandwidth)")
      ->check(CLI::IsMember({"sgemm", "bandwidth", "forward", "train", "decode"}));
  app.add_option("--model", model_name, "Model for forward/train/decode: a preset or config JSON (random weights) or a "
                                        "checkpoint file")
      ->type_name("NAME|FILE");
  app.add_option("--set", sets, "Override a model config field: KEY=VALUE (see lm-inspect-config)")
      ->type_name("KEY=VALUE")->allow_extra_args(false);
  app.add_option("--batch", batch, "Forward and train benchmark batch size B")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--seq", seq, "Forward and train benchmark sequence length T (<= max_seq_len)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--checkpointing", checkpointing, "Train benchmark: gradient checkpointing (recompute each layer in "
                                                 "the backward pass)");
  app.add_option("--decode-tokens", decode_tokens, "Decode benchmark: tokens per timed run, from an empty cache")
      ->check(CLI::PositiveNumber);
  app.add_option("--sizes", sizes, "Square sgemm sizes N (N x N x N)")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--bandwidth-mib", bandwidth_mib, "Buffer size for the bandwidth test in MiB")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--warmup", warmup, "Untimed runs before measuring")->check(CLI::NonNegativeNumber);
  app.add_option("--repeats", repeats, "Timed runs; the median is reported")->check(CLI::PositiveNumber);
  app.add_flag("--json", json_out, "Print one JSON object instead of a table");
  tool.add_threads_option();

  return tool.run(argc, argv, [&] {
    const lm::CpuInfo cpu = lm::cpu_info();
    nlohmann::json report{{"version", lm::kVersion}, {"threads", lm::thread_count()},
                          {"cpu", {{"model", cpu.model}, {"cores", cpu.cores}, {"simd", cpu.simd}}},
                          {"blas", lm::blas_config()}};
    auto wants = [&](const char* w) { return std::find(what.begin(), what.end(), w) != what.end(); };
    if ((wants("forward") || wants("train")) && !wants("sgemm")) what.push_back("sgemm");
    if (wants("decode") && !wants("bandwidth")) what.push_back("bandwidth");
    double peak = 0;
    std::unique_ptr<lm::Transformer> model;  // loaded first: a bad --model fails before any timing
    const bool model_wanted = wants("forward") || wants("train") || wants("decode");
    if (model_wanted) model = std::make_unique<lm::Transformer>(bench_weights(model_name, sets));
    if (model) lm::require_supported(model->config(), lm::program_capabilities(), "lm-bench");
    if (!json_out)
      std::printf("lm-bench (lmkit %s): %s, %d threads\nBLAS: %s\n", lm::kVersion, cpu.model.c_str(),
                  lm::thread_count(), lm::blas_config());
    if (wants("sgemm")) {
      std::vector<lm::SgemmBench> runs;
      for (int64_t n : sizes) {
        runs.push_back(lm::bench_sgemm(n, n, n, false, warmup, repeats));
        peak = std::max(peak, runs.back().gflops);
      }
      if (!json_out) std::printf("\n%-22s %10s %10s %10s %8s\n", "sgemm M x N x K", "GFLOP/s", "min ms", "max ms", "of peak");
      for (const auto& r : runs) {
        report["sgemm"].push_back({{"m", r.m}, {"n", r.n}, {"k", r.k}, {"gflops", r.gflops},
                                   {"fraction_of_peak", r.gflops / peak}, {"time", timing_json(r.time)}});
        if (!json_out)
          std::printf("%-22s %10.1f %10.3f %10.3f %7.0f%%\n", lm::cat(r.m, " x ", r.n, " x ", r.k).c_str(), r.gflops,
                      r.time.min * 1e3, r.time.max * 1e3, 100 * r.gflops / peak);
      }
      report["sgemm_peak_gflops"] = peak;
      if (!json_out) std::printf("sgemm peak (best of the sizes above): %.1f GFLOP/s\n", peak);
    }
    if (wants("bandwidth")) {
      const auto r = lm::bench_read_bandwidth(static_cast<size_t>(bandwidth_mib) << 20, warmup, repeats);
      report["bandwidth"] = {{"bytes", r.bytes}, {"gbytes_per_s", r.gbytes_per_s}, {"time", timing_json(r.time)}};
      if (!json_out)
        std::printf("\nmemory read bandwidth (%lld MiB buffer): %.1f GB/s (min %.2f ms, max %.2f ms)\n",
                    static_cast<long long>(bandwidth_mib), r.gbytes_per_s, r.time.min * 1e3, r.time.max * 1e3);
    }
    if (model_wanted) {
      const lm::ModelConfig& cfg = model->config();
      report["model"] = {{"name", model_name}, {"overrides", sets}, {"params", lm::count_params(cfg).total}};
      if (!json_out) std::printf("\nmodel %s (%lld parameters)\n", model_name.c_str(), (long long)lm::count_params(cfg).total);
      if (wants("forward")) {
        const auto r = lm::bench_forward(*model, batch, seq, warmup, repeats);
        report["forward"] = {{"batch", r.batch}, {"seq", r.seq}, {"tokens_per_s", r.tokens_per_s},
                             {"flops", r.flops}, {"gflops", r.gflops}, {"fraction_of_sgemm_peak", r.gflops / peak},
                             {"time", timing_json(r.time)}};
        if (!json_out)
          std::printf("forward %lld x %lld: %.0f tokens/s, %.1f GFLOP/s = %.0f%% of sgemm peak (min %.1f ms, max %.1f ms)\n",
                      (long long)batch, (long long)seq, r.tokens_per_s, r.gflops, 100 * r.gflops / peak,
                      r.time.min * 1e3, r.time.max * 1e3);
      }
      if (wants("train")) {
        const auto r = lm::bench_train(*model, batch, seq, checkpointing, warmup, repeats);
        report["train"] = {{"batch", r.batch},
                           {"seq", r.seq},
                           {"checkpointing", r.checkpointing},
                           {"tokens_per_s", r.tokens_per_s},
                           {"flops", r.flops},
                           {"gflops", r.gflops},
                           {"mfu", r.gflops / peak},
                           {"activation_bytes", r.activation_bytes},
                           {"loss", r.loss},
                           {"time", timing_json(r.time)}};
        if (!json_out)
          std::printf("train %lld x %lld%s: %.0f tokens/s, %.1f GFLOP/s = %.0f%% MFU of sgemm peak "
                      "(min %.1f ms, max %.1f ms per step; activations %s)\n",
                      (long long)batch, (long long)seq, checkpointing ? " (checkpointing)" : "", r.tokens_per_s,
                      r.gflops, 100 * r.gflops / peak, r.time.min * 1e3, r.time.max * 1e3,
                      lm::human_bytes(static_cast<double>(r.activation_bytes)).c_str());
      }
      if (wants("decode")) {
        const lm::BandwidthProbe probe(static_cast<size_t>(bandwidth_mib) << 20);
        const auto r = lm::bench_decode(*model, std::min(decode_tokens, cfg.max_seq_len), probe, warmup, repeats);
        const double bound = r.bandwidth_gbytes_per_s * 1e9 / r.bytes_per_token;
        nlohmann::json rounds = nlohmann::json::array();
        for (const auto& round : r.rounds)
          rounds.push_back({{"bandwidth_gbytes_per_s", round.bandwidth_gbytes_per_s},
                            {"gbytes_per_s", round.gbytes_per_s},
                            {"fraction", round.fraction}});
        report["decode"] = {{"batch", 1},
                            {"tokens", r.tokens},
                            {"tokens_per_s", r.tokens_per_s},
                            {"bytes_per_token", r.bytes_per_token},
                            {"gbytes_per_s", r.gbytes_per_s},
                            {"bandwidth_gbytes_per_s", r.bandwidth_gbytes_per_s},
                            {"bandwidth_bound_tokens_per_s", bound},
                            {"fraction_of_bound", r.fraction_of_bound},
                            {"rounds", rounds},
                            {"time", timing_json(r.time)}};
        if (!json_out)
          std::printf("decode (batch 1, %lld tokens): %.1f tokens/s, %.1f GB/s = %.0f%% of the bandwidth bound "
                      "(%.1f tokens/s at %.1f MB per token and %.1f GB/s; median of %d runs, each against the "
                      "bandwidth measurement just before it)\n",
                      (long long)r.tokens, r.tokens_per_s, r.gbytes_per_s, 100 * r.fraction_of_bound, bound,
                      r.bytes_per_token * 1e-6, r.bandwidth_gbytes_per_s, repeats);
      }
    }
    if (json_out) std::cout << report.dump(2) << '\n';
    return 0;
  });
}
