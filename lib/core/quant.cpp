#include "core/quant.h"

#include <immintrin.h>

// GCC 12's AVX-512 intrinsics start conversions from _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports once they are inlined here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/error.h"

namespace lm {

std::optional<WeightType> weight_type_from_name(std::string_view name) {
  for (WeightType t : {WeightType::F32, WeightType::F16, WeightType::BF16, WeightType::Q8_0, WeightType::Q4_0,
                       WeightType::Q4_K})
    if (name == weight_type_name(t)) return t;
  return std::nullopt;
}

bool weight_type_blocked(WeightType type) {
  return type == WeightType::Q8_0 || type == WeightType::Q4_0 || type == WeightType::Q4_K;
}

int64_t weight_row_bytes(WeightType type, int64_t cols, std::string_view what) {
  if (weight_type_blocked(type) && cols % kQuantBlock != 0)
    fail(ErrorKind::Data, cat(what, ": ", weight_type_name(type), " needs rows of a multiple of 32 weights, not ", cols));
  switch (type) {
    case WeightType::F32: return cols * 4;
    case WeightType::F16:
    case WeightType::BF16: return cols * 2;
    case WeightType::Q8_0: return cols / kQuantBlock * kQ8_0BlockBytes;
    case WeightType::Q4_0: return cols / kQuantBlock * kQ4_0BlockBytes;
    case WeightType::Q4_K: break;
  }
  fail(ErrorKind::Unsupported, cat(what, ": ", weight_type_name(type), " weights are not supported yet"));
}

namespace {

uint16_t load_u16(const unsigned char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void require_blocks(const char* what, int64_t n) {
  if (n % kQuantBlock != 0) fail(ErrorKind::Usage, cat(what, ": ", n, " elements is not a multiple of 32"));
}

}  // namespace

void quantize_row(WeightType type, const float* x, int64_t n, void* out) {
  auto* o = static_cast<unsigned char*>(out);
  switch (type) {
    case WeightType::F32: std::memcpy(o, x, static_cast<size_t>(n) * 4); return;
    case WeightType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      return;
    case WeightType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      return;
    case WeightType::Q8_0:
      require_blocks("quantize_row q8_0", n);
      for (int64_t b = 0; b < n / kQuantBlock; ++b, o += kQ8_0BlockBytes) {
        const float* v = x + b * kQuantBlock;
        float amax = 0.0f;
        for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = f32_to_f16(d);
        std::memcpy(o, &h, 2);
        for (int j = 0; j < kQuantBlock; ++j) o[2 + j] = static_cast<unsigned char>(static_cast<int8_t>(std::roundf(v[j] * id)));
      }
      return;
    case WeightType::Q4_0:
      require_blocks("quantize_row q4_0", n);
      for (int64_t b = 0; b < n / kQuantBlock; ++b, o += kQ4_0BlockBytes) {
        const float* v = x + b * kQuantBlock;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQuantBlock; ++j)
          if (amax < std::fabs(v[j])) {
            amax = std::fabs(v[j]);
            max = v[j];
          }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = f32_to_f16(d);
        std::memcpy(o, &h, 2);
        for (int j = 0; j < kQuantBlock / 2; ++j) {
          // x * id + 8.5 fused, as ggml built with FMA (llama-quantize here) computes it.
          const auto q0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(std::fma(v[j], id, 8.5f))));
          const auto q1 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(std::fma(v[j + 16], id, 8.5f))));
          o[2 + j] = static_cast<unsigned char>(q0 | (q1 << 4));
        }
      }
      return;
    case WeightType::Q4_K: break;
  }
  fail(ErrorKind::Unsupported, cat("quantize_row: ", weight_type_name(type), " is not supported yet"));
}

void dequantize_row(WeightType type, const void* in, int64_t n, float* out) {
  const auto* p = static_cast<const unsigned char*>(in);
  switch (type) {
    case WeightType::F32: std::memcpy(out, p, static_cast<size_t>(n) * 4); return;
    case WeightType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
      return;
    case WeightType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(p + 2 * i));
      return;
    case WeightType::Q8_0:
      require_blocks("dequantize_row q8_0", n);
      for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ8_0BlockBytes) {
        const float d = f16_to_f32(load_u16(p));
        for (int j = 0; j < kQuantBlock; ++j) out[b * kQuantBlock + j] = d * static_cast<float>(static_cast<int8_t>(p[2 + j]));
      }
      return;
    case WeightType::Q4_0:
      require_blocks("dequantize_row q4_0", n);
      for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ4_0BlockBytes) {
        const float d = f16_to_f32(load_u16(p));
        for (int j = 0; j < kQuantBlock / 2; ++j) {
          out[b * kQuantBlock + j] = d * static_cast<float>((p[2 + j] & 0x0F) - 8);
          out[b * kQuantBlock + j + 16] = d * static_cast<float>((p[2 + j] >> 4) - 8);
        }
      }
      return;
    case WeightType::Q4_K: break;
  }
  fail(ErrorKind::Unsupported, cat("dequantize_row: ", weight_type_name(type), " is not supported yet"));
}

void quantize_input_q8(const float* x, int64_t n, int8_t* q, float* d, float* s) {
  require_blocks("quantize_input_q8", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* v = x + b * kQuantBlock;
    int8_t* qb = q + b * kQuantBlock;
    float amax = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float scale = amax / 127;
    const float id = scale != 0.0f ? 1.0f / scale : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQuantBlock; ++j) {
      qb[j] = static_cast<int8_t>(std::nearbyint(v[j] * id));  // nearest even (the default mode)
      sum += qb[j];
    }
    d[b] = scale;
    s[b] = 8.0f * scale * static_cast<float>(sum);
  }
}

// ---- References: every product exact, accumulated in double, rounded once. ----

float dot_f16_ref(const void* row, const float* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(f16_to_f32(load_u16(p + 2 * i))) * x[i];
  return static_cast<float>(acc);
}

float dot_bf16_ref(const void* row, const float* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(bf16_to_f32(load_u16(p + 2 * i))) * x[i];
  return static_cast<float>(acc);
}

float dot_q8_0_ref(const void* row, const int8_t* q, const float* d, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  double acc = 0;
  for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ8_0BlockBytes) {
    int64_t dot = 0;
    for (int j = 0; j < kQuantBlock; ++j) dot += static_cast<int8_t>(p[2 + j]) * q[b * kQuantBlock + j];
    acc += static_cast<double>(f16_to_f32(load_u16(p))) * d[b] * static_cast<double>(dot);
  }
  return static_cast<float>(acc);
}

float dot_q4_0_ref(const void* row, const int8_t* q, const float* d, const float* /*s*/, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  double acc = 0;
  for (int64_t b = 0; b < n / kQuantBlock; ++b, p += kQ4_0BlockBytes) {
    int64_t dot = 0;
    for (int j = 0; j < kQuantBlock / 2; ++j)
      dot += ((p[2 + j] & 0x0F) - 8) * q[b * kQuantBlock + j] + ((p[2 + j] >> 4) - 8) * q[b * kQuantBlock + j + 16];
    acc += static_cast<double>(f16_to_f32(load_u16(p))) * d[b] * static_cast<double>(dot);
  }
  return static_cast<float>(acc);
}

// ---- Fast kernels, one per ISA, compiled for it whatever the build's flags. ----

namespace {

#define LM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define LM_AVX2 __attribute__((target("avx2,fma,f16c")))

LM_AVX2 float hsum256(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// The lanes' sum (GCC 12's _mm512_reduce_add_ps warns of an uninitialized temporary).
LM_AVX512 float hsum512(__m512 v) {
  return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

LM_AVX512 float f16_scalar_avx512(const unsigned char* p) { return _cvtsh_ss(load_u16(p)); }
LM_AVX2 float f16_scalar_avx2(const unsigned char* p) { return _cvtsh_ss(load_u16(p)); }

LM_AVX512 float dot_f16_avx512(const void* row, const float* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i))),
                         _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i + 32))),
                         _mm512_loadu_ps(x + i + 16), a1);
  }
  float sum = hsum512(_mm512_add_ps(a0, a1));
  for (; i < n; ++i) sum += _cvtsh_ss(load_u16(p + 2 * i)) * x[i];
  return sum;
}

LM_AVX2 float dot_f16_avx2(const void* row, const float* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))),
                         _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i + 16))),
                         _mm256_loadu_ps(x + i + 8), a1);
  }
  float sum = hsum256(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) sum += _cvtsh_ss(load_u16(p + 2 * i)) * x[i];
  return sum;
}

// bf16 to f32 is a 16-bit shift: exact, no conversion instruction needed.
LM_AVX512 __m512 bf16x16(const unsigned char* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

LM_AVX512 float dot_bf16_avx512(const void* row, const float* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(bf16x16(p + 2 * i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(bf16x16(p + 2 * i + 32), _mm512_loadu_ps(x + i + 16), a1);
  }
  float sum = hsum512(_mm512_add_ps(a0, a1));
  for (; i < n; ++i) sum += bf16_to_f32(load_u16(p + 2 * i)) * x[i];
  return sum;
}

LM_AVX2 float dot_bf16_avx2(const void* row, const float* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  __m256 a0 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))), 16);
    a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(w), _mm256_loadu_ps(x + i), a0);
  }
  float sum = hsum256(a0);
  for (; i < n; ++i) sum += bf16_to_f32(load_u16(p + 2 * i)) * x[i];
  return sum;
}

// q8_0: vpdpbusd multiplies unsigned by signed bytes, so the weights go in as |w| and the
// input as x with w's sign (q8_0 values are in [-127, 127]: no overflow). Two blocks per
// iteration into two accumulators: the scale products are scalar work that overlaps.
LM_AVX512 __m256 q8_block_vnni(const unsigned char* blk, const int8_t* q, float dx, __m256 acc) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i sx = _mm256_mask_sub_epi8(x, _mm256_movepi8_mask(w), _mm256_setzero_si256(), x);
  const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), sx);
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(f16_scalar_avx512(blk) * dx), acc);
}

// Two blocks per zmm: the weights' 2 x 32 bytes side by side against 64 contiguous input
// bytes; the two scale products in the low and high eight lanes.
LM_AVX512 __m512 q8_pair_vnni(const unsigned char* blk, const int8_t* q, const float* dx, __m512 acc) {
  const __m512i w = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ8_0BlockBytes + 2)), 1);
  const __m512i x = _mm512_loadu_si512(q);
  const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
  const __m128i dw16 = _mm_cvtsi32_si128(static_cast<int>(load_u16(blk) | (uint32_t{load_u16(blk + kQ8_0BlockBytes)} << 16)));
  const __m128 s = _mm_mul_ps(_mm_cvtph_ps(dw16), _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(dx))));
  const __m512 scale = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                             _mm512_castps128_ps512(s));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc);
}

LM_AVX512 float dot_q8_0_vnni(const void* row, const int8_t* q, const float* d, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const int64_t nb = n / kQuantBlock;
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    a0 = q8_pair_vnni(p + b * kQ8_0BlockBytes, q + b * kQuantBlock, d + b, a0);
    a1 = q8_pair_vnni(p + (b + 2) * kQ8_0BlockBytes, q + (b + 2) * kQuantBlock, d + b + 2, a1);
  }
  if (b + 2 <= nb) {
    a0 = q8_pair_vnni(p + b * kQ8_0BlockBytes, q + b * kQuantBlock, d + b, a0);
    b += 2;
  }
  __m256 t = _mm256_setzero_ps();
  if (b < nb) t = q8_block_vnni(p + b * kQ8_0BlockBytes, q + b * kQuantBlock, d[b], t);
  return hsum512(_mm512_add_ps(a0, a1)) + hsum256(t);
}

LM_AVX2 __m256 q8_block_avx2(const unsigned char* blk, const int8_t* q, float dx, __m256 acc) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));  // |sum| <= 2 * 127^2
  const __m256i dot = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(f16_scalar_avx2(blk) * dx), acc);
}

LM_AVX2 float dot_q8_0_avx2(const void* row, const int8_t* q, const float* d, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const int64_t nb = n / kQuantBlock;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    a0 = q8_block_avx2(p + b * kQ8_0BlockBytes, q + b * kQuantBlock, d[b], a0);
    a1 = q8_block_avx2(p + (b + 1) * kQ8_0BlockBytes, q + (b + 1) * kQuantBlock, d[b + 1], a1);
  }
  if (b < nb) a0 = q8_block_avx2(p + b * kQ8_0BlockBytes, q + b * kQuantBlock, d[b], a0);
  return hsum256(_mm256_add_ps(a0, a1));
}

// q4_0: the nibbles (0..15) are the unsigned operand as they are; the offset of 8 is taken
// off once per block with the input's precomputed s = 8 * d * sum(q).
LM_AVX512 __m256 q4_block_vnni(const unsigned char* blk, const int8_t* q, float dx, float dw, __m256 acc) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
  const __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * dx), acc);
}

LM_AVX512 float dot_q4_0_vnni(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const int64_t nb = n / kQuantBlock;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  float offset = 0.0f;
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const unsigned char* b0 = p + b * kQ4_0BlockBytes;
    const unsigned char* b1 = b0 + kQ4_0BlockBytes;
    const float d0 = f16_scalar_avx512(b0), d1 = f16_scalar_avx512(b1);
    a0 = q4_block_vnni(b0, q + b * kQuantBlock, d[b], d0, a0);
    a1 = q4_block_vnni(b1, q + (b + 1) * kQuantBlock, d[b + 1], d1, a1);
    offset += d0 * s[b] + d1 * s[b + 1];
  }
  if (b < nb) {
    const unsigned char* b0 = p + b * kQ4_0BlockBytes;
    const float d0 = f16_scalar_avx512(b0);
    a0 = q4_block_vnni(b0, q + b * kQuantBlock, d[b], d0, a0);
    offset += d0 * s[b];
  }
  return hsum256(_mm256_add_ps(a0, a1)) - offset;
}

LM_AVX2 __m256 q4_block_avx2(const unsigned char* blk, const int8_t* q, float dx, float dw, __m256 acc) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
  const __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));  // |sum| <= 2 * 15 * 127
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * dx), acc);
}

LM_AVX2 float dot_q4_0_avx2(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const int64_t nb = n / kQuantBlock;
  __m256 a0 = _mm256_setzero_ps();
  float offset = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const unsigned char* b0 = p + b * kQ4_0BlockBytes;
    const float d0 = f16_scalar_avx2(b0);
    a0 = q4_block_avx2(b0, q + b * kQuantBlock, d[b], d0, a0);
    offset += d0 * s[b];
  }
  return hsum256(a0) - offset;
}

enum class DotIsa { Vnni, Avx2, Scalar };

bool cpu_runs(DotIsa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case DotIsa::Vnni: return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni;
    case DotIsa::Avx2: return f.avx2 && f.fma;
    case DotIsa::Scalar: return true;
  }
  return false;
}

DotIsa best_isa() {
  for (DotIsa isa : {DotIsa::Vnni, DotIsa::Avx2})
    if (cpu_runs(isa)) return isa;
  return DotIsa::Scalar;
}

std::atomic<DotIsa> g_isa{best_isa()};

DotIsa dot_isa() { return g_isa.load(std::memory_order_relaxed); }

}  // namespace

bool set_quant_dot_isa(std::string_view name) {
  DotIsa isa;
  if (name == "best")
    isa = best_isa();
  else if (name == "avx512_vnni")
    isa = DotIsa::Vnni;
  else if (name == "avx2")
    isa = DotIsa::Avx2;
  else if (name == "scalar")
    isa = DotIsa::Scalar;
  else
    return false;
  if (!cpu_runs(isa)) return false;
  g_isa.store(isa, std::memory_order_relaxed);
  return true;
}

const char* quant_dot_isa() {
  switch (dot_isa()) {
    case DotIsa::Vnni: return "avx512_vnni";
    case DotIsa::Avx2: return "avx2";
    case DotIsa::Scalar: break;
  }
  return "scalar";
}

float dot_f16(const void* row, const float* x, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_f16_avx512(row, x, n);
    case DotIsa::Avx2: return dot_f16_avx2(row, x, n);
    case DotIsa::Scalar: break;
  }
  return dot_f16_ref(row, x, n);
}

float dot_bf16(const void* row, const float* x, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_bf16_avx512(row, x, n);
    case DotIsa::Avx2: return dot_bf16_avx2(row, x, n);
    case DotIsa::Scalar: break;
  }
  return dot_bf16_ref(row, x, n);
}

float dot_q8_0(const void* row, const int8_t* q, const float* d, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_q8_0_vnni(row, q, d, n);
    case DotIsa::Avx2: return dot_q8_0_avx2(row, q, d, n);
    case DotIsa::Scalar: break;
  }
  return dot_q8_0_ref(row, q, d, n);
}

float dot_q4_0(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_q4_0_vnni(row, q, d, s, n);
    case DotIsa::Avx2: return dot_q4_0_avx2(row, q, d, s, n);
    case DotIsa::Scalar: break;
  }
  return dot_q4_0_ref(row, q, d, s, n);
}

}  // namespace lm
