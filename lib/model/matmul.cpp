#include "model/matmul.h"

#include <algorithm>
#include <cstring>

#include "core/blas.h"
#include "core/rows.h"
#include "core/threads.h"

namespace lm {

int64_t few_rows_chunk(int64_t IC) { return std::max<int64_t>(1, (int64_t{32} << 10) / std::max<int64_t>(IC, 1)); }

namespace {

// Few rows (decode): one pass over the weights, rows of W shared out by parallel_chunks.
// OpenBLAS's sgemm does not turn M = 1 into a gemv and runs about 3x below the memory bound here.
void matmul_forward_few_rows(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                             int64_t IC, int64_t OC) {
  const WeightView w = f32_weights(weight, OC, IC);
  parallel_chunks(OC, few_rows_chunk(IC),
                  [&](int64_t lo, int64_t hi) { matmul_rows(out, inp, w, bias, N, lo, hi - lo); });
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

void matmul_forward_parts(std::initializer_list<MatmulPart> parts, const float* inp, int64_t N, int64_t IC) {
  if (N > kMatmulFewRows) {
    for (const MatmulPart& p : parts) matmul_forward(p.out, inp, p.weight, p.bias, N, IC, p.OC);
    return;
  }
  int64_t rows = 0;
  for (const MatmulPart& p : parts) rows += p.OC;
  // The parts' rows stacked, shared out as one range: each part's rows in [lo, hi) are one
  // matmul_rows call.
  parallel_chunks(rows, few_rows_chunk(IC), [&](int64_t lo, int64_t hi) {
    int64_t start = 0;  // the part's first row in the stack
    for (const MatmulPart& p : parts) {
      const int64_t a = std::max(lo, start), b = std::min(hi, start + p.OC);
      if (a < b) matmul_rows(p.out, inp, f32_weights(p.weight, p.OC, IC), p.bias, N, a - start, b - a);
      start += p.OC;
    }
  });
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

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC) {
  if (dinp) sgemm(false, false, N, IC, OC, 1.0f, dout, weight, 1.0f, dinp);
  sgemm(true, false, OC, IC, N, 1.0f, dout, inp, 1.0f, dweight);
  if (dbias) {
    constexpr int64_t kBlock = 64;  // columns per task; rows summed in order (deterministic)
#pragma omp parallel for schedule(static)
    for (int64_t o0 = 0; o0 < OC; o0 += kBlock) {
      const int64_t o1 = std::min(OC, o0 + kBlock);
      float acc[kBlock] = {};
      for (int64_t n = 0; n < N; ++n) {
        const float* d = dout + n * OC;
        for (int64_t o = o0; o < o1; ++o) acc[o - o0] += d[o];
      }
      for (int64_t o = o0; o < o1; ++o) dbias[o] += acc[o - o0];
    }
  }
}

void matmul_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                         const float* weight, int64_t N, int64_t IC, int64_t OC) {
  if (dinp) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < IC; ++i) {
        double acc = 0;
        for (int64_t o = 0; o < OC; ++o) acc += static_cast<double>(dout[n * OC + o]) * weight[o * IC + i];
        dinp[n * IC + i] += static_cast<float>(acc);
      }
  }
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < OC; ++o) {
    for (int64_t i = 0; i < IC; ++i) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += static_cast<double>(dout[n * OC + o]) * inp[n * IC + i];
      dweight[o * IC + i] += static_cast<float>(acc);
    }
    if (dbias) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += dout[n * OC + o];
      dbias[o] += static_cast<float>(acc);
    }
  }
}

}  // namespace lm
