#include "bench/bench.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/blas.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"

namespace lm {

double time_once(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> values) {
  if (values.empty()) fail(ErrorKind::Runtime, "internal: median of no values");
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

TimingStats timing_stats(const std::vector<double>& t) {
  TimingStats st;
  st.repeats = static_cast<int>(t.size());
  st.median = median(t);
  st.min = *std::min_element(t.begin(), t.end());
  st.max = *std::max_element(t.begin(), t.end());
  const double n = static_cast<double>(t.size());
  for (double s : t) st.mean += s / n;
  for (double s : t) st.stddev += (s - st.mean) * (s - st.mean) / n;
  st.stddev = std::sqrt(st.stddev);
  return st;
}

TimingStats measure(const std::function<void()>& fn, int warmup, int repeats) {
  if (repeats < 1) fail_usage(cat("repeats must be at least 1, got ", repeats));
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t(static_cast<size_t>(repeats));
  for (auto& s : t) s = time_once(fn);
  return timing_stats(t);
}

namespace {
void fill_random(Tensor& t, uint64_t seed) {
  Rng rng(seed);
  float* p = t.data_mut<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform() - 0.5f;
}
}  // namespace

SgemmBench bench_sgemm(int64_t m, int64_t n, int64_t k, bool trans_b, int warmup, int repeats,
                       double min_batch_seconds) {
  if (m <= 0 || n <= 0 || k <= 0) fail_usage(cat("sgemm sizes must be positive, got ", m, "x", n, "x", k));
  if (repeats < 1) fail_usage(cat("repeats must be at least 1, got ", repeats));
  Tensor a = Tensor::zeros(DType::F32, {m, k});
  Tensor b = trans_b ? Tensor::zeros(DType::F32, {n, k}) : Tensor::zeros(DType::F32, {k, n});
  Tensor c = Tensor::zeros(DType::F32, {m, n});
  fill_random(a, 1);
  fill_random(b, 2);
  SgemmBench r;
  r.m = m;
  r.n = n;
  r.k = k;
  r.trans_b = trans_b;
  float* cp = c.data_mut<float>();
  auto call = [&] { sgemm(false, trans_b, m, n, k, 1.0f, a.data<float>(), b.data<float>(), 0.0f, cp); };
  using clock = std::chrono::steady_clock;
  // One batch: calls until min_batch_seconds have passed (at least one); seconds per call.
  auto batch = [&] {
    const auto t0 = clock::now();
    int64_t calls = 0;
    double seconds = 0;
    do {
      call();
      ++calls;
      seconds = std::chrono::duration<double>(clock::now() - t0).count();
    } while (seconds < min_batch_seconds);
    r.calls = r.calls == 0 ? calls : std::min(r.calls, calls);
    r.min_batch_seconds = r.min_batch_seconds == 0 ? seconds : std::min(r.min_batch_seconds, seconds);
    return seconds / static_cast<double>(calls);
  };
  for (int i = 0; i < warmup; ++i) call();
  r.calls = 0;
  std::vector<double> per_call(static_cast<size_t>(repeats));
  for (double& s : per_call) s = batch();
  r.time = timing_stats(per_call);
  r.gflops = 2.0 * m * n * k / r.time.median * 1e-9;
  return r;
}

BandwidthProbe::BandwidthProbe(size_t bytes) : n_(static_cast<int64_t>(bytes / sizeof(float)) / 64 * 64) {
  if (n_ < 1024) fail_usage("bandwidth buffer too small");
  buf_ = Tensor::zeros(DType::F32, {n_});
  float* p = buf_.data_mut<float>();
#pragma omp parallel for schedule(static)  // first touch by the threads that read it
  for (int64_t i = 0; i < n_; ++i) p[i] = static_cast<float>(i & 1023);
}

void BandwidthProbe::read() const {
  const float* p = buf_.data<float>();
  const int64_t blocks = n_ / 64;
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    // 64 independent partial sums per thread: the loop vectorises into several
    // registers, so it is bound by memory, not by the latency of one add chain.
    float acc[64] = {};
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b)
      for (int j = 0; j < 64; ++j) acc[j] += p[b * 64 + j];
    for (float a : acc) total += a;
  }
  volatile float sink = total;  // keeps the reads
  (void)sink;
}

BandwidthBench bench_read_bandwidth(size_t bytes, int warmup, int repeats) {
  const BandwidthProbe probe(bytes);
  BandwidthBench r;
  r.bytes = probe.bytes();
  r.time = measure([&] { probe.read(); }, warmup, repeats);
  r.gbytes_per_s = static_cast<double>(r.bytes) / r.time.median * 1e-9;
  return r;
}

CpuInfo cpu_info() {
  CpuInfo info;
  info.cores = available_cores();
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (info.model.empty() && line.rfind("model name", 0) == 0) {
      info.model = line.substr(line.find(':') + 2);
    } else if (info.simd.empty() && line.rfind("flags", 0) == 0) {
      std::istringstream flags(line.substr(line.find(':') + 1));
      std::string f;
      while (flags >> f)
        if (f == "avx2" || f == "fma" || f == "avx512f" || f == "avx512bw" || f == "avx512_bf16" || f == "avx512_vnni")
          info.simd.push_back(f);
    }
  }
  return info;
}

}  // namespace lm
