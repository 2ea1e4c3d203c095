// Weight panels: the f32 or bf16 rows of a matrix regrouped 16 at a time and stored feature
// by feature, so that one 64-byte line holds one feature (f32) or one pair of features (bf16)
// of 16 rows. The panel kernels compute each output element as one chain over the features
// in order, in one lane of a vector: per feature a fused multiply-add (f32), per pair of
// features vdpbf16ps's step (bf16: the odd feature's product added, then the even one's, each
// sum rounded once, denormal inputs and sums as zeros). An element's chain does not depend on
// which rows or how many input rows share the pass, so a batch of sequences gets every
// sequence's one-row numbers bit for bit, and a line once loaded serves all of them:
//   1-4 input rows: the line times each row's broadcast feature, 4-8 panels' chains in flight;
//   2-16 input rows: the line's four groups of four rows (each broadcast to the vector's four
//     128-bit lanes) times the inputs' values in four groups of four (one permute each from
//     the inputs' feature line): 16 products of 16 lanes from 5 loads and 4 permutes, where the
//     row-dot's register tiles need 8 loads; the weights stream as one sequence per panel.
// (bench/rows_bench.cpp: "panels" against "blocked"; README, "Batched generation".)
#pragma once

#include <cstdint>
#include <memory>

#include "core/rows.h"
#include "core/tensor.h"

namespace lm {

inline constexpr int64_t kPanelRows = 16;  // rows a panel; also the inputs a pass takes

struct WeightPanels {
  WeightType type = WeightType::F32;  // F32 or BF16
  int64_t rows = 0, cols = 0;         // OC, IC of the matrix
  // F32: [P, IC, 16] floats; BF16: [P, ceil(IC / 2), 16, 2] bf16 (a feature pair a 32-bit
  // word, the even feature in the low half); P = ceil(OC / 16); rows and features past the
  // matrix's are zeros.
  Tensor data;
  int64_t steps() const { return type == WeightType::BF16 ? (cols + 1) / 2 : cols; }  // lines a panel
};

// Whether this build has the panel kernels for `type`: f32 with AVX-512, bf16 with
// AVX512_BF16 (elsewhere their plain loops would run: make no panels).
bool has_panel_kernels(WeightType type);
// The panels of f32 or bf16 rows (other types: Unsupported).
std::shared_ptr<const WeightPanels> make_panels(const WeightView& w);

// Inputs as the panel kernels read them (RowsInput::panel_x, made for a view with panels):
// f32 features or bf16 feature pairs (round_input_bf16), for N <= 4 as rows ([N, steps]),
// otherwise in tiles of 16 rows feature by feature ([ceil(N / 16), steps, 16], rows past N
// zeros).
void panel_input(const float* inp, int64_t N, int64_t IC, WeightType type, std::vector<uint32_t>& out);

// out [N, OC] at [n, o], rows o in [first, first + count) (+ bias[o] after the chain); other
// outputs left as they are. `x` is panel_input's for N rows.
void matmul_panels(float* out, const uint32_t* x, int64_t N, const WeightPanels& p, const float* bias, int64_t first,
                   int64_t count);
// Its plain twin: the same chains, one scalar std::fma (two and the flushes per bf16 pair)
// at a time, from the rows themselves (w: F32 or BF16 rows, inp: N rows of IC floats).
void matmul_panels_ref(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N, int64_t first,
                       int64_t count);

}  // namespace lm
