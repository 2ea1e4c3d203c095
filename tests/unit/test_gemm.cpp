// lm::sgemm on every backend against the plain reference twin (sgemm_ref): odd shapes (not
// multiples of any kernel's tile, 1), leading dimensions past the width, every transpose,
// alpha and beta; BLAS's beta == 0 and alpha == 0 contracts; calls from inside a parallel
// region. The same for lm::gemm_bf16 (bf16 operands, f32 accumulation) on both of its paths
// against gemm_bf16_ref, and the bulk rounding to bf16. Also the CPU-feature reading and the
// FMA-peak probe's plumbing.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/blas.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/fma_peak.h"
#include "core/rng.h"

namespace lm {
namespace {

std::vector<GemmBackend> backends() {
  std::vector<GemmBackend> out{GemmBackend::openblas};
  if (cpu_has(Isa::avx2) || cpu_has(Isa::avx512)) out.push_back(GemmBackend::onednn);
  return out;
}

struct Shape {
  int64_t M, N, K;
};

// One product: operands stored with a padded leading dimension (pad floats past each row),
// C's padding filled with a sentinel that must survive.
struct Case {
  bool ta, tb;
  int64_t M, N, K, pad;
  float alpha, beta;
  int64_t lda() const { return (ta ? M : K) + pad; }
  int64_t ldb() const { return (tb ? K : N) + pad; }
  int64_t ldc() const { return N + pad; }
};

constexpr float kSentinel = -12345.0f;

std::vector<float> random_floats(size_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(n);
  for (float& x : v) x = r.uniform() * 2.0f - 1.0f;
  return v;
}

// C's starting values, with a sentinel in each row's padding (which no GEMM may write).
std::vector<float> c_with_sentinels(const Case& c, uint64_t seed) {
  std::vector<float> C0 = random_floats(static_cast<size_t>(c.M * c.ldc()), seed);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < c.ldc(); ++j) C0[static_cast<size_t>(i * c.ldc() + j)] = kSentinel;
  return C0;
}

// `got` against the reference's `want`: operands in [-1, 1), so a sum of K products is off by
// at most about K * eps in float; the padding untouched. At most five failures reported.
void expect_close_to_ref(const char* who, const Case& c, const std::vector<float>& got, const std::vector<float>& want) {
  const float tol = 1e-6f * static_cast<float>(c.K + 8) * std::max(1.0f, std::fabs(c.alpha));
  int bad = 0;
  for (int64_t i = 0; i < c.M && bad < 5; ++i) {
    for (int64_t j = 0; j < c.ldc() && bad < 5; ++j) {
      const size_t at = static_cast<size_t>(i * c.ldc() + j);
      if (j >= c.N) {
        if (got[at] != kSentinel) ++bad, ADD_FAILURE() << "padding of C written at (" << i << ", " << j << ")";
      } else if (!(std::fabs(got[at] - want[at]) <= tol)) {
        ++bad;
        ADD_FAILURE() << who << " ta " << c.ta << " tb " << c.tb << " " << c.M << "x" << c.N << "x" << c.K << " pad "
                      << c.pad << " alpha " << c.alpha << " beta " << c.beta << ": C(" << i << ", " << j
                      << ") = " << got[at] << ", reference " << want[at];
      }
    }
  }
}

void expect_matches_ref(GemmBackend backend, const Case& c, uint64_t seed) {
  const int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
  const std::vector<float> A = random_floats(static_cast<size_t>(a_rows * c.lda()), seed);
  const std::vector<float> B = random_floats(static_cast<size_t>(b_rows * c.ldb()), seed + 1);
  std::vector<float> got = c_with_sentinels(c, seed + 2), want = got;
  sgemm_on(backend, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda(), B.data(), c.ldb(), c.beta, got.data(),
           c.ldc());
  sgemm_ref(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda(), B.data(), c.ldb(), c.beta, want.data(), c.ldc());
  expect_close_to_ref(gemm_backend_name(backend), c, got, want);
}

TEST(Gemm, RefIsTheDefinition) {
  // [2,3] @ [3,2] by hand, then alpha = 2, beta = -1 against C = 1.
  const float A[] = {1, 2, 3, 4, 5, 6}, B[] = {7, 8, 9, 10, 11, 12};
  float C[] = {1, 1, 1, 1};
  sgemm_ref(false, false, 2, 2, 3, 2.0f, A, 3, B, 2, -1.0f, C, 2);
  EXPECT_EQ(C[0], 2 * 58.0f - 1);
  EXPECT_EQ(C[1], 2 * 64.0f - 1);
  EXPECT_EQ(C[2], 2 * 139.0f - 1);
  EXPECT_EQ(C[3], 2 * 154.0f - 1);
  // The same product with both operands stored transposed.
  const float At[] = {1, 4, 2, 5, 3, 6}, Bt[] = {7, 9, 11, 8, 10, 12};
  float Ct[4];
  sgemm_ref(true, true, 2, 2, 3, 1.0f, At, 2, Bt, 3, 0.0f, Ct, 2);
  EXPECT_EQ(Ct[0], 58.0f);
  EXPECT_EQ(Ct[3], 154.0f);
}

TEST(Gemm, OddShapesEveryTransposeAlphaBeta) {
  const Shape shapes[] = {{1, 1, 1},    {1, 37, 5},    {37, 1, 5},    {5, 7, 1},     {17, 33, 65},
                          {65, 17, 33}, {47, 49, 31},  {13, 130, 97}, {97, 129, 257}, {130, 47, 300},
                          {1, 300, 200}, {200, 3, 129}};
  uint64_t seed = 1;
  for (GemmBackend backend : backends())
    for (const Shape& s : shapes)
      for (int t = 0; t < 4; ++t)
        for (float beta : {0.0f, 1.0f, -0.75f})
          for (float alpha : {1.0f, -1.5f}) {
            const int64_t pad = (seed % 3 == 0) ? 0 : static_cast<int64_t>(seed % 5);
            expect_matches_ref(backend, {t & 1 ? true : false, t & 2 ? true : false, s.M, s.N, s.K, pad, alpha, beta},
                               seed++);
          }
}

// Shapes past every cache block of the kernels (the K, M and N blocking, the thread split),
// the three transposes the model calls, against the reference.
TEST(Gemm, LargeShapesAcrossBlocksAndThreads) {
  uint64_t seed = 100;
  for (GemmBackend backend : backends()) {
    expect_matches_ref(backend, {false, true, 301, 517, 700, 0, 1.0f, 0.0f}, seed++);   // forward: x W^T
    expect_matches_ref(backend, {false, false, 301, 700, 517, 3, 1.0f, 1.0f}, seed++);  // dinp += dout W
    expect_matches_ref(backend, {true, false, 517, 700, 301, 1, 1.0f, 1.0f}, seed++);   // dW += dout^T x
    // K >= N: lmkit splits the larger of M and N over its threads (lib/core/blas.cpp)
    expect_matches_ref(backend, {true, false, 700, 301, 517, 2, -0.5f, 0.25f}, seed++);  // by rows
    expect_matches_ref(backend, {false, true, 131, 517, 700, 5, 1.0f, 0.0f}, seed++);   // by columns
    expect_matches_ref(backend, {true, true, 257, 250, 700, 0, 2.0f, 1.0f}, seed++);    // by rows, both transposed
  }
}

TEST(Gemm, BetaZeroDoesNotReadC) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (GemmBackend backend : backends()) {
    for (int64_t K : {0, 1, 40}) {  // K = 0 takes the C = beta * C path
      const int64_t M = 9, N = 35;
      const std::vector<float> A = random_floats(static_cast<size_t>(M * std::max<int64_t>(K, 1)), 7);
      const std::vector<float> B = random_floats(static_cast<size_t>(N * std::max<int64_t>(K, 1)), 8);
      std::vector<float> C(static_cast<size_t>(M * N), nan);
      sgemm_on(backend, false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
      for (float x : C) ASSERT_FALSE(std::isnan(x)) << gemm_backend_name(backend) << " K " << K;
      if (K == 0) {
        for (float x : C) EXPECT_EQ(x, 0.0f);
      }
    }
  }
}

TEST(Gemm, AlphaZeroOrKZeroScalesC) {
  for (GemmBackend backend : backends()) {
    std::vector<float> C = {1, 2, 3, 4, 5, 6};
    // A and B are never read: null is fine.
    sgemm_on(backend, false, false, 2, 3, 4, 0.0f, nullptr, 4, nullptr, 3, 0.5f, C.data(), 3);
    EXPECT_EQ(C, (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
    sgemm_on(backend, true, false, 2, 3, 0, 1.0f, nullptr, 2, nullptr, 3, 2.0f, C.data(), 3);
    EXPECT_EQ(C, (std::vector<float>{1, 2, 3, 4, 5, 6}));
    sgemm_on(backend, false, false, 0, 3, 4, 1.0f, nullptr, 4, nullptr, 3, 2.0f, nullptr, 3);  // M = 0: nothing
  }
}

TEST(Gemm, RejectsLeadingDimensionsBelowTheWidth) {
  float buf[64] = {};
  EXPECT_THROW(sgemm(false, false, 2, 3, 4, 1.0f, buf, 3, buf, 3, 0.0f, buf, 3), Error);  // lda 3 < K 4
  EXPECT_THROW(sgemm(false, true, 2, 3, 4, 1.0f, buf, 4, buf, 3, 0.0f, buf, 3), Error);   // ldb 3 < K 4
  EXPECT_THROW(sgemm(true, false, 2, 3, 4, 1.0f, buf, 2, buf, 3, 0.0f, buf, 2), Error);   // ldc 2 < N 3
  EXPECT_THROW(sgemm(true, false, 5, 3, 4, 1.0f, buf, 4, buf, 3, 0.0f, buf, 3), Error);   // lda 4 < M 5
}

// Attention calls sgemm per head from inside its own parallel region: each call must run
// whole on its thread and give the reference's numbers.
TEST(Gemm, InsideAParallelRegion) {
  for (GemmBackend backend : backends()) {
    const int64_t M = 70, N = 48, K = 130;
    const std::vector<float> A = random_floats(static_cast<size_t>(4 * M * K), 11);
    const std::vector<float> B = random_floats(static_cast<size_t>(K * N), 12);
    std::vector<float> got(static_cast<size_t>(4 * M * N), 0.0f), want(got.size(), 0.0f);
    for (int part = 0; part < 4; ++part)
      sgemm_ref(false, false, M, N, K, 1.0f, A.data() + part * M * K, K, B.data(), N, 0.0f, want.data() + part * M * N, N);
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int part = 0; part < 4; ++part)
      sgemm_on(backend, false, false, M, N, K, 1.0f, A.data() + part * M * K, K, B.data(), N, 0.0f,
               got.data() + part * M * N, N);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-4f) << gemm_backend_name(backend) << " " << i;
  }
}

TEST(Gemm, BackendFollowsTheCpu) {
  const bool vector_fma = cpu_has(Isa::avx2) || cpu_has(Isa::avx512);
  EXPECT_EQ(gemm_backend(), vector_fma ? GemmBackend::onednn : GemmBackend::openblas);
  const std::string config = gemm_config();
  EXPECT_EQ(config.rfind(vector_fma ? "oneDNN " : "OpenBLAS", 0), 0u) << config;
  // oneDNN runs the widest kernels the CPU has unless its user caps them (ONEDNN_MAX_CPU_ISA,
  // which the AVX2 run of these tests sets): the report names what it runs.
  if (vector_fma) {
    const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
    const bool capped_avx2 = cap && std::string(cap) == "AVX2";
    const bool avx512 = config.find("avx512") != std::string::npos;
    EXPECT_EQ(avx512, cpu_has(Isa::avx512) && !capped_avx2) << config;
  }
}

// ---- bf16 operands, f32 accumulation (lm::gemm_bf16) ----

std::vector<Bf16GemmPath> bf16_paths() {
  std::vector<Bf16GemmPath> out{Bf16GemmPath::widen_sgemm};
  if (gemm_bf16_path() == Bf16GemmPath::onednn_bf16) out.push_back(Bf16GemmPath::onednn_bf16);
  return out;
}

std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  const std::vector<float> f = random_floats(n, seed);
  std::vector<uint16_t> out(n);
  round_to_bf16(out.data(), f.data(), static_cast<int64_t>(n));
  return out;
}

void expect_bf16_matches_ref(Bf16GemmPath path, const Case& c, uint64_t seed) {
  const int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
  const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(a_rows * c.lda()), seed);
  const std::vector<uint16_t> B = random_bf16(static_cast<size_t>(b_rows * c.ldb()), seed + 1);
  std::vector<float> got = c_with_sentinels(c, seed + 2), want = got;
  gemm_bf16_on(path, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda(), B.data(), c.ldb(), c.beta, got.data(),
               c.ldc());
  gemm_bf16_ref(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda(), B.data(), c.ldb(), c.beta, want.data(), c.ldc());
  // The products are exact: only the f32 sums differ from the double reference, as in sgemm.
  expect_close_to_ref(gemm_bf16_path_name(path), c, got, want);
}

TEST(Gemm, Bf16RoundsToNearestEven) {
  const float values[] = {1.0f, -2.5f, 3.14159265f, 1e-30f, -7e30f, 0.0f, -0.0f, 65504.0f, 1.0e-40f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  std::vector<float> in;
  for (int rep = 0; rep < 3000; ++rep)  // past one conversion block, so the parallel pieces run too
    for (float v : values) in.push_back(v * (1.0f + static_cast<float>(rep) * 1e-4f));
  in.push_back(std::numeric_limits<float>::quiet_NaN());
  // Exact ties: 1 + 2^-8 sits halfway between 1 and 1 + 2^-7 (rounds down to even), 1 + 3 * 2^-8
  // between 1 + 2^-7 and 1 + 2^-6 (rounds up to even); 0x3f80ffff just below the first tie.
  in.push_back(1.0f + 0x1p-8f);
  in.push_back(1.0f + 3 * 0x1p-8f);
  uint32_t below = 0x3f807fffu;
  float below_tie;
  std::memcpy(&below_tie, &below, 4);
  in.push_back(below_tie);
  std::vector<uint16_t> got(in.size());
  round_to_bf16(got.data(), in.data(), static_cast<int64_t>(in.size()));
  for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(got[i], f32_to_bf16(in[i])) << i << " " << in[i];
  const size_t n = in.size();
  EXPECT_TRUE(std::isnan(bf16_to_f32(got[n - 4])));
  EXPECT_EQ(bf16_to_f32(got[n - 3]), 1.0f);
  EXPECT_EQ(bf16_to_f32(got[n - 2]), 1.0f + 0x1p-6f);
  EXPECT_EQ(bf16_to_f32(got[n - 1]), 1.0f);
}

TEST(Gemm, Bf16OddShapesEveryTransposeAlphaBeta) {
  const Shape shapes[] = {{1, 1, 1},    {1, 37, 5},   {37, 1, 5},    {5, 7, 1},      {17, 33, 65},
                          {65, 17, 33}, {47, 49, 31}, {13, 130, 97}, {97, 129, 257}, {1, 300, 200}};
  uint64_t seed = 1;
  for (Bf16GemmPath path : bf16_paths())
    for (const Shape& s : shapes)
      for (int t = 0; t < 4; ++t)
        for (float beta : {0.0f, 1.0f, -0.75f})
          for (float alpha : {1.0f, -1.5f}) {
            const int64_t pad = (seed % 3 == 0) ? 0 : static_cast<int64_t>(seed % 5);
            expect_bf16_matches_ref(path, {t & 1 ? true : false, t & 2 ? true : false, s.M, s.N, s.K, pad, alpha, beta},
                                    seed++);
          }
}

TEST(Gemm, Bf16LargeShapes) {
  uint64_t seed = 200;
  for (Bf16GemmPath path : bf16_paths()) {
    expect_bf16_matches_ref(path, {false, true, 301, 517, 700, 0, 1.0f, 0.0f}, seed++);   // forward: x W^T
    expect_bf16_matches_ref(path, {false, false, 301, 700, 517, 3, 1.0f, 1.0f}, seed++);  // dinp += dout W
    expect_bf16_matches_ref(path, {true, false, 517, 700, 301, 1, 1.0f, 1.0f}, seed++);   // dW += dout^T x
  }
}

TEST(Gemm, Bf16BetaZeroDoesNotReadCAndZeroSizes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Bf16GemmPath path : bf16_paths()) {
    const int64_t M = 9, N = 35, K = 40;
    const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(M * K), 7), B = random_bf16(static_cast<size_t>(N * K), 8);
    std::vector<float> C(static_cast<size_t>(M * N), nan);
    gemm_bf16_on(path, false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
    for (float x : C) ASSERT_FALSE(std::isnan(x)) << gemm_bf16_path_name(path);
    std::vector<float> D = {1, 2, 3, 4, 5, 6};
    gemm_bf16_on(path, false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 2.0f, D.data(), 3);  // K = 0: C = beta C
    EXPECT_EQ(D, (std::vector<float>{2, 4, 6, 8, 10, 12}));
    gemm_bf16_on(path, false, false, 2, 3, 4, 0.0f, nullptr, 4, nullptr, 3, 0.5f, D.data(), 3);  // alpha = 0
    EXPECT_EQ(D, (std::vector<float>{1, 2, 3, 4, 5, 6}));
    uint16_t buf[64] = {};
    EXPECT_THROW(gemm_bf16_on(path, false, false, 2, 3, 4, 1.0f, buf, 3, buf, 3, 0.0f, D.data(), 3), Error);
  }
}

// The AVX512_BF16 path exactly when oneDNN may use it: the CPU has it and ONEDNN_MAX_CPU_ISA
// (the AVX2 run of these tests caps it) does not take it away.
TEST(Gemm, Bf16PathFollowsTheCpu) {
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  const bool capped = cap && std::string(cap) == "AVX2";
  const bool native = cpu_features().avx512_bf16 && gemm_backend() == GemmBackend::onednn && !capped;
  EXPECT_EQ(gemm_bf16_path(), native ? Bf16GemmPath::onednn_bf16 : Bf16GemmPath::widen_sgemm);
  if (!native) {
    uint16_t one = f32_to_bf16(1.0f);
    float c = 0;
    EXPECT_THROW(gemm_bf16_on(Bf16GemmPath::onednn_bf16, false, false, 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1),
                 Error);
  }
}

TEST(CpuFeatures, NamesAgreeWithTheIsaChecks) {
  const CpuFeatures& f = cpu_features();
  const std::string names = " " + cpu_features_string() + " ";
  EXPECT_EQ(cpu_has(Isa::avx2), f.avx2 && f.fma);
  EXPECT_EQ(cpu_has(Isa::avx512), f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl);
  EXPECT_EQ(names.find(" avx2 ") != std::string::npos, f.avx2);
  EXPECT_EQ(names.find(" avx512f ") != std::string::npos, f.avx512f);
  EXPECT_EQ(names.find(" avx512_bf16 ") != std::string::npos, f.avx512_bf16);
  // The compiler's own reading of cpuid agrees (it too checks the OS saves the registers).
  EXPECT_EQ(f.avx2, static_cast<bool>(__builtin_cpu_supports("avx2")));
  EXPECT_EQ(f.avx512f, static_cast<bool>(__builtin_cpu_supports("avx512f")));
  EXPECT_EQ(f.avx512bw, static_cast<bool>(__builtin_cpu_supports("avx512bw")));
  EXPECT_EQ(f.avx512vl, static_cast<bool>(__builtin_cpu_supports("avx512vl")));
  EXPECT_STREQ(isa_name(Isa::avx512), "avx512");
  EXPECT_EQ(isa_floats(Isa::avx2), 8);
  EXPECT_EQ(isa_floats(Isa::avx512), 16);
}

TEST(FmaPeak, CountsTheFlopsItRuns) {
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (!cpu_has(isa)) {
      EXPECT_THROW(fma_run(isa, 1, 100), Error);
      EXPECT_THROW(fma_peak_gflops(isa, 1), Error);
      continue;
    }
    for (int threads : {1, 2}) {
      const FmaRun run = fma_run(isa, threads, 1000);
      EXPECT_EQ(run.threads, threads);
      EXPECT_EQ(run.flops, threads * 1000.0 * fma_chains(isa) * isa_floats(isa) * 2.0);
      EXPECT_GT(run.seconds, 0.0);
      EXPECT_GT(run.gflops(), 0.0);
    }
    EXPECT_GT(fma_peak_gflops(isa, 1), 0.0);
  }
}

TEST(FmaPeak, RejectsBadRequests) {
  const Isa isa = cpu_has(Isa::avx512) ? Isa::avx512 : Isa::avx2;
  if (!cpu_has(isa)) GTEST_SKIP() << "no AVX2 on this CPU";
  EXPECT_THROW(fma_run(isa, 0, 10), Error);
  EXPECT_THROW(fma_run(isa, 1, 0), Error);
  EXPECT_THROW(fma_peak_gflops(isa, -1), Error);
  int thrown = 0, team = 0;
#pragma omp parallel num_threads(2) reduction(+ : thrown, team)
  {
    ++team;
    try {
      fma_run(isa, 1, 10);
    } catch (const Error& e) {
      thrown += e.kind() == ErrorKind::Runtime;
    }
  }
  EXPECT_EQ(thrown, team);
}

}  // namespace
}  // namespace lm
