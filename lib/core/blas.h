// The BLAS entry points lmkit uses, row-major, so callers never see CBLAS enums.
#pragma once

#include <cstdint>

namespace lm {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major.
// op(A) is [M,K]: A is stored [M,K] (lda >= K) or, with trans_a, [K,M] (lda >= M).
// op(B) is [K,N]: B is stored [K,N] (ldb >= N) or, with trans_b, [N,K] (ldb >= K).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Convenience for contiguous operands.
inline void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  const float* B, float beta, float* C) {
  sgemm(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

void blas_set_threads(int n);
const char* blas_config();  // OpenBLAS build string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell MAX_THREADS=64"

}  // namespace lm
