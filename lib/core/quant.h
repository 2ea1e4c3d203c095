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
//   q4_K  super-blocks of 256 (144 bytes): f16 d, f16 dmin, 12 bytes of eight 6-bit scales sc and
//         eight 6-bit mins m (one pair per 32 elements), 128 bytes of nibbles q;
//         weight = d * sc * q - dmin * m. Nibble bytes come in four runs of 32: run r holds
//         elements 64r + j in its low nibbles and 64r + 32 + j in its high ones.
//         Scale bytes: for j < 4, sc = b[j] & 63, m = b[j + 4] & 63; for j >= 4, the low four
//         bits in b[j + 4] (sc low, m high) and the top two in bits 6-7 of b[j - 4] (sc), b[j] (m).
//   q6_K  super-blocks of 256 (210 bytes): 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits),
//         16 x int8 scales (one per 16 elements), f16 d; weight = d * scale * (q - 32).
//         Per half of 128: element j (< 32) takes ql[j] low / qh[j] bits 0-1, j + 32 ql[j + 32]
//         low / qh bits 2-3, j + 64 ql[j] high / qh bits 4-5, j + 96 ql[j + 32] high / bits 6-7.
// The K quantizers are ggml's reference ones (quantize_row_q4_K_ref with make_qkx2_quants'
// search for scale and min, quantize_row_q6_K_ref with make_qx_quants), which llama-quantize
// runs without an importance matrix. llama.cpp compiles them (ggml-base) for generic x86-64,
// with no FMA, so every product is rounded on its own here too (quant.cpp is built with
// -ffp-contract=off: a fused search picks other scales in about 6% of q4_K and 1.5% of q6_K
// super-blocks). The bytes match llama-quantize's on every super-block of random
// stories110M-shaped weights (bench/kquant_compare.py) and on the fixture rows
// tests/unit/test_quant.cpp holds them to.
//
// The q8_0 and q4_0 row-dots run in integers against the input row quantized once per matmul
// to int8 blocks of 32 (Q8Input: d = max|x| / 127, q = x / d rounded to nearest even, d kept
// in f32), with AVX-512 VNNI (vpdpbusd) or AVX2 (vpmaddubsw) chosen at run time from cpuid.
// q4_K and q6_K dot against the same int8 blocks of 32 (finer activation scales than ggml's
// q8_K blocks of 256): each 32-element sub-block's integer dot times d * sc * d_x, q4_K's mins
// taken off with the input's s, q6_K's offset of 32 with sums of the input per 16 made in the kernel.
// q4_K unpacks its 6-bit scales and mins with two 64-bit masks and one vector shuffle per
// super-block (no per-sub-block scalar work) and masks its nibbles in place.
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
inline constexpr int64_t kSuperBlock = 256;  // elements per q4_K / q6_K super-block
inline constexpr int64_t kQ4_KBlockBytes = 144;
inline constexpr int64_t kQ6_KBlockBytes = 210;

// The type called `name` ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_K", "q6_K"), or none.
std::optional<WeightType> weight_type_from_name(std::string_view name);
// Elements per block: 1 for f32/f16/bf16, 32 for q8_0/q4_0, 256 for q4_K/q6_K.
int64_t weight_type_block(WeightType type);
// True for the block-quantized types (a row's length must be a multiple of the block).
bool weight_type_blocked(WeightType type);
// Bytes of a row of `cols` weights; a Data error (naming `what`) for a blocked type whose row
// length is not a multiple of its block.
int64_t weight_row_bytes(WeightType type, int64_t cols, std::string_view what = "a weight row");

// Encodes n floats into `type` (ggml's reference quantizers; f16/bf16 round to nearest even).
// n must be a multiple of the type's block (a Usage error otherwise).
void quantize_row(WeightType type, const float* x, int64_t n, void* out);
// Decodes n weights of `type` to floats (exact: every stored value is a float).
void dequantize_row(WeightType type, const void* in, int64_t n, float* out);

// Sub-block j (0..7) of a q4_K super-block: its 6-bit scale and min and its 32 nibbles (weight
// i = d * sc * levels[i] - dmin * m).
void q4_K_sub_block(const void* superblock, int j, int& sc, int& m, uint8_t levels[32]);

// Block j (0..7, 32 weights) of a q6_K super-block: the int8 scales of its two halves and its
// 32 levels 0..63 (weight i = d * scales[i / 16] * (levels[i] - 32)).
void q6_K_sub_block(const void* superblock, int j, int8_t scales[2], uint8_t levels[32]);

// One input row in int8 blocks: q [n], d [n / 32] (scale of each block), s [n / 32] = 8 * d * sum(q)
// of the block (what q4_0's offset of 8 costs). n % 32 == 0.
void quantize_input_q8(const float* x, int64_t n, int8_t* q, float* d, float* s);

// Row-dots: `row` is one weight row of n elements (n % 32 == 0 for the blocked types).
// (dot_f16 and dot_bf16 themselves are core/rows.h's, beside dot_f32, so that the blocked
// kernel can take their rows.) dot_f16_ref accumulates in double; dot_bf16_ref is dot_bf16's
// arithmetic written out lane by lane in scalar code (its fused multiply-adds, flushes and
// sums in its order: the same bits), x as round_input_bf16 makes it.
float dot_f16_ref(const void* row, const float* x, int64_t n);
float dot_bf16_ref(const void* row, const uint16_t* x, int64_t n);
float dot_q8_0(const void* row, const int8_t* q, const float* d, int64_t n);
float dot_q8_0_ref(const void* row, const int8_t* q, const float* d, int64_t n);
// An input row in int8 blocks made ready for dot_q8_0_tile, once per matmul: qu [n] = q + 128
// (unsigned bytes, vpdpbusd's unsigned side).
void offset_input_q8(const int8_t* q, int64_t n, uint8_t* qu);
// dot_q8_0 of R = 1 or 2 weight rows against four inputs (out[r * 4 + j] = dot_q8_0(rows[r],
// q[j], d[j], n) bit for bit), each weight and input pair loaded once for the tile: the batched
// row loop's q8_0 kernel. qu[j] is offset_input_q8's of q[j].
void dot_q8_0_tile(const void* const rows[], int R, const int8_t* const q[4], const float* const d[4],
                   const uint8_t* const qu[4], int64_t n, float out[]);
float dot_q4_0(const void* row, const int8_t* q, const float* d, const float* s, int64_t n);
float dot_q4_0_ref(const void* row, const int8_t* q, const float* d, const float* s, int64_t n);
// n % 256 == 0; q, d, s as quantize_input_q8 makes them.
float dot_q4_K(const void* row, const int8_t* q, const float* d, const float* s, int64_t n);
float dot_q4_K_ref(const void* row, const int8_t* q, const float* d, const float* s, int64_t n);
float dot_q6_K(const void* row, const int8_t* q, const float* d, int64_t n);
float dot_q6_K_ref(const void* row, const int8_t* q, const float* d, int64_t n);

// The instruction set the fast int8 dots run on: "avx512_vnni", "avx2" or "scalar".
const char* quant_dot_isa();
// For tests: run the dots (f16, bf16, q8_0, q4_0, q4_K, q6_K) on "avx512_vnni", "avx2", "scalar" (the
// references) or "best" (cpuid's choice, the default). False, and no change, when the CPU
// cannot run it or the name is unknown.
bool set_quant_dot_isa(std::string_view name);

}  // namespace lm
