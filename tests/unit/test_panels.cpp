// The panel kernels (core/panels.h) against their plain twin, bit for bit: every output
// element one chain over the features in order, whatever the number of input rows, the rows
// asked for, the shapes' remainders (rows past a whole panel, odd bf16 rows) and the data
// (random, integer sums, denormals for the bf16 flushes, q8_0's extreme bytes); and the same
// element whether its input row is alone or one of many.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/panels.h"
#include "core/quant.h"
#include "core/rng.h"
#include "core/rows.h"

namespace lm {
namespace {

struct Matrix {
  WeightType type;
  int64_t OC, IC;
  std::vector<float> f32;      // F32 rows
  std::vector<uint16_t> bf16;  // BF16 (or F16) rows
  std::vector<uint8_t> q8;     // the rows of a block type (q8_0, q4_0, q4_K)
  WeightView view() const {
    if (type == WeightType::F32) return f32_weights(f32.data(), OC, IC);
    if (weight_type_blocked(type)) return {type, q8.data(), OC, IC, weight_row_bytes(type, IC)};
    return {type, bf16.data(), OC, IC, IC * 2};  // BF16 or F16
  }
};

Matrix random_matrix(WeightType type, int64_t OC, int64_t IC, Rng& rng, bool integers = false) {
  Matrix m{type, OC, IC, {}, {}, {}};
  std::vector<float> v(static_cast<size_t>(OC * IC));
  for (float& x : v) x = integers ? std::round(4 * rng.normal()) : rng.normal();
  if (type == WeightType::F32) {
    m.f32 = v;
  } else if (weight_type_blocked(type)) {
    m.q8.resize(static_cast<size_t>(OC * weight_row_bytes(type, IC)));
    quantize_row(type, v.data(), OC * IC, m.q8.data());
  } else if (type == WeightType::F16) {
    for (float x : v) m.bf16.push_back(f32_to_f16(x));
  } else {
    for (float x : v) m.bf16.push_back(f32_to_bf16(x));
  }
  return m;
}

std::vector<float> random_input(int64_t N, int64_t IC, Rng& rng, bool integers = false) {
  std::vector<float> x(static_cast<size_t>(N * IC));
  for (float& v : x) v = integers ? std::round(4 * rng.normal()) : rng.normal();
  return x;
}

// matmul_panels over rows [first, first + count) against its twin; outputs outside the range
// must stay as they were.
void expect_twin(const Matrix& m, const std::vector<float>& x, int64_t N, const float* bias, int64_t first,
                 int64_t count) {
  const WeightView w = m.view();
  const auto panels = make_panels(w);
  std::vector<uint32_t> in;
  panel_input(x.data(), N, m.IC, m.type, in);
  std::vector<float> got(static_cast<size_t>(N * m.OC), -7.0f), want(got);
  matmul_panels(got.data(), in.data(), N, *panels, bias, first, count);
  matmul_panels_ref(want.data(), x.data(), w, bias, N, first, count);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < m.OC; ++o) {
      const size_t i = static_cast<size_t>(n * m.OC + o);
      ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
          << weight_type_name(m.type) << " OC " << m.OC << " IC " << m.IC << " N " << N << " [" << first << ", "
          << first + count << ") at n " << n << " o " << o << ": " << got[i] << " vs " << want[i];
    }
}

TEST(Panels, EqualTheirTwinBitForBit) {
  Rng rng(71);
  for (WeightType type : {WeightType::F32, WeightType::BF16, WeightType::F16})
    for (auto [OC, IC] : {std::pair<int64_t, int64_t>{16, 32}, {37, 45}, {130, 96}, {8, 7}, {48, 1}, {200, 288}}) {
      const Matrix m = random_matrix(type, OC, IC, rng);
      std::vector<float> bias(static_cast<size_t>(OC));
      for (float& b : bias) b = rng.normal();
      for (int64_t N : {1, 2, 3, 4, 5, 8, 13, 16, 17, 33}) {
        const std::vector<float> x = random_input(N, IC, rng);
        expect_twin(m, x, N, nullptr, 0, OC);
        expect_twin(m, x, N, bias.data(), 0, OC);
        expect_twin(m, x, N, bias.data(), OC / 3, OC - OC / 3 - 1);  // a range that cuts panels
      }
    }
  for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_K, WeightType::Q6_K})
  for (auto [OC, IC] : {std::pair<int64_t, int64_t>{16, 256}, {37, 512}, {130, 768}, {8, 256}, {200, 288}, {64, 2048}, {20, 32}}) {
    if (IC % weight_type_block(type) != 0) continue;
    const Matrix m = random_matrix(type, OC, IC, rng);
    std::vector<float> bias(static_cast<size_t>(OC));
    for (float& b : bias) b = rng.normal();
    for (int64_t N : {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 33}) {
      const std::vector<float> x = random_input(N, IC, rng);
      expect_twin(m, x, N, nullptr, 0, OC);
      expect_twin(m, x, N, bias.data(), 0, OC);
      expect_twin(m, x, N, bias.data(), OC / 3, OC - OC / 3 - 1);
      expect_twin(m, x, N, nullptr, 16, OC - 16);  // whole panels not from the first
    }
  }
}

TEST(Panels, Q8EveryByteAndScaleIsItsTwins) {
  // Weights at the int8 extremes (-128 too: a file may hold it, and w + 128 is then 0) and
  // inputs whose blocks quantize to +-127, zero blocks (scale 0), and f16 scales from tiny to
  // large: the integer dots and the offset's correction at their limits.
  Rng rng(76);
  const int64_t OC = 48, IC = 256;
  Matrix m = random_matrix(WeightType::Q8_0, OC, IC, rng);
  for (int64_t o = 0; o < OC; ++o)
    for (int64_t b = 0; b < IC / kQuantBlock; ++b) {
      uint8_t* blk = m.q8.data() + (o * IC / kQuantBlock + b) * kQ8_0BlockBytes;
      const uint16_t scale = static_cast<uint16_t>(o % 3 == 0 ? 0x0001 : o % 3 == 1 ? 0x7BFF : 0x3C00);  // f16
      std::memcpy(blk, &scale, 2);
      for (int k = 0; k < kQuantBlock; ++k)
        if ((o + b + k) % 3 == 0) blk[2 + k] = static_cast<uint8_t>((o + k) % 2 ? 0x80 : 0x7F);  // -128, 127
    }
  for (int64_t N : {1, 2, 6, 16}) {
    std::vector<float> x = random_input(N, IC, rng);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < kQuantBlock; ++k) x[static_cast<size_t>(n * IC + k)] = 0.0f;          // a zero block
      for (int64_t k = 32; k < 64; ++k) x[static_cast<size_t>(n * IC + k)] = k % 2 ? -3.0f : 3.0f;  // all +-127
    }
    expect_twin(m, x, N, nullptr, 0, OC);
  }
}

TEST(Panels, Q4AndQ6ExtremesAreTheirTwins) {
  // q4_0, q4_K and q6_K rows with their level bits all 0 or all 1 in patterns (both halves of
  // a byte; q6_K's low and high bits), q4_K's 6-bit scales and mins at 63 (all scale bytes
  // 0xFF) or 0, q6_K's int8 scales at -128, 127 or 0, and inputs with zero blocks and blocks
  // at +-127.
  Rng rng(77);
  const int64_t OC = 33, IC = 512;
  for (WeightType type : {WeightType::Q4_0, WeightType::Q4_K, WeightType::Q6_K}) {
    Matrix m = random_matrix(type, OC, IC, rng);
    const int64_t row_bytes = weight_row_bytes(type, IC);
    const int64_t block = type == WeightType::Q4_0 ? kQ4_0BlockBytes : type == WeightType::Q4_K ? kQ4_KBlockBytes : kQ6_KBlockBytes;
    // The level bytes of a block: q4_0 after its scale, q4_K after d, dmin and the scales, q6_K
    // before its scales.
    const int64_t first = type == WeightType::Q4_0 ? 2 : type == WeightType::Q4_K ? 16 : 0;
    const int64_t last = type == WeightType::Q6_K ? 192 : block;
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t b = 0; b < row_bytes / block; ++b) {
        uint8_t* blk = m.q8.data() + o * row_bytes + b * block;
        for (int64_t k = first; k < last; ++k) {
          const uint8_t patterns[4] = {0x00, 0xFF, 0x0F, 0xF0};
          if ((o + b + k) % 2 == 0) blk[k] = patterns[(o + k) % 4];
        }
        if (type == WeightType::Q4_K) std::memset(blk + 4, o % 3 == 0 ? 0xFF : o % 3 == 1 ? 0x00 : blk[4], 12);
        if (type == WeightType::Q6_K)
          for (int g = 0; g < 16; ++g)
            if ((o + g) % 3 != 2) blk[192 + g] = (o + g) % 3 == 0 ? 0x80 : 0x7F;
      }
    for (int64_t N : {1, 3, 9, 16}) {
      std::vector<float> x = random_input(N, IC, rng);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < 32; ++k) x[static_cast<size_t>(n * IC + k)] = 0.0f;
        for (int64_t k = 64; k < 96; ++k) x[static_cast<size_t>(n * IC + k)] = k % 2 ? -3.0f : 3.0f;
      }
      expect_twin(m, x, N, nullptr, 0, OC);
    }
  }
}

TEST(Panels, IntegerSumsAreExact) {
  // Every partial sum representable: any product dropped, repeated or misplaced shows.
  Rng rng(72);
  for (WeightType type : {WeightType::F32, WeightType::BF16, WeightType::F16}) {
    const int64_t OC = 35, IC = 77;
    const Matrix m = random_matrix(type, OC, IC, rng, true);
    for (int64_t N : {1, 6, 16, 19}) {
      const std::vector<float> x = random_input(N, IC, rng, true);
      const auto panels = make_panels(m.view());
      std::vector<uint32_t> in;
      panel_input(x.data(), N, IC, type, in);
      std::vector<float> got(static_cast<size_t>(N * OC));
      matmul_panels(got.data(), in.data(), N, *panels, nullptr, 0, OC);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < OC; ++o) {
          double sum = 0;
          for (int64_t k = 0; k < IC; ++k) {
            const size_t i = static_cast<size_t>(o * IC + k);
            const double w = type == WeightType::F32   ? m.f32[i]
                             : type == WeightType::F16 ? f16_to_f32(m.bf16[i])
                                                       : bf16_to_f32(m.bf16[i]);
            sum += w * x[static_cast<size_t>(n * IC + k)];
          }
          ASSERT_EQ(got[static_cast<size_t>(n * OC + o)], static_cast<float>(sum)) << n << " " << o;
        }
    }
  }
}

TEST(Panels, Bf16FlushesDenormalsAsTheInstruction) {
  // Inputs and weights near the smallest normals: products and sums fall into the denormal
  // range, which vdpbf16ps (and the twin) flush to zeros.
  Rng rng(73);
  const int64_t OC = 20, IC = 34;
  Matrix m = random_matrix(WeightType::BF16, OC, IC, rng);
  for (size_t i = 0; i < m.bf16.size(); i += 3) m.bf16[i] = f32_to_bf16(bf16_to_f32(m.bf16[i]) * 1e-19f);
  for (size_t i = 1; i < m.bf16.size(); i += 7) m.bf16[i] = static_cast<uint16_t>(0x0001 + (i & 0x3f));  // denormal bf16
  for (int64_t N : {1, 9}) {
    std::vector<float> x = random_input(N, IC, rng);
    for (size_t i = 0; i < x.size(); i += 2) x[i] *= 1e-20f;
    expect_twin(m, x, N, nullptr, 0, OC);
  }
}

TEST(Panels, AnInputRowGetsTheSameNumbersAloneOrInABatch) {
  Rng rng(74);
  for (WeightType type : {WeightType::F32, WeightType::BF16, WeightType::F16, WeightType::Q8_0, WeightType::Q4_0,
                          WeightType::Q4_K, WeightType::Q6_K}) {
    const int64_t OC = 67, IC = weight_type_blocked(type) ? 512 : 130, N = 21;
    const Matrix m = random_matrix(type, OC, IC, rng);
    const auto panels = make_panels(m.view());
    const std::vector<float> x = random_input(N, IC, rng);
    std::vector<uint32_t> in;
    panel_input(x.data(), N, IC, type, in);
    std::vector<float> all(static_cast<size_t>(N * OC));
    matmul_panels(all.data(), in.data(), N, *panels, nullptr, 0, OC);
    for (int64_t n = 0; n < N; ++n) {
      std::vector<uint32_t> one;
      panel_input(x.data() + n * IC, 1, IC, type, one);
      std::vector<float> alone(static_cast<size_t>(OC));
      matmul_panels(alone.data(), one.data(), 1, *panels, nullptr, 0, OC);
      EXPECT_EQ(std::memcmp(alone.data(), all.data() + n * OC, static_cast<size_t>(OC) * sizeof(float)), 0) << n;
    }
  }
}

TEST(Panels, RowKernelTakesAViewsPanels) {
  // matmul_rows on a view with panels computes from them (not from the rows: changing the
  // rows after the panels were made does not change the product).
  Rng rng(75);
  for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::Q8_0, WeightType::Q4_K}) {
    Matrix m = random_matrix(type, 40, 256, rng);
    const auto panels = make_panels(m.view());
    const std::vector<float> x = random_input(5, 256, rng);
    std::vector<float> want(5 * 40), got(5 * 40);
    matmul_panels_ref(want.data(), x.data(), m.view(), nullptr, 5, 0, 40);
    for (float& v : m.f32) v = 0.0f;
    for (uint16_t& v : m.bf16) v = 0;
    for (uint8_t& v : m.q8) v = 0;
    WeightView w = m.view();
    w.panels = panels.get();
    matmul_rows(got.data(), x.data(), w, nullptr, 5, 0, 40);
    EXPECT_EQ(got, want) << weight_type_name(type);
  }
}

TEST(Panels, RowsOffTheBlocksAreRefused) {
  std::vector<uint8_t> q8(34 * 2);
  const WeightView odd{WeightType::Q8_0, q8.data(), 1, 48, 68};  // a row off the blocks
  EXPECT_THROW(make_panels(odd), Error);
}

}  // namespace
}  // namespace lm
