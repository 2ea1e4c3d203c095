#include "core/panels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/threads.h"

namespace lm {

namespace {

// Up to this many input rows, panel_input keeps them as rows and each panel's line is
// multiplied by each row's broadcast feature (few); more go in tiles of 16 (tile).
constexpr int64_t kFewInputs = 4;

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
float flush(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }

// Words a panel's step takes: a line of 16 f32 values or bf16 pairs, half a line of f16 values.
template <WeightType T>
constexpr int64_t kStepWords = T == WeightType::F16 ? 8 : 16;

// Row r's word of step k of a panel: f32 bits (f16: its value widened, exactly), a bf16 pair.
template <WeightType T>
uint32_t weight_word(const uint32_t* panel, int64_t k, int r) {
  if constexpr (T == WeightType::F16) return float_bits(f16_to_f32(reinterpret_cast<const uint16_t*>(panel)[k * 16 + r]));
  return panel[k * 16 + r];
}

// One step of a chain: w and x are f32 bits, or bf16 pairs (even feature in the low half).
template <WeightType T>
float chain_step(float acc, uint32_t w, uint32_t x) {
  if constexpr (T == WeightType::F32 || T == WeightType::F16) {
    return std::fma(bits_float(w), bits_float(x), acc);
  } else {
    auto half = [](uint32_t pair, int odd) { return bf16_to_f32_daz(static_cast<uint16_t>(odd ? pair >> 16 : pair)); };
    acc = flush(std::fma(half(w, 1), half(x, 1), acc));
    return flush(std::fma(half(w, 0), half(x, 0), acc));
  }
}

// A panel's 16 rows against `inputs` (<= 16) inputs of a tile: input j's 16 results (+ bias,
// when given) at dst + j * stride.
template <WeightType T>
void tile_plain(float* dst, int64_t stride, const float* bias, const uint32_t* panel, const uint32_t* xt, int64_t S,
                int64_t inputs) {
  for (int64_t j = 0; j < inputs; ++j)
    for (int r = 0; r < 16; ++r) {
      float acc = 0.0f;
      for (int64_t k = 0; k < S; ++k) acc = chain_step<T>(acc, weight_word<T>(panel, k, r), xt[k * 16 + j]);
      dst[j * stride + r] = bias ? acc + bias[r] : acc;
    }
}

// np panels against J inputs (rows of S words), results [J][stride].
template <WeightType T>
void few_plain(float* res, int64_t stride, const uint32_t* panels, int64_t np, const uint32_t* x, int64_t S, int64_t J) {
  for (int64_t j = 0; j < J; ++j)
    for (int64_t p = 0; p < np; ++p)
      for (int r = 0; r < 16; ++r) {
        float acc = 0.0f;
        for (int64_t k = 0; k < S; ++k)
          acc = chain_step<T>(acc, weight_word<T>(panels + p * S * kStepWords<T>, k, r), x[j * S + k]);
        res[j * stride + p * 16 + r] = acc;
      }
}

// The int8-block types (q8_0, q4_0, q4_K, q6_K): an input block's record in panel_input's rows
// (8 words of 32 int8 features, the scale's bits, then for q8_0 -128 x the sum of the int8
// values, for q4_0 -8 x that sum, for q4_K the sum times the scale (float bits), for q6_K -32 x
// the sums of the first and of the second 16; a word of padding), and the most inputs a pass
// over a panel takes.
constexpr int64_t kQ8Record = 12;
constexpr int64_t kQ8Pass = 8;

// Words of a panel: q8_0 eight lines a block; q4_0 four (a byte holds features k and k + 16 of
// its line's four as nibbles); q4_K per super-block its 8 sub-blocks' four lines, then the 16
// rows' f16 d and dmin (16 words), their 6-bit scales and mins as bytes (8 x 16 each); q6_K
// per super-block its 8 blocks' four lines of the levels' low 4 bits and two of their high 2
// bits (high line h, byte 4r + b: the bits of line 2h's two features in bits 0-3, of line
// 2h + 1's in bits 4-7), then the 16 rows' int8 scales of the 16 halves (bytes [16][16]), their
// f16 d, and padding to a whole line.
constexpr int64_t kQ4KSuper = 8 * 64 + 16 + 32 + 32;
constexpr int64_t kQ6KSuper = 8 * 96 + 64 + 8 + 8;
template <WeightType T>
int64_t panel_words(int64_t B) {
  return T == WeightType::Q8_0   ? B * 128
         : T == WeightType::Q4_0 ? B * 64
         : T == WeightType::Q4_K ? B / 8 * kQ4KSuper
                                 : B / 8 * kQ6KSuper;
}

// One element's chain from a panel (row r of the panel at w, its q8_0/q4_0 scales at sc) and
// an input's records: per block the integer dot of the stored unsigned levels and the int8
// features plus the record's offset term (q4_K: none), then one fma with the scales' product
// (q4_K: d * sc and then the min, -(dmin * m) times the record's sum term).
template <WeightType T>
float int_chain(const uint32_t* w, const uint16_t* sc, int64_t B, int r, const uint32_t* x) {
  float acc = 0.0f;
  for (int64_t b = 0; b < B; ++b) {
    const uint32_t* rec = x + b * kQ8Record;
    // q6_K: the two halves' sums apart (each its own scale).
    int32_t isum = T == WeightType::Q4_K ? 0 : static_cast<int32_t>(rec[9]);
    int32_t isum2 = T == WeightType::Q6_K ? static_cast<int32_t>(rec[10]) : 0;
    for (int k = 0; k < kQuantBlock; ++k) {
      const int xk = static_cast<int8_t>((rec[k / 4] >> 8 * (k % 4)) & 0xFF);
      int level;
      if constexpr (T == WeightType::Q8_0) {
        level = static_cast<int>((w[(b * 8 + k / 4) * 16 + r] >> 8 * (k % 4)) & 0xFF);
      } else {
        const int line = (k % 16) / 4, byte = k % 4;
        const uint32_t* lines = T == WeightType::Q4_0   ? w + b * 64
                                : T == WeightType::Q4_K ? w + (b / 8) * kQ4KSuper + (b % 8) * 64
                                                        : w + (b / 8) * kQ6KSuper + (b % 8) * 96;
        level = static_cast<int>((lines[line * 16 + r] >> (8 * byte + (k < 16 ? 0 : 4))) & 0x0F);
        if constexpr (T == WeightType::Q6_K) {
          const uint32_t high = lines[64 + (line / 2) * 16 + r] >> (8 * byte + 4 * (line % 2) + (k < 16 ? 0 : 2));
          level |= static_cast<int>(high & 3) << 4;
        }
      }
      if (T == WeightType::Q6_K && k >= 16) isum2 += level * xk;
      else isum += level * xk;
    }
    const float dx = bits_float(rec[8]);
    if constexpr (T == WeightType::Q6_K) {
      const uint32_t* sb = w + (b / 8) * kQ6KSuper;
      const auto* scales = reinterpret_cast<const int8_t*>(sb + 768);
      const float d = f16_to_f32(reinterpret_cast<const uint16_t*>(sb + 832)[r]);
      const int g = static_cast<int>(b % 8) * 2;
      acc = std::fma(static_cast<float>(isum), d * static_cast<float>(scales[g * 16 + r]) * dx, acc);
      acc = std::fma(static_cast<float>(isum2), d * static_cast<float>(scales[(g + 1) * 16 + r]) * dx, acc);
    } else if constexpr (T == WeightType::Q4_K) {
      const uint32_t* sb = w + (b / 8) * kQ4KSuper;
      const auto* half = reinterpret_cast<const uint16_t*>(sb + 512);
      const auto* bytes = reinterpret_cast<const uint8_t*>(sb + 528);
      const float scale = f16_to_f32(half[r]) * static_cast<float>(bytes[(b % 8) * 16 + r]);
      const float min = f16_to_f32(half[16 + r]) * static_cast<float>(bytes[128 + (b % 8) * 16 + r]);
      acc = std::fma(static_cast<float>(isum), scale * dx, acc);
      acc = std::fma(-min, bits_float(rec[9]), acc);
    } else {
      acc = std::fma(static_cast<float>(isum), f16_to_f32(sc[b * 16 + r]) * dx, acc);
    }
  }
  return acc;
}

// np panels of type T (panel p at w + p * panel_words, its scales at sc + p * B * 16) against
// J inputs (records x + j * xstride + b * kQ8Record): input j's results (+ bias) at dst + j * stride.
template <WeightType T>
[[maybe_unused]] void int_plain(float* dst, int64_t stride, const float* bias, const uint32_t* w, const uint16_t* sc,
                                int64_t B, int64_t np, const uint32_t* x, int64_t xstride, int64_t J) {
  for (int64_t j = 0; j < J; ++j)
    for (int64_t p = 0; p < np; ++p)
      for (int r = 0; r < 16; ++r) {
        const float acc = int_chain<T>(w + p * panel_words<T>(B), sc ? sc + p * B * 16 : sc, B, r, x + j * xstride);
        dst[j * stride + p * 16 + r] = bias ? acc + bias[p * 16 + r] : acc;
      }
}

#if defined(__AVX512F__)
// GCC 12 warns of the unused pass-through operand inside the permute and broadcast intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// Lines ahead a tile prefetches (8 KB): without it the weights streamed at about 26 GB/s
// under the products, with it about 35 (stories110M's matrices, 16 inputs, 2 threads).
constexpr int64_t kPanelPrefetchLines = 128;
// Lines ahead each panel's stream prefetches with 2-4 inputs (2 KB): 8.2 against 9.7 ms a
// stories110M step at 4 inputs (f32), 5.1 against 5.8 (bf16); with one input it cost time.
constexpr int64_t kFewPrefetchLines = 32;

template <WeightType T>
[[gnu::always_inline]] inline __m512 step16(__m512 acc, __m512 w, __m512 x) {
  if constexpr (T == WeightType::F32 || T == WeightType::F16) {
    return _mm512_fmadd_ps(w, x, acc);
  } else {
#if defined(__AVX512BF16__)
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(w), reinterpret_cast<__m512bh>(x));
#else
    static_assert(T == WeightType::F32, "bf16 panels without AVX512_BF16 take the plain loops");
    return acc;
#endif
  }
}

// v's 128-bit lane g in all four (the shuffle's immediate spelled out: unoptimized builds do not
// unroll the callers' loops into constants).
[[gnu::always_inline]] inline __m512 lane_group(__m512 v, int g) {
  switch (g) {
    case 0: return _mm512_shuffle_f32x4(v, v, 0x00);
    case 1: return _mm512_shuffle_f32x4(v, v, 0x55);
    case 2: return _mm512_shuffle_f32x4(v, v, 0xAA);
    default: return _mm512_shuffle_f32x4(v, v, 0xFF);
  }
}

// Lanes (a, b), a = lane / 4, b = lane % 4, of accumulator [g][h]: row 4g + b, input 4h + a.
// W[g]: rows 4g..4g+3 of the line in every 128-bit lane; X[h]: input 4h + a's value in lane
// group a (one permute of the inputs' line).
template <WeightType T, int H>
[[gnu::noinline]] void tile_fast(float* dst, int64_t stride, const float* bias, const uint32_t* panel, const uint32_t* xt,
                                 int64_t S, int64_t inputs) {
  __m512 acc[4][H];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g)
#pragma GCC unroll 4
    for (int h = 0; h < H; ++h) acc[g][h] = _mm512_setzero_ps();
  __m512i idx[H];
#pragma GCC unroll 4
  for (int h = 0; h < H; ++h) {
    alignas(64) int32_t lanes[16];
    for (int l = 0; l < 16; ++l) lanes[l] = 4 * h + l / 4;
    idx[h] = _mm512_load_si512(lanes);
    asm("" : "+v"(idx[h]));  // kept in registers
  }
  for (int64_t k = 0; k < S; ++k) {
    const uint32_t* line = panel + k * kStepWords<T>;
    _mm_prefetch(reinterpret_cast<const char*>(line + kPanelPrefetchLines * 16), _MM_HINT_T0);
    const __m512 x = _mm512_loadu_ps(reinterpret_cast<const float*>(xt + k * 16));  // a std::vector: 16-byte aligned
    __m512 X[H];
#pragma GCC unroll 4
    for (int h = 0; h < H; ++h) X[h] = _mm512_permutexvar_ps(idx[h], x);
    __m512 widened;  // f16: the step's 16 rows, widened once
    if constexpr (T == WeightType::F16) widened = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(line)));
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      __m512 W;
      if constexpr (T == WeightType::F16) W = lane_group(widened, g);
      else W = _mm512_broadcast_f32x4(_mm_load_ps(reinterpret_cast<const float*>(line + 4 * g)));
#pragma GCC unroll 4
      for (int h = 0; h < H; ++h) acc[g][h] = step16<T>(acc[g][h], W, X[h]);
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g)
#pragma GCC unroll 4
    for (int h = 0; h < H; ++h) {
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, acc[g][h]);
      for (int a = 0; a < 4 && 4 * h + a < inputs; ++a) {
        float* out = dst + (4 * h + a) * stride + 4 * g;
        if (bias) {
          for (int b = 0; b < 4; ++b) out[b] = lanes[4 * a + b] + bias[4 * g + b];
        } else {
          std::memcpy(out, lanes + 4 * a, 4 * sizeof(float));
        }
      }
    }
}

// NP panels against J (<= 4) inputs (rows of S words: x + j * S; results at res + j * stride): each panel's
// line times each input's broadcast feature; NP x J chains in flight hide the step's latency,
// NP weight streams in flight.
template <WeightType T, int NP, int J>
[[gnu::noinline]] void few_fast(float* res, int64_t stride, const uint32_t* panels, const uint32_t* x, int64_t S) {
  __m512 acc[NP][J];
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) acc[p][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < S; ++k) {
    __m512 xb[J];
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) xb[j] = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(x[j * S + k])));
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      const uint32_t* line = panels + (p * S + k) * kStepWords<T>;
      if (J > 1) _mm_prefetch(reinterpret_cast<const char*>(line + kFewPrefetchLines * 16), _MM_HINT_T0);
      __m512 w;
      if constexpr (T == WeightType::F16) w = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(line)));
      else w = _mm512_load_ps(reinterpret_cast<const float*>(line));
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) acc[p][j] = step16<T>(acc[p][j], w, xb[j]);
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) _mm512_storeu_ps(res + j * stride + p * 16, acc[p][j]);
}

#if defined(__AVX512VNNI__)
// Bytes ahead each q8_0 panel's weights are prefetched (16 blocks; rows_bench, stories110M,
// 16 inputs: 4.6-5.2 ms a step against 5.4-5.9 with 2 KB; one input 2.6-2.9 against 2.8-3.2).
constexpr int64_t kQ8PrefetchBytes = 8192;

// The int kernels' float accumulators: zeroed, and stored (+ bias) at the end.
template <int NP, int J>
[[gnu::always_inline]] inline void zero_results(__m512 (&acc)[NP][J]) {
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) acc[p][j] = _mm512_setzero_ps();
}
template <int NP, int J>
[[gnu::always_inline]] inline void store_results(float* dst, int64_t stride, const float* bias,
                                                 const __m512 (&acc)[NP][J]) {
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p) {
    const __m512 bv = bias ? _mm512_loadu_ps(bias + p * 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j)
      _mm512_storeu_ps(dst + j * stride + p * 16, bias ? _mm512_add_ps(acc[p][j], bv) : acc[p][j]);
  }
}

// q8_plain's NP panels x J inputs with vpdpbusd: per block, each input's 16-lane integer
// accumulator starts at its -128 x sum and takes the 8 lines (the weights, unsigned) times
// the input's broadcast 4 bytes (signed); then one FMA per lane of its float and the
// scales' product (the 16 rows' f16 scales widened once per block and panel).
template <int NP, int J>
[[gnu::noinline]] void q8_fast(float* dst, int64_t stride, const float* bias, const uint32_t* w, const uint16_t* sc,
                               int64_t B, const uint32_t* x, int64_t xstride) {
  __m512 acc[NP][J];
  zero_results<NP, J>(acc);
  for (int64_t b = 0; b < B; ++b) {
    __m512i isum[NP][J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const __m512i offset = _mm512_set1_epi32(static_cast<int>(x[j * xstride + b * kQ8Record + 9]));
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) isum[p][j] = offset;
    }
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {
      __m512i xb[J];
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) xb[j] = _mm512_set1_epi32(static_cast<int>(x[j * xstride + b * kQ8Record + s]));
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        const uint32_t* line = w + ((p * B + b) * 8 + s) * 16;
        _mm_prefetch(reinterpret_cast<const char*>(line) + kQ8PrefetchBytes, _MM_HINT_T0);
        const __m512i wl = _mm512_load_si512(line);
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) isum[p][j] = _mm512_dpbusd_epi32(isum[p][j], wl, xb[j]);
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      const uint16_t* s16 = sc + (p * B + b) * 16;
      if ((b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(s16) + kQ8PrefetchBytes / 16, _MM_HINT_T0);
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s16)));
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) {
        const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(bits_float(x[j * xstride + b * kQ8Record + 8])));
        acc[p][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p][j]), scale, acc[p][j]);
      }
    }
  }
  store_results<NP, J>(dst, stride, bias, acc);
}


// q4_0 and q4_K panels as q8_fast: each line's nibbles unpacked once for the pass (low: the
// line's features of the block's first half, high: of its second), two vpdpbusd per line and
// input. q4_0 starts each integer sum at -8 x the input block's sum (the levels' offset) and
// scales by its f16 scales; q4_K's sums start at zero, its scales are d * sc (the 6-bit
// scales widened and multiplied by d once per sub-block and panel, exactly), and its mins
// follow in a second fma: -(dmin * m) times the input block's scaled sum.
template <WeightType T, int NP, int J>
[[gnu::noinline]] void q4_fast(float* dst, int64_t stride, const float* bias, const uint32_t* w, const uint16_t* sc,
                               int64_t B, const uint32_t* x, int64_t xstride) {
  constexpr bool K = T == WeightType::Q4_K;
  const int64_t words = panel_words<T>(B);
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512 acc[NP][J];
  zero_results<NP, J>(acc);
  for (int64_t b = 0; b < B; ++b) {
    __m512i isum[NP][J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const __m512i start =
          K ? _mm512_setzero_si512() : _mm512_set1_epi32(static_cast<int>(x[j * xstride + b * kQ8Record + 9]));
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) isum[p][j] = start;
    }
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        const uint32_t* line = w + p * words + (K ? (b / 8) * kQ4KSuper + (b % 8) * 64 : b * 64) + l * 16;
        _mm_prefetch(reinterpret_cast<const char*>(line) + kQ8PrefetchBytes, _MM_HINT_T0);
        const __m512i packed = _mm512_load_si512(line);
        const __m512i lo = _mm512_and_si512(packed, nibble), hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble);
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) {
          const uint32_t* rec = x + j * xstride + b * kQ8Record;
          isum[p][j] = _mm512_dpbusd_epi32(isum[p][j], lo, _mm512_set1_epi32(static_cast<int>(rec[l])));
          isum[p][j] = _mm512_dpbusd_epi32(isum[p][j], hi, _mm512_set1_epi32(static_cast<int>(rec[4 + l])));
        }
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      __m512 scale, min = _mm512_setzero_ps();
      if constexpr (K) {
        const uint32_t* sb = w + p * words + (b / 8) * kQ4KSuper;
        const auto* bytes = reinterpret_cast<const uint8_t*>(sb + 528) + (b % 8) * 16;
        auto widen = [](const uint8_t* v) {
          return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v))));
        };
        scale = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb + 512))), widen(bytes));
        min = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb + 520))),
                            widen(bytes + 128));
      } else {
        const uint16_t* s16 = sc + (p * B + b) * 16;
        if ((b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(s16) + kQ8PrefetchBytes / 8, _MM_HINT_T0);
        scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s16)));
      }
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) {
        const uint32_t* rec = x + j * xstride + b * kQ8Record;
        const __m512 s = _mm512_mul_ps(scale, _mm512_set1_ps(bits_float(rec[8])));
        acc[p][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p][j]), s, acc[p][j]);
        if constexpr (K) acc[p][j] = _mm512_fnmadd_ps(min, _mm512_set1_ps(bits_float(rec[9])), acc[p][j]);
      }
    }
  }
  store_results<NP, J>(dst, stride, bias, acc);
}


// q6_K panels as q4_fast, each line's 4 low bits joined with its 2 high bits (from the high
// line, once a pass), the halves' integer sums apart (from -32 x the input half's sum), each
// scaled by d * its int8 scale.
template <int NP, int J>
[[gnu::noinline]] void q6_fast(float* dst, int64_t stride, const float* bias, const uint32_t* w, const uint16_t* /*sc*/,
                               int64_t B, const uint32_t* x, int64_t xstride) {
  const int64_t words = panel_words<WeightType::Q6_K>(B);
  const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
  __m512 acc[NP][J];
  zero_results<NP, J>(acc);
  for (int64_t b = 0; b < B; ++b) {
    __m512i lo_sum[NP][J], hi_sum[NP][J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const uint32_t* rec = x + j * xstride + b * kQ8Record;
      const __m512i first = _mm512_set1_epi32(static_cast<int>(rec[9])), second = _mm512_set1_epi32(static_cast<int>(rec[10]));
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) lo_sum[p][j] = first, hi_sum[p][j] = second;
    }
#pragma GCC unroll 4
    for (int l = 0; l < 4; ++l) {
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        const uint32_t* lines = w + p * words + (b / 8) * kQ6KSuper + (b % 8) * 96;
        const uint32_t* line = lines + l * 16;
        _mm_prefetch(reinterpret_cast<const char*>(line) + kQ8PrefetchBytes, _MM_HINT_T0);
        const __m512i packed = _mm512_load_si512(line);
        __m512i high = _mm512_load_si512(lines + 64 + (l / 2) * 16);
        if (l % 2) high = _mm512_srli_epi16(high, 4);
        const __m512i lo = _mm512_or_si512(_mm512_and_si512(packed, nibble), _mm512_and_si512(_mm512_slli_epi16(high, 4), top));
        const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble),
                                           _mm512_and_si512(_mm512_slli_epi16(high, 2), top));
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) {
          const uint32_t* rec = x + j * xstride + b * kQ8Record;
          lo_sum[p][j] = _mm512_dpbusd_epi32(lo_sum[p][j], lo, _mm512_set1_epi32(static_cast<int>(rec[l])));
          hi_sum[p][j] = _mm512_dpbusd_epi32(hi_sum[p][j], hi, _mm512_set1_epi32(static_cast<int>(rec[4 + l])));
        }
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      const uint32_t* sb = w + p * words + (b / 8) * kQ6KSuper;
      const auto* scales = reinterpret_cast<const int8_t*>(sb + 768) + (b % 8) * 32;
      auto widen = [](const int8_t* v) {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v))));
      };
      const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sb + 832)));
      const __m512 first = _mm512_mul_ps(d, widen(scales)), second = _mm512_mul_ps(d, widen(scales + 16));
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) {
        const __m512 dx = _mm512_set1_ps(bits_float(x[j * xstride + b * kQ8Record + 8]));
        acc[p][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo_sum[p][j]), _mm512_mul_ps(first, dx), acc[p][j]);
        acc[p][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi_sum[p][j]), _mm512_mul_ps(second, dx), acc[p][j]);
      }
    }
  }
  store_results<NP, J>(dst, stride, bias, acc);
}


// np panels of type T, NP at a time (then one at a time), against J inputs.
template <WeightType T, int NP, int J>
void int_chunks(float* dst, int64_t stride, const float* bias, const uint32_t* w, const uint16_t* sc, int64_t B,
                int64_t np, const uint32_t* x, int64_t xstride) {
  auto run = [&](auto fast, int64_t p) {
    fast(dst + p * 16, stride, bias ? bias + p * 16 : nullptr, w + p * panel_words<T>(B), sc ? sc + p * B * 16 : sc, B,
         x, xstride);
  };
  auto kernel = [](auto panels) {
    constexpr int P = decltype(panels)::value;
    if constexpr (T == WeightType::Q8_0) return q8_fast<P, J>;
    else if constexpr (T == WeightType::Q6_K) return q6_fast<P, J>;
    else return q4_fast<T, P, J>;
  };
  int64_t p = 0;
  for (; p + NP <= np; p += NP) run(kernel(std::integral_constant<int, NP>{}), p);
  for (; p < np; ++p) run(kernel(std::integral_constant<int, 1>{}), p);
}
#endif

#pragma GCC diagnostic pop

template <WeightType T>
constexpr bool kFast = T == WeightType::F32 || T == WeightType::F16
#if defined(__AVX512BF16__)
                       || T == WeightType::BF16
#endif
    ;
#endif

template <WeightType T>
void tile(float* dst, int64_t stride, const float* bias, const uint32_t* panel, const uint32_t* xt, int64_t S,
          int64_t inputs) {
#if defined(__AVX512F__)
  if constexpr (kFast<T>) {
    switch ((inputs + 3) / 4) {
      case 1: return tile_fast<T, 1>(dst, stride, bias, panel, xt, S, inputs);
      case 2: return tile_fast<T, 2>(dst, stride, bias, panel, xt, S, inputs);
      case 3: return tile_fast<T, 3>(dst, stride, bias, panel, xt, S, inputs);
      default: return tile_fast<T, 4>(dst, stride, bias, panel, xt, S, inputs);
    }
  }
#endif
  tile_plain<T>(dst, stride, bias, panel, xt, S, inputs);
}

#if defined(__AVX512F__)
// Panels NP at a time, then one at a time.
template <WeightType T, int NP, int J>
void few_chunks(float* res, int64_t stride, const uint32_t* panels, int64_t np, const uint32_t* x, int64_t S) {
  int64_t p = 0;
  for (; p + NP <= np; p += NP) few_fast<T, NP, J>(res + p * 16, stride, panels + p * S * kStepWords<T>, x, S);
  for (; p < np; ++p) few_fast<T, 1, J>(res + p * 16, stride, panels + p * S * kStepWords<T>, x, S);
}
#endif

template <WeightType T>
void few(float* res, int64_t stride, const uint32_t* panels, int64_t np, const uint32_t* x, int64_t S, int64_t J) {
#if defined(__AVX512F__)
  if constexpr (kFast<T>) {
    switch (J) {
      case 1: return few_chunks<T, 8, 1>(res, stride, panels, np, x, S);
      case 2: return few_chunks<T, 8, 2>(res, stride, panels, np, x, S);
      case 3: return few_chunks<T, 4, 3>(res, stride, panels, np, x, S);
      default: return few_chunks<T, 4, 4>(res, stride, panels, np, x, S);
    }
  }
#endif
  few_plain<T>(res, stride, panels, np, x, S, J);
}

template <WeightType T>
void panels_loop(float* out, const uint32_t* x, int64_t N, const WeightPanels& p, const float* bias, int64_t first,
                 int64_t count) {
  const int64_t OC = p.rows, S = p.steps(), end = first + count;
  const uint32_t* data = p.data.data<uint32_t>();
  auto put = [&](const float* res, int64_t n, int64_t p0, int64_t np) {  // res [np * 16] of input n
    const int64_t lo = std::max(first, p0 * 16), hi = std::min(end, (p0 + np) * 16);
    for (int64_t o = lo; o < hi; ++o) {
      const float v = res[o - p0 * 16];
      out[n * OC + o] = bias ? v + bias[o] : v;
    }
  };
  const int64_t p0 = first / 16, p1 = (end + 15) / 16;
  if (N <= kFewInputs) {
    constexpr int64_t kGroup = 32;  // panels a call (the results on the stack)
    float res[kFewInputs * kGroup * 16];
    for (int64_t q = p0; q < p1; q += kGroup) {
      const int64_t np = std::min(kGroup, p1 - q);
      few<T>(res, kGroup * 16, data + q * S * kStepWords<T>, np, x, S, N);
      for (int64_t n = 0; n < N; ++n) put(res + n * kGroup * 16, n, q, np);
    }
    return;
  }
  alignas(64) float res[16 * 16];
  for (int64_t q = p0; q < p1; ++q) {
    // A panel whose 16 rows are all asked for writes its results in place; the others (the
    // range's ends, the matrix's last rows) through res.
    const bool whole = q * 16 >= first && q * 16 + 16 <= std::min(end, OC);
    for (int64_t t = 0; t * 16 < N; ++t) {
      const int64_t inputs = std::min<int64_t>(16, N - t * 16);
      if (whole) {
        tile<T>(out + t * 16 * OC + q * 16, OC, bias ? bias + q * 16 : nullptr, data + q * S * kStepWords<T>,
                x + t * S * 16, S, inputs);
        continue;
      }
      tile<T>(res, 16, nullptr, data + q * S * kStepWords<T>, x + t * S * 16, S, inputs);
      for (int64_t j = 0; j < inputs; ++j) put(res + j * 16, t * 16 + j, q, 1);
    }
  }
}

// The plain loops or the fast kernels for J <= kQ8Pass inputs.
template <WeightType T>
void int_run(float* dst, int64_t stride, const float* bias, const uint32_t* w, const uint16_t* sc, int64_t B,
             int64_t np, const uint32_t* x, int64_t xstride, int64_t J) {
#if defined(__AVX512VNNI__)
  switch (J) {
    case 1: return int_chunks<T, 8, 1>(dst, stride, bias, w, sc, B, np, x, xstride);
    case 2: return int_chunks<T, 4, 2>(dst, stride, bias, w, sc, B, np, x, xstride);
    case 3: return int_chunks<T, 2, 3>(dst, stride, bias, w, sc, B, np, x, xstride);
    case 4: return int_chunks<T, 2, 4>(dst, stride, bias, w, sc, B, np, x, xstride);
    case 5: return int_chunks<T, 1, 5>(dst, stride, bias, w, sc, B, np, x, xstride);
    case 6: return int_chunks<T, 1, 6>(dst, stride, bias, w, sc, B, np, x, xstride);
    case 7: return int_chunks<T, 1, 7>(dst, stride, bias, w, sc, B, np, x, xstride);
    default: return int_chunks<T, 1, 8>(dst, stride, bias, w, sc, B, np, x, xstride);
  }
#else
  int_plain<T>(dst, stride, bias, w, sc, B, np, x, xstride, J);
#endif
}

// Panels of the int8-block types: runs of whole panels write in place, a panel at a time
// against the inputs in passes of up to kQ8Pass (its lines stay in L1 between the passes); the
// others (the range's ends, the matrix's last rows) through res.
template <WeightType T>
void panels_loop_int(float* out, const uint32_t* x, int64_t N, const WeightPanels& p, const float* bias, int64_t first,
                     int64_t count) {
  const int64_t OC = p.rows, B = p.cols / kQuantBlock, end = first + count, xstride = B * kQ8Record;
  const int64_t words = panel_words<T>(B);
  const uint32_t* data = p.data.data<uint32_t>();
  const uint16_t* scales = T == WeightType::Q8_0 || T == WeightType::Q4_0 ? p.scales.data<uint16_t>() : nullptr;
  auto panel_scales = [&](int64_t q) { return scales ? scales + q * B * 16 : nullptr; };
  const int64_t p0 = first / 16, p1 = (end + 15) / 16;
  auto whole = [&](int64_t q) { return q * 16 >= first && q * 16 + 16 <= std::min(end, OC); };
  // Panels a group: with one or two inputs several panels' streams in flight.
  const int64_t group = N <= 2 ? 8 : 1;
  alignas(64) float res[kQ8Pass * 16];
  for (int64_t q = p0; q < p1;) {
    if (!whole(q)) {
      for (int64_t n = 0; n < N; n += kQ8Pass) {
        const int64_t J = std::min(kQ8Pass, N - n);
        int_run<T>(res, 16, nullptr, data + q * words, panel_scales(q), B, 1, x + n * xstride, xstride, J);
        for (int64_t j = 0; j < J; ++j)
          for (int64_t o = std::max(first, q * 16); o < std::min(end, q * 16 + 16); ++o) {
            const float v = res[j * 16 + o - q * 16];
            out[(n + j) * OC + o] = bias ? v + bias[o] : v;
          }
      }
      ++q;
      continue;
    }
    int64_t np = 1;
    while (np < group && q + np < p1 && whole(q + np)) ++np;
    for (int64_t n = 0; n < N; n += kQ8Pass)
      int_run<T>(out + n * OC + q * 16, OC, bias ? bias + q * 16 : nullptr, data + q * words, panel_scales(q), B, np,
                 x + n * xstride, xstride, std::min(kQ8Pass, N - n));
    q += np;
  }
}

// The types with panels.
bool panel_type(WeightType t) {
  return t == WeightType::F32 || t == WeightType::F16 || t == WeightType::BF16 || t == WeightType::Q8_0 || t == WeightType::Q4_0 ||
         t == WeightType::Q4_K || t == WeightType::Q6_K;
}

}  // namespace

bool has_panel_kernels(WeightType type) {
#if defined(__AVX512F__)
  if (type == WeightType::F32 || type == WeightType::F16) return true;
#endif
#if defined(__AVX512BF16__)
  if (type == WeightType::BF16) return true;
#endif
#if defined(__AVX512VNNI__)
  if (weight_type_blocked(type)) return true;  // q8_0, q4_0, q4_K, q6_K
#endif
  (void)type;
  return false;
}

namespace {

// A q8_0 matrix's panels: per block, line s holds features 4s..4s+3 of each row as unsigned
// bytes w + 128, the rows' f16 scales beside (rows past the matrix: weights 0, scale 0).
void fill_q8_panels(WeightPanels& p, const WeightView& w) {
  const int64_t P = (w.rows + 15) / 16, B = w.cols / kQuantBlock;
  p.data = Tensor::zeros(DType::U32, {std::max<int64_t>(P * B * 128, 1)});
  p.scales = Tensor::zeros(DType::U16, {std::max<int64_t>(P * B * 16, 1)});
  auto* d = reinterpret_cast<uint8_t*>(p.data.data_mut<uint32_t>());
  uint16_t* sc = p.scales.data_mut<uint16_t>();
  const auto* base = static_cast<const unsigned char*>(w.data);
  parallel_chunks(P, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      std::memset(d + q * B * 512, 0x80, static_cast<size_t>(B * 512));
      for (int64_t r = 0; r < std::min<int64_t>(16, w.rows - q * 16); ++r) {
        const unsigned char* row = base + (q * 16 + r) * w.row_bytes;
        for (int64_t b = 0; b < B; ++b) {
          const unsigned char* blk = row + b * kQ8_0BlockBytes;
          std::memcpy(sc + (q * B + b) * 16 + r, blk, 2);
          uint8_t* lines = d + (q * B + b) * 512;
          for (int k = 0; k < kQuantBlock; ++k)
            lines[(k / 4) * 64 + r * 4 + k % 4] = static_cast<uint8_t>(static_cast<int8_t>(blk[2 + k]) + 128);
        }
      }
    }
  });
}

// q4_0 and q4_K panels: a block's 32 levels (0..15) of 16 rows in four lines, line l's byte
// 4r + b holding feature 4l + b in its low nibble and 16 + 4l + b in its high one. q4_0: the
// rows' f16 scales beside; q4_K: after a super-block's 8 blocks, the rows' d and dmin and
// their blocks' 6-bit scales and mins (rows past the matrix: zeros throughout).
void put_nibbles(uint8_t* lines, int64_t r, const uint8_t levels[32]) {
  for (int k = 0; k < 16; ++k)
    lines[(k / 4) * 64 + r * 4 + k % 4] = static_cast<uint8_t>(levels[k] | levels[16 + k] << 4);
}

template <WeightType T>
void fill_q4_panels(WeightPanels& p, const WeightView& w) {
  const int64_t P = (w.rows + 15) / 16, B = w.cols / kQuantBlock, words = panel_words<T>(B);
  p.data = Tensor::zeros(DType::U32, {std::max<int64_t>(P * words, 1)});
  if (T == WeightType::Q4_0) p.scales = Tensor::zeros(DType::U16, {std::max<int64_t>(P * B * 16, 1)});
  uint32_t* d = p.data.data_mut<uint32_t>();
  const auto* base = static_cast<const unsigned char*>(w.data);
  parallel_chunks(P, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q)
      for (int64_t r = 0; r < std::min<int64_t>(16, w.rows - q * 16); ++r) {
        const unsigned char* row = base + (q * 16 + r) * w.row_bytes;
        uint8_t levels[32];
        if constexpr (T == WeightType::Q4_0) {
          uint16_t* sc = p.scales.data_mut<uint16_t>();
          for (int64_t b = 0; b < B; ++b) {
            const unsigned char* blk = row + b * kQ4_0BlockBytes;
            std::memcpy(sc + (q * B + b) * 16 + r, blk, 2);
            for (int k = 0; k < 16; ++k) levels[k] = blk[2 + k] & 0x0F, levels[16 + k] = blk[2 + k] >> 4;
            put_nibbles(reinterpret_cast<uint8_t*>(d + q * words + b * 64), r, levels);
          }
        } else {
          for (int64_t s = 0; s < B / 8; ++s) {
            const unsigned char* blk = row + s * kQ4_KBlockBytes;
            uint32_t* sb = d + q * words + s * kQ4KSuper;
            auto* half = reinterpret_cast<uint16_t*>(sb + 512);
            auto* bytes = reinterpret_cast<uint8_t*>(sb + 528);
            std::memcpy(half + r, blk, 2);
            std::memcpy(half + 16 + r, blk + 2, 2);
            for (int j = 0; j < 8; ++j) {
              int sc, m;
              q4_K_sub_block(blk, j, sc, m, levels);
              bytes[j * 16 + r] = static_cast<uint8_t>(sc);
              bytes[128 + j * 16 + r] = static_cast<uint8_t>(m);
              put_nibbles(reinterpret_cast<uint8_t*>(sb + j * 64), r, levels);
            }
          }
        }
      }
  });
}

void fill_q6_panels(WeightPanels& p, const WeightView& w) {
  const int64_t P = (w.rows + 15) / 16, B = w.cols / kQuantBlock, words = panel_words<WeightType::Q6_K>(B);
  p.data = Tensor::zeros(DType::U32, {std::max<int64_t>(P * words, 1)});
  uint32_t* d = p.data.data_mut<uint32_t>();
  const auto* base = static_cast<const unsigned char*>(w.data);
  parallel_chunks(P, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q)
      for (int64_t r = 0; r < std::min<int64_t>(16, w.rows - q * 16); ++r)
        for (int64_t s = 0; s < B / 8; ++s) {
          const unsigned char* blk = base + (q * 16 + r) * w.row_bytes + s * kQ6_KBlockBytes;
          uint32_t* sb = d + q * words + s * kQ6KSuper;
          auto* scale_bytes = reinterpret_cast<int8_t*>(sb + 768);
          std::memcpy(reinterpret_cast<uint16_t*>(sb + 832) + r, blk + 208, 2);
          for (int j = 0; j < 8; ++j) {
            int8_t scales[2];
            uint8_t levels[32], low[32];
            q6_K_sub_block(blk, j, scales, levels);
            scale_bytes[(2 * j) * 16 + r] = scales[0];
            scale_bytes[(2 * j + 1) * 16 + r] = scales[1];
            for (int k = 0; k < 32; ++k) low[k] = levels[k] & 0x0F;
            auto* lines = reinterpret_cast<uint8_t*>(sb + j * 96);
            put_nibbles(lines, r, low);
            for (int k = 0; k < 16; ++k) {  // feature k's and 16 + k's high bits
              const int line = k / 4, byte = k % 4;
              uint8_t& h = lines[256 + (line / 2) * 64 + r * 4 + byte];
              h = static_cast<uint8_t>(h | ((levels[k] >> 4) | (levels[16 + k] >> 4) << 2) << 4 * (line % 2));
            }
          }
        }
  });
}

}  // namespace

std::shared_ptr<const WeightPanels> make_panels(const WeightView& w) {
  if (!panel_type(w.type))
    fail(ErrorKind::Unsupported, cat("weight panels: ", weight_type_name(w.type), " rows are not supported"));
  auto p = std::make_shared<WeightPanels>();
  p->type = w.type;
  p->rows = w.rows;
  p->cols = w.cols;
  if (weight_type_blocked(w.type)) {
    weight_row_bytes(w.type, w.cols, "weight panels");  // a Data error for a row length off the blocks
    if (w.type == WeightType::Q8_0) fill_q8_panels(*p, w);
    else if (w.type == WeightType::Q4_0) fill_q4_panels<WeightType::Q4_0>(*p, w);
    else if (w.type == WeightType::Q4_K) fill_q4_panels<WeightType::Q4_K>(*p, w);
    else fill_q6_panels(*p, w);
    return p;
  }
  const int64_t S = p->steps(), P = (w.rows + 15) / 16, IC = w.cols;
  const int64_t step_words = w.type == WeightType::F16 ? 8 : 16;
  p->data = Tensor::zeros(DType::U32, {std::max<int64_t>(P * S * step_words, 1)});
  uint32_t* d = p->data.data_mut<uint32_t>();
  const auto* base = static_cast<const unsigned char*>(w.data);
  parallel_chunks(P, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      const int64_t rows = std::min<int64_t>(16, w.rows - q * 16);
      uint32_t* panel = d + q * S * step_words;
      for (int64_t r = 0; r < rows; ++r) {
        const unsigned char* row = base + (q * 16 + r) * w.row_bytes;
        if (w.type == WeightType::F16) {
          auto* halves = reinterpret_cast<uint16_t*>(panel);
          for (int64_t k = 0; k < IC; ++k) std::memcpy(halves + k * 16 + r, row + 2 * k, 2);
        } else if (w.type == WeightType::F32) {
          for (int64_t k = 0; k < IC; ++k) std::memcpy(panel + k * 16 + r, row + 4 * k, 4);
        } else {
          for (int64_t k = 0; k < S; ++k) {
            uint16_t even, odd = 0;
            std::memcpy(&even, row + 4 * k, 2);
            if (2 * k + 1 < IC) std::memcpy(&odd, row + 4 * k + 2, 2);
            panel[k * 16 + r] = static_cast<uint32_t>(even) | static_cast<uint32_t>(odd) << 16;
          }
        }
      }
    }
  });
  return p;
}

void panel_input(const float* inp, int64_t N, int64_t IC, WeightType type, std::vector<uint32_t>& out) {
  if (weight_type_blocked(type)) {
    const int64_t B = IC / kQuantBlock;
    out.assign(static_cast<size_t>(N * B * kQ8Record), 0);
    std::vector<int8_t> q(static_cast<size_t>(IC));
    std::vector<float> d(static_cast<size_t>(B)), s(static_cast<size_t>(B));
    for (int64_t n = 0; n < N; ++n) {
      quantize_input_q8(inp + n * IC, IC, q.data(), d.data(), s.data());
      for (int64_t b = 0; b < B; ++b) {
        uint32_t* rec = out.data() + (n * B + b) * kQ8Record;
        std::memcpy(rec, q.data() + b * kQuantBlock, kQuantBlock);
        int32_t sum = 0;
        for (int k = 0; k < kQuantBlock; ++k) sum += q[static_cast<size_t>(b * kQuantBlock + k)];
        rec[8] = float_bits(d[static_cast<size_t>(b)]);
        if (type == WeightType::Q6_K) {
          int32_t first = 0;
          for (int k = 0; k < 16; ++k) first += q[static_cast<size_t>(b * kQuantBlock + k)];
          rec[9] = static_cast<uint32_t>(-32 * first);
          rec[10] = static_cast<uint32_t>(-32 * (sum - first));
        } else {
          rec[9] = type == WeightType::Q4_K ? float_bits(static_cast<float>(sum) * d[static_cast<size_t>(b)])
                                            : static_cast<uint32_t>((type == WeightType::Q4_0 ? -8 : -128) * sum);
        }
      }
    }
    return;
  }
  const bool bf16 = type == WeightType::BF16;
  const bool rows = N <= kFewInputs;
  const int64_t S = bf16 ? (IC + 1) / 2 : IC, tiles = rows ? N : (N + 15) / 16, width = rows ? 1 : 16;
  out.assign(static_cast<size_t>(tiles * S * width), 0);
  std::vector<uint16_t> rounded(bf16 ? static_cast<size_t>(IC + 1) : 0);
  for (int64_t n = 0; n < N; ++n) {
    const float* row = inp + n * IC;
    uint32_t* dst = rows ? out.data() + n * S : out.data() + (n / 16) * S * 16 + n % 16;
    if (!bf16) {
      for (int64_t k = 0; k < IC; ++k) dst[k * width] = float_bits(row[k]);
      continue;
    }
    round_input_bf16(row, IC, rounded.data());
    rounded[static_cast<size_t>(IC)] = 0;  // an odd row's last pair: (feature, 0)
    for (int64_t k = 0; k < S; ++k)
      dst[k * width] = static_cast<uint32_t>(rounded[static_cast<size_t>(2 * k)]) |
                       (2 * k + 1 < IC ? static_cast<uint32_t>(rounded[static_cast<size_t>(2 * k + 1)]) << 16 : 0u);
  }
}

void matmul_panels(float* out, const uint32_t* x, int64_t N, const WeightPanels& p, const float* bias, int64_t first,
                   int64_t count) {
  if (N <= 0 || count <= 0) return;
  if (p.type == WeightType::Q8_0) return panels_loop_int<WeightType::Q8_0>(out, x, N, p, bias, first, count);
  if (p.type == WeightType::Q4_0) return panels_loop_int<WeightType::Q4_0>(out, x, N, p, bias, first, count);
  if (p.type == WeightType::Q4_K) return panels_loop_int<WeightType::Q4_K>(out, x, N, p, bias, first, count);
  if (p.type == WeightType::Q6_K) return panels_loop_int<WeightType::Q6_K>(out, x, N, p, bias, first, count);
  if (p.type == WeightType::F32) return panels_loop<WeightType::F32>(out, x, N, p, bias, first, count);
  if (p.type == WeightType::F16) return panels_loop<WeightType::F16>(out, x, N, p, bias, first, count);
  panels_loop<WeightType::BF16>(out, x, N, p, bias, first, count);
}

void matmul_panels_ref(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N, int64_t first,
                       int64_t count) {
  if (!panel_type(w.type))
    fail(ErrorKind::Unsupported, cat("matmul_panels_ref: ", weight_type_name(w.type), " rows are not supported"));
  const int64_t IC = w.cols, OC = w.rows;
  const auto* base = static_cast<const unsigned char*>(w.data);
  if (w.type == WeightType::Q8_0) {
    const RowsInput in(inp, N, IC, WeightType::Q8_0);  // the input's int8 blocks, as panel_input's
    const int64_t B = IC / kQuantBlock;
    for (int64_t o = first; o < first + count; ++o)
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0.0f;
        for (int64_t b = 0; b < B; ++b) {
          const unsigned char* blk = base + o * w.row_bytes + b * kQ8_0BlockBytes;
          // In int64: GCC 12 makes an int32 sum of int8 products vpdpbusd under -march=native,
          // which reads one side as unsigned bytes (wrong numbers for negative weights).
          int64_t dot = 0;
          for (int k = 0; k < kQuantBlock; ++k)
            dot += static_cast<int8_t>(blk[2 + k]) * in.q[static_cast<size_t>(n * IC + b * kQuantBlock + k)];
          uint16_t dw;
          std::memcpy(&dw, blk, 2);
          acc = std::fma(static_cast<float>(dot), f16_to_f32(dw) * in.d[static_cast<size_t>(n * B + b)], acc);
        }
        out[n * OC + o] = bias ? acc + bias[o] : acc;
      }
    return;
  }
  if (w.type == WeightType::Q6_K) {
    const RowsInput in(inp, N, IC, w.type);
    const int64_t B = IC / kQuantBlock;
    for (int64_t o = first; o < first + count; ++o)
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0.0f;
        for (int64_t b = 0; b < B; ++b) {
          const int8_t* q = in.q.data() + n * IC + b * kQuantBlock;
          const float dx = in.d[static_cast<size_t>(n * B + b)];
          const unsigned char* blk = base + o * w.row_bytes + (b / 8) * kQ6_KBlockBytes;
          int8_t scales[2];
          uint8_t levels[32];
          q6_K_sub_block(blk, static_cast<int>(b % 8), scales, levels);
          uint16_t dw;
          std::memcpy(&dw, blk + 208, 2);
          for (int half = 0; half < 2; ++half) {
            int64_t dot = 0;  // int64: see above
            for (int k = 16 * half; k < 16 * half + 16; ++k) dot += (levels[k] - 32) * q[k];
            acc = std::fma(static_cast<float>(dot), f16_to_f32(dw) * static_cast<float>(scales[half]) * dx, acc);
          }
        }
        out[n * OC + o] = bias ? acc + bias[o] : acc;
      }
    return;
  }
  if (w.type == WeightType::Q4_0 || w.type == WeightType::Q4_K) {
    const RowsInput in(inp, N, IC, w.type);
    const int64_t B = IC / kQuantBlock;
    for (int64_t o = first; o < first + count; ++o)
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0.0f;
        for (int64_t b = 0; b < B; ++b) {
          const int8_t* q = in.q.data() + n * IC + b * kQuantBlock;
          const float dx = in.d[static_cast<size_t>(n * B + b)];
          uint8_t levels[32];
          float scale, min = 0.0f;
          if (w.type == WeightType::Q4_0) {
            const unsigned char* blk = base + o * w.row_bytes + b * kQ4_0BlockBytes;
            for (int k = 0; k < 16; ++k) levels[k] = blk[2 + k] & 0x0F, levels[16 + k] = blk[2 + k] >> 4;
            uint16_t dw;
            std::memcpy(&dw, blk, 2);
            scale = f16_to_f32(dw);
          } else {
            const unsigned char* blk = base + o * w.row_bytes + (b / 8) * kQ4_KBlockBytes;
            int sc, m;
            q4_K_sub_block(blk, static_cast<int>(b % 8), sc, m, levels);
            uint16_t dw, dmin;
            std::memcpy(&dw, blk, 2);
            std::memcpy(&dmin, blk + 2, 2);
            scale = f16_to_f32(dw) * static_cast<float>(sc);
            min = f16_to_f32(dmin) * static_cast<float>(m);
          }
          int64_t dot = 0, sum = 0;  // int64: see above
          for (int k = 0; k < kQuantBlock; ++k) {
            dot += (levels[k] - (w.type == WeightType::Q4_0 ? 8 : 0)) * q[k];
            sum += q[k];
          }
          acc = std::fma(static_cast<float>(dot), scale * dx, acc);
          if (w.type == WeightType::Q4_K) acc = std::fma(-min, static_cast<float>(sum) * dx, acc);
        }
        out[n * OC + o] = bias ? acc + bias[o] : acc;
      }
    return;
  }
  for (int64_t o = first; o < first + count; ++o) {
    const unsigned char* row = base + o * w.row_bytes;
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * IC;
      float acc = 0.0f;
      if (w.type == WeightType::F32 || w.type == WeightType::F16) {
        for (int64_t k = 0; k < IC; ++k) {
          float wk;
          if (w.type == WeightType::F16) {
            uint16_t h;
            std::memcpy(&h, row + 2 * k, 2);
            wk = f16_to_f32(h);  // exact
          } else {
            std::memcpy(&wk, row + 4 * k, 4);
          }
          acc = std::fma(wk, x[k], acc);
        }
      } else {
        auto weight = [&](int64_t k) -> uint16_t {
          uint16_t h = 0;
          if (k < IC) std::memcpy(&h, row + 2 * k, 2);
          return h;
        };
        auto input = [&](int64_t k) -> uint16_t { return k < IC ? f32_to_bf16(x[k]) : 0; };
        for (int64_t k = 0; k < IC; k += 2) {
          acc = flush(std::fma(bf16_to_f32_daz(weight(k + 1)), bf16_to_f32_daz(input(k + 1)), acc));
          acc = flush(std::fma(bf16_to_f32_daz(weight(k)), bf16_to_f32_daz(input(k)), acc));
        }
      }
      out[n * OC + o] = bias ? acc + bias[o] : acc;
    }
  }
}

}  // namespace lm
