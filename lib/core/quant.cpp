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
                       WeightType::Q4_K, WeightType::Q6_K})
    if (name == weight_type_name(t)) return t;
  return std::nullopt;
}

int64_t weight_type_block(WeightType type) {
  switch (type) {
    case WeightType::F32:
    case WeightType::F16:
    case WeightType::BF16: return 1;
    case WeightType::Q8_0:
    case WeightType::Q4_0: return kQuantBlock;
    case WeightType::Q4_K:
    case WeightType::Q6_K: return kSuperBlock;
  }
  return 1;
}

bool weight_type_blocked(WeightType type) { return weight_type_block(type) > 1; }

int64_t weight_row_bytes(WeightType type, int64_t cols, std::string_view what) {
  const int64_t block = weight_type_block(type);
  if (cols % block != 0)
    fail(ErrorKind::Data,
         cat(what, ": ", weight_type_name(type), " needs rows of a multiple of ", block, " weights, not ", cols));
  switch (type) {
    case WeightType::F32: return cols * 4;
    case WeightType::F16:
    case WeightType::BF16: return cols * 2;
    case WeightType::Q8_0: return cols / kQuantBlock * kQ8_0BlockBytes;
    case WeightType::Q4_0: return cols / kQuantBlock * kQ4_0BlockBytes;
    case WeightType::Q4_K: return cols / kSuperBlock * kQ4_KBlockBytes;
    case WeightType::Q6_K: return cols / kSuperBlock * kQ6_KBlockBytes;
  }
  fail(ErrorKind::Unsupported, cat(what, ": ", weight_type_name(type), " weights are not supported"));
}

namespace {

uint16_t load_u16(const unsigned char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void require_blocks(const char* what, int64_t n, int64_t block = kQuantBlock) {
  if (n % block != 0) fail(ErrorKind::Usage, cat(what, ": ", n, " elements is not a multiple of ", block));
}

void store_f16(unsigned char* p, float f) {
  const uint16_t h = f32_to_f16(f);
  std::memcpy(p, &h, 2);
}

// ggml's nearest_int: round to nearest even through the float adder (|x| < 2^22).
int nearest_int(float x) {
  const float v = x + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

constexpr float kGroupMaxEps = 1e-15f;

// q4_K's 6-bit scale and min of sub-block j (0..7) from the 12 scale bytes.
void q4_K_scale_min(int j, const unsigned char* b, int& sc, int& m) {
  if (j < 4) {
    sc = b[j] & 63;
    m = b[j + 4] & 63;
  } else {
    sc = (b[j + 4] & 0x0F) | ((b[j - 4] >> 6) << 4);
    m = (b[j + 4] >> 4) | ((b[j] >> 6) << 4);
  }
}

// make_qkx2_quants (ggml): levels L in [0, nmax] with scale and min (returned as -min in
// the_min) minimising the weighted squared error, searching nstep + 1 scales around
// nmax / (max - min). The sums are in the order ggml's loops make them, every product rounded
// on its own (no FMA: see quant.h).
float make_qkx2(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, uint8_t* Laux,
                float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * static_cast<float>(L[i]) + min - x[i];
    best += w[i] * (diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      const float wl = w[i] * static_cast<float>(l);
      sum_l += wl;
      sum_l2 += wl * static_cast<float>(l);
      sum_xl += wl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        mad += w[i] * (diff * diff);
      }
      if (mad < best) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qx_quants (ggml) with rmse_type 1 (weights x^2): signed levels in [-nmax, nmax - 1],
// stored as l + nmax, trying 19 scales around nmax / max.
float make_qx(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const auto sums = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
      const float w = x[i] * x[i];
      const auto lf = static_cast<float>(l);
      sumlx += w * x[i] * lf;
      suml2 += w * lf * lf;
    }
  };
  const auto levels = [&](float iscale) {
    for (int i = 0; i < n; ++i)
      L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
  };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  sums(iscale, sumlx, suml2);
  levels(iscale);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sums(iscale, sumlx, suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      levels(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

void quantize_q4_K_block(const float* x, unsigned char* o) {
  uint8_t L[kSuperBlock], Laux[32];
  float w[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* v = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += v[l] * v[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(v[l]);
    scales[j] = make_qkx2(32, 15, v, w, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  unsigned char* sb = o + 4;
  std::memset(sb, 0, 12);
  for (int j = 0; j < 8; ++j) {
    // ggml stores nearest_int's result in a uint8_t before clamping to 63.
    const int ls = std::min(63, static_cast<int>(static_cast<uint8_t>(nearest_int(inv_scale * scales[j]))));
    const int lm = std::min(63, static_cast<int>(static_cast<uint8_t>(nearest_int(inv_min * mins[j]))));
    if (j < 4) {
      sb[j] = static_cast<unsigned char>(ls);
      sb[j + 4] = static_cast<unsigned char>(lm);
    } else {
      sb[j + 4] = static_cast<unsigned char>((ls & 0xF) | ((lm & 0xF) << 4));
      sb[j - 4] = static_cast<unsigned char>(sb[j - 4] | ((ls >> 4) << 6));
      sb[j] = static_cast<unsigned char>(sb[j] | ((lm >> 4) << 6));
    }
  }
  store_f16(o, max_scale / 63.0f);
  store_f16(o + 2, max_min / 63.0f);
  const float d = f16_to_f32(load_u16(o)), dmin = f16_to_f32(load_u16(o + 2));
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    q4_K_scale_min(j, sb, sc, m);
    const float dj = d * static_cast<float>(sc);
    if (dj == 0.0f) continue;  // the levels of make_qkx2 stay
    const float dm = dmin * static_cast<float>(m);
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(15, nearest_int((x[32 * j + i] + dm) / dj))));
  }
  unsigned char* q = o + 16;
  for (int r = 0; r < 4; ++r)
    for (int l = 0; l < 32; ++l) q[32 * r + l] = static_cast<unsigned char>(L[64 * r + l] | (L[64 * r + 32 + l] << 4));
}

void quantize_q6_K_block(const float* x, unsigned char* o) {
  int8_t L[kSuperBlock];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int g = 0; g < 16; ++g) {
    scales[g] = make_qx(16, 32, x + 16 * g, L + 16 * g);
    if (std::fabs(scales[g]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[g]);
      max_scale = scales[g];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(o, 0, kQ6_KBlockBytes);
    return;
  }
  const float iscale = -128.0f / max_scale;
  store_f16(o + 208, 1 / iscale);
  auto* sc = reinterpret_cast<int8_t*>(o + 192);
  for (int g = 0; g < 16; ++g) sc[g] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[g])));
  const float d = f16_to_f32(load_u16(o + 208));
  for (int g = 0; g < 16; ++g) {
    const float dg = d * static_cast<float>(sc[g]);
    if (dg == 0.0f) continue;
    for (int i = 0; i < 16; ++i)
      L[16 * g + i] = static_cast<int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * g + i] / dg))) + 32);
  }
  unsigned char* ql = o;
  unsigned char* qh = o + 128;
  for (int h = 0; h < 2; ++h, ql += 64, qh += 32) {
    const int8_t* l = L + 128 * h;
    for (int j = 0; j < 32; ++j) {
      ql[j] = static_cast<unsigned char>((l[j] & 0xF) | ((l[j + 64] & 0xF) << 4));
      ql[j + 32] = static_cast<unsigned char>((l[j + 32] & 0xF) | ((l[j + 96] & 0xF) << 4));
      qh[j] = static_cast<unsigned char>((l[j] >> 4) | ((l[j + 32] >> 4) << 2) | ((l[j + 64] >> 4) << 4) |
                                         ((l[j + 96] >> 4) << 6));
    }
  }
}

// Element j of a q6_K super-block, 0..63 (the stored level; the weight is d * scale * (it - 32)).
int q6_K_level(const unsigned char* blk, int e) {
  const int h = e / 128, k = (e % 128) / 32, j = e % 32;
  const unsigned char* ql = blk + 64 * h;
  const unsigned char* qh = blk + 128 + 32 * h;
  const int low = k == 0 ? ql[j] & 0xF : k == 1 ? ql[j + 32] & 0xF : k == 2 ? ql[j] >> 4 : ql[j + 32] >> 4;
  return low | (((qh[j] >> (2 * k)) & 3) << 4);
}

// Element e of a q4_K super-block: its nibble 0..15.
int q4_K_level(const unsigned char* blk, int e) {
  const int r = e / 64, j = e % 32;
  const unsigned char b = blk[16 + 32 * r + j];
  return (e % 64) < 32 ? b & 0xF : b >> 4;
}

}  // namespace

// (q4_K_level and q6_K_level per element, written out for one block: panels decode every
// weight of a model through these at open.)
void q4_K_sub_block(const void* superblock, int j, int& sc, int& m, uint8_t levels[32]) {
  const auto* p = static_cast<const unsigned char*>(superblock);
  q4_K_scale_min(j, p + 4, sc, m);
  const unsigned char* q = p + 16 + 32 * (j / 2);  // block j's nibbles: low for even j, high for odd
  const int shift = 4 * (j % 2);
  for (int i = 0; i < 32; ++i) levels[i] = static_cast<uint8_t>((q[i] >> shift) & 0x0F);
}

void q6_K_sub_block(const void* superblock, int j, int8_t scales[2], uint8_t levels[32]) {
  const auto* p = static_cast<const unsigned char*>(superblock);
  scales[0] = static_cast<int8_t>(p[192 + 2 * j]);
  scales[1] = static_cast<int8_t>(p[192 + 2 * j + 1]);
  const int k = j % 4;  // block j's low bits: ql[i] or ql[32 + i] (low or high nibble), high bits at 2k of qh[i]
  const unsigned char* ql = p + 64 * (j / 4) + 32 * (k % 2);
  const unsigned char* qh = p + 128 + 32 * (j / 4);
  const int shift = k >= 2 ? 4 : 0;
  for (int i = 0; i < 32; ++i)
    levels[i] = static_cast<uint8_t>(((ql[i] >> shift) & 0x0F) | ((qh[i] >> (2 * k)) & 3) << 4);
}

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
          const auto q0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(v[j] * id + 8.5f)));
          const auto q1 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(v[j + 16] * id + 8.5f)));
          o[2 + j] = static_cast<unsigned char>(q0 | (q1 << 4));
        }
      }
      return;
    case WeightType::Q4_K:
      require_blocks("quantize_row q4_K", n, kSuperBlock);
      for (int64_t b = 0; b < n / kSuperBlock; ++b) quantize_q4_K_block(x + b * kSuperBlock, o + b * kQ4_KBlockBytes);
      return;
    case WeightType::Q6_K:
      require_blocks("quantize_row q6_K", n, kSuperBlock);
      for (int64_t b = 0; b < n / kSuperBlock; ++b) quantize_q6_K_block(x + b * kSuperBlock, o + b * kQ6_KBlockBytes);
      return;
  }
  fail(ErrorKind::Unsupported, cat("quantize_row: ", weight_type_name(type), " is not supported"));
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
    case WeightType::Q4_K:
      require_blocks("dequantize_row q4_K", n, kSuperBlock);
      for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ4_KBlockBytes) {
        const float d = f16_to_f32(load_u16(p)), dmin = f16_to_f32(load_u16(p + 2));
        for (int j = 0; j < 8; ++j) {
          int sc, m;
          q4_K_scale_min(j, p + 4, sc, m);
          const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(m);
          // d1 * q - m1, each rounded, as ggml's build computes it.
          for (int i = 0; i < 32; ++i)
            out[b * kSuperBlock + 32 * j + i] = dj * static_cast<float>(q4_K_level(p, 32 * j + i)) - mj;
        }
      }
      return;
    case WeightType::Q6_K:
      require_blocks("dequantize_row q6_K", n, kSuperBlock);
      for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ6_KBlockBytes) {
        const float d = f16_to_f32(load_u16(p + 208));
        const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
        for (int e = 0; e < kSuperBlock; ++e)
          out[b * kSuperBlock + e] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(q6_K_level(p, e) - 32);
      }
      return;
  }
  fail(ErrorKind::Unsupported, cat("dequantize_row: ", weight_type_name(type), " is not supported"));
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

namespace {
// vdpbf16ps's treatment of denormal sums: flushed to zeros of their sign (its inputs:
// bf16_to_f32_daz).
float ftz(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }
}  // namespace

float dot_bf16_ref(const void* row, const uint16_t* x, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  auto w = [&](int64_t i) { return load_u16(p + 2 * i); };
  float lane[16] = {};
  const int64_t whole = n / 32 * 32;
  for (int64_t i = 0; i < whole; i += 32)
    for (int l = 0; l < 16; ++l) {
      const int64_t even = i + 2 * l, odd = even + 1;
      lane[l] = ftz(std::fma(bf16_to_f32_daz(w(odd)), bf16_to_f32_daz(x[odd]), lane[l]));
      lane[l] = ftz(std::fma(bf16_to_f32_daz(w(even)), bf16_to_f32_daz(x[even]), lane[l]));
    }
  float quarter[4];
  for (int k = 0; k < 4; ++k) quarter[k] = ((lane[k] + lane[4 + k]) + lane[8 + k]) + lane[12 + k];
  float sum = (quarter[0] + quarter[1]) + (quarter[2] + quarter[3]);
  for (int64_t i = whole; i < n; ++i) sum = std::fma(bf16_to_f32_daz(w(i)), bf16_to_f32_daz(x[i]), sum);
  return sum;
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

float dot_q4_K_ref(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  double acc = 0;
  for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ4_KBlockBytes) {
    const double dw = f16_to_f32(load_u16(p)), dmin = f16_to_f32(load_u16(p + 2));
    for (int j = 0; j < 8; ++j) {
      const int64_t xb = b * 8 + j;  // the input's block of 32
      int sc, m;
      q4_K_scale_min(j, p + 4, sc, m);
      int64_t dot = 0;
      for (int i = 0; i < 32; ++i) dot += q4_K_level(p, 32 * j + i) * q[xb * kQuantBlock + i];
      acc += dw * sc * d[xb] * static_cast<double>(dot) - dmin * m * static_cast<double>(s[xb]) / 8;
    }
  }
  return static_cast<float>(acc);
}

float dot_q6_K_ref(const void* row, const int8_t* q, const float* d, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  double acc = 0;
  for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ6_KBlockBytes) {
    const double dw = f16_to_f32(load_u16(p + 208));
    const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
    for (int g = 0; g < 16; ++g) {
      int64_t dot = 0;
      for (int i = 0; i < 16; ++i) dot += (q6_K_level(p, 16 * g + i) - 32) * q[b * kSuperBlock + 16 * g + i];
      acc += dw * sc[g] * d[b * 8 + g / 2] * static_cast<double>(dot);
    }
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

// dot_q8_0_vnni of R weight rows against four input rows, a register tile (2 x R x 4
// accumulators): each input pair's bytes and scales loaded once for the R rows, each weight
// pair's once for the four inputs. The weights enter vpdpbusd as they are (signed) and each
// input as q + 128 (unsigned, prepared once per matmul), so the products carry 128 * sum(w)
// too: that is taken off by starting each dot from -128 * sum(w) of the four bytes of its
// lane, computed once per weight pair. Integer sums are exact (|sum| < 2^18), so each lane's
// int32 is dot_q8_0_vnni's; the scales are the same products (d_w * d_x, broadcast per half)
// and every float operation is dot_q8_0_vnni's in its order, so each output equals it bit for
// bit. Per weight row, input and pair: vpdpbusd, the scale's multiply, the conversion and the
// FMA (the sign form also took the masked negation and the scales' load and permute).
template <int R>
LM_AVX512 inline __attribute__((always_inline)) void q8_pair_vnni_tile(const unsigned char* const blk[], const uint8_t* const qu[4], const float* const d[4],
                                 int64_t b, __m512 acc[]) {
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512i w[R], offset[R];
  __m512 dw[R];
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) {
    w[r] = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[r] + 2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[r] + kQ8_0BlockBytes + 2)), 1);
    offset[r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                 _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), w[r]));
    const __m128i dw16 =
        _mm_cvtsi32_si128(static_cast<int>(load_u16(blk[r]) | (uint32_t{load_u16(blk[r] + kQ8_0BlockBytes)} << 16)));
    dw[r] = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(_mm_cvtph_ps(dw16)));
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512i x = _mm512_loadu_si512(qu[j] + b * kQuantBlock);
    const __m512 dx = _mm512_permutexvar_ps(
        halves, _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(d[j] + b)))));
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
      const __m512i dot = _mm512_dpbusd_epi32(offset[r], x, w[r]);
      acc[r * 4 + j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[r], dx), acc[r * 4 + j]);
    }
  }
}

template <int R>
LM_AVX512 void dot_q8_0_vnni_tile(const void* const rows[], const int8_t* const q[4], const float* const d[4],
                                  const uint8_t* const qu[4], int64_t n, float out[]) {
  const int64_t nb = n / kQuantBlock;
  __m512 a0[R * 4], a1[R * 4];
#pragma GCC unroll 8
  for (int k = 0; k < R * 4; ++k) a0[k] = a1[k] = _mm512_setzero_ps();
  const unsigned char* p[R];
  for (int r = 0; r < R; ++r) p[r] = static_cast<const unsigned char*>(rows[r]);
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    q8_pair_vnni_tile<R>(p, qu, d, b, a0);
    const unsigned char* p2[R];
    for (int r = 0; r < R; ++r) p2[r] = p[r] + 2 * kQ8_0BlockBytes;
    q8_pair_vnni_tile<R>(p2, qu, d, b + 2, a1);
    for (int r = 0; r < R; ++r) p[r] += 4 * kQ8_0BlockBytes;
  }
  if (b + 2 <= nb) {
    q8_pair_vnni_tile<R>(p, qu, d, b, a0);
    for (int r = 0; r < R; ++r) p[r] += 2 * kQ8_0BlockBytes;
    b += 2;
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) {
      __m256 t = _mm256_setzero_ps();
      if (b < nb) t = q8_block_vnni(p[r], q[j] + b * kQuantBlock, d[j][b], t);
      out[r * 4 + j] = hsum512(_mm512_add_ps(a0[r * 4 + j], a1[r * 4 + j])) + hsum256(t);
    }
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

// q4_K: the four runs of 32 nibble bytes each hold two sub-blocks of 32 (low nibbles, then
// high ones) whose inputs are 64 contiguous int8s. The eight sub-block factors d * sc * d_x
// are one vector per super-block; the mins come off once per row from dmin * m * s / 8.
//
// The 12 scale bytes unpack in two 64-bit words and one vector shuffle, no per-sub-block
// branches or scalar stores (a vector load of eight floats stored one by one misses store
// forwarding): with a = bytes 0..7 and h = bytes 8..11,
//   a & 0x3f..3f                         bytes 0..3 = sc0..3, bytes 4..7 = m0..3
//   (a >> 6 & 0x03..03) << 4 | nibbles   bytes 0..3 = sc4..7, bytes 4..7 = m4..7
// where nibbles holds h & 0x0f in bytes 0..3 and h >> 4 & 0x0f in bytes 4..7 (the layout
// comment in quant.h has the bit positions). Returns sc0..7 in bytes 0..7, m0..7 in 8..15.
LM_AVX2 __m128i q4_K_scales_mins(const unsigned char* b) {
  uint64_t a;
  uint32_t h;
  std::memcpy(&a, b, 8);
  std::memcpy(&h, b + 8, 4);
  const uint64_t low = a & 0x3f3f3f3f3f3f3f3fULL;
  const uint64_t nibbles = (h & 0x0f0f0f0fULL) | (static_cast<uint64_t>((h >> 4) & 0x0f0f0f0fU) << 32);
  const uint64_t high = (((a >> 6) & 0x0303030303030303ULL) << 4) | nibbles;
  // dwords [sc0..3, m0..3, sc4..7, m4..7] -> [sc0..3, sc4..7, m0..3, m4..7]
  return _mm_shuffle_epi32(_mm_set_epi64x(static_cast<int64_t>(high), static_cast<int64_t>(low)), _MM_SHUFFLE(3, 1, 2, 0));
}

// d and dmin of a q4_K super-block (its first four bytes) in lanes 0 and 1.
LM_AVX2 __m128 q4_K_d_dmin(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(v)));
}

// A q4_K super-block's eight sub-block factors d * sc_j * d_x(j) (returned, lanes 0..7), with
// `dx` and `sx` the input's eight block scales and sums; its mins' share dmin * m_j * s_j is
// added to `mins` (the caller takes the lanes' sum / 8 off once per row).
LM_AVX2 inline __m256 q4_K_factors(const unsigned char* p, const float* dx, const float* sx, __m256& mins) {
  const __m128i scm = q4_K_scales_mins(p + 4);
  const __m128 dd = q4_K_d_dmin(p);
  const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(scm));
  const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8)));
  const __m256 f = _mm256_mul_ps(_mm256_mul_ps(sc, _mm256_broadcastss_ps(dd)), _mm256_loadu_ps(dx));
  mins = _mm256_fmadd_ps(_mm256_mul_ps(m, _mm256_broadcastss_ps(_mm_movehdup_ps(dd))), _mm256_loadu_ps(sx), mins);
  return f;
}

// Run r (64 weights) of a q4_K super-block against its 64 activations, as 16 int32 sums.
// A function, not a lambda: a lambda does not inherit its caller's target attribute, so
// without -march=native it could not use the AVX-512 intrinsics.
LM_AVX512 inline __m512 q4_K_run_vnni(const unsigned char* nib, const int8_t* x, __m512i nibble_mask, int r) {
  const __m512i packed = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(nib + 32 * r)));
  const __m512i w = _mm512_and_si512(packed, nibble_mask);
  return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(x + 64 * r)));
}

// VNNI: each run of 32 bytes is broadcast to both halves of a 512-bit register and masked
// with 0x0f (low half) and 0xf0 (high half): the high nibbles enter the dot as 16 * q (at
// most 240, still an unsigned byte), and their factor carries the 1/16 (exact). Run r's
// scale vector (f[2r] in lanes 0..7, f[2r + 1] / 16 in lanes 8..15) is one permute of the
// sixteen factors; two accumulators halve the chain of dependent FMAs.
LM_AVX512 float dot_q4_K_vnni(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const __m512i nibble_mask = _mm512_inserti64x4(_mm512_set1_epi8(0x0F), _mm256_set1_epi8(static_cast<char>(0xF0)), 1);
  const __m512i idx0 = _mm512_set_epi32(9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i idx1 = _mm512_set_epi32(11, 11, 11, 11, 11, 11, 11, 11, 2, 2, 2, 2, 2, 2, 2, 2);
  const __m512i idx2 = _mm512_set_epi32(13, 13, 13, 13, 13, 13, 13, 13, 4, 4, 4, 4, 4, 4, 4, 4);
  const __m512i idx3 = _mm512_set_epi32(15, 15, 15, 15, 15, 15, 15, 15, 6, 6, 6, 6, 6, 6, 6, 6);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m256 mins = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ4_KBlockBytes) {
    const __m256 f = q4_K_factors(p, d + 8 * b, s + 8 * b, mins);
    const __m512 f16 = _mm512_insertf32x8(_mm512_castps256_ps512(f), _mm256_mul_ps(f, _mm256_set1_ps(1.0f / 16)), 1);
    const int8_t* x = q + b * kSuperBlock;
    const unsigned char* nib = p + 16;
    acc0 = _mm512_fmadd_ps(q4_K_run_vnni(nib, x, nibble_mask, 0), _mm512_permutexvar_ps(idx0, f16), acc0);
    acc1 = _mm512_fmadd_ps(q4_K_run_vnni(nib, x, nibble_mask, 1), _mm512_permutexvar_ps(idx1, f16), acc1);
    acc0 = _mm512_fmadd_ps(q4_K_run_vnni(nib, x, nibble_mask, 2), _mm512_permutexvar_ps(idx2, f16), acc0);
    acc1 = _mm512_fmadd_ps(q4_K_run_vnni(nib, x, nibble_mask, 3), _mm512_permutexvar_ps(idx3, f16), acc1);
  }
  return hsum512(_mm512_add_ps(acc0, acc1)) - hsum256(mins) / 8;
}

LM_AVX2 float dot_q4_K_avx2(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), mins = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ4_KBlockBytes) {
    const __m256 f = q4_K_factors(p, d + 8 * b, s + 8 * b, mins);
    const int8_t* x = q + b * kSuperBlock;
    for (int r = 0; r < 4; ++r) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * r));
      const __m256i lo = _mm256_and_si256(packed, low4), hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
      // |sum| of two products <= 2 * 15 * 127: no int16 overflow.
      const __m256i d0 = _mm256_madd_epi16(
          _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * r))), ones);
      const __m256i d1 = _mm256_madd_epi16(
          _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * r + 32))), ones);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * r)), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * r + 1)), acc1);
    }
  }
  return hsum256(_mm256_add_ps(acc0, acc1)) - hsum256(mins) / 8;
}

// q6_K: the levels 0..63 are the unsigned operand as they are; the offset of 32 comes off
// each group of 16 with the input's sum over it (a second dot against bytes of 1). Per half
// of 128, runs k = 0, 1 (elements 0..63) and k = 2, 3 (64..127) each pair with 64 contiguous
// inputs. Group g's factor d * scale_g * d_x(g / 2) is one lane of a 16-lane vector.
LM_AVX512 float dot_q6_K_vnni(const void* row, const int8_t* q, const float* d, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i half_index = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ6_KBlockBytes) {
    const float dw = f16_scalar_avx512(p + 208);
    const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192))));
    const __m512 dx = _mm512_permutexvar_ps(half_index, _mm512_castps256_ps512(_mm256_loadu_ps(d + 8 * b)));
    const __m512 f = _mm512_mul_ps(_mm512_mul_ps(sc, _mm512_set1_ps(dw)), dx);
    const int8_t* x = q + b * kSuperBlock;
    for (int h = 0; h < 2; ++h) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h));
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h));
      const __m256i q0 = _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), top2));
      const __m256i q1 = _mm256_or_si256(_mm256_and_si256(c, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), top2));
      const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4), _mm256_and_si256(hb, top2));
      const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), low4),
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 2), top2));
      for (int k = 0; k < 2; ++k) {
        const __m512i w = k == 0 ? _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1)
                                 : _mm512_inserti64x4(_mm512_castsi256_si512(q2), q3, 1);
        const __m512i xv = _mm512_loadu_si512(x + 128 * h + 64 * k);
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xv);
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xv);
        const __m512i net = _mm512_sub_epi32(dot, _mm512_slli_epi32(sum, 5));
        // lanes 4g'..4g'+3 belong to group 8h + 4k + g'
        const int g0 = 8 * h + 4 * k;
        const __m512 scale = _mm512_permutexvar_ps(
            _mm512_set_epi32(g0 + 3, g0 + 3, g0 + 3, g0 + 3, g0 + 2, g0 + 2, g0 + 2, g0 + 2, g0 + 1, g0 + 1, g0 + 1,
                             g0 + 1, g0, g0, g0, g0),
            f);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(net), scale, acc);
      }
    }
  }
  return hsum512(acc);
}

LM_AVX2 float dot_q6_K_avx2(const void* row, const int8_t* q, const float* d, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(row);
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  alignas(32) float f[16];
  for (int64_t b = 0; b < n / kSuperBlock; ++b, p += kQ6_KBlockBytes) {
    const float dw = f16_scalar_avx2(p + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
    for (int g = 0; g < 16; ++g) f[g] = dw * static_cast<float>(sc[g]) * d[8 * b + g / 2];
    const int8_t* x = q + b * kSuperBlock;
    for (int h = 0; h < 2; ++h) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h));
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h));
      const __m256i lv[4] = {
          _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), top2)),
          _mm256_or_si256(_mm256_and_si256(c, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), top2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4), _mm256_and_si256(hb, top2)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), low4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), top2))};
      for (int k = 0; k < 4; ++k) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 128 * h + 32 * k));
        // |sum| of two products <= 2 * 63 * 128: no int16 overflow.
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(lv[k], xv), ones16);
        const __m256i sum = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, xv), ones16);
        const __m256i net = _mm256_sub_epi32(dot, _mm256_slli_epi32(sum, 5));
        const int g = 8 * h + 2 * k;
        const __m256 scale = _mm256_set_m128(_mm_set1_ps(f[g + 1]), _mm_set1_ps(f[g]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(net), scale, acc);
      }
    }
  }
  return hsum256(acc);
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

float dot_q8_0(const void* row, const int8_t* q, const float* d, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_q8_0_vnni(row, q, d, n);
    case DotIsa::Avx2: return dot_q8_0_avx2(row, q, d, n);
    case DotIsa::Scalar: break;
  }
  return dot_q8_0_ref(row, q, d, n);
}

void offset_input_q8(const int8_t* q, int64_t n, uint8_t* qu) {
  for (int64_t i = 0; i < n; ++i) qu[i] = static_cast<uint8_t>(q[i] + 128);
}

void dot_q8_0_tile(const void* const rows[], int R, const int8_t* const q[4], const float* const d[4],
                   const uint8_t* const qu[4], int64_t n, float out[]) {
  if (dot_isa() == DotIsa::Vnni && R == 2) return dot_q8_0_vnni_tile<2>(rows, q, d, qu, n, out);
  if (dot_isa() == DotIsa::Vnni && R == 1) return dot_q8_0_vnni_tile<1>(rows, q, d, qu, n, out);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) out[r * 4 + j] = dot_q8_0(rows[r], q[j], d[j], n);
}

float dot_q4_0(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_q4_0_vnni(row, q, d, s, n);
    case DotIsa::Avx2: return dot_q4_0_avx2(row, q, d, s, n);
    case DotIsa::Scalar: break;
  }
  return dot_q4_0_ref(row, q, d, s, n);
}

float dot_q4_K(const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_q4_K_vnni(row, q, d, s, n);
    case DotIsa::Avx2: return dot_q4_K_avx2(row, q, d, s, n);
    case DotIsa::Scalar: break;
  }
  return dot_q4_K_ref(row, q, d, s, n);
}

float dot_q6_K(const void* row, const int8_t* q, const float* d, int64_t n) {
  switch (dot_isa()) {
    case DotIsa::Vnni: return dot_q6_K_vnni(row, q, d, n);
    case DotIsa::Avx2: return dot_q6_K_avx2(row, q, d, n);
    case DotIsa::Scalar: break;
  }
  return dot_q6_K_ref(row, q, d, n);
}

}  // namespace lm
