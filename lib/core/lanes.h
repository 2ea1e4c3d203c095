// 16-float vectors (GCC vector types, lowered to the machine's registers: one zmm, or two ymm)
// and the horizontal sums the row kernels and decode attention end their dot products with.
// One order of additions for every such sum, so that a dot summed four at a time
// (horizontal_sums4) is the one summed alone (lane_sum), bit for bit.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace lm {

typedef float Floats16 __attribute__((vector_size(64)));
typedef float Floats4 __attribute__((vector_size(16)));

inline Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}

typedef uint16_t Halves16 __attribute__((vector_size(32)));
typedef uint32_t Words16 __attribute__((vector_size(64)));

// 16 f16 widened to f32 (exact). (GCC 12 warns of the AVX-512 widening intrinsics' undefined
// pass-through operand, unused with no mask.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline Floats16 load16_f16(const uint16_t* p) {
#if defined(__AVX512F__)
  return reinterpret_cast<Floats16>(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif defined(__F16C__)
  const __m256 halves[2] = {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  Floats16 v;
  std::memcpy(&v, halves, sizeof v);
  return v;
#else
  Floats16 v;
  for (int k = 0; k < 16; ++k) v[k] = f16_to_f32(p[k]);
  return v;
#endif
}

// 16 bf16 widened to f32 (exact: the bits moved up). Under -march=native GCC split
// __builtin_convertvector's widening into two 256-bit halves and an insert: the intrinsic.
inline Floats16 load16_bf16(const uint16_t* p) {
#if defined(__AVX512F__)
  return reinterpret_cast<Floats16>(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
#else
  Halves16 h;
  std::memcpy(&h, p, sizeof h);
  return reinterpret_cast<Floats16>(__builtin_convertvector(h, Words16) << 16);
#endif
}
#pragma GCC diagnostic pop

// The 16 lanes' sum: the four quarters added lane by lane ((l0 + l1) + l2) + l3, then
// (q0 + q1) + (q2 + q3).
[[gnu::always_inline]] inline float lane_sum(const Floats16& acc) {
  const Floats4 quarter = __builtin_shufflevector(acc, acc, 0, 1, 2, 3) + __builtin_shufflevector(acc, acc, 4, 5, 6, 7) +
                          __builtin_shufflevector(acc, acc, 8, 9, 10, 11) +
                          __builtin_shufflevector(acc, acc, 12, 13, 14, 15);
  return (quarter[0] + quarter[1]) + (quarter[2] + quarter[3]);
}

// lane_sum of four vectors at once, each with lane_sum's additions in its order (the same
// pairs added, only side by side in one vector; a float addition's result does not depend on
// its operands' order): the four quarters gathered lane by lane (a 4 x 4 transpose of 128-bit
// lanes), summed ((l0 + l1) + l2) + l3, then (q0 + q1) + (q2 + q3) within each lane. Four sums
// for the shuffles and adds of about one.
[[gnu::always_inline]] inline Floats4 horizontal_sums4(const Floats16& a, const Floats16& b, const Floats16& c,
                                                       const Floats16& d) {
  // [a.l0, b.l0, a.l1, b.l1] and [a.l2, b.l2, a.l3, b.l3], the same for c and d
  const Floats16 ab01 = __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const Floats16 ab23 = __builtin_shufflevector(a, b, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const Floats16 cd01 = __builtin_shufflevector(c, d, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const Floats16 cd23 = __builtin_shufflevector(c, d, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  // lane k of all four: [a.lk, b.lk, c.lk, d.lk]
  const Floats16 l0 = __builtin_shufflevector(ab01, cd01, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const Floats16 l1 = __builtin_shufflevector(ab01, cd01, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const Floats16 l2 = __builtin_shufflevector(ab23, cd23, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const Floats16 l3 = __builtin_shufflevector(ab23, cd23, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const Floats16 q = ((l0 + l1) + l2) + l3;  // each 128-bit lane one accumulator's quarter
  const Floats16 pairs = q + __builtin_shufflevector(q, q, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  const Floats16 s = pairs + __builtin_shufflevector(pairs, pairs, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  return __builtin_shufflevector(s, s, 0, 4, 8, 12);  // each (q0 + q1) + (q2 + q3)
}

}  // namespace lm
