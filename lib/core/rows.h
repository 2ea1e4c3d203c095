// The row kernel: weight rows streamed once against a few input rows (batch-1 and few-row
// decode, where every weight is read once per token and the memory bus is the bound).
// Shape letters: N input rows, IC input features (a weight row's length), OC weight rows.
//
// How a storage type plugs in. A WeightView names its rows' type; matmul_rows switches on it
// once per call and runs its row loop with that type's row-dot function
// (float dot(const void* row, const float* x, int64_t IC)), so nothing per row depends on the
// type but the dot itself. A new type (f16, bf16, q8_0, q4_0, q4_K) adds:
//   - its row-dot in rows.cpp, beside dot_f32 (one per ISA where it pays, chosen at run time
//     from cpuid: AVX-512 VNNI, AVX2), and its case in matmul_rows's switch; a float type
//     (f16, bf16) instead gives rows.cpp a row reader (as F32Row: how a vector step loads and
//     multiplies), and its row-dot and the blocked kernel for many input rows are dot_f32's
//     loops with that reader;
//   - its element decoder in matmul_rows_ref's switch (the plain twin: decode each weight to
//     float, accumulate in double), and a case in tests/unit/test_rows.cpp.
// row_bytes carries block-quantized layouts (q8_0: IC / 32 blocks of 34 bytes) and padded rows.
// A type whose dot wants the input in another form (int8 blocks for VNNI, bf16 for the bf16
// dot) takes it prepared once per matmul, before the rows are shared out (RowsInput).
#pragma once

#include <cstdint>
#include <vector>

namespace lm {

// Storage type of a weight matrix's rows (core/quant.h has the layouts and the row-dots).
enum class WeightType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K };
const char* weight_type_name(WeightType type);  // "f32", "q8_0", ...

struct WeightPanels;  // core/panels.h

// OC rows of IC weights each, in PyTorch orientation [OC, IC]; row o starts at
// data + o * row_bytes. With panels (f32 and bf16 rows, core/panels.h: the same weights
// regrouped for the panel kernels) the row kernel computes from the panels, at every N.
struct WeightView {
  WeightType type;
  const void* data;
  int64_t rows;       // OC
  int64_t cols;       // IC
  int64_t row_bytes;  // distance between rows, >= the bytes of IC weights of this type
  const WeightPanels* panels = nullptr;
};
inline WeightView f32_weights(const float* w, int64_t OC, int64_t IC) {
  return {WeightType::F32, w, OC, IC, IC * static_cast<int64_t>(sizeof(float))};
}

// w . x over n floats, in float with vector accumulators: the f32 row-dot.
float dot_f32(const float* w, const float* x, int64_t n);
// The same with a double accumulator, rounded once: the reference dot_f32 is held to.
float dot_f32_ref(const float* w, const float* x, int64_t n);
// The f16 row-dot: `row` is n f16 weights, each widened to f32 (exactly) and the rest as
// dot_f32, so it equals dot_f32 of the widened row bit for bit (its reference: dot_f16_ref,
// core/quant.h).
float dot_f16(const void* row, const float* x, int64_t n);
// The bf16 row-dot: n bf16 weights against n bf16 inputs (round_input_bf16's), as AVX512_BF16's
// vdpbf16ps computes it (the machine's bf16 dot product, at twice an FMA's products an
// instruction): 16 lane accumulators, each taking a pair of features per 32, the odd one's
// product added first and then the even one's, each sum rounded once (a product of two bf16 is
// exact in f32), denormal inputs as zeros and denormal sums flushed to zero; the lanes summed
// as dot_f32's, then the features past the last 32 one fused multiply-add each. The same bits
// without the instruction. Its plain twin: dot_bf16_ref (core/quant.h).
float dot_bf16(const void* row, const uint16_t* x, int64_t n);
// n floats rounded to bf16 (f32_to_bf16: to nearest even, NaN kept), the bf16 dot's input.
void round_input_bf16(const float* x, int64_t n, uint16_t* out);
// n floats rounded to f16 (f32_to_f16: to nearest even, beyond 65504 an infinity; NaN kept a
// NaN): the F16C / AVX-512 conversion instruction where there is one.
void round_input_f16(const float* x, int64_t n, uint16_t* out);
struct RowsInput;
// matmul_rows for f32, bf16 or f16 weights (rows as in matmul_rows) blocked for many input
// rows: a chunk of the features of all N inputs kept in L1 while a block of weight rows
// streams past it in register tiles, each pair's 16-lane accumulator carried between chunks.
// Every output element is the row-dot (dot_f32, dot_bf16, dot_f16) of its weight row and input
// row (+ bias) bit for bit: matmul_rows runs it for kBlockedMinRows input rows or more; the
// tests reach it at every N. Other types: Unsupported. `in` is made for w.type.
void matmul_rows_blocked(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                         int64_t count);
// Its plain twin: each element one row-dot (+ bias) alone, one after another.
void matmul_rows_one_by_one(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                            int64_t count);
// The fewest input rows for which matmul_rows takes the blocked kernel.
constexpr int64_t kBlockedMinRows = 4;

// N input rows of IC floats, prepared once per matmul for the weights' type: for q8_0, q4_0,
// q4_K and q6_K the rows quantized to int8 blocks (core/quant.h, quantize_input_q8), for bf16
// rounded to bf16, which every weight row's dot then reads. Build it before the rows are
// shared out among threads.
struct RowsInput {
  RowsInput(const float* inp, int64_t N, int64_t IC, WeightType type);
  // For the view's kernel: its panels' input (panel_input) when it has panels, else as above.
  RowsInput(const float* inp, int64_t N, const WeightView& w);
  const float* f32;
  int64_t N, IC;
  std::vector<int8_t> q;  // [N, IC]      the int8 types only
  std::vector<float> d;   // [N, IC / 32] block scales
  std::vector<float> s;   // [N, IC / 32] 8 * d * sum(q) of each block
  std::vector<uint8_t> qu;  // [N, IC]      q8_0 with N >= 4 only: q + 128 (offset_input_q8)
  std::vector<uint16_t> bf;  // [N, IC]     bf16 only: the rows rounded to bf16 (round_input_bf16)
  std::vector<uint32_t> panel_x;  // a view with panels only (panel_input)
};
// Whether RowsInput(inp, N, a) serves b too (one type, both with panels or both without).
inline bool same_rows_input(const WeightView& a, const WeightView& b) {
  return a.type == b.type && !a.panels == !b.panels;
}

// For weight rows o in [first, first + count) and input rows n in [0, N):
//   out [N, OC] at [n, o] = inp [N, IC] row n . w row o (+ bias [OC] at o; bias may be null).
// Other outputs are left as they are, so threads sharing out the rows of one matmul write
// disjoint columns of one buffer. Runs on the calling thread. Throws Unsupported for a type
// without a row-dot; as no exception may leave an OpenMP region, a caller inside one builds
// views only of types checked beforehand (today every caller's weights are F32).
void matmul_rows(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N, int64_t first,
                 int64_t count);
// The same from a prepared input (in.N rows; in made for w.type).
void matmul_rows(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                 int64_t count);
// Throws the Unsupported error matmul_rows would throw for `type` (call it before a parallel region).
void require_row_kernel(WeightType type);
// The same with plain loops (each weight decoded to float, double accumulation): the
// reference matmul_rows is held to. For the int8 types the input is first quantized as the
// fast kernel's is (quantize_input_q8) and decoded back: the products are the same integers;
// for bf16 it is rounded to bf16 first.
void matmul_rows_ref(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N,
                     int64_t first, int64_t count);

}  // namespace lm
