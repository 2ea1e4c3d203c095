#include "model/matmul.h"

#include <algorithm>
#include <cstring>

#include "core/blas.h"
#include "core/threads.h"

namespace lm {

namespace {
typedef float Floats16 __attribute__((vector_size(64)));  // GCC lowers it to the machine's vectors
typedef float Floats4 __attribute__((vector_size(16)));
Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}
}  // namespace

// 64 floats per iteration into one vector accumulator: decode is bound by how many loads of a
// weight row a core keeps in flight, and the fewer instructions per byte, the further ahead
// the out-of-order window reaches (a plain `omp simd` loop streamed a few percent slower).
// Kept out of line so that every caller gets this code: inlined into the callers' loops, GCC
// once took a scalar path for whole rows.
[[gnu::noinline]] float dot_f32(const float* w, const float* x, int64_t n) {
  Floats16 acc{};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int64_t k = 0; k < 64; k += 16) acc += load16(w + i + k) * load16(x + i + k);
  for (; i + 16 <= n; i += 16) acc += load16(w + i) * load16(x + i);
  const Floats4 quarter = __builtin_shufflevector(acc, acc, 0, 1, 2, 3) + __builtin_shufflevector(acc, acc, 4, 5, 6, 7) +
                          __builtin_shufflevector(acc, acc, 8, 9, 10, 11) +
                          __builtin_shufflevector(acc, acc, 12, 13, 14, 15);
  float sum = (quarter[0] + quarter[1]) + (quarter[2] + quarter[3]);
  for (; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

int64_t few_rows_chunk(int64_t IC) { return std::max<int64_t>(1, (int64_t{32} << 10) / std::max<int64_t>(IC, 1)); }

namespace {

// out[n, o] for weight row o: the few-rows kernel's inner product, shared by both entry points.
inline void few_rows_dot(float* out, const float* inp, const float* w, const float* bias, int64_t N, int64_t IC,
                         int64_t OC, int64_t o) {
  for (int64_t n = 0; n < N; ++n) {
    const float acc = dot_f32(w, inp + n * IC, IC);
    out[n * OC + o] = bias ? acc + bias[o] : acc;
  }
}

// Few rows (decode): one pass over the weights, rows of W shared out by parallel_chunks.
// OpenBLAS's sgemm does not turn M = 1 into a gemv and runs about 3x below the memory bound here.
void matmul_forward_few_rows(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                             int64_t IC, int64_t OC) {
  parallel_chunks(OC, few_rows_chunk(IC), [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o) few_rows_dot(out, inp, weight + o * IC, bias, N, IC, OC, o);
  });
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
  const MatmulPart* first = parts.begin();
  const int64_t count = static_cast<int64_t>(parts.size());
  int64_t rows = 0;
  for (const MatmulPart& p : parts) rows += p.OC;
  parallel_chunks(rows, few_rows_chunk(IC), [&](int64_t lo, int64_t hi) {
    int64_t i = 0, o = lo;  // part i, its row o
    for (int64_t r = lo; r < hi; ++r, ++o) {
      while (i + 1 < count && o >= first[i].OC) o -= first[i++].OC;
      const MatmulPart& p = first[i];
      few_rows_dot(p.out, inp, p.weight + o * IC, p.bias, N, IC, p.OC, o);
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
