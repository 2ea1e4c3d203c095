#include "model/matmul.h"

#include <cstring>

#include "core/blas.h"

namespace lm {

namespace {

// Few rows (decode): one pass over the weights, rows of W split across threads. OpenBLAS's
// sgemm does not turn M = 1 into a gemv and runs about 3x below the memory bound here.
void matmul_forward_few_rows(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                             int64_t IC, int64_t OC) {
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < OC; ++o) {
    const float* w = weight + o * IC;
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * IC;
      float acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < IC; ++i) acc += w[i] * x[i];
      out[n * OC + o] = bias ? acc + bias[o] : acc;
    }
  }
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC) {
  if (N <= kMatmulFewRows) {
    matmul_forward_few_rows(out, inp, weight, bias, N, IC, OC);
    return;
  }
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) std::memcpy(out + n * OC, bias, static_cast<size_t>(OC) * sizeof(float));
  }
  sgemm(false, true, N, OC, IC, 1.0f, inp, weight, bias ? 1.0f : 0.0f, out);
}

void matmul_forward_ref(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                        int64_t OC) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t o = 0; o < OC; ++o) {
      double acc = bias ? bias[o] : 0.0;
      const float* x = inp + n * IC;
      const float* w = weight + o * IC;
      for (int64_t i = 0; i < IC; ++i) acc += static_cast<double>(x[i]) * w[i];
      out[n * OC + o] = static_cast<float>(acc);
    }
  }
}

}  // namespace lm
