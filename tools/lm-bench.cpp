// lm-bench: the machine's limits (sgemm GFLOP/s, memory read bandwidth), measured as
// the median of repeated runs after a warm-up, with the spread, as text or JSON.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "cli.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"
#include "version.h"

namespace {

nlohmann::json timing_json(const lm::TimingStats& t) {
  return {{"repeats", t.repeats}, {"median_s", t.median}, {"min_s", t.min},
          {"max_s", t.max},       {"mean_s", t.mean},     {"stddev_s", t.stddev}};
}

}  // namespace

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-bench", "Measure the machine's limits for lmkit: sgemm throughput and memory bandwidth");
  auto& app = tool.app();
  std::vector<std::string> what{"sgemm", "bandwidth"};
  std::vector<int64_t> sizes{256, 512, 1024, 2048};
  int64_t bandwidth_mib = 1024;
  int warmup = 1, repeats = 5;
  bool json_out = false;
  app.add_option("benchmarks", what, "What to measure: sgemm, bandwidth (default: both)")
      ->check(CLI::IsMember({"sgemm", "bandwidth"}));
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
    if (!json_out)
      std::printf("lm-bench (lmkit %s): %s, %d threads\nBLAS: %s\n", lm::kVersion, cpu.model.c_str(),
                  lm::thread_count(), lm::blas_config());
    if (wants("sgemm")) {
      double peak = 0;
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
    if (json_out) std::cout << report.dump(2) << '\n';
    return 0;
  });
}
