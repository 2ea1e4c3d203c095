// The BLAS entry points lmkit uses, row-major, so callers never see CBLAS enums.
//
// lm::sgemm runs oneDNN's sgemm when the CPU has AVX2 + FMA or AVX-512 (read from cpuid at
// run time; oneDNN then picks its own AVX-512 or AVX2 JIT kernels from cpuid too), else
// OpenBLAS. So the GEMM reaches the AVX-512 FMA peak whatever OPENBLAS_CORETYPE says (that
// variable pins OpenBLAS's kernels; lmkit never changes it). Both libraries use the one OpenMP
// runtime lmkit's own loops use: a call splits its work over omp_get_max_threads() threads
// (what lm::set_threads established) and runs on the calling thread alone when made inside a
// parallel region. See the README's Performance section for the measurements behind this.
#pragma once

#include <cstdint>

namespace lm {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major.
// op(A) is [M,K]: A is stored [M,K] (lda >= K) or, with trans_a, [K,M] (lda >= M).
// op(B) is [K,N]: B is stored [K,N] (ldb >= N) or, with trans_b, [N,K] (ldb >= K).
// beta == 0 writes C without reading it (NaN in C does not propagate), as BLAS does; so does
// alpha == 0 or K == 0 (C = beta * C, A and B unread).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Convenience for contiguous operands.
inline void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  const float* B, float beta, float* C) {
  sgemm(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

// The GEMM implementations lm::sgemm chooses between.
enum class GemmBackend { onednn, openblas };
GemmBackend gemm_backend();  // the one lm::sgemm runs on this CPU
const char* gemm_backend_name(GemmBackend backend);  // "onednn", "openblas"

// lm::sgemm on a named backend, for the tests and benchmarks that hold them to each other.
void sgemm_on(GemmBackend backend, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The plain reference twin: a triple loop summed in double, serial, the same contract
// (beta == 0 does not read C). What the tests hold both backends to.
void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---- bfloat16 operands, f32 accumulation (bf16 compute: Transformer::set_compute_dtype) ----

// out[i] = in[i] rounded to bfloat16, to nearest even (NaN stays NaN): lm::f32_to_bf16 over n
// floats, across the threads when n is large (and the caller is not in a parallel region).
void round_to_bf16(uint16_t* out, const float* in, int64_t n);

// C[M,N] = alpha * op(A) @ op(B) + beta * C as sgemm (same layout, leading dimensions and
// beta/alpha/K == 0 contract), with A and B in bfloat16 (bit patterns) and C in float32. The
// product of two bf16 numbers is exact in f32; the sums are f32 (oneDNN's bf16 kernels add the
// pairs of a dot product in f32 too). Fails like sgemm on bad sizes.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

// How gemm_bf16 runs. onednn_bf16: oneDNN's bf16 GEMM on the CPU's AVX512_BF16 dot products
// (about twice sgemm's rate). widen_sgemm: both operands widened to f32 (exactly) and lm::sgemm,
// where oneDNN cannot use AVX512_BF16 (an older CPU, or ONEDNN_MAX_CPU_ISA below it): oneDNN's
// own bf16 path there emulates the dot products at about a third of sgemm's rate on AVX-512
// and has none on AVX2. The same numbers up to the order of the f32 sums.
enum class Bf16GemmPath { onednn_bf16, widen_sgemm };
Bf16GemmPath gemm_bf16_path();                       // the one gemm_bf16 takes on this machine
const char* gemm_bf16_path_name(Bf16GemmPath path);  // "onednn_bf16", "widen_sgemm"
// gemm_bf16 on a named path, for the tests and benchmarks that hold them to each other.
void gemm_bf16_on(Bf16GemmPath path, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The plain reference twin: each operand widened to float, the triple loop summed in double.
void gemm_bf16_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                   int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

void blas_set_threads(int n);
const char* blas_config();  // OpenBLAS build string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell MAX_THREADS=64"
// What lm::sgemm runs, e.g. "oneDNN 2.6.3 avx512_core_bf16" or "OpenBLAS 0.3.21 ... Haswell ...".
const char* gemm_config();

}  // namespace lm
