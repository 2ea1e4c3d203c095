#include "core/rows.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/lanes.h"
#include "core/panels.h"
#include "core/quant.h"

namespace lm {

const char* weight_type_name(WeightType type) {
  switch (type) {
    case WeightType::F32: return "f32";
    case WeightType::F16: return "f16";
    case WeightType::BF16: return "bf16";
    case WeightType::Q8_0: return "q8_0";
    case WeightType::Q4_0: return "q4_0";
    case WeightType::Q4_K: return "q4_K";
    case WeightType::Q6_K: return "q6_K";
  }
  return "unknown";
}

namespace {

[[noreturn]] void fail_no_row_kernel(const char* kernel, WeightType type) {
  fail(ErrorKind::Unsupported, cat(kernel, ": ", weight_type_name(type), " weights are not supported yet"));
}

// How the float kernels read a weight row and multiply it into the 16 lane accumulators,
// kStep features a vector step (load_w, load_x, madd), and the features past the last whole
// step (tail):
//   f32 and f16 rows, against the f32 input: widened to f32 (f16 exactly), one fused
//   multiply-add per feature: each row's products, sums and their order are those of the f32
//   row holding the same values (f16 streams half the bytes);
//   bf16 rows, against the input rounded to bf16 (RowsInput::bf): a pair of features a lane,
//   AVX512_BF16's vdpbf16ps (16 lanes x 2 products an instruction, twice an FMA's), the odd
//   feature's product added first, then the even one's, each sum rounded once (a product of
//   two bf16 is exact in f32); denormal inputs count as zero and denormal sums are flushed to
//   zero, as the instruction does. Without AVX512_BF16 the same two fused multiply-adds a lane
//   (bf16_pair_madd), so every build gives the same bits (dot_bf16_ref, core/quant.h, is the
//   plain twin).
struct F32Row {
  using Elem = float;
  using XElem = float;
  using WVec = Floats16;
  using XVec = Floats16;
  static constexpr int64_t kStep = 16;
  static WVec load_w(const float* p) { return load16(p); }
  static XVec load_x(const float* p) { return load16(p); }
  static Floats16 madd(const Floats16& acc, const WVec& w, const XVec& x) { return acc + w * x; }
  static float tail(float sum, const float* w, const float* x) { return std::fma(*w, *x, sum); }
};
struct F16Row {
  using Elem = uint16_t;
  using XElem = float;
  using WVec = Floats16;
  using XVec = Floats16;
  static constexpr int64_t kStep = 16;
  static WVec load_w(const uint16_t* p) { return load16_f16(p); }
  static XVec load_x(const float* p) { return load16(p); }
  static Floats16 madd(const Floats16& acc, const WVec& w, const XVec& x) { return acc + w * x; }
  static float tail(float sum, const uint16_t* w, const float* x) { return std::fma(f16_to_f32(*w), *x, sum); }
};

// A denormal float as a zero of its sign (the bf16 dot's inputs and sums).
[[gnu::always_inline]] inline Floats16 flush_denormals(const Floats16& v) {
  const Words16 bits = reinterpret_cast<Words16>(v);
  const Words16 tiny = reinterpret_cast<Words16>((bits & 0x7f800000u) == 0);  // all ones where the exponent is 0
  return reinterpret_cast<Floats16>(bits & ~(tiny & 0x7fffffffu));
}

// vdpbf16ps without the instruction: per lane, the odd features' product and then the even
// ones', each one fused multiply-add on flushed inputs, its sum flushed.
[[gnu::always_inline]] inline Floats16 bf16_pair_madd(Floats16 acc, const Words16& w, const Words16& x) {
  const Floats16 w_odd = flush_denormals(reinterpret_cast<Floats16>(w & 0xffff0000u));
  const Floats16 x_odd = flush_denormals(reinterpret_cast<Floats16>(x & 0xffff0000u));
  const Floats16 w_even = flush_denormals(reinterpret_cast<Floats16>(w << 16));
  const Floats16 x_even = flush_denormals(reinterpret_cast<Floats16>(x << 16));
  for (int l = 0; l < 16; ++l) acc[l] = std::fma(w_odd[l], x_odd[l], acc[l]);
  acc = flush_denormals(acc);
  for (int l = 0; l < 16; ++l) acc[l] = std::fma(w_even[l], x_even[l], acc[l]);
  return flush_denormals(acc);
}

struct Bf16Row {
  using Elem = uint16_t;
  using XElem = uint16_t;
  using WVec = Words16;  // 32 bf16, two a lane
  using XVec = Words16;
  static constexpr int64_t kStep = 32;
  static WVec load_w(const uint16_t* p) {
    Words16 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static XVec load_x(const uint16_t* p) { return load_w(p); }
  static Floats16 madd(const Floats16& acc, const WVec& w, const XVec& x) {
#if defined(__AVX512BF16__)
    return reinterpret_cast<Floats16>(_mm512_dpbf16_ps(reinterpret_cast<__m512>(acc), reinterpret_cast<__m512bh>(w),
                                                       reinterpret_cast<__m512bh>(x)));
#else
    return bf16_pair_madd(acc, w, x);
#endif
  }
  static float tail(float sum, const uint16_t* w, const uint16_t* x) {
    return std::fma(bf16_to_f32_daz(*w), bf16_to_f32_daz(*x), sum);
  }
};

// The features past the last whole step (from `i`), one by one onto `sum` (W::tail: each a
// fused multiply-add, written out: GCC contracted `sum += w * x` in one instantiation and not
// in another, and an f16 row's dot must be the same as its widened f32 row's).
template <class W>
[[gnu::always_inline]] inline float finish_tail(float sum, const typename W::Elem* w, const typename W::XElem* x,
                                                int64_t i, int64_t n) {
  for (; i < n; ++i) sum = W::tail(sum, w + i, x + i);
  return sum;
}

// The end of every float row-dot: the 16 lanes of the accumulator summed (lane_sum, core/lanes.h),
// then the tail (finish_tail). Every float kernel ends each output element here or in
// horizontal_sums4 (lane_sum's additions, four at once), so each is its row-dot's number
// (dot_f32, dot_bf16, dot_f16) bit for bit.
template <class W>
[[gnu::always_inline]] inline float finish_dot(const Floats16& acc, const typename W::Elem* w,
                                               const typename W::XElem* x, int64_t i, int64_t n) {
  return finish_tail<W>(lane_sum(acc), w, x, i, n);
}

// Four steps (64 f32 weights) per iteration into one vector accumulator: decode is bound by how
// many loads of a weight row a core keeps in flight, and the fewer instructions per byte, the
// further ahead the out-of-order window reaches (a plain `omp simd` loop streamed a few
// percent slower).
template <class W>
[[gnu::always_inline]] inline float dot_row(const typename W::Elem* w, const typename W::XElem* x, int64_t n) {
  constexpr int64_t S = W::kStep;
  Floats16 acc{};
  int64_t i = 0;
  for (; i + 4 * S <= n; i += 4 * S)
    for (int64_t k = 0; k < 4 * S; k += S) acc = W::madd(acc, W::load_w(w + i + k), W::load_x(x + i + k));
  for (; i + S <= n; i += S) acc = W::madd(acc, W::load_w(w + i), W::load_x(x + i));
  return finish_dot<W>(acc, w, x, i, n);
}

}  // namespace

// Kept out of line so that every caller gets this code: inlined into the callers' loops, GCC
// once took a scalar path for whole rows.
[[gnu::noinline]] float dot_f32(const float* w, const float* x, int64_t n) { return dot_row<F32Row>(w, x, n); }

[[gnu::noinline]] float dot_bf16(const void* row, const uint16_t* x, int64_t n) {
  return dot_row<Bf16Row>(static_cast<const uint16_t*>(row), x, n);
}

[[gnu::noinline]] float dot_f16(const void* row, const float* x, int64_t n) {
  return dot_row<F16Row>(static_cast<const uint16_t*>(row), x, n);
}

void round_input_bf16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  // f32_to_bf16 on 16 floats at a time: round to nearest even, a NaN kept a (quiet) NaN.
  for (; i + 16 <= n; i += 16) {
    Words16 u;
    std::memcpy(&u, x + i, sizeof u);
    const Words16 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const Words16 nan = reinterpret_cast<Words16>((u & 0x7fffffffu) > 0x7f800000u);
    const Halves16 h = __builtin_convertvector((rounded & ~nan) | (((u >> 16) | 0x40u) & nan), Halves16);
    std::memcpy(out + i, &h, sizeof h);
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // the intrinsic's unused pass-through operand
void round_input_f16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}
#pragma GCC diagnostic pop

float dot_f32_ref(const float* w, const float* x, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(w[i]) * x[i];
  return static_cast<float>(acc);
}

namespace {

// The blocked kernel (matmul_rows_blocked; f32, bf16 or f16 rows). With N input rows every
// weight row is read once for all of them: the input features go in chunks of about kChunkK
// (16 rows of f32 x 1 KB sit in L1), and while a chunk is there the weight rows of a block of
// kBlockRows stream past it in register tiles of kTileRows weight rows by kTileInputs input
// rows. Each (weight row, input row) pair keeps dot_f32's one 16-lane accumulator, carried in a
// buffer from chunk to chunk (kBlockRows x N x 64 bytes), and ends with dot_f32's own
// horizontal sum and tail (finish_dot): the same operations in the same order, so every element
// is its row-dot's, bit for bit. What limits it (Zen 5, stories110M shapes, N = 16, 2 threads;
// f32 rows): from cache the tiles run at 70-90% of the FMA peak, but with the weights coming from memory
// the FMAs between the loads leave too few lines in flight, and the weights stream at about
// half batch-1's rate; the software prefetch of the next chunk's lines, spread one weight row
// per input tile, is what made the kernel faster than whole-row 4x4 tiles, not the L1 blocking
// by itself. bf16 and f16 rows halve the stream, and bf16's tiles (vdpbf16ps: two products a
// lane an instruction) reach about the f32 FMA peak's products a second from the caches and
// 80-90% of it from memory, one thread (README, "Batched generation").
//
// Features a chunk, about (W::kStep's multiple): 256 for f32 and f16 inputs (16 rows x 1 KB);
// 1024 for bf16 (16 rows x 2 KB): the bf16 tiles do twice the products per instruction, and
// shorter chunks left too much of the time to the accumulators' loads and stores and the
// chunk's first lines (stories110M shapes from memory, one thread: 62-65% of the FMA peak at
// 256 features against 76-79% at 1024 on 2048-feature rows, 80% against 89-92% on 768).
template <class W>
constexpr int64_t kChunkK = W::kStep == 32 ? 1024 : 256;
constexpr int64_t kBlockRows = 8;
#if defined(__AVX512F__)
// A Floats16 is one zmm register, of 32: 16 accumulators, 4 inputs and a weight vector.
constexpr int kTileRows = 4, kTileInputs = 4;
// Held in registers: GCC would otherwise fold a vector into each of its FMAs as a memory
// operand, loading it once per FMA.
#define LM_PIN_VECTOR(v) asm("" : "+v"(v))
#else
// Two ymm registers per Floats16, of 16 (AVX2): a 2 x 2 tile's 8 accumulators and its operands.
constexpr int kTileRows = 2, kTileInputs = 2;
#define LM_PIN_VECTOR(v) ((void)0)
#endif

// The R x J tile of accumulators acc[r * N + j] (weight row r, input row j) over features
// [k0, k1) (whole vectors): loaded, carried through the chunk in registers, stored back.
// For the first P weight rows, the line that the next pass will want (pf[r] + i - k0) is
// prefetched as this one's is used.
// (An f16 row's 16 weights are half a line: its prefetches go every other vector.)
template <class W, int R, int J, int P = 0>
[[gnu::always_inline]] inline void blocked_tile(Floats16* acc, int64_t N, const typename W::Elem* const* w,
                                                const typename W::XElem* x, int64_t IC, int64_t k0, int64_t k1,
                                                const typename W::Elem* const* pf = nullptr) {
  constexpr int64_t kLine = 64 / sizeof(typename W::Elem);
  Floats16 a[R][J];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) a[r][j] = k0 == 0 ? Floats16{} : acc[r * N + j];  // the first chunk starts at 0
  for (int64_t i = k0; i < k1; i += W::kStep) {
    typename W::XVec xv[J];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) {
      xv[j] = W::load_x(x + j * IC + i);
      LM_PIN_VECTOR(xv[j]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      if (r < P && (i - k0) % kLine == 0) __builtin_prefetch(pf[r] + (i - k0));
      typename W::WVec wv = W::load_w(w[r] + i);
      LM_PIN_VECTOR(wv);
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) a[r][j] = W::madd(a[r][j], wv, xv[j]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) acc[r * N + j] = a[r][j];
}

// Tiles of R weight rows against the last `left` (< kTileInputs) input rows.
template <class W, int R, int J>
[[gnu::always_inline]] inline void blocked_tile_rest(int64_t left, Floats16* acc, int64_t N,
                                                     const typename W::Elem* const* w, const typename W::XElem* x, int64_t IC,
                                                     int64_t k0, int64_t k1) {
  if constexpr (J > 0) {
    if (left == J)
      blocked_tile<W, R, J>(acc, N, w, x, IC, k0, k1);
    else
      blocked_tile_rest<W, R, J - 1>(left, acc, N, w, x, IC, k0, k1);
  }
}

// R weight rows against all N input rows over features [k0, k1); the first tile prefetches
// the lines at pf (one per weight vector read).
template <class W, int R>
[[gnu::noinline]] void blocked_rows(Floats16* acc, int64_t N, const typename W::Elem* const* w, const typename W::XElem* x,
                                    int64_t IC, int64_t k0, int64_t k1, const typename W::Elem* const* pf) {
  int64_t j = 0;
  if (N / kTileInputs >= R) {  // the first R tiles prefetch for one weight row each
    for (int t = 0; t < R; ++t, j += kTileInputs)
      blocked_tile<W, R, kTileInputs, 1>(acc + j, N, w, x + j * IC, IC, k0, k1, pf + t);
  } else if (N >= kTileInputs) {  // the first tile for all R rows
    blocked_tile<W, R, kTileInputs, R>(acc, N, w, x, IC, k0, k1, pf);
    j = kTileInputs;
  }
  for (; j + kTileInputs <= N; j += kTileInputs) blocked_tile<W, R, kTileInputs>(acc + j, N, w, x + j * IC, IC, k0, k1);
  blocked_tile_rest<W, R, kTileInputs - 1>(N - j, acc + j, N, w, x + j * IC, IC, k0, k1);
}

// blocked_rows for the last `left` (< kTileRows) weight rows of a block.
template <class W, int R>
void blocked_rows_rest(int64_t left, Floats16* acc, int64_t N, const typename W::Elem* const* w, const typename W::XElem* x,
                       int64_t IC, int64_t k0, int64_t k1, const typename W::Elem* const* pf) {
  if constexpr (R > 0) {
    if (left == R)
      blocked_rows<W, R>(acc, N, w, x, IC, k0, k1, pf);
    else
      blocked_rows_rest<W, R - 1>(left, acc, N, w, x, IC, k0, k1, pf);
  }
}

template <class W>
void blocked_matmul(float* out, const typename W::XElem* inp, const WeightView& w, const float* bias, int64_t N,
                    int64_t first, int64_t count) {
  using Elem = typename W::Elem;
  constexpr int64_t S = W::kStep;
  const auto* base = static_cast<const unsigned char*>(w.data);
  const int64_t OC = w.rows, IC = w.cols, whole = IC / S * S;  // features in whole steps
  thread_local std::vector<Floats16> buffer;  // the block's accumulators; kept between calls
  if (buffer.size() < static_cast<size_t>(kBlockRows * N)) buffer.resize(static_cast<size_t>(kBlockRows * N));
  Floats16* acc = buffer.data();
  // Chunks of about kChunkK features, of equal whole steps (288 features: one chunk of 288,
  // not 256 and a 32-feature chunk of loop overhead).
  const int64_t chunks = std::max<int64_t>(1, (whole + kChunkK<W> / 2) / kChunkK<W>);
  const int64_t chunk = (whole / S + chunks - 1) / chunks * S;
  const int64_t end = first + count;
  auto row = [&](int64_t o) { return reinterpret_cast<const Elem*>(base + o * w.row_bytes); };
  for (int64_t o0 = first; o0 < end; o0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, end - o0);
    const Elem* wr[kBlockRows];
    for (int64_t r = 0; r < rows; ++r) wr[r] = row(o0 + r);
    if (whole == 0) std::fill(acc, acc + rows * N, Floats16{});  // no chunk to start them
    for (int64_t k0 = 0; k0 < whole; k0 += chunk) {
      const int64_t k1 = std::min(whole, k0 + chunk);
      // What to prefetch while this chunk runs: the next chunk of the same rows, or after the
      // last chunk the next block's first, past the end of the range too (the rows after it
      // are usually this thread's next piece: parallel_chunks walks a share front to back),
      // up to the matrix's last row (past it: this chunk again, a no-op).
      const Elem* pf[kBlockRows];
      for (int64_t r = 0; r < rows; ++r)
        pf[r] = k1 < whole ? wr[r] + k1 : o0 + rows + r < OC ? row(o0 + rows + r) : wr[r] + k0;
      int64_t r = 0;
      for (; r + kTileRows <= rows; r += kTileRows)
        blocked_rows<W, kTileRows>(acc + r * N, N, wr + r, inp, IC, k0, k1, pf + r);
      blocked_rows_rest<W, kTileRows - 1>(rows - r, acc + r * N, N, wr + r, inp, IC, k0, k1, pf + r);
    }
    // The sums of four weight rows for one input row at once: with no tail, four adjacent
    // outputs, stored (and the bias added) as one vector; the rows past the last four, and
    // every element of rows with a tail, one by one.
    int64_t r = 0;
    if (whole == IC)
      for (; r + 4 <= rows; r += 4) {
        Floats4 b{};
        if (bias) std::memcpy(&b, bias + o0 + r, sizeof b);
        const Floats16* a = acc + r * N;
        for (int64_t j = 0; j < N; ++j) {
          Floats4 sums = horizontal_sums4(a[j], a[N + j], a[2 * N + j], a[3 * N + j]);
          if (bias) sums += b;
          std::memcpy(out + j * OC + o0 + r, &sums, sizeof sums);
        }
      }
    for (; r < rows; ++r) {
      const float b = bias ? bias[o0 + r] : 0.0f;
      for (int64_t j = 0; j < N; ++j) {
        const float sum = finish_dot<W>(acc[r * N + j], wr[r], inp + j * IC, whole, IC);
        out[j * OC + o0 + r] = bias ? sum + b : sum;
      }
    }
  }
}

}  // namespace

void matmul_rows_blocked(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                         int64_t count) {
  if (in.N <= 0 || count <= 0) return;
  if (w.type == WeightType::F32) return blocked_matmul<F32Row>(out, in.f32, w, bias, in.N, first, count);
  if (w.type == WeightType::BF16) return blocked_matmul<Bf16Row>(out, in.bf.data(), w, bias, in.N, first, count);
  if (w.type == WeightType::F16) return blocked_matmul<F16Row>(out, in.f32, w, bias, in.N, first, count);
  fail_no_row_kernel("matmul_rows_blocked", w.type);
}

namespace {

// The row-dot of each type: row o of the view against input row n.
using RowDot = float (*)(const void* row, const RowsInput& in, int64_t n);
float row_dot_f32(const void* row, const RowsInput& in, int64_t n) {
  return dot_f32(static_cast<const float*>(row), in.f32 + n * in.IC, in.IC);
}
float row_dot_f16(const void* row, const RowsInput& in, int64_t n) { return dot_f16(row, in.f32 + n * in.IC, in.IC); }
float row_dot_bf16(const void* row, const RowsInput& in, int64_t n) {
  return dot_bf16(row, in.bf.data() + n * in.IC, in.IC);
}
float row_dot_q8_0(const void* row, const RowsInput& in, int64_t n) {
  const int64_t nb = in.IC / kQuantBlock;
  return dot_q8_0(row, in.q.data() + n * in.IC, in.d.data() + n * nb, in.IC);
}
float row_dot_q4_0(const void* row, const RowsInput& in, int64_t n) {
  const int64_t nb = in.IC / kQuantBlock;
  return dot_q4_0(row, in.q.data() + n * in.IC, in.d.data() + n * nb, in.s.data() + n * nb, in.IC);
}
float row_dot_q4_K(const void* row, const RowsInput& in, int64_t n) {
  const int64_t nb = in.IC / kQuantBlock;
  return dot_q4_K(row, in.q.data() + n * in.IC, in.d.data() + n * nb, in.s.data() + n * nb, in.IC);
}
float row_dot_q6_K(const void* row, const RowsInput& in, int64_t n) {
  const int64_t nb = in.IC / kQuantBlock;
  return dot_q6_K(row, in.q.data() + n * in.IC, in.d.data() + n * nb, in.IC);
}

// The one row loop; `dot` is a template argument, so the call inside is direct (and the
// f32 wrapper folds into it). Input row n is the inner loop: the weight row is read from
// memory once and stays in L1 for the other N - 1 input rows.
template <RowDot dot>
void rows_loop(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
               int64_t count) {
  const auto* base = static_cast<const unsigned char*>(w.data);
  const int64_t OC = w.rows, N = in.N;
  for (int64_t o = first; o < first + count; ++o) {
    const void* row = base + o * w.row_bytes;
    for (int64_t n = 0; n < N; ++n) {
      const float acc = dot(row, in, n);
      out[n * OC + o] = bias ? acc + bias[o] : acc;
    }
  }
}

}  // namespace

void matmul_rows_one_by_one(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                            int64_t count) {
  switch (w.type) {
    case WeightType::F32: return rows_loop<row_dot_f32>(out, in, w, bias, first, count);
    case WeightType::BF16: return rows_loop<row_dot_bf16>(out, in, w, bias, first, count);
    case WeightType::F16: return rows_loop<row_dot_f16>(out, in, w, bias, first, count);
    default: fail_no_row_kernel("matmul_rows_one_by_one", w.type);
  }
}

namespace {

// rows_loop for f32, bf16 and f16 weights: the blocked kernel for kBlockedMinRows input rows or more
// (the same numbers as rows_loop<dot>), else one dot per output.
template <RowDot dot>
void rows_loop_blocked(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                       int64_t count) {
  if (in.N >= kBlockedMinRows) return matmul_rows_blocked(out, in, w, bias, first, count);
  rows_loop<dot>(out, in, w, bias, first, count);
}

// rows_loop for q8_0 weights: tiles of two weight rows x four input rows (dot_q8_0_tile; the
// last odd row one x four), the input rows left over one by one; the same numbers as
// rows_loop<row_dot_q8_0>. With tiles, each pair of rows prefetches the pair two ahead (up to
// the matrix's end), spread over its input tiles: the tiles' work per weight line is long
// enough that the hardware prefetcher alone left the loads waiting (stories110M-shaped rows
// from memory, one thread,
// N = 16: 54% of the FMA peak's products a second on 768-feature rows and 57% on 2048; 64-66%
// and 78-85% with the prefetch spread; 57-63% and 63-75% with all the pair's lines at once).
constexpr int64_t kQ8PrefetchRows = 4;
void rows_loop_q8_0(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                    int64_t count) {
  const auto* base = static_cast<const unsigned char*>(w.data);
  const int64_t OC = w.rows, N = in.N, IC = in.IC, nb = IC / kQuantBlock;
  const int64_t tiled = in.qu.empty() ? 0 : N / 4 * 4;
  for (int64_t o = first; o < first + count;) {
    const int R = o + 2 <= first + count ? 2 : 1;
    const void* rows[2] = {base + o * w.row_bytes, base + (o + R - 1) * w.row_bytes};
    const auto* ahead = base + (o + kQ8PrefetchRows) * w.row_bytes;
    const int64_t ahead_bytes = o + kQ8PrefetchRows < OC ? std::min<int64_t>(2, OC - o - kQ8PrefetchRows) * w.row_bytes : 0;
    for (int64_t n = 0; n < tiled; n += 4) {
      // This tile's share of the lines (all at once stalled on the line fill buffers).
      for (int64_t at = ahead_bytes * n / tiled / 64 * 64; at < ahead_bytes * (n + 4) / tiled; at += 64)
        __builtin_prefetch(ahead + at);
      const int8_t* q[4];
      const float* d[4];
      const uint8_t* qu[4];
      for (int j = 0; j < 4; ++j) {
        q[j] = in.q.data() + (n + j) * IC;
        d[j] = in.d.data() + (n + j) * nb;
        qu[j] = in.qu.data() + (n + j) * IC;
      }
      float acc[8];
      dot_q8_0_tile(rows, R, q, d, qu, IC, acc);
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < 4; ++j) out[(n + j) * OC + o + r] = bias ? acc[r * 4 + j] + bias[o + r] : acc[r * 4 + j];
    }
    for (int r = 0; r < R; ++r)
      for (int64_t n = tiled; n < N; ++n) {
        const float acc = row_dot_q8_0(rows[r], in, n);
        out[n * OC + o + r] = bias ? acc + bias[o + r] : acc;
      }
    o += R;
  }
}

bool needs_q8_input(WeightType type) {
  return type == WeightType::Q8_0 || type == WeightType::Q4_0 || type == WeightType::Q4_K || type == WeightType::Q6_K;
}

// The reference's per-type decoder: row to IC floats.
using RowDecode = void (*)(float* dst, const void* row, int64_t IC);
void decode_row_f32(float* dst, const void* row, int64_t IC) {
  std::memcpy(dst, row, static_cast<size_t>(IC) * sizeof(float));
}

}  // namespace

RowsInput::RowsInput(const float* inp, int64_t N_, int64_t IC_, WeightType type) : f32(inp), N(N_), IC(IC_) {
  if (type == WeightType::BF16) {
    bf.resize(static_cast<size_t>(N * IC));
    round_input_bf16(inp, N * IC, bf.data());
  }
  if (!needs_q8_input(type)) return;
  weight_row_bytes(type, IC, "matmul_rows");  // a Data error for a row length off the type's blocks
  const int64_t nb = IC / kQuantBlock;
  q.resize(static_cast<size_t>(N * IC));
  d.resize(static_cast<size_t>(N * nb));
  s.resize(static_cast<size_t>(N * nb));
  for (int64_t n = 0; n < N; ++n) quantize_input_q8(inp + n * IC, IC, q.data() + n * IC, d.data() + n * nb, s.data() + n * nb);
  if (type != WeightType::Q8_0 || N < 4) return;
  qu.resize(static_cast<size_t>(N * IC));
  offset_input_q8(q.data(), N * IC, qu.data());
}

RowsInput::RowsInput(const float* inp, int64_t N_, const WeightView& w) : f32(inp), N(N_), IC(w.cols) {
  if (!w.panels) {
    *this = RowsInput(inp, N_, w.cols, w.type);
    return;
  }
  panel_input(inp, N, IC, w.type, panel_x);
}

void require_row_kernel(WeightType type) {
  switch (type) {
    case WeightType::F32:
    case WeightType::F16:
    case WeightType::BF16:
    case WeightType::Q8_0:
    case WeightType::Q4_0:
    case WeightType::Q4_K:
    case WeightType::Q6_K: return;
  }
  fail_no_row_kernel("matmul_rows", type);
}

void matmul_rows(float* out, const RowsInput& in, const WeightView& w, const float* bias, int64_t first,
                 int64_t count) {
  // The input was made for the view (RowsInput(inp, N, w)): panel_x is there.
  if (w.panels) return matmul_panels(out, in.panel_x.data(), in.N, *w.panels, bias, first, count);
  switch (w.type) {
    case WeightType::F32: return rows_loop_blocked<row_dot_f32>(out, in, w, bias, first, count);
    case WeightType::F16: return rows_loop_blocked<row_dot_f16>(out, in, w, bias, first, count);
    case WeightType::BF16: return rows_loop_blocked<row_dot_bf16>(out, in, w, bias, first, count);
    case WeightType::Q8_0: return rows_loop_q8_0(out, in, w, bias, first, count);
    case WeightType::Q4_0: return rows_loop<row_dot_q4_0>(out, in, w, bias, first, count);
    case WeightType::Q4_K: return rows_loop<row_dot_q4_K>(out, in, w, bias, first, count);
    case WeightType::Q6_K: return rows_loop<row_dot_q6_K>(out, in, w, bias, first, count);
    default: fail_no_row_kernel("matmul_rows", w.type);
  }
}

void matmul_rows(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N, int64_t first,
                 int64_t count) {
  require_row_kernel(w.type);
  matmul_rows(out, RowsInput(inp, N, w), w, bias, first, count);
}

void matmul_rows_ref(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N,
                     int64_t first, int64_t count) {
  RowDecode decode = nullptr;
  switch (w.type) {
    case WeightType::F32: decode = decode_row_f32; break;
    case WeightType::F16: decode = [](float* dst, const void* row, int64_t IC) { dequantize_row(WeightType::F16, row, IC, dst); }; break;
    case WeightType::BF16: decode = [](float* dst, const void* row, int64_t IC) { dequantize_row(WeightType::BF16, row, IC, dst); }; break;
    case WeightType::Q8_0: decode = [](float* dst, const void* row, int64_t IC) { dequantize_row(WeightType::Q8_0, row, IC, dst); }; break;
    case WeightType::Q4_0: decode = [](float* dst, const void* row, int64_t IC) { dequantize_row(WeightType::Q4_0, row, IC, dst); }; break;
    case WeightType::Q4_K: decode = [](float* dst, const void* row, int64_t IC) { dequantize_row(WeightType::Q4_K, row, IC, dst); }; break;
    case WeightType::Q6_K: decode = [](float* dst, const void* row, int64_t IC) { dequantize_row(WeightType::Q6_K, row, IC, dst); }; break;
    default: fail_no_row_kernel("matmul_rows_ref", w.type);
  }
  const auto* base = static_cast<const unsigned char*>(w.data);
  const int64_t OC = w.rows, IC = w.cols;
  // The input as the kernel sees it: the int8 types' dots read it in int8 blocks, the bf16
  // dot rounded to bf16.
  std::vector<double> x(inp, inp + N * IC);
  if (w.type == WeightType::BF16)
    for (int64_t i = 0; i < N * IC; ++i) x[static_cast<size_t>(i)] = bf16_to_f32(f32_to_bf16(inp[i]));
  if (needs_q8_input(w.type)) {
    const RowsInput in(inp, N, IC, w.type);
    for (int64_t i = 0; i < N * IC; ++i)
      x[static_cast<size_t>(i)] = static_cast<double>(in.d[static_cast<size_t>(i / kQuantBlock)]) * in.q[static_cast<size_t>(i)];
  }
  std::vector<float> row(static_cast<size_t>(IC));
  for (int64_t o = first; o < first + count; ++o) {
    decode(row.data(), base + o * w.row_bytes, IC);
    for (int64_t n = 0; n < N; ++n) {
      double acc = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < IC; ++i) acc += row[static_cast<size_t>(i)] * x[static_cast<size_t>(n * IC + i)];
      out[n * OC + o] = static_cast<float>(acc);
    }
  }
}

}  // namespace lm
