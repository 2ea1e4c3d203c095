// Weight panels: the f32, f16 or bf16 rows of a matrix regrouped 16 at a time and stored
// feature by feature, so that one 64-byte line holds one feature (f32), one pair of features
// (bf16) or half a line one feature (f16, widened exactly as loaded) of 16 rows. The panel kernels compute each output element as one chain over the features
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
// q8_0 panels hold each block of 32 features of 16 rows as eight lines of four features a row
// (the bytes offset to unsigned: w + 128) and the 16 rows' block scales beside them; an
// element's chain is per block one fused multiply-add of the block's exact integer dot product
// times (weight scale x input scale), the integers from vpdpbusd (AVX512_VNNI) against the
// input's int8 blocks (quantize_input_q8), the offset taken off with -128 x the input block's
// sum. A line serves every input of a pass (up to 8): 8 products of 64 from 9 loads. q4_0,
// q4_K and q6_K panels keep their levels' bits (nibbles two to a byte, q6_K's high 2 bits in
// lines of their own) and unpack each line once a pass; their chains follow their formats
// (q4_K's min a second fma, q6_K's two halves of a block each one); panels.cpp has the layouts.
// (bench/rows_bench.cpp: "panels" against "blocked"; README, "Batched generation".)
#pragma once

#include <cstdint>
#include <memory>

#include "core/rows.h"
#include "core/tensor.h"

namespace lm {

inline constexpr int64_t kPanelRows = 16;  // rows a panel; also the inputs a pass takes

struct WeightPanels {
  WeightType type = WeightType::F32;  // F32, BF16, Q8_0, Q4_0, Q4_K or Q6_K
  int64_t rows = 0, cols = 0;         // OC, IC of the matrix
  // F32: [P, IC, 16] floats; F16: [P, IC, 16] f16 (a step half a line); BF16: [P, ceil(IC / 2), 16, 2] bf16 (a feature pair a 32-bit
  // word, the even feature in the low half); Q8_0: [P, IC / 32, 8, 16, 4] bytes w + 128 (line
  // s of a block: features 4s..4s+3 of each row); Q4_0, Q4_K, Q6_K: see panels.cpp
  // (panel_words); P = ceil(OC / 16); rows and features past the matrix's are zeros.
  Tensor data;
  Tensor scales;  // Q8_0 and Q4_0 only: [P, IC / 32, 16] the rows' f16 block scales (rows past OC: 0)
  int64_t steps() const {  // lines a panel
    return type == WeightType::BF16 ? (cols + 1) / 2 : type == WeightType::Q8_0 ? cols / 4 : cols;
  }
};

// Whether this build has the panel kernels for `type`: f32 and f16 with AVX-512, bf16 with
// AVX512_BF16, q8_0, q4_0, q4_K and q6_K with AVX512_VNNI (elsewhere their plain loops would
// run: make no panels).
bool has_panel_kernels(WeightType type);
// The panels of a matrix's rows (every WeightType; a row length off the type's blocks: Data).
std::shared_ptr<const WeightPanels> make_panels(const WeightView& w);

// Inputs as the panel kernels read them (RowsInput::panel_x, made for a view with panels):
// f32 features (f32, f16) or bf16 feature pairs (round_input_bf16), for N <= 4 as rows ([N, steps]),
// otherwise in tiles of 16 rows feature by feature ([ceil(N / 16), steps, 16], rows past N
// zeros); the block types: rows of blocks, each 8 words of int8 features (quantize_input_q8),
// the block's scale (float bits) and the terms of the type's offset or min ([N, IC / 32, 12]:
// panels.cpp, kQ8Record).
void panel_input(const float* inp, int64_t N, int64_t IC, WeightType type, std::vector<uint32_t>& out);

// out [N, OC] at [n, o], rows o in [first, first + count) (+ bias[o] after the chain); other
// outputs left as they are. `x` is panel_input's for N rows.
void matmul_panels(float* out, const uint32_t* x, int64_t N, const WeightPanels& p, const float* bias, int64_t first,
                   int64_t count);
// Its plain twin: the same chains, one scalar std::fma (two and the flushes per bf16 pair; per
// q8_0 and q4_0 block one, of the integer dot; q4_K two, q6_K one a half block) at a time,
// from the rows themselves (w: rows of a type with panels, inp: N rows of IC floats).
void matmul_panels_ref(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N, int64_t first,
                       int64_t count);

}  // namespace lm
