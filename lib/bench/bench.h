// Measurement for lm-bench: timing with warm-up and repeats, the machine's limits
// (sgemm throughput, memory read bandwidth), and CPU facts for reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lm {

struct TimingStats {
  int repeats = 0;
  double median = 0, min = 0, max = 0, mean = 0, stddev = 0;  // seconds
};

// Runs fn `warmup` times untimed, then `repeats` times timed (monotonic clock).
TimingStats measure(const std::function<void()>& fn, int warmup, int repeats);
// Median, min, max, mean and standard deviation of timed runs (seconds; at least one).
TimingStats timing_stats(const std::vector<double>& seconds);
// Seconds fn takes, once.
double time_once(const std::function<void()>& fn);
// The median of values (at least one).
double median(std::vector<double> values);

struct SgemmBench {
  int64_t m = 0, n = 0, k = 0;
  bool trans_b = false;
  TimingStats time;   // per call (each timed batch's seconds / its calls)
  double gflops = 0;  // at the median time
  int64_t calls = 1;  // the fewest sgemm calls in a timed batch
  double min_batch_seconds = 0;  // the shortest timed batch
};
// C[m,n] = A[m,k] @ op(B): op(B) = B^T with trans_b (the weight orientation of a linear layer).
// Each of the `repeats` timed runs is a batch of back-to-back calls that goes on until at
// least `min_batch_seconds` have passed, so a small size is not timed by a clock read around a
// few microseconds of work; `warmup` untimed calls come first.
SgemmBench bench_sgemm(int64_t m, int64_t n, int64_t k, bool trans_b, int warmup, int repeats,
                       double min_batch_seconds = 0.05);

struct BandwidthBench {
  size_t bytes = 0;
  TimingStats time;
  double gbytes_per_s = 0;  // at the median time
};
// Parallel read of a buffer of `bytes` (use several times the last-level cache).
BandwidthBench bench_read_bandwidth(size_t bytes, int warmup, int repeats);

// The buffer bench_read_bandwidth reads, for benchmarks that measure the bandwidth in step
// with their own runs (decode: the bound a run is held to is read right before it).
class BandwidthProbe {
 public:
  explicit BandwidthProbe(size_t bytes);
  size_t bytes() const { return static_cast<size_t>(n_) * sizeof(float); }
  void read() const;  // one pass over the whole buffer
 private:
  Tensor buf_;
  int64_t n_ = 0;
};

struct CpuInfo {
  std::string model;
  int cores = 0;          // available to this process
  std::vector<std::string> simd;  // avx2, avx512f, fma, ...
};
CpuInfo cpu_info();

}  // namespace lm
