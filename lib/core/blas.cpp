#include "core/blas.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"

// oneDNN's bf16 GEMM: exported by libdnnl (C linkage, row-major like dnnl_sgemm) but declared
// only in oneDNN's internal headers (its own tests, PyTorch and OpenVINO declare it this way).
// Its A and B are oneDNN's bfloat16_t, a struct holding the uint16_t bit pattern.
extern "C" dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K,
                                               float alpha, const uint16_t* A, dnnl_dim_t lda, const uint16_t* B,
                                               dnnl_dim_t ldb, float beta, float* C, dnnl_dim_t ldc);

namespace lm {

namespace {

void check_gemm_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                     int64_t ldc) {
  if (M < 0 || N < 0 || K < 0) fail(ErrorKind::Runtime, cat("sgemm: negative size ", M, "x", N, "x", K));
  const int64_t a_width = trans_a ? M : K, b_width = trans_b ? K : N;
  if (lda < a_width || ldb < b_width || ldc < N)
    fail(ErrorKind::Runtime, cat("sgemm: leading dimension below the row width (lda ", lda, " < ", a_width, ", ldb ",
                                 ldb, " < ", b_width, " or ldc ", ldc, " < ", N, ")"));
}

// C = beta * C over [M, N] without touching A or B (alpha == 0 or K == 0), 0 when beta == 0.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.0f)
      for (int64_t j = 0; j < N; ++j) row[j] = 0.0f;
    else if (beta != 1.0f)
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
  }
}

dnnl_status_t onednn_call(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  return dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Below this many multiply-adds oneDNN's own choice of threads (one, for the smallest) stands.
constexpr double kSplitMinMacs = double{1 << 24};

// oneDNN threads a call itself, but where K >= N it splits K across the threads for some
// shapes and sums the parts afterwards, which cost 10 to 25% at 1024^3 and at stories110m's
// [1024, 2048] x [2048, 768] on 2 threads (bench/gemm_bench.cpp and the README). There lmkit
// splits the larger of M and N over its own threads instead, each part one oneDNN call that
// runs on its thread alone; where K < N oneDNN's own split was as fast or faster.
void sgemm_onednn(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int threads = omp_in_parallel() ? 1 : thread_count();
  const bool split = threads > 1 && K >= N && static_cast<double>(M) * N * K >= kSplitMinMacs;
  dnnl_status_t status = dnnl_success;
  if (!split) {
    status = onednn_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    const bool by_rows = M >= N;
    const int64_t units = ((by_rows ? M : N) + 15) / 16;  // parts start on 16-float boundaries
    const int team = static_cast<int>(std::min<int64_t>(threads, units));
#pragma omp parallel num_threads(team)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t lo = std::min(units * t / n * 16, by_rows ? M : N);
      const int64_t hi = std::min(units * (t + 1) / n * 16, by_rows ? M : N);
      dnnl_status_t part = dnnl_success;
      if (hi > lo && by_rows)
        part = onednn_call(trans_a, trans_b, hi - lo, N, K, alpha, trans_a ? A + lo : A + lo * lda, lda, B, ldb, beta,
                           C + lo * ldc, ldc);
      else if (hi > lo)
        part = onednn_call(trans_a, trans_b, M, hi - lo, K, alpha, A, lda, trans_b ? B + lo * ldb : B + lo, ldb, beta,
                           C + lo, ldc);
      if (part != dnnl_success) {
#pragma omp critical(lm_sgemm_status)
        status = part;
      }
    }
  }
  if (status != dnnl_success)
    fail(ErrorKind::Runtime, cat("sgemm: oneDNN failed on ", M, "x", N, "x", K, ": ", dnnl_status2str(status)));
}

void sgemm_openblas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

GemmBackend choose_backend() {
  return cpu_has(Isa::avx512) || cpu_has(Isa::avx2) ? GemmBackend::onednn : GemmBackend::openblas;
}

}  // namespace

GemmBackend gemm_backend() {
  static const GemmBackend backend = choose_backend();
  return backend;
}

const char* gemm_backend_name(GemmBackend backend) { return backend == GemmBackend::onednn ? "onednn" : "openblas"; }

void sgemm_on(GemmBackend backend, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  // BLAS leaves these to the implementation's care; doing them here gives both backends one
  // contract (and spares a library call that would read nothing).
  if (K == 0 || alpha == 0.0f) return scale_c(M, N, beta, C, ldc);
  if (backend == GemmBackend::onednn)
    sgemm_onednn(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    sgemm_openblas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_on(gemm_backend(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[i * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

// ---- bf16 ----

namespace {

// Elements per parallel piece of the conversions: long enough to vectorise and stream.
constexpr int64_t kConvertBlock = 1 << 14;

// f32_to_bf16 without the branch, so that the loop vectorises.
void round_block(uint16_t* out, const float* in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, in + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (u >> 16) | 0x40u;
    out[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  }
}

// out [rows, cols] (packed) = in [rows, cols] with leading dimension ld, widened to f32.
void widen_rows(float* out, const uint16_t* in, int64_t rows, int64_t cols, int64_t ld) {
  parallel_for(rows, rows * cols, [&](int64_t r) {
    const uint16_t* src = in + r * ld;
    float* dst = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const uint32_t u = static_cast<uint32_t>(src[c]) << 16;
      std::memcpy(dst + c, &u, 4);
    }
  });
}

bool onednn_has_bf16() {
  if (gemm_backend() != GemmBackend::onednn) return false;
  // The ISA oneDNN will use: the CPU's, capped by ONEDNN_MAX_CPU_ISA. Each value is a set of bits.
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  return cpu_features().avx512_bf16 && (isa & bf16) == bf16;
}

void gemm_bf16_widened(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                       int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  thread_local std::vector<float> a, b;  // kept between calls: this path is for every matmul of a step
  a.resize(static_cast<size_t>(a_rows * a_cols));
  b.resize(static_cast<size_t>(b_rows * b_cols));
  widen_rows(a.data(), A, a_rows, a_cols, lda);
  widen_rows(b.data(), B, b_rows, b_cols, ldb);
  sgemm(trans_a, trans_b, M, N, K, alpha, a.data(), a_cols, b.data(), b_cols, beta, C, ldc);
}

}  // namespace

void round_to_bf16(uint16_t* out, const float* in, int64_t n) {
  const int64_t blocks = (n + kConvertBlock - 1) / kConvertBlock;
  parallel_for(blocks, n, [&](int64_t i) {
    const int64_t lo = i * kConvertBlock;
    round_block(out + lo, in + lo, std::min(kConvertBlock, n - lo));
  });
}

Bf16GemmPath gemm_bf16_path() {
  static const Bf16GemmPath path = onednn_has_bf16() ? Bf16GemmPath::onednn_bf16 : Bf16GemmPath::widen_sgemm;
  return path;
}

const char* gemm_bf16_path_name(Bf16GemmPath path) {
  return path == Bf16GemmPath::onednn_bf16 ? "onednn_bf16" : "widen_sgemm";
}

void gemm_bf16_on(Bf16GemmPath path, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return scale_c(M, N, beta, C, ldc);
  if (path == Bf16GemmPath::widen_sgemm)
    return gemm_bf16_widened(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (gemm_bf16_path() != Bf16GemmPath::onednn_bf16) fail(ErrorKind::Unsupported, "gemm_bf16: oneDNN cannot use AVX512_BF16 on this machine");
  const dnnl_status_t status = dnnl_gemm_bf16bf16f32(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda,
                                                     B, ldb, beta, C, ldc);
  if (status != dnnl_success)
    fail(ErrorKind::Runtime, cat("gemm_bf16: oneDNN failed on ", M, "x", N, "x", K, ": ", dnnl_status2str(status)));
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_bf16_on(gemm_bf16_path(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                   int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = bf16_to_f32(trans_a ? A[k * lda + i] : A[i * lda + k]);
        const float b = bf16_to_f32(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
        acc += static_cast<double>(a) * b;
      }
      float& c = C[i * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

void blas_set_threads(int n) { openblas_set_num_threads(n); }

const char* blas_config() { return openblas_get_config(); }

const char* gemm_config() {
  static const std::string config = [] {
    if (gemm_backend() == GemmBackend::openblas) return std::string(openblas_get_config());
    const dnnl_version_t* v = dnnl_version();
    return cat("oneDNN ", v->major, ".", v->minor, ".", v->patch, " ", dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
  }();
  return config.c_str();
}

}  // namespace lm
