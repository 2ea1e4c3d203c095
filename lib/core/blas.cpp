#include "core/blas.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <omp.h>

#include <algorithm>
#include <string>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/threads.h"

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
