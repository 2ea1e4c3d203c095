

// rows_bench: the batched f32 row kernel (matmul_rows_blocked, lib/core/rows.cpp) on a
// model's decode matrices at N input rows, against the register tiles and weight layouts it
// could use instead, and against oneDNN's sgemm at M = N (lm::sgemm, prefill's GEMM).
//
//     build/bench/rows_bench [--shape stories15m|stories110m] [--batch N] [--threads T]
//                            [--rounds R] [--steps S] [--cache] [--only a,b,...]
//
// One step is every linear of a decode step (per layer wq, wk, wv, wo, w1, w3, w2, then the
// classifier), each shared out between the threads as matmul_forward shares it. With --cache
// every matrix reads one shared buffer (the largest layer matrix; no classifier), so the
// weights come from the caches: the kernel's arithmetic alone. Each round times every variant
// (best of S steps), rounds interleaved; the table gives the median over the rounds: weight
// bytes streamed per second, GFLOP/s and the fraction of the FMA peak measured in the same run
// (lm::fma_peak_gflops, the better of a measure before and one after the rounds).
//
// The variants (all but sgemm keep their row-dot's summation order: the program checks each
// against matmul_rows_one_by_one bit for bit on every matrix before timing it):
//   blocked       the library kernel: 8-row blocks, 4 x 4 tiles, ~256-feature chunks, the next
//                 chunk's lines prefetched one weight row per input tile
//   one by one    matmul_rows_one_by_one: each weight row once, one dot_f32 per input row
//                 (batch-1 decode's loop at N = 1; matmul_rows runs it below kBlockedMinRows)
//   tile RxJ      the same driver with R weight rows x J input rows per register tile (R x J
//                 accumulators of the 32 zmm registers), the prefetches spread over the first
//                 input tiles likewise
//   packed RxJ    the weights repacked in groups of R rows stored [IC/16][R][16] (a tile's
//                 weights one contiguous run), whole rows per tile (no chunks)
//   packed RxJ c  the same in ~256-feature chunks
//   sgemm         lm::sgemm(x [N, IC], W^T) on all threads (a different summation order)
//   bf16 dot      the weights rounded to bf16 and matmul_rows on them as decode runs it (the
//                 input rounded to bf16 once per matrix, then the blocked kernel's bf16 tiles:
//                 vdpbf16ps), held to dot_bf16; GB/s counts the bf16 bytes
//   panels        matmul_rows on the f32 rows' panels (core/panels.h: 16 rows feature-major,
//                 one chain per element, 4 x 4 lanes of rows x inputs), held to their own
//                 twin (matmul_panels_ref) bit for bit
//   bf16 panels   the same on the bf16 rows' panels (vdpbf16ps pairs)
//   q8_0 rows     the weights quantized to q8_0 and matmul_rows on their rows as decode ran
//                 them before panels (the input in int8 blocks, 2 x 4 vpdpbusd tiles), held
//                 to dot_q8_0; GB/s counts the q8_0 bytes
//   q8_0 panels   the same on the q8_0 rows' panels (vpdpbusd, one chain per element)
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <memory>
#include <vector>

#include "core/blas.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/fma_peak.h"
#include "core/panels.h"
#include "core/quant.h"
#include "core/rows.h"
#include "core/threads.h"

namespace {

typedef float Floats16 __attribute__((vector_size(64)));
typedef float Floats4 __attribute__((vector_size(16)));
Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// Held in a register (as rows.cpp's LM_PIN_VECTOR): not folded into each FMA as a memory operand.
#define PIN(v) asm("" : "+v"(v))

// dot_f32's horizontal sum (the features here are whole vectors: no tail).
float horizontal_sum(const Floats16& acc) {
  const Floats4 quarter = __builtin_shufflevector(acc, acc, 0, 1, 2, 3) + __builtin_shufflevector(acc, acc, 4, 5, 6, 7) +
                          __builtin_shufflevector(acc, acc, 8, 9, 10, 11) +
                          __builtin_shufflevector(acc, acc, 12, 13, 14, 15);
  return (quarter[0] + quarter[1]) + (quarter[2] + quarter[3]);
}

// An R x J register tile over features [k0, k1): acc[r * N + j] carried in and out (zero at
// k0 == 0). Weight row r's vector at feature i: w[r] + i (plain), or g + i * R + r * 16 (packed
// group). The first P rows prefetch pf[r] + (i - k0) (plain) as the row is used.
template <int R, int J, bool PACKED, int P>
[[gnu::always_inline]] inline void tile(Floats16* acc, int64_t N, const float* const* w, const float* g,
                                        const float* x, int64_t IC, int64_t k0, int64_t k1, const float* const* pf) {
  Floats16 a[R][J];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) a[r][j] = k0 == 0 ? Floats16{} : acc[r * N + j];
  for (int64_t i = k0; i < k1; i += 16) {
    Floats16 xv[J];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) {
      xv[j] = load16(x + j * IC + i);
      PIN(xv[j]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      if (r < P) __builtin_prefetch(pf[r] + (i - k0));
      Floats16 wv = PACKED ? load16(g + i * R + r * 16) : load16(w[r] + i);
      PIN(wv);
#pragma GCC unroll 16
      for (int j = 0; j < J; ++j) a[r][j] += wv * xv[j];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j) acc[r * N + j] = a[r][j];
}

// The last `left` (< J) input rows.
template <int R, int J, bool PACKED>
[[gnu::always_inline]] inline void tile_rest(int64_t left, Floats16* acc, int64_t N, const float* const* w,
                                             const float* g, const float* x, int64_t IC, int64_t k0, int64_t k1) {
  if constexpr (J > 0) {
    if (left == J)
      tile<R, J, PACKED, 0>(acc, N, w, g, x, IC, k0, k1, nullptr);
    else
      tile_rest<R, J - 1, PACKED>(left, acc, N, w, g, x, IC, k0, k1);
  }
}

// A tile that prefetches p (<= R) lines per step.
template <int R, int J, int P>
[[gnu::always_inline]] inline void tile_prefetching(int p, Floats16* acc, int64_t N, const float* const* w,
                                                    const float* x, int64_t IC, int64_t k0, int64_t k1,
                                                    const float* const* pf) {
  if constexpr (P > 0) {
    if (p == P) return tile<R, J, false, P>(acc, N, w, nullptr, x, IC, k0, k1, pf);
    tile_prefetching<R, J, P - 1>(p, acc, N, w, x, IC, k0, k1, pf);
  } else {
    tile<R, J, false, 0>(acc, N, w, nullptr, x, IC, k0, k1, pf);
  }
}

// R plain weight rows against all N inputs over [k0, k1): the first T = min(N / J, R) input
// tiles prefetch the R rows' next lines (pf), ceil(R / T) rows each, as the library spreads them.
template <int R, int J>
[[gnu::noinline]] void plain_rows(Floats16* acc, int64_t N, const float* const* w, const float* x, int64_t IC,
                                  int64_t k0, int64_t k1, const float* const* pf) {
  const int T = static_cast<int>(std::min<int64_t>(N / J, R));
  int64_t j = 0;
  if (T > 0) {
    const int per = (R + T - 1) / T;
    for (int t = 0; t < T; ++t, j += J) {
      const float* mine[R];
      for (int k = 0; k < per; ++k) mine[k] = pf[t + k * T < R ? t + k * T : t];
      tile_prefetching<R, J, R>(per, acc + j, N, w, x + j * IC, IC, k0, k1, mine);
    }
  }
  for (; j + J <= N; j += J) tile<R, J, false, 0>(acc + j, N, w, nullptr, x + j * IC, IC, k0, k1, nullptr);
  tile_rest<R, J - 1, false>(N - j, acc + j, N, w, nullptr, x + j * IC, IC, k0, k1);
}

// One packed group of R rows against all N inputs over [k0, k1).
template <int R, int J>
[[gnu::noinline]] void packed_rows(Floats16* acc, int64_t N, const float* g, const float* x, int64_t IC, int64_t k0,
                                   int64_t k1) {
  int64_t j = 0;
  for (; j + J <= N; j += J) tile<R, J, true, 0>(acc + j, N, nullptr, g, x + j * IC, IC, k0, k1, nullptr);
  tile_rest<R, J - 1, true>(N - j, acc + j, N, nullptr, g, x + j * IC, IC, k0, k1);
}

// Chunks of about `target` features, of equal whole vectors (as the library's).
int64_t chunk_of(int64_t IC, int64_t target) {
  const int64_t chunks = std::max<int64_t>(1, (IC + target / 2) / target);
  return (IC / 16 + chunks - 1) / chunks * 16;
}

// Rows [first, first + count) (count a multiple of 2) in blocks of B rows, R x J tiles, plain
// layout, ~256-feature chunks; rows past the last R-row tile of a block in 2 x J tiles.
template <int R, int J, int B>
void plain_kernel(float* out, const float* inp, const float* W, int64_t OC, int64_t IC, int64_t N, int64_t first,
                  int64_t count) {
  thread_local std::vector<Floats16> buffer;
  if (buffer.size() < static_cast<size_t>(B * N)) buffer.resize(static_cast<size_t>(B * N));
  Floats16* acc = buffer.data();
  const int64_t chunk = chunk_of(IC, 256), end = first + count;
  for (int64_t o0 = first; o0 < end; o0 += B) {
    const int64_t rows = std::min<int64_t>(B, end - o0);
    const float* wr[B];
    for (int64_t r = 0; r < rows; ++r) wr[r] = W + (o0 + r) * IC;
    for (int64_t k0 = 0; k0 < IC; k0 += chunk) {
      const int64_t k1 = std::min(IC, k0 + chunk);
      const float* pf[B];
      for (int64_t r = 0; r < rows; ++r)
        pf[r] = k1 < IC ? wr[r] + k1 : o0 + B + r < end ? W + (o0 + B + r) * IC : wr[r] + k0;
      int64_t r = 0;
      for (; r + R <= rows; r += R) plain_rows<R, J>(acc + r * N, N, wr + r, inp, IC, k0, k1, pf + r);
      for (; r + 2 <= rows; r += 2) plain_rows<2, J>(acc + r * N, N, wr + r, inp, IC, k0, k1, pf + r);
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < N; ++j) out[j * OC + o0 + r] = horizontal_sum(acc[r * N + j]);
  }
}

// Packed groups of R rows (first and count multiples of R), chunks of about `target` features
// (whole rows when target >= IC).
template <int R, int J, int64_t target>
void packed_kernel(float* out, const float* inp, const float* P, int64_t OC, int64_t IC, int64_t N, int64_t first,
                   int64_t count) {
  thread_local std::vector<Floats16> buffer;
  if (buffer.size() < static_cast<size_t>(R * N)) buffer.resize(static_cast<size_t>(R * N));
  Floats16* acc = buffer.data();
  const int64_t chunk = chunk_of(IC, target);
  for (int64_t o0 = first; o0 < first + count; o0 += R) {
    const float* g = P + o0 * IC;
    for (int64_t k0 = 0; k0 < IC; k0 += chunk) packed_rows<R, J>(acc, N, g, inp, IC, k0, std::min(IC, k0 + chunk));
    for (int r = 0; r < R; ++r)
      for (int64_t j = 0; j < N; ++j) out[j * OC + o0 + r] = horizontal_sum(acc[r * N + j]);
  }
}

void library_kernel(float* out, const float* inp, const float* W, int64_t OC, int64_t IC, int64_t N, int64_t first,
                    int64_t count) {
  lm::matmul_rows_blocked(out, lm::RowsInput(inp, N, IC, lm::WeightType::F32), lm::f32_weights(W, OC, IC), nullptr,
                          first, count);
}

// matmul_rows's loop for fewer than kBlockedMinRows inputs: each weight row read once, one
// dot_f32 per input row (batch-1 decode's pattern at N = 1).
void one_by_one_kernel(float* out, const float* inp, const float* W, int64_t OC, int64_t IC, int64_t N, int64_t first,
                       int64_t count) {
  lm::matmul_rows_one_by_one(out, lm::RowsInput(inp, N, IC, lm::WeightType::F32), lm::f32_weights(W, OC, IC),
                             nullptr, first, count);
}

using Kernel = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t);
struct Variant {
  const char* name;
  Kernel kernel;  // null: sgemm, or the library's matmul_rows on typed rows (type set)
  int packed;     // 0 plain layout, else the packed group's rows
  int64_t group;  // the rows shared out between threads in multiples of this
  lm::WeightType type = lm::WeightType::F32;  // else the weights cast to it: matmul_rows on them
  bool panels = false;  // matmul_rows on a view with panels (core/panels.h) of the rows of `type`
  bool typed() const { return type != lm::WeightType::F32; }
};

// Weights on transparent huge pages, as lm::Tensor allocates them.
float* allocate(int64_t floats) {
  const size_t page = size_t{2} << 20;
  const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + page - 1) / page * page;
  void* p = std::aligned_alloc(page, bytes);
  if (!p) {
    std::fprintf(stderr, "rows_bench: error: out of memory\n");
    std::exit(1);
  }
  madvise(p, bytes, MADV_HUGEPAGE);
  std::memset(p, 0, bytes);
  return static_cast<float*>(p);
}

// [OC, IC] rows into groups of R rows stored [IC/16][R][16].
void pack(float* dst, const float* w, int64_t OC, int64_t IC, int R) {
  for (int64_t o = 0; o < OC; o += R)
    for (int64_t i = 0; i < IC; i += 16)
      for (int r = 0; r < R; ++r) std::memcpy(dst + o * IC + i * R + r * 16, w + (o + r) * IC + i, 64);
}

struct Matrix {
  int64_t OC, IC;
  const float* w;
  const float* packed[9];  // by group rows (4 and 8 used)
  const uint16_t* bf16;    // w rounded to bf16
  const uint8_t* q8;       // w quantized to q8_0
  std::shared_ptr<const lm::WeightPanels> panels[3];  // of w, bf16 and q8, made when a panels variant runs
  static int index(lm::WeightType t) { return t == lm::WeightType::BF16 ? 1 : t == lm::WeightType::Q8_0 ? 2 : 0; }
  lm::WeightView view(lm::WeightType t) const {
    if (t == lm::WeightType::BF16) return {t, bf16, OC, IC, IC * 2};
    if (t == lm::WeightType::Q8_0) return {t, q8, OC, IC, IC / 32 * 34};
    return lm::f32_weights(w, OC, IC);
  }
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "stories110m", only;
  int64_t N = 16;
  int threads = 2, rounds = 3, steps = 5;
  bool cache = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--shape" && i + 1 < argc) shape = argv[++i];
    else if (arg == "--batch" && i + 1 < argc) N = std::atoi(argv[++i]);
    else if (arg == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (arg == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--steps" && i + 1 < argc) steps = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--only" && i + 1 < argc) only = std::string(",").append(argv[++i]).append(",");
    else if (arg == "--cache") cache = true;
    else {
      std::fprintf(stderr, "usage: rows_bench [--shape stories15m|stories110m] [--batch N] [--threads T] [--rounds R] "
                           "[--steps S] [--cache] [--only a,b,...]\n");
      return 2;
    }
  }
  int64_t C, F, L;
  const int64_t V = 32000;
  if (shape == "stories110m") C = 768, F = 2048, L = 12;
  else if (shape == "stories15m") C = 288, F = 768, L = 6;
  else {
    std::fprintf(stderr, "rows_bench: error: --shape %s: not stories15m or stories110m\n", shape.c_str());
    return 2;
  }
  if (N < 1 || N > 64) {
    std::fprintf(stderr, "rows_bench: error: --batch %ld: not in 1..64\n", static_cast<long>(N));
    return 2;
  }
  lm::set_threads(threads);
  const int nt = lm::thread_count();

  std::vector<Matrix> mats;
  for (int64_t l = 0; l < L; ++l) {
    for (int k = 0; k < 4; ++k) mats.push_back({C, C, nullptr, {}, nullptr, nullptr, {}});
    mats.push_back({F, C, nullptr, {}, nullptr, nullptr, {}});
    mats.push_back({F, C, nullptr, {}, nullptr, nullptr, {}});
    mats.push_back({C, F, nullptr, {}, nullptr, nullptr, {}});
  }
  if (!cache) mats.push_back({V, C, nullptr, {}, nullptr, nullptr, {}});
  // Weights: small values of both signs; with --cache one buffer of the largest matrix for all.
  const float* shared = nullptr;
  const float* shared_packed[9] = {};
  const uint16_t* shared_bf16 = nullptr;
  const uint8_t* shared_q8 = nullptr;
  double bytes = 0, flops = 0;
  for (Matrix& m : mats) {
    bytes += 4.0 * m.OC * m.IC;
    flops += 2.0 * m.OC * m.IC * N;
    if (cache && shared) {
      m.w = shared;
      for (int R : {4, 8}) m.packed[R] = shared_packed[R];
      m.bf16 = shared_bf16;
      m.q8 = shared_q8;
      continue;
    }
    const int64_t n = cache ? F * C : m.OC * m.IC;
    float* w = allocate(n);
    for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    m.w = w;
    auto* b = reinterpret_cast<uint16_t*>(allocate((n + 1) / 2));
    for (int64_t i = 0; i < n; ++i) b[i] = lm::f32_to_bf16(w[i]);
    m.bf16 = b;
    auto* q = reinterpret_cast<uint8_t*>(allocate((n / 32 * 34 + 3) / 4));
    lm::quantize_row(lm::WeightType::Q8_0, w, n, q);
    m.q8 = q;
    for (int R : {4, 8}) {
      float* p = allocate(n);
      pack(p, w, n / m.IC, m.IC, R);
      m.packed[R] = p;
    }
    if (cache) {
      shared = m.w;
      shared_bf16 = m.bf16;
      shared_q8 = m.q8;
      for (int R : {4, 8}) shared_packed[R] = m.packed[R];
    }
  }
  // The input rows on a 64-byte boundary, as the activations' Tensor puts them (the row
  // lengths here are whole cache lines, so no vector load of an input row splits a line).
  float* const x = allocate(N * F);
  for (int64_t i = 0; i < N * F; ++i) x[i] = static_cast<float>((i * 104729) % 997) * 1e-3f - 0.4f;
  struct Input {
    float* p;
    float* data() const { return p; }
  } inp{x};
  std::vector<float> out(static_cast<size_t>(N * V)), want(out.size());

  const std::vector<Variant> variants = {
      {"blocked", library_kernel, 0, 4},
      {"one by one", one_by_one_kernel, 0, 1},
      {"tile 4x4", plain_kernel<4, 4, 8>, 0, 8},
      {"tile 4x6", plain_kernel<4, 6, 8>, 0, 8},
      {"tile 6x4", plain_kernel<6, 4, 12>, 0, 24},
      {"tile 8x3", plain_kernel<8, 3, 8>, 0, 8},
      {"tile 2x8", plain_kernel<2, 8, 8>, 0, 8},
      {"packed 4x4", packed_kernel<4, 4, int64_t{1} << 30>, 4, 8},
      {"packed 4x6", packed_kernel<4, 6, int64_t{1} << 30>, 4, 8},
      {"packed 8x3", packed_kernel<8, 3, int64_t{1} << 30>, 8, 8},
      {"packed 4x4 c", packed_kernel<4, 4, 256>, 4, 8},
      {"packed 8x3 c", packed_kernel<8, 3, 256>, 8, 8},
      {"sgemm", nullptr, 0, 0},
      {"bf16 dot", nullptr, 0, 4, lm::WeightType::BF16},
      {"panels", nullptr, 0, 16, lm::WeightType::F32, true},
      {"bf16 panels", nullptr, 0, 16, lm::WeightType::BF16, true},
      {"q8_0 rows", nullptr, 0, 4, lm::WeightType::Q8_0},
      {"q8_0 panels", nullptr, 0, 16, lm::WeightType::Q8_0, true},
  };
  auto selected = [&](const Variant& v) { return only.empty() || only.find(std::string(",").append(v.name).append(",")) != std::string::npos; };
  for (const Variant& v : variants)  // the panels of each matrix (with --cache, once a shape)
    if (v.panels && selected(v))
      for (Matrix& m : mats) {
        const int t = Matrix::index(v.type);
        const auto same = std::find_if(mats.begin(), mats.end(), [&](const Matrix& e) {
          return e.panels[t] && e.OC == m.OC && e.IC == m.IC;
        });
        m.panels[t] = cache && same != mats.end() ? same->panels[t] : lm::make_panels(m.view(v.type));
      }
  auto run_matrix = [&](const Variant& v, const Matrix& m) {
    if (v.panels) {  // as matmul_forward runs them: the input prepared once, whole panels shared out
      lm::WeightView w = m.view(v.type);
      w.panels = m.panels[Matrix::index(v.type)].get();
      const lm::RowsInput in(inp.data(), N, w);
      return lm::parallel_chunks_grouped(m.OC, std::max<int64_t>(16, (int64_t{32} << 10) / m.IC), v.group,
                                         [&](int64_t lo, int64_t hi) { lm::matmul_rows(out.data(), in, w, nullptr, lo, hi - lo); });
    }
    if (v.typed()) {  // as matmul_forward runs typed weights: the input prepared once, the rows shared out
      const lm::WeightView w = m.view(v.type);
      const lm::RowsInput in(inp.data(), N, m.IC, v.type);
      return lm::parallel_chunks_grouped(m.OC, std::max<int64_t>(1, (int64_t{32} << 10) / m.IC), v.group,
                                         [&](int64_t lo, int64_t hi) { lm::matmul_rows(out.data(), in, w, nullptr, lo, hi - lo); });
    }
    if (!v.kernel) return lm::sgemm(false, true, N, m.OC, m.IC, 1.0f, inp.data(), m.w, 0.0f, out.data());
    const float* W = v.packed ? m.packed[v.packed] : m.w;
    lm::parallel_chunks_grouped(m.OC, std::max<int64_t>(1, (int64_t{32} << 10) / m.IC), v.group,
                                [&](int64_t lo, int64_t hi) { v.kernel(out.data(), inp.data(), W, m.OC, m.IC, N, lo, hi - lo); });
  };
  // Every kernel but sgemm against its row-dot (dot_f32, dot_bf16, dot_q8_0) one element at a time, bit
  // for bit, on every matrix.
  std::vector<bool> same(variants.size(), true);
  for (size_t k = 0; k < variants.size(); ++k) {
    if (!selected(variants[k]) || !(variants[k].kernel || variants[k].typed() || variants[k].panels)) continue;
    for (const Matrix& m : mats) {
      if (cache && &m != &mats[4]) continue;  // the same buffer under every matrix: one check
      const lm::WeightType type = variants[k].type;
      const lm::WeightView w = m.view(type);
      if (variants[k].panels)  // the panels' own twin: one chain per element
        lm::matmul_panels_ref(want.data(), inp.data(), w, nullptr, N, 0, m.OC);
      else if (type == lm::WeightType::Q8_0) {  // dot_q8_0 of each pair
        const lm::RowsInput in(inp.data(), N, m.IC, type);
        for (int64_t o = 0; o < m.OC; ++o)
          for (int64_t n = 0; n < N; ++n)
            want[static_cast<size_t>(n * m.OC + o)] = lm::dot_q8_0(m.q8 + o * (m.IC / 32 * 34), in.q.data() + n * m.IC,
                                                                   in.d.data() + n * (m.IC / 32), m.IC);
      } else
        lm::matmul_rows_one_by_one(want.data(), lm::RowsInput(inp.data(), N, m.IC, type), w, nullptr, 0, m.OC);
      run_matrix(variants[k], m);
      same[k] = same[k] && std::memcmp(out.data(), want.data(), static_cast<size_t>(N * m.OC) * sizeof(float)) == 0;
    }
  }
  const lm::Isa isa = lm::cpu_has(lm::Isa::avx512) ? lm::Isa::avx512 : lm::Isa::avx2;
  double peak = lm::fma_peak_gflops(isa, nt) * 1e9;
  std::vector<std::vector<double>> times(variants.size());
  for (int round = 0; round < rounds; ++round)
    for (size_t k = 0; k < variants.size(); ++k) {
      if (!selected(variants[k])) continue;
      double best = 1e30;
      for (int s = 0; s < steps; ++s) {
        const double t0 = now();
        for (const Matrix& m : mats) run_matrix(variants[k], m);
        best = std::min(best, now() - t0);
      }
      times[k].push_back(best);
    }
  peak = std::max(peak, lm::fma_peak_gflops(isa, nt) * 1e9);  // before and after: the VM's clock moves
  std::printf("# %s, N = %ld, %d threads, weights from %s (%.0f MB a step), FMA peak %.0f GFLOP/s (%s), %d rounds\n",
              shape.c_str(), static_cast<long>(N), nt, cache ? "the caches" : "memory", bytes / 1e6, peak / 1e9,
              lm::isa_name(isa), rounds);
  std::printf("%-14s %9s %8s %9s %8s %s\n", "kernel", "ms/step", "GB/s", "GFLOP/s", "of FMA", "row-dot bit for bit");
  for (size_t k = 0; k < variants.size(); ++k) {
    if (times[k].empty()) continue;
    std::vector<double> t = times[k];
    std::sort(t.begin(), t.end());
    const double median = t[t.size() / 2];
    const double streamed = variants[k].type == lm::WeightType::BF16 ? bytes / 2
                            : variants[k].type == lm::WeightType::Q8_0 ? bytes * 34 / 128 : bytes;
    std::printf("%-14s %9.2f %8.1f %9.0f %7.0f%% %s\n", variants[k].name, median * 1e3, streamed / median / 1e9,
                flops / median / 1e9, 100 * flops / median / peak,
                variants[k].panels ? (same[k] ? "own chain" : "NO")
                : variants[k].kernel || variants[k].typed() ? (same[k] ? "yes" : "NO") : "no (another order)");
  }
  for (size_t k = 0; k < variants.size(); ++k)
    if ((variants[k].kernel || variants[k].typed() || variants[k].panels) && selected(variants[k]) && !same[k]) return 1;
  return 0;
}
