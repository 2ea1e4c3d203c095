#include "core/fma_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace lm {

namespace {

constexpr int kChainsAvx2 = 12;    // of 16 ymm registers: 12 chains, 2 operands, 2 spare
constexpr int kChainsAvx512 = 16;  // of 32 zmm registers

// x * a + b keeps each chain's value bounded (a just below 1, b small), so no chain reaches
// infinity or a denormal, which some cores run slowly.
[[gnu::target("avx2,fma")]] float chains_avx2(int64_t iterations) {
  __m256 acc[kChainsAvx2];
  for (int i = 0; i < kChainsAvx2; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChainsAvx2; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < kChainsAvx2; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  return lanes[0];
}

[[gnu::target("avx512f")]] float chains_avx512(int64_t iterations) {
  __m512 acc[kChainsAvx512];
  for (int i = 0; i < kChainsAvx512; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChainsAvx512; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kChainsAvx512; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  return lanes[0];
}

}  // namespace

int fma_chains(Isa isa) { return isa == Isa::avx512 ? kChainsAvx512 : kChainsAvx2; }

FmaRun fma_run(Isa isa, int threads, int64_t iterations) {
  if (!cpu_has(isa))
    fail(ErrorKind::Unsupported, cat("cannot measure the ", isa_name(isa), " FMA peak: this CPU lacks ", isa_name(isa)));
  if (threads < 1) fail_usage(cat("FMA peak threads must be at least 1, got ", threads));
  if (iterations < 1) fail_usage(cat("FMA peak iterations must be at least 1, got ", iterations));
  if (omp_in_parallel()) fail(ErrorKind::Runtime, "cannot measure the FMA peak inside a parallel region");
  int team = 0;
  float sink = 0;
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
#pragma omp master
    team = omp_get_num_threads();
    sink += isa == Isa::avx512 ? chains_avx512(iterations) : chains_avx2(iterations);
  }
  const auto stop = std::chrono::steady_clock::now();
  volatile float keep = sink;  // the chains' results are used, so no compiler drops them
  (void)keep;
  FmaRun run;
  run.threads = team;
  run.flops = static_cast<double>(team) * static_cast<double>(iterations) * fma_chains(isa) * isa_floats(isa) * 2.0;
  run.seconds = std::chrono::duration<double>(stop - start).count();
  return run;
}

double fma_peak_gflops(Isa isa, int threads) {
  // A first short round sizes the rest to about 20 ms each (a 1 GHz core still finishes fast).
  const int64_t probe = 1 << 16;
  const FmaRun first = fma_run(isa, threads, probe);
  const double rate = first.seconds > 0 ? probe / first.seconds : 1e9;
  const int64_t iterations = std::clamp<int64_t>(static_cast<int64_t>(rate * 0.02), probe, int64_t{1} << 32);
  double best = 0;
  for (int round = 0; round < 5; ++round) best = std::max(best, fma_run(isa, threads, iterations).gflops());
  return best;
}

}  // namespace lm
