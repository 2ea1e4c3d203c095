// Linear layers: out = inp @ weight^T + bias, weights in PyTorch orientation [out, in].
// Shape letters: N rows (B*T), IC input features, OC output features.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace lm {

struct WeightView;

// Up to this many rows, matmul_forward streams the weights once (decode: the row kernel
// matmul_rows of core/rows.h, rows shared out by parallel_chunks); above, it calls lm::sgemm.
inline constexpr int64_t kMatmulFewRows = 3;

// Weight rows per parallel_chunks chunk in the few-rows kernels: about 128 KiB of weights,
// long enough for the hardware prefetcher to stream, short enough to even out the threads'
// finishing times.
int64_t few_rows_chunk(int64_t IC);

// out [N, OC] = inp [N, IC] @ weight [OC, IC]^T + bias [OC] (bias may be null).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC);
// One input through several linears (q, k, v; w1, w3): out_i [N, OC_i] = inp @ weight_i^T + bias_i.
// With few rows (decode) all of them run in one parallel region, one barrier instead of one
// each: at batch 1 the barriers, not the arithmetic, are what keeps decode below the memory
// bound. Results are those of matmul_forward, bit for bit.
struct MatmulPart {
  float* out;
  const float* weight;
  const float* bias;
  int64_t OC;
};
void matmul_forward_parts(std::initializer_list<MatmulPart> parts, const float* inp, int64_t N, int64_t IC);
// The same over weights of any type (core/rows.h; OC = w.rows, IC = w.cols): few rows run the
// row kernel on them as stored; more rows decode f32 copies of the weights into a scratch
// buffer and call lm::sgemm (f32 views go to sgemm directly).
void matmul_forward(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N);
struct MatmulViewPart {
  float* out;
  const WeightView* weight;
  const float* bias;
};
void matmul_forward_parts(std::initializer_list<MatmulViewPart> parts, const float* inp, int64_t N);
// The same with plain loops (double accumulation): the reference the fast one is held to.
void matmul_forward_ref(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                        int64_t OC);

// Backward of matmul_forward, accumulating: dinp [N, IC] += dout [N, OC] @ weight [OC, IC],
// dweight [OC, IC] += dout^T @ inp [N, IC], dbias [OC] += column sums of dout. dinp and dbias
// may be null (skipped). Two lm::sgemm calls.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC);
// The same with plain loops (double accumulation).
void matmul_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                         const float* weight, int64_t N, int64_t IC, int64_t OC);

}  // namespace lm
