// Weight storage types below f32, bit-exact with ggml's (GGUF) layouts, and their row-dots.
//
//   f16   IEEE half per weight (2 bytes);           bf16  the high half of an f32 (2 bytes)
//   q8_0  blocks of 32: f16 scale d, 32 x int8 q;   weight = d * q           (34 bytes / 32)
//   q4_0  blocks of 32: f16 scale d, 16 bytes;      weight = d * (nibble - 8) (18 bytes / 32)
//         byte j holds element j in its low nibble and element j + 16 in its high nibble.
// Quantizers are ggml's reference ones (quantize_row_q8_0_ref / quantize_row_q4_0_ref), what
// llama-quantize writes without an importance matrix: d = max|x| / 127, q = roundf(x / d) for
// q8_0; d = m / -8 with m the element of largest magnitude, q = min(15, (int8)(x / d + 8.5))
// for q4_0; the scale rounded to f16 (nearest even).
//
// The q8_0 and q4_0 row-dots run in integers against the input row quantized once per matmul
// to int8 blocks of 32 (Q8Input: d = max|x| / 127, q = x / d rounded to nearest even, d kept
// in f32), with AVX-512 VNNI (vpdpbusd) or AVX2 (vpmaddubsw) chosen at run time from cpuid.
// Each has a plain twin (double accumulation of the same integer products) the tests hold it to.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/rows.h"

namespace lm {

inline constexpr int64_t kQuantBlock = 32;  // elements per q8_0 / q4_0 block
inline constexpr int64_t kQ8_0BlockBytes = 34;
inline constexpr int64_t kQ4_0BlockBytes = 18;

// The type called `name` ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_K"), or none.
std::optional<WeightType> weight_type_from_name(std::string_view name);
// True for the types stored in blocks of kQuantBlock elements (a row's length must be a multiple).
bool weight_type_blocked(WeightType type);
// Bytes of a row of `cols` weights; an Unsupported error for Q4_K and a Data error (naming
// `what`) for a blocked type whose row length is not a multiple of 32.
int64_t weight_row_bytes(WeightType type, int64_t cols, std::string_view what = "a weight row");

// Encodes n floats into `type` (ggml's reference quantizers; f16/bf16 round to nearest even).
void quantize_row(WeightType type, const float* x, int64_t n, void* out);
// Decodes n weights of `type` to floats (exact: every stored value is a float).
void dequantize_row(WeightType type, const void* in, int64_t n, float* out);

// One input row in int8 blocks: q [n], d [n / 32] (scale of each block), s [n / 32] = 8 * d * sum(q)
// of the block (what q4_0's offset of 8 costs). n % 32 == 0.
void quantize_input_q8(const float* x, int64_t n, int8_t* q, float* d, float* s);

// Row-dots: `row` is one weight row of n elements (n % 32 == 0 for the blocked types).
float dot_f16(const void* row, const float* x, int64_t n);
float dot_f16_ref(const void* row, const float* x, int64_t n);
float dot_bf16(const void* row, const float* x, int64_t n);
float dot_bf16_ref(const void* row, const float* x, int64_t n);
float dot_q8_0(const void* row, const int8_t* q, const float* d, int64_t n);
float dot_q8_0_ref(const void* row, const int8_t* q, const float* d, int64_t n);
float dot_q4_0(const void* row, const int8_t* q, const float* d, const float* s, int64_t n);
float dot_q4_0_ref(const void* row, const int8_t* q, const float* d, const float* s, int64_t n);

// The instruction set the fast int8 dots run on: "avx512_vnni", "avx2" or "scalar".
const char* quant_dot_isa();
// For tests: run the dots (f16, bf16, q8_0, q4_0) on "avx512_vnni", "avx2", "scalar" (the
// references) or "best" (cpuid's choice, the default). False, and no change, when the CPU
// cannot run it or the name is unknown.
bool set_quant_dot_isa(std::string_view name);

}  // namespace lm
