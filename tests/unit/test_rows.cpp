// The row kernel (core/rows.h) against its plain twins: dot_f32 and matmul_rows held to the
// double-accumulating references, exactly on integer data (every partial sum representable,
// so any dropped, repeated or misplaced element shows) and within the float rounding bound on
// random data; unimplemented weight types refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/rng.h"
#include "core/rows.h"

namespace lm {
namespace {

constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // float

// The rounding bound of a float sum of n products accumulated in 16 lanes, reduced and
// rounded, relative to the sum of the products' magnitudes: (n / 16 + 24) unit roundoffs.
double dot_bound(int64_t n, double sum_abs) { return (static_cast<double>(n) / 16 + 24) * kUnitRoundoff * sum_abs; }

// Lengths around the kernel's 16- and 64-float steps.
const std::vector<int64_t> kLengths = {0, 1, 3, 15, 16, 17, 31, 48, 63, 64, 65, 79, 127, 128, 129, 200, 288, 1000};

TEST(RowKernels, DotF32EqualsReferenceOnIntegers) {
  Rng rng(21);
  for (int64_t n : kLengths) {
    std::vector<float> w(n), x(n);
    for (int64_t i = 0; i < n; ++i) {
      w[i] = std::round(8 * rng.normal());  // |sum| stays far below 2^24: every sum exact
      x[i] = std::round(8 * rng.normal());
    }
    EXPECT_EQ(dot_f32(w.data(), x.data(), n), dot_f32_ref(w.data(), x.data(), n)) << n;
  }
  // One non-zero product at each position: the kernel reaches every element, once.
  const int64_t n = 131;
  std::vector<float> w(n), x(n, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    std::fill(w.begin(), w.end(), 0.0f);
    w[i] = static_cast<float>(i + 1);
    EXPECT_EQ(dot_f32(w.data(), x.data(), n), static_cast<float>(i + 1)) << i;
  }
}

TEST(RowKernels, DotF32MatchesReferenceWithinRounding) {
  Rng rng(22);
  for (int64_t n : kLengths) {
    std::vector<float> w(n), x(n);
    double sum_abs = 0;
    for (int64_t i = 0; i < n; ++i) {
      w[i] = rng.normal();
      x[i] = rng.normal();
      sum_abs += std::fabs(static_cast<double>(w[i]) * x[i]);
    }
    const float fast = dot_f32(w.data(), x.data(), n), ref = dot_f32_ref(w.data(), x.data(), n);
    EXPECT_LE(std::fabs(static_cast<double>(fast) - ref), dot_bound(n, sum_abs)) << n;
  }
}

// Weights with padded rows (row_bytes past IC floats, the padding NaN) and outputs pre-set to
// a marker: matmul_rows must read only its rows' IC weights and write only its columns.
struct RowsCase {
  int64_t N, IC, OC, pad;
  std::vector<float> inp, weights, bias;
  WeightView view() const {
    return {WeightType::F32, weights.data(), OC, IC, (IC + pad) * static_cast<int64_t>(sizeof(float))};
  }
};

RowsCase make_case(Rng& rng, int64_t N, int64_t IC, int64_t OC, bool integers) {
  RowsCase c{N, IC, OC, 3, {}, {}, {}};
  auto value = [&] { return integers ? std::round(8 * rng.normal()) : rng.normal(); };
  c.inp.resize(N * IC);
  for (auto& v : c.inp) v = value();
  c.weights.assign(OC * (IC + c.pad), std::numeric_limits<float>::quiet_NaN());
  for (int64_t o = 0; o < OC; ++o)
    for (int64_t i = 0; i < IC; ++i) c.weights[o * (IC + c.pad) + i] = value();
  c.bias.resize(OC);
  for (auto& v : c.bias) v = value();
  return c;
}

struct Range {
  int64_t first, count;
};
std::vector<Range> ranges(int64_t OC) { return {{0, OC}, {0, 1}, {OC - 1, 1}, {4, OC - 7}, {5, 0}}; }

TEST(RowKernels, MatmulRowsEqualsReferenceOnIntegers) {
  Rng rng(23);
  constexpr float kMarker = -12345.0f;
  for (int64_t N : {1, 2, 3, 5})
    for (int64_t IC : {1, 7, 16, 33, 64, 100, 129}) {
      const RowsCase c = make_case(rng, N, IC, 13, true);
      for (bool with_bias : {false, true})
        for (const Range r : ranges(c.OC)) {
          const float* bias = with_bias ? c.bias.data() : nullptr;
          std::vector<float> out(N * c.OC, kMarker), ref(out.size(), kMarker);
          matmul_rows(out.data(), c.inp.data(), c.view(), bias, N, r.first, r.count);
          matmul_rows_ref(ref.data(), c.inp.data(), c.view(), bias, N, r.first, r.count);
          EXPECT_EQ(out, ref) << N << " x " << IC << ", rows " << r.first << "+" << r.count << ", bias " << with_bias;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < c.OC; ++o) {
              const bool inside = o >= r.first && o < r.first + r.count;
              EXPECT_EQ(out[n * c.OC + o] == kMarker, !inside) << n << ", " << o;
            }
        }
    }
}

TEST(RowKernels, MatmulRowsMatchesReferenceWithinRounding) {
  Rng rng(24);
  for (int64_t N : {1, 2, 3, 5})
    for (int64_t IC : {7, 33, 100, 129, 288}) {
      const RowsCase c = make_case(rng, N, IC, 17, false);
      for (bool with_bias : {false, true})
        for (const Range r : ranges(c.OC)) {
          const float* bias = with_bias ? c.bias.data() : nullptr;
          std::vector<float> out(N * c.OC, 0.0f), ref(out.size(), 0.0f);
          matmul_rows(out.data(), c.inp.data(), c.view(), bias, N, r.first, r.count);
          matmul_rows_ref(ref.data(), c.inp.data(), c.view(), bias, N, r.first, r.count);
          for (int64_t n = 0; n < N; ++n)
            for (int64_t o = r.first; o < r.first + r.count; ++o) {
              double sum_abs = bias ? std::fabs(bias[o]) : 0.0;
              for (int64_t i = 0; i < IC; ++i)
                sum_abs += std::fabs(static_cast<double>(c.inp[n * IC + i]) * c.weights[o * (IC + c.pad) + i]);
              EXPECT_LE(std::fabs(static_cast<double>(out[n * c.OC + o]) - ref[n * c.OC + o]),
                        dot_bound(IC, sum_abs) + kUnitRoundoff * sum_abs)
                  << N << " x " << IC << ", row " << o << ", bias " << with_bias;
            }
        }
    }
}

// The f32 row kernel is dot_f32 plus the bias, bit for bit: what the decode paths computed
// before they shared it, and what the batched path's few-row matmul computes.
TEST(RowKernels, MatmulRowsIsDotF32PlusBiasBitForBit) {
  Rng rng(25);
  const RowsCase c = make_case(rng, 3, 100, 11, false);
  std::vector<float> out(3 * c.OC);
  matmul_rows(out.data(), c.inp.data(), c.view(), c.bias.data(), 3, 0, c.OC);
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t o = 0; o < c.OC; ++o)
      EXPECT_EQ(out[n * c.OC + o], dot_f32(c.weights.data() + o * (c.IC + c.pad), c.inp.data() + n * c.IC, c.IC) +
                                       c.bias[o]);
}

// The blocked kernel (many input rows) against its plain twin, one row-dot per element, bit
// for bit, for f32, bf16 and f16 rows, at awkward shapes: features below one vector, off
// the 16-float vectors and off the 256-float chunks; 1..17 input rows (tiles of 4 and the rows
// left); weight rows off the 4-row tiles and the 16-row blocks, from an offset; padded weight
// rows (NaN padding, never read); with and without bias; columns outside the range left as
// they were. The f16 rows are also dot_f32 of the same values widened to f32, bit for bit, and
// the bf16 rows' elements dot_bf16_ref's (+ bias) of the input rounded to bf16.
TEST(RowKernels, BlockedRowsAreOneRowDotBitForBit) {
  Rng rng(26);
  constexpr float kMarker = -12345.0f;
  for (int64_t IC : {1, 15, 16, 17, 255, 256, 257, 300, 529, 777}) {
    const RowsCase c = make_case(rng, 17, IC, 37, false);
    // The same weights in bf16 and f16 (rounded), padded rows likewise; and the f16 values
    // back in f32.
    std::vector<uint16_t> bf16(c.weights.size()), f16(c.weights.size());
    RowsCase f16_widened = c;
    for (size_t i = 0; i < c.weights.size(); ++i) {
      bf16[i] = f32_to_bf16(c.weights[i]);
      quantize_row(WeightType::F16, &c.weights[i], 1, &f16[i]);
      dequantize_row(WeightType::F16, &f16[i], 1, &f16_widened.weights[i]);
    }
    const WeightView bf16_view{WeightType::BF16, bf16.data(), c.OC, IC, (IC + c.pad) * 2};
    const WeightView f16_view{WeightType::F16, f16.data(), c.OC, IC, (IC + c.pad) * 2};
    for (const WeightView view : {c.view(), bf16_view, f16_view})
      for (int64_t N = 1; N <= 17; ++N)
        for (const Range r : {Range{0, 37}, Range{3, 30}, Range{36, 1}, Range{5, 0}})
          for (bool with_bias : {false, true}) {
            const float* bias = with_bias ? c.bias.data() : nullptr;
            std::vector<float> out(N * c.OC, kMarker), twin(out.size(), kMarker), dispatched(out.size(), kMarker);
            const RowsInput in(c.inp.data(), N, IC, view.type);
            matmul_rows_blocked(out.data(), in, view, bias, r.first, r.count);
            matmul_rows_one_by_one(twin.data(), in, view, bias, r.first, r.count);
            matmul_rows(dispatched.data(), c.inp.data(), view, bias, N, r.first, r.count);
            const std::string at = std::string(weight_type_name(view.type)) + ", IC " + std::to_string(IC) + ", N " +
                                   std::to_string(N) + ", rows " + std::to_string(r.first) + "+" +
                                   std::to_string(r.count) + ", bias " + std::to_string(with_bias);
            ASSERT_EQ(0, std::memcmp(out.data(), twin.data(), out.size() * sizeof(float))) << at;
            ASSERT_EQ(0, std::memcmp(dispatched.data(), twin.data(), out.size() * sizeof(float))) << at;
            if (view.type == WeightType::F16) {
              std::vector<float> f32(out.size(), kMarker);
              matmul_rows_one_by_one(f32.data(), RowsInput(c.inp.data(), N, IC, WeightType::F32), f16_widened.view(),
                                     bias, r.first, r.count);
              ASSERT_EQ(0, std::memcmp(f32.data(), twin.data(), out.size() * sizeof(float))) << at;
            }
            if (view.type == WeightType::BF16)
              for (int64_t n = 0; n < N; ++n)
                for (int64_t o = r.first; o < r.first + r.count; ++o) {
                  const float dot = dot_bf16_ref(bf16.data() + o * (IC + c.pad), in.bf.data() + n * IC, IC);
                  ASSERT_EQ(twin[n * c.OC + o], bias ? dot + bias[o] : dot) << at << ", " << n << ", " << o;
                }
            for (int64_t n = 0; n < N; ++n)
              for (int64_t o = 0; o < c.OC; ++o) {
                const bool inside = o >= r.first && o < r.first + r.count;
                EXPECT_EQ(out[n * c.OC + o] == kMarker, !inside) << n << ", " << o;
              }
          }
  }
}

// The test above would catch a change of order: on its data, the sums of the same products
// in another order (each 256-feature chunk summed alone and the chunks' sums added, as a
// blocked kernel that did not carry the accumulators would; or the vectors walked from the
// last) differ from dot_f32 in most elements.
TEST(RowKernels, BlockedF32TestSeesAnOrderChange) {
  Rng rng(26);
  const int64_t IC = 777;
  const RowsCase c = make_case(rng, 17, IC, 37, false);
  int chunked_differs = 0, reversed_differs = 0, total = 0;
  for (int64_t o = 0; o < c.OC; ++o)
    for (int64_t n = 0; n < c.N; ++n) {
      const float* w = c.weights.data() + o * (IC + c.pad);
      const float* x = c.inp.data() + n * IC;
      const float one = dot_f32(w, x, IC);
      float chunked = 0;
      for (int64_t k0 = 0; k0 < IC; k0 += 256) chunked += dot_f32(w + k0, x + k0, std::min<int64_t>(256, IC - k0));
      float reversed = 0;  // whole vectors last to first, then the tail
      const int64_t whole = IC / 16 * 16;
      for (int64_t k0 = whole - 16; k0 >= 0; k0 -= 16) reversed += dot_f32(w + k0, x + k0, 16);
      reversed += dot_f32(w + whole, x + whole, IC - whole);
      chunked_differs += chunked != one;
      reversed_differs += reversed != one;
      ++total;
    }
  EXPECT_GT(chunked_differs, total / 2) << total;
  EXPECT_GT(reversed_differs, total / 2) << total;
}

// The same for the horizontal sums, which the blocked kernel does four elements at a time
// (horizontal_sums4): dot_f32 emulated lane by lane (16 float accumulators of fused
// multiply-adds, as the kernel's vectors) and summed in its order gives dot_f32 exactly on
// this data, so the emulation is the kernel's; summed in other orders (the quarters added
// right to left, the last step as (q0 + q2) + (q1 + q3), the 16 lanes one by one) it differs
// in a good share of the elements, which the bit-for-bit test above would show.
TEST(RowKernels, BlockedF32TestSeesAHorizontalSumOrderChange) {
#ifndef __OPTIMIZE__
  // (-O0, the sanitizer build: GCC fuses no multiply-add there, so the lane model below is not
  // dot_f32's arithmetic; the bit-for-bit tests still hold the kernel to dot_f32.)
  GTEST_SKIP() << "unoptimized build: dot_f32's multiply-adds are not fused";
#endif
  Rng rng(26);
  const int64_t IC = 768;  // whole vectors: the tail is the bit-for-bit test's (IC off the vectors)
  const RowsCase c = make_case(rng, 17, IC, 37, false);
  int same = 0, right_to_left = 0, crossed = 0, lane_by_lane = 0, total = 0;
  for (int64_t o = 0; o < c.OC; ++o)
    for (int64_t n = 0; n < c.N; ++n) {
      const float* w = c.weights.data() + o * (IC + c.pad);
      const float* x = c.inp.data() + n * IC;
      float acc[16] = {};
      for (int64_t i = 0; i < IC; i += 16)
        for (int64_t l = 0; l < 16; ++l) acc[l] = std::fma(w[i + l], x[i + l], acc[l]);
      float q[4], r[4];
      for (int k = 0; k < 4; ++k) {
        q[k] = ((acc[k] + acc[4 + k]) + acc[8 + k]) + acc[12 + k];
        r[k] = acc[k] + (acc[4 + k] + (acc[8 + k] + acc[12 + k]));
      }
      float lanes = 0;
      for (float a : acc) lanes += a;
      const float one = dot_f32(w, x, IC);
      same += (q[0] + q[1]) + (q[2] + q[3]) == one;
      right_to_left += (r[0] + r[1]) + (r[2] + r[3]) != one;
      crossed += (q[0] + q[2]) + (q[1] + q[3]) != one;
      lane_by_lane += lanes != one;
      ++total;
    }
  EXPECT_EQ(same, total);
  EXPECT_GT(right_to_left, total / 4) << total;
  EXPECT_GT(crossed, total / 4) << total;
  EXPECT_GT(lane_by_lane, total / 4) << total;
}

// The q8_0 row loop takes tiles of two weight rows x four input rows (dot_q8_0_tile; 5 weight
// rows: the last one alone): each output is the one-row dot's, bit for bit, on every dot ISA
// the CPU runs, at row lengths of odd and even numbers of blocks (the pair loop, the last pair,
// the last block), for 1..17 input rows.
TEST(RowKernels, Q8RowsAreOneRowDotsBitForBit) {
  Rng rng(27);
  for (const char* isa : {"best", "avx512_vnni", "avx2", "scalar"}) {
    if (!set_quant_dot_isa(isa)) continue;
    for (int64_t IC : {32, 64, 96, 128, 160, 768}) {
      const int64_t OC = 5, row_bytes = weight_row_bytes(WeightType::Q8_0, IC);
      std::vector<float> wf(OC * IC), x(17 * IC), bias(OC);
      for (auto& v : wf) v = rng.normal();
      for (auto& v : x) v = rng.normal();
      for (auto& v : bias) v = rng.normal();
      std::vector<unsigned char> wq(OC * row_bytes);
      for (int64_t o = 0; o < OC; ++o) quantize_row(WeightType::Q8_0, wf.data() + o * IC, IC, wq.data() + o * row_bytes);
      const WeightView view{WeightType::Q8_0, wq.data(), OC, IC, row_bytes};
      for (int64_t N = 1; N <= 17; ++N) {
        std::vector<float> many(N * OC), one(OC);
        matmul_rows(many.data(), x.data(), view, bias.data(), N, 0, OC);
        for (int64_t n = 0; n < N; ++n) {
          matmul_rows(one.data(), x.data() + n * IC, view, bias.data(), 1, 0, OC);
          ASSERT_EQ(0, std::memcmp(many.data() + n * OC, one.data(), OC * sizeof(float)))
              << isa << ", IC " << IC << ", N " << N << ", row " << n;
        }
      }
    }
  }
  set_quant_dot_isa("best");
}

// The batched q8_0 kernel feeds vpdpbusd the inputs offset by 128 and takes 128 * sum(w) off
// in the integers: exact for every byte a q8_0 file may hold, -128 included (ggml's quantizer
// never writes it; a file may), against inputs at the ends of their range (+-127). Rows of
// raw bytes: weights from {-128, -127, 127, random}, inputs whose blocks have one element of
// magnitude far above the rest (so they quantize to +-127). The data would show a change of
// the blocks' float summation order: summed last block first, most outputs differ.
TEST(RowKernels, Q8RowsAreExactAtTheEndsOfTheBytes) {
  Rng rng(41);
  const int64_t IC = 224, OC = 7, N = 13, row_bytes = weight_row_bytes(WeightType::Q8_0, IC);
  std::vector<unsigned char> wq(OC * row_bytes);
  for (int64_t o = 0; o < OC; ++o)
    for (int64_t b = 0; b < IC / kQuantBlock; ++b) {
      unsigned char* blk = wq.data() + o * row_bytes + b * kQ8_0BlockBytes;
      const float scale = 0.01f + 0.02f * std::abs(rng.normal());
      std::vector<float> one{scale};
      std::vector<unsigned char> enc(kQ8_0BlockBytes);
      std::vector<float> probe(kQuantBlock, 0.0f);
      probe[0] = scale * 127.0f;
      quantize_row(WeightType::Q8_0, probe.data(), kQuantBlock, enc.data());  // an f16 scale near `scale`
      blk[0] = enc[0];
      blk[1] = enc[1];
      for (int64_t i = 0; i < kQuantBlock; ++i) {
        const int pick = static_cast<int>(std::abs(rng.normal()) * 3.0f) % 4;
        const int v = pick == 0 ? -128 : pick == 1 ? -127 : pick == 2 ? 127 : static_cast<int>(rng.normal() * 60.0f) % 128;
        blk[2 + i] = static_cast<unsigned char>(static_cast<int8_t>(v));
      }
    }
  std::vector<float> x(N * IC);
  for (int64_t i = 0; i < N * IC; ++i) x[i] = i % 17 == 0 ? 40.0f * rng.normal() : rng.normal();
  const WeightView view{WeightType::Q8_0, wq.data(), OC, IC, row_bytes};
  std::vector<float> many(N * OC), one(OC), ref(N * OC);
  for (const char* isa : {"best", "avx512_vnni", "avx2", "scalar"}) {
    if (!set_quant_dot_isa(isa)) continue;
    matmul_rows(many.data(), x.data(), view, nullptr, N, 0, OC);
    for (int64_t n = 0; n < N; ++n) {
      matmul_rows(one.data(), x.data() + n * IC, view, nullptr, 1, 0, OC);
      ASSERT_EQ(0, std::memcmp(many.data() + n * OC, one.data(), OC * sizeof(float))) << isa << ", row " << n;
    }
    matmul_rows_ref(ref.data(), x.data(), view, nullptr, N, 0, OC);
    for (int64_t i = 0; i < N * OC; ++i) ASSERT_NEAR(many[i], ref[i], 1e-3f * (1.0f + std::abs(ref[i]))) << isa << " " << i;
  }
  set_quant_dot_isa("best");
  // The order check: each block's product as the kernels make it, summed forwards and backwards.
  const int64_t nb = IC / kQuantBlock;
  std::vector<int8_t> q(IC);
  std::vector<float> d(nb), s(nb);
  int reordered = 0;
  for (int64_t n = 0; n < N; ++n) {
    quantize_input_q8(x.data() + n * IC, IC, q.data(), d.data(), s.data());
    for (int64_t o = 0; o < OC; ++o) {
      std::vector<float> term(nb);
      for (int64_t b = 0; b < nb; ++b) {
        const unsigned char* blk = wq.data() + o * row_bytes + b * kQ8_0BlockBytes;
        int32_t sum = 0;
        for (int64_t i = 0; i < kQuantBlock; ++i) sum += static_cast<int8_t>(blk[2 + i]) * q[b * kQuantBlock + i];
        const float dw = f16_to_f32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
        term[b] = static_cast<float>(sum) * (dw * d[b]);
      }
      float forwards = 0.0f, backwards = 0.0f;
      for (int64_t b = 0; b < nb; ++b) forwards += term[b];
      for (int64_t b = nb - 1; b >= 0; --b) backwards += term[b];
      reordered += forwards != backwards;
    }
  }
  EXPECT_GT(reordered, N * OC / 4);
}

// Every type has a row kernel; a row length off the type's blocks is refused before anything
// is written (q4_K and q6_K: super-blocks of 256).
// The blocked kernel and its twin read f32, bf16 and f16 rows only: a block-quantized view is
// refused (Unsupported, naming the kernel and the type), nothing written.
TEST(RowKernels, BlockedRowsRefuseQuantizedViews) {
  const std::vector<float> inp(4 * 32, 1.0f), weights(64, 1.0f);
  const WeightView w{WeightType::Q8_0, weights.data(), 2, 32, 34};
  for (bool twin : {false, true}) {
    std::vector<float> out(8, 7.0f);
    try {
      const RowsInput in(inp.data(), 4, 32, WeightType::F32);
      if (twin)
        matmul_rows_one_by_one(out.data(), in, w, nullptr, 0, 2);
      else
        matmul_rows_blocked(out.data(), in, w, nullptr, 0, 2);
      ADD_FAILURE() << "q8_0 weights should be refused";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
      EXPECT_EQ(std::string(e.what()), std::string(twin ? "matmul_rows_one_by_one" : "matmul_rows_blocked") +
                                           ": q8_0 weights are not supported yet");
    }
    EXPECT_EQ(out, std::vector<float>(8, 7.0f));
  }
}

TEST(RowKernels, RowsOffTheBlocksAreRefused) {
  const std::vector<float> inp(32, 1.0f), weights(64, 1.0f);
  for (WeightType type : {WeightType::Q4_K, WeightType::Q6_K}) {
    EXPECT_NO_THROW(require_row_kernel(type));
    const WeightView w{type, weights.data(), 2, 32, 64};
    std::vector<float> out(2, 7.0f);
    for (bool reference : {false, true}) {
      try {
        if (reference)
          matmul_rows_ref(out.data(), inp.data(), w, nullptr, 1, 0, 2);
        else
          matmul_rows(out.data(), inp.data(), w, nullptr, 1, 0, 2);
        ADD_FAILURE() << weight_type_name(type) << " weights should be refused";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Data);
        EXPECT_EQ(std::string(e.what()),
                  std::string("matmul_rows: ") + weight_type_name(type) + " needs rows of a multiple of 256 weights, not 32");
      }
      EXPECT_EQ(out, std::vector<float>(2, 7.0f));  // nothing written
    }
  }
}

}  // namespace
}  // namespace lm
