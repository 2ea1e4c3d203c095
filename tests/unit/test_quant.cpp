// Weight types below f32 (core/quant.h): the block layouts against bytes made by llama.cpp's
// own format definition (tests/fixtures/quant/make_quant_fixture.py) and, for q4_K and q6_K,
// by llama-quantize itself (tests/fixtures/quant/make_kquant_fixture.sh), each fast row-dot on
// every instruction set this CPU runs against its plain twin, and matmul_rows against
// matmul_rows_ref for every type, row count and row range.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/rng.h"
#include "core/rows.h"

namespace lm {
namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

nlohmann::json fixture() {
  std::ifstream in(std::string(LMKIT_SOURCE_DIR) + "/tests/fixtures/quant/blocks.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

TEST(Quant, BlocksMatchLlamaCppFormatDefinition) {
  const nlohmann::json j = fixture();
  ASSERT_GE(j["cases"].size(), 4u);
  for (const auto& c : j["cases"]) {
    const std::vector<float> x = c["x"].get<std::vector<float>>();
    const int64_t n = static_cast<int64_t>(x.size());
    for (const char* name : {"q8_0", "q4_0", "f16", "bf16"}) {
      const WeightType type = *weight_type_from_name(name);
      const std::vector<uint8_t> expect = from_hex(c[name].get<std::string>());
      ASSERT_EQ(static_cast<int64_t>(expect.size()), weight_row_bytes(type, n)) << name;
      std::vector<uint8_t> got(expect.size());
      quantize_row(type, x.data(), n, got.data());
      EXPECT_EQ(got, expect) << name << " of " << n;
      const std::vector<float> decoded_expect = c[std::string(name) + "_decoded"].get<std::vector<float>>();
      std::vector<float> decoded(static_cast<size_t>(n));
      dequantize_row(type, expect.data(), n, decoded.data());
      EXPECT_EQ(decoded, decoded_expect) << name;
    }
  }
}

// q4_K and q6_K super-blocks written by llama-quantize (Q4_K_M, no importance matrix) from
// f32 rows, and gguf-py's decoding of them: lmkit's quantizer gives the same bytes on these
// rows, among them super-blocks where a search with fused multiply-adds picks other scales
// (core/quant.h), its decoder the same floats.
TEST(Quant, KBlocksMatchLlamaQuantize) {
  std::ifstream in(std::string(LMKIT_SOURCE_DIR) + "/tests/fixtures/quant/kblocks.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  std::map<std::string, int> seen;
  for (const auto& c : j["cases"]) {
    const std::string name = c["type"].get<std::string>();
    const WeightType type = *weight_type_from_name(name);
    const std::vector<float> x = c["x"].get<std::vector<float>>();
    const int64_t n = static_cast<int64_t>(x.size());
    const std::vector<uint8_t> expect = from_hex(c["bytes"].get<std::string>());
    ASSERT_EQ(static_cast<int64_t>(expect.size()), weight_row_bytes(type, n)) << name;
    std::vector<uint8_t> got(expect.size());
    quantize_row(type, x.data(), n, got.data());
    const int64_t bb = type == WeightType::Q4_K ? kQ4_KBlockBytes : kQ6_KBlockBytes;
    for (int64_t b = 0; b < n / kSuperBlock; ++b)
      EXPECT_TRUE(std::equal(got.begin() + b * bb, got.begin() + (b + 1) * bb, expect.begin() + b * bb))
          << name << " " << c["what"].get<std::string>() << " super-block " << b;
    const std::vector<float> decoded_expect = c["decoded"].get<std::vector<float>>();
    std::vector<float> decoded(static_cast<size_t>(n));
    dequantize_row(type, expect.data(), n, decoded.data());
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(decoded[i], decoded_expect[i], 1e-6f * (1 + std::fabs(decoded_expect[i]))) << name << " " << i;
    ++seen[name];
  }
  EXPECT_GE(seen["q4_K"], 2);
  EXPECT_GE(seen["q6_K"], 2);
}

TEST(Quant, HandComputedBlocks) {
  // q8_0 of 0, 1, ..., 31 minus 16: max |x| = 16, d = 16 / 127 (f16 0x3008), q = round(x * 127 / 16).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  std::vector<uint8_t> q8(34);
  quantize_row(WeightType::Q8_0, x.data(), 32, q8.data());
  EXPECT_EQ(q8[0] | (q8[1] << 8), 0x3008);
  EXPECT_EQ(static_cast<int8_t>(q8[2]), -127);
  EXPECT_EQ(static_cast<int8_t>(q8[2 + 17]), 8);  // round(1 * 7.9375)
  EXPECT_EQ(static_cast<int8_t>(q8[2 + 31]), 119);  // round(15 * 7.9375) = round(119.06)
  // q4_0: the element of largest magnitude is -16, d = -16 / -8 = 2; q = min(15, trunc(x / 2 + 8.5)).
  std::vector<uint8_t> q4(18);
  quantize_row(WeightType::Q4_0, x.data(), 32, q4.data());
  EXPECT_EQ(q4[0] | (q4[1] << 8), 0x4000);  // 2.0 in f16
  EXPECT_EQ(q4[2] & 0x0F, 0);               // x0 = -16: trunc(-8 + 8.5) = 0
  EXPECT_EQ(q4[2] >> 4, 8);                 // x16 = 0: trunc(8.5) = 8
  EXPECT_EQ(q4[2 + 15] >> 4, 15);           // x31 = 15: min(15, trunc(16)) = 15
  std::vector<float> back(32);
  dequantize_row(WeightType::Q4_0, q4.data(), 32, back.data());
  EXPECT_EQ(back[0], -16.0f);
  EXPECT_EQ(back[31], 14.0f);
}

TEST(Quant, KSubBlocksGiveTheDecodedWeights) {
  // q4_K_sub_block and q6_K_sub_block (the panels' readers) against dequantize_row: every
  // weight rebuilt from the block's scales and levels (a wrong level is off by d * sc or more).
  Rng rng(31);
  std::vector<float> x(4 * kSuperBlock);
  for (float& v : x) v = rng.normal();
  for (WeightType type : {WeightType::Q4_K, WeightType::Q6_K}) {
    const int64_t block_bytes = type == WeightType::Q4_K ? kQ4_KBlockBytes : kQ6_KBlockBytes;
    std::vector<uint8_t> q(static_cast<size_t>(4 * block_bytes));
    quantize_row(type, x.data(), static_cast<int64_t>(x.size()), q.data());
    std::vector<float> want(x.size());
    dequantize_row(type, q.data(), static_cast<int64_t>(x.size()), want.data());
    for (int64_t s = 0; s < 4; ++s) {
      const uint8_t* blk = q.data() + s * block_bytes;
      uint16_t d16, dmin16;
      std::memcpy(&d16, blk + (type == WeightType::Q4_K ? 0 : 208), 2);
      std::memcpy(&dmin16, blk + 2, 2);
      const float d = f16_to_f32(d16), dmin = f16_to_f32(dmin16);
      for (int j = 0; j < 8; ++j) {
        uint8_t levels[32];
        float step, got[32];
        if (type == WeightType::Q4_K) {
          int sc, m;
          q4_K_sub_block(blk, j, sc, m, levels);
          step = d * static_cast<float>(sc);
          for (int i = 0; i < 32; ++i) got[i] = step * static_cast<float>(levels[i]) - dmin * static_cast<float>(m);
        } else {
          int8_t scales[2];
          q6_K_sub_block(blk, j, scales, levels);
          step = d * static_cast<float>(std::max(std::abs(scales[0]), std::abs(scales[1])));
          for (int i = 0; i < 32; ++i) got[i] = d * static_cast<float>(scales[i / 16]) * static_cast<float>(levels[i] - 32);
        }
        for (int i = 0; i < 32; ++i) {
          const float w = want[static_cast<size_t>(s * kSuperBlock + 32 * j + i)];
          ASSERT_LE(std::fabs(got[i] - w), 1e-5f * (std::fabs(w) + step)) << weight_type_name(type) << " " << s << " " << j << " " << i;
          ASSERT_LT(levels[i], type == WeightType::Q4_K ? 16 : 64);
        }
      }
    }
  }
}

TEST(Quant, RowBytesAndNames) {
  EXPECT_EQ(weight_row_bytes(WeightType::Q8_0, 64), 68);
  EXPECT_EQ(weight_row_bytes(WeightType::Q4_0, 64), 36);
  EXPECT_EQ(weight_row_bytes(WeightType::BF16, 5), 10);
  EXPECT_THROW(weight_row_bytes(WeightType::Q8_0, 48), Error);
  EXPECT_EQ(weight_row_bytes(WeightType::Q4_K, 512), 288);
  EXPECT_EQ(weight_row_bytes(WeightType::Q6_K, 256), 210);
  EXPECT_THROW(weight_row_bytes(WeightType::Q4_K, 288), Error);
  for (const char* name : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_K", "q6_K"}) EXPECT_STREQ(weight_type_name(*weight_type_from_name(name)), name);
  EXPECT_FALSE(weight_type_from_name("q5_0").has_value());
}

TEST(Quant, InputBlocksRoundToNearest) {
  Rng rng(31);
  std::vector<float> x(96);
  for (float& v : x) v = 3 * rng.normal();
  std::vector<int8_t> q(96);
  std::vector<float> d(3), s(3);
  quantize_input_q8(x.data(), 96, q.data(), d.data(), s.data());
  for (int64_t b = 0; b < 3; ++b) {
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int64_t i = b * 32 + j;
      EXPECT_LE(std::fabs(d[b] * q[i] - x[i]), 0.5001 * d[b]) << i;
      sum += q[i];
    }
    EXPECT_FLOAT_EQ(s[b], 8.0f * d[b] * static_cast<float>(sum));
  }
}

// The instruction sets this CPU runs, then back to cpuid's choice.
std::vector<std::string> isas() {
  std::vector<std::string> out;
  for (const char* isa : {"avx512_vnni", "avx2", "scalar"})
    if (set_quant_dot_isa(isa)) out.push_back(isa);
  set_quant_dot_isa("best");
  return out;
}

struct IsaGuard {
  ~IsaGuard() { set_quant_dot_isa("best"); }
};

std::vector<uint8_t> random_row(Rng& rng, WeightType type, int64_t n, std::vector<float>* values = nullptr) {
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = rng.normal();
  std::vector<uint8_t> row(static_cast<size_t>(weight_row_bytes(type, n)));
  quantize_row(type, x.data(), n, row.data());
  if (values) {
    values->resize(static_cast<size_t>(n));
    dequantize_row(type, row.data(), n, values->data());
  }
  return row;
}

// The f16 row-dot (core/rows.h: dot_f32's order, the build's vectors, not the int8 dots'
// run-time ISA choice) against its double-accumulating reference.
TEST(Quant, F16DotMatchesReference) {
  Rng rng(32);
  for (int64_t n : {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 768}) {
    std::vector<float> w;
    const std::vector<uint8_t> row = random_row(rng, WeightType::F16, n, &w);
    std::vector<float> x(static_cast<size_t>(n));
    double sum_abs = 0;
    for (int64_t i = 0; i < n; ++i) {
      x[i] = rng.normal();
      sum_abs += std::fabs(static_cast<double>(w[i]) * x[i]);
    }
    EXPECT_LE(std::fabs(static_cast<double>(dot_f16(row.data(), x.data(), n)) - dot_f16_ref(row.data(), x.data(), n)),
              (n / 8.0 + 24) * 6e-8 * sum_abs)
        << "n=" << n;
  }
}

// The bf16 row-dot (vdpbf16ps where the build has AVX512_BF16, else its emulation) is its
// lane-by-lane twin bit for bit, at lengths on and off its 32-feature steps (the 128-feature
// loop, single steps, the tail), and a dot product: within rounding of the double sum of the
// same products.
TEST(Quant, Bf16DotIsItsTwinBitForBit) {
  Rng rng(33);
  for (int64_t n : {0, 1, 7, 16, 31, 32, 33, 63, 64, 65, 100, 128, 129, 257, 768, 2048}) {
    std::vector<float> w;
    const std::vector<uint8_t> row = random_row(rng, WeightType::BF16, n, &w);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = rng.normal();
    std::vector<uint16_t> xb(static_cast<size_t>(n));
    round_input_bf16(x.data(), n, xb.data());
    const float fast = dot_bf16(row.data(), xb.data(), n), ref = dot_bf16_ref(row.data(), xb.data(), n);
    EXPECT_EQ(std::memcmp(&fast, &ref, sizeof fast), 0) << "n=" << n << ": " << fast << " vs " << ref;
    double sum = 0, sum_abs = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double p = static_cast<double>(w[i]) * bf16_to_f32(xb[i]);
      sum += p;
      sum_abs += std::fabs(p);
    }
    EXPECT_LE(std::fabs(fast - sum), (n / 8.0 + 24) * 6e-8 * sum_abs) << "n=" << n;
  }
}

// Denormals as the instruction treats them, and the twin likewise: a denormal weight or input
// reads as zero, a lane's sum that falls below the normal range becomes zero. Without the
// flushes each of these dots would be nonzero.
TEST(Quant, Bf16DotFlushesDenormals) {
  const uint16_t tiny = f32_to_bf16(std::ldexp(1.0f, -70)), big = f32_to_bf16(std::ldexp(1.0f, 100));
  const uint16_t denormal = 0x0001, one = f32_to_bf16(1.0f);  // 0x0001: 2^-133
  struct Case {
    const char* what;
    uint16_t w, x;
  };
  for (const Case& c : {Case{"denormal weight", denormal, big}, Case{"denormal input", big, denormal},
                        Case{"denormal product", tiny, tiny}}) {
    for (int64_t n : {32, 33}) {  // the vector steps; then one more feature of 1 x 1 in the tail
      std::vector<uint16_t> w(static_cast<size_t>(n), c.w), x(static_cast<size_t>(n), c.x);
      if (n == 33) w[32] = x[32] = one;
      const float want = n == 33 ? 1.0f : 0.0f;
      EXPECT_EQ(dot_bf16(w.data(), x.data(), n), want) << c.what << ", n=" << n;
      EXPECT_EQ(dot_bf16_ref(w.data(), x.data(), n), want) << c.what << ", n=" << n;
      EXPECT_NE(bf16_to_f32(c.w) * bf16_to_f32(c.x), 0.0f) << c.what;  // a nonzero product unflushed
    }
  }
}

// The bf16 dot's input: f32_to_bf16 of every element (to nearest even; ties, NaN, infinities,
// overflow to infinity, denormals), 16 at a time and the rest one by one.
TEST(Quant, RoundInputBf16IsF32ToBf16) {
  Rng rng(34);
  std::vector<float> x = {0.0f, -0.0f, 1.0f, std::ldexp(1.0f, -140), -std::ldexp(1.0f, -130),
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::max(), bf16_to_f32(0x3f80) + std::ldexp(1.0f, -8),
                          bf16_to_f32(0x3f81) + std::ldexp(1.0f, -8)};  // ties: to even down, to even up
  uint32_t signalling = 0x7f800001u;
  float snan;
  std::memcpy(&snan, &signalling, 4);
  x.push_back(snan);
  for (int i = 0; i < 40; ++i) x.push_back(rng.normal() * std::ldexp(1.0f, static_cast<int>(rng.below(60)) - 30));
  std::vector<uint16_t> out(x.size());
  round_input_bf16(x.data(), static_cast<int64_t>(x.size()), out.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], f32_to_bf16(x[i])) << i << ": " << x[i];
}

float int_dot(WeightType type, const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  switch (type) {
    case WeightType::Q8_0: return dot_q8_0(row, q, d, n);
    case WeightType::Q4_0: return dot_q4_0(row, q, d, s, n);
    case WeightType::Q4_K: return dot_q4_K(row, q, d, s, n);
    case WeightType::Q6_K: return dot_q6_K(row, q, d, n);
    default: ADD_FAILURE() << "not an int8 type";
  }
  return 0;
}

float int_dot_ref(WeightType type, const void* row, const int8_t* q, const float* d, const float* s, int64_t n) {
  switch (type) {
    case WeightType::Q8_0: return dot_q8_0_ref(row, q, d, n);
    case WeightType::Q4_0: return dot_q4_0_ref(row, q, d, s, n);
    case WeightType::Q4_K: return dot_q4_K_ref(row, q, d, s, n);
    case WeightType::Q6_K: return dot_q6_K_ref(row, q, d, n);
    default: ADD_FAILURE() << "not an int8 type";
  }
  return 0;
}

TEST(Quant, IntDotsMatchReferenceOnEveryIsa) {
  IsaGuard guard;
  Rng rng(33);
  for (const std::string& isa : isas()) {
    ASSERT_TRUE(set_quant_dot_isa(isa));
    for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_K, WeightType::Q6_K}) {
      for (int64_t n : {32, 64, 96, 160, 288, 768, 32 * 37, 2048}) {
        if (n % weight_type_block(type) != 0) continue;
        std::vector<float> w;
        const std::vector<uint8_t> row = random_row(rng, type, n, &w);
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = rng.normal();
        std::vector<int8_t> q(static_cast<size_t>(n));
        std::vector<float> d(static_cast<size_t>(n / 32)), s(d.size());
        quantize_input_q8(x.data(), n, q.data(), d.data(), s.data());
        double sum_abs = 0;
        for (int64_t i = 0; i < n; ++i) sum_abs += std::fabs(static_cast<double>(w[i]) * d[i / 32] * q[i]);
        const float fast = int_dot(type, row.data(), q.data(), d.data(), s.data(), n);
        const float ref = int_dot_ref(type, row.data(), q.data(), d.data(), s.data(), n);
        // q4_0's offset is taken off once per block in float: bound by 8 * |d_w d_x sum(q)| too.
        EXPECT_LE(std::fabs(static_cast<double>(fast) - ref), (n / 32.0 + 24) * 6e-8 * 10 * sum_abs + 1e-30)
            << isa << " " << weight_type_name(type) << " n=" << n;
        EXPECT_NE(ref, 0.0f);
      }
    }
  }
}

// One wrong weight, scale or nibble half moves a dot far beyond the tolerance above: the
// integer products are exact, so kernels agree with the reference to float rounding only.
TEST(Quant, IntDotsSeeEveryElement) {
  IsaGuard guard;
  for (const std::string& isa : isas()) {
    ASSERT_TRUE(set_quant_dot_isa(isa));
    for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_K, WeightType::Q6_K}) {
      const int64_t n = weight_type_block(type) == kSuperBlock ? 512 : 96;
      std::vector<int8_t> q(n, 0);
      std::vector<float> d(n / 32, 1.0f), s(n / 32, 0.0f);
      std::vector<float> w(n);
      // Every element distinct enough, and sub-blocks of different ranges (q4_K's mins, q6_K's scales).
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>((i * 7) % 15) - 7.0f + static_cast<float>((i / 32) % 5);
      std::vector<uint8_t> row(static_cast<size_t>(weight_row_bytes(type, n)));
      quantize_row(type, w.data(), n, row.data());
      std::vector<float> wd(n);
      dequantize_row(type, row.data(), n, wd.data());
      for (int64_t i = 0; i < n; ++i) {
        std::fill(q.begin(), q.end(), int8_t{0});
        q[i] = 1;
        std::fill(s.begin(), s.end(), 0.0f);
        s[i / 32] = 8.0f;  // 8 * d * sum(q)
        const float got = int_dot(type, row.data(), q.data(), d.data(), s.data(), n);
        EXPECT_NEAR(got, wd[i], 2e-6f * (1 + std::fabs(wd[i]))) << isa << " " << weight_type_name(type) << " element " << i;
      }
    }
  }
}

// q4_K super-blocks of random bytes: every bit pattern of the 12 scale bytes is a valid field
// (six-bit scales and mins up to 63, top bits set), unlike a quantizer's output, whose largest
// scale is always 63. The fast kernels unpack the field with word masks and a shuffle; the
// reference with per-sub-block shifts (q4_K_scale_min).
TEST(Quant, Q4KDotsUnpackEveryScaleBit) {
  IsaGuard guard;
  Rng rng(35);
  const int64_t n = 4 * kSuperBlock;
  for (const std::string& isa : isas()) {
    ASSERT_TRUE(set_quant_dot_isa(isa));
    for (int trial = 0; trial < 64; ++trial) {
      std::vector<uint8_t> row(static_cast<size_t>(weight_row_bytes(WeightType::Q4_K, n)));
      for (uint8_t& b : row) b = static_cast<uint8_t>(rng.next_u64());
      for (int64_t b = 0; b < n / kSuperBlock; ++b) {  // d and dmin: finite f16 of moderate size
        row[static_cast<size_t>(b * kQ4_KBlockBytes + 1)] = static_cast<uint8_t>(0x10 + rng.below(0x18));
        row[static_cast<size_t>(b * kQ4_KBlockBytes + 3)] = static_cast<uint8_t>(0x10 + rng.below(0x18));
      }
      std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n));
      for (float& v : x) v = rng.normal();
      std::vector<int8_t> q(static_cast<size_t>(n));
      std::vector<float> d(static_cast<size_t>(n / 32)), s(d.size());
      quantize_input_q8(x.data(), n, q.data(), d.data(), s.data());
      dequantize_row(WeightType::Q4_K, row.data(), n, w.data());
      double sum_abs = 0;
      for (int64_t i = 0; i < n; ++i) sum_abs += std::fabs(static_cast<double>(w[i]) * d[i / 32] * q[i]);
      const float fast = dot_q4_K(row.data(), q.data(), d.data(), s.data(), n);
      const float ref = dot_q4_K_ref(row.data(), q.data(), d.data(), s.data(), n);
      EXPECT_LE(std::fabs(static_cast<double>(fast) - ref), (n / 32.0 + 24) * 6e-8 * 10 * sum_abs) << isa << " trial " << trial;
    }
  }
}

TEST(Quant, MatmulRowsMatchesReferenceForEveryType) {
  IsaGuard guard;
  Rng rng(34);
  for (const std::string& isa : isas()) {
    ASSERT_TRUE(set_quant_dot_isa(isa));
    for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16, WeightType::Q8_0, WeightType::Q4_0,
                            WeightType::Q4_K, WeightType::Q6_K}) {
      const int64_t IC = weight_type_block(type) == kSuperBlock ? 512 : weight_type_blocked(type) ? 96 : 77, OC = 13, pad = 8;
      const int64_t rb = weight_row_bytes(type, IC) + pad;
      std::vector<uint8_t> weights(static_cast<size_t>(OC * rb), 0xAB);
      for (int64_t o = 0; o < OC; ++o) {
        const std::vector<uint8_t> row = random_row(rng, type, IC);
        std::copy(row.begin(), row.end(), weights.begin() + o * rb);
      }
      const WeightView w{type, weights.data(), OC, IC, rb};
      std::vector<float> bias(OC);
      for (float& b : bias) b = rng.normal();
      for (int64_t N = 1; N <= 5; ++N) {
        std::vector<float> inp(static_cast<size_t>(N * IC));
        for (float& v : inp) v = rng.normal();
        for (auto [first, count] : {std::pair<int64_t, int64_t>{0, OC}, {3, 1}, {5, 7}}) {
          std::vector<float> out(static_cast<size_t>(N * OC), -99.0f), ref(out);
          const RowsInput in(inp.data(), N, IC, type);
          matmul_rows(out.data(), in, w, N % 2 ? bias.data() : nullptr, first, count);
          matmul_rows_ref(ref.data(), inp.data(), w, N % 2 ? bias.data() : nullptr, N, first, count);
          for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < OC; ++o) {
              const float a = out[n * OC + o], b = ref[n * OC + o];
              if (o < first || o >= first + count)
                EXPECT_EQ(a, -99.0f);
              else
                EXPECT_NEAR(a, b, 2e-5 * (1 + std::fabs(b)))
                    << isa << " " << weight_type_name(type) << " N=" << N << " o=" << o;
            }
        }
      }
    }
  }
}

}  // namespace
}  // namespace lm
