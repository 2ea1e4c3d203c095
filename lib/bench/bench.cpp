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

TimingStats measure(const std::function<void()>& fn, int warmup, int repeats) {
  if (repeats < 1) fail_usage(cat("repeats must be at least 1, got ", repeats));
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t(static_cast<size_t>(repeats));
  for (auto& s : t) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  TimingStats st;
  st.repeats = repeats;
  std::vector<double> sorted = t;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  st.median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  st.min = sorted.front();
  st.max = sorted.back();
  for (double s : t) st.mean += s / n;
  for (double s : t) st.stddev += (s - st.mean) * (s - st.mean) / n;
  st.stddev = std::sqrt(st.stddev);
  return st;
}

namespace {
void fill_random(Tensor& t, uint64_t seed) {
  Rng rng(seed);
  float* p = t.data_mut<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform() - 0.5f;
}
}  // namespace

SgemmBench bench_sgemm(int64_t m, int64_t n, int64_t k, bool trans_b, int warmup, int repeats) {
  if (m <= 0 || n <= 0 || k <= 0) fail_usage(cat("sgemm sizes must be positive, got ", m, "x", n, "x", k));
  Tensor a = Tensor::zeros(DType::F32, {m, k});
  Tensor b = trans_b ? Tensor::zeros(DType::F32, {n, k}) : Tensor::zeros(DType::F32, {k, n});
  Tensor c = Tensor::zeros(DType::F32, {m, n});
  fill_random(a, 1);
  fill_random(b, 2);
  SgemmBench r{m, n, k, trans_b, {}, 0};
  float* cp = c.data_mut<float>();
  r.time = measure([&] { sgemm(false, trans_b, m, n, k, 1.0f, a.data<float>(), b.data<float>(), 0.0f, cp); }, warmup,
                   repeats);
  r.gflops = 2.0 * m * n * k / r.time.median * 1e-9;
  return r;
}

BandwidthBench bench_read_bandwidth(size_t bytes, int warmup, int repeats) {
  const int64_t n = static_cast<int64_t>(bytes / sizeof(float));
  if (n < 1024) fail_usage("bandwidth buffer too small");
  Tensor buf = Tensor::zeros(DType::F32, {n});
  float* p = buf.data_mut<float>();
#pragma omp parallel for schedule(static)  // first touch by the threads that read it
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(i & 1023);
  volatile float sink = 0;
  BandwidthBench r;
  r.bytes = static_cast<size_t>(n) * sizeof(float);
  r.time = measure(
      [&] {
        float total = 0;
#pragma omp parallel reduction(+ : total)
        {
          // 64 independent partial sums per thread: the loop vectorises into several
          // registers, so it is bound by memory, not by the latency of one add chain.
          float acc[64] = {};
          const int64_t blocks = n / 64;
#pragma omp for schedule(static)
          for (int64_t b = 0; b < blocks; ++b)
            for (int j = 0; j < 64; ++j) acc[j] += p[b * 64 + j];
          for (float a : acc) total += a;
        }
        sink = sink + total;
      },
      warmup, repeats);
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
