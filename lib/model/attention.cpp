#include "model/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/blas.h"
#include "core/fast_exp.h"
#include "core/lanes.h"
#include "core/row_max.h"
#include "core/threads.h"
#include "model/dropout.h"

namespace lm {

void attention_spans(int64_t* lo, int64_t* hi, const int32_t* tokens, int64_t B, int64_t T, int64_t P, bool causal,
                     bool doc_mask, int64_t eos_id, int64_t* doc_start, bool eos_starts_document) {
  // An EOS at slot s: "end" closes its document (the next begins at s + 1), "start" opens one at s.
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* tok = tokens + b * T;
    int64_t* l = lo + b * T;
    int64_t* h = hi + b * T;
    int64_t start = doc_start ? doc_start[b] : 0;
    for (int64_t t = 0; t < T; ++t) {
      if (doc_mask && eos_starts_document && tok[t] == eos_id) start = P + t;
      l[t] = doc_mask ? start : 0;
      h[t] = causal ? P + t : P + T - 1;
      if (doc_mask && !eos_starts_document && tok[t] == eos_id) start = P + t + 1;
    }
    if (doc_mask && !causal) {  // a query also sees the rest of its document: up to where the next begins
      int64_t end = P + T - 1;
      for (int64_t t = T - 1; t >= 0; --t) {
        if (!eos_starts_document && tok[t] == eos_id) end = P + t;
        h[t] = end;
        if (eos_starts_document && tok[t] == eos_id) end = P + t - 1;
      }
    }
    if (doc_start) doc_start[b] = start;
  }
}

void narrow_spans_to_chunks(int64_t* lo, int64_t B, int64_t T, int64_t P, int64_t chunk) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = P + t;
      lo[b * T + t] = std::max(lo[b * T + t], slot - slot % chunk);
    }
}

void temperature_scales(float* scale, const int64_t* pos, int64_t N, double floor_scale, double attn_scale) {
  for (int64_t n = 0; n < N; ++n) {
    const double p = static_cast<double>(pos[n]);
    scale[n] = static_cast<float>(std::log(std::floor((p + 1.0) / floor_scale) + 1.0) * attn_scale + 1.0);
  }
}

void temperature_forward(float* out, const float* inp, const float* scale, int64_t N, int64_t D) {
  parallel_for(N, N * D, [&](int64_t n) {
    const float s = scale[n];
    for (int64_t i = 0; i < D; ++i) out[n * D + i] = inp[n * D + i] * s;
  });
}

void temperature_backward(float* dinp, const float* dout, const float* scale, int64_t N, int64_t D) {
  parallel_for(N, N * D, [&](int64_t n) {
    const float s = scale[n];
    for (int64_t i = 0; i < D; ++i) dinp[n * D + i] += dout[n * D + i] * s;
  });
}

namespace {

// The queries [t0, t1) of one row that share a span start, and the key window [k0, k1] they
// read together: the union of their spans.
struct QueryBlock {
  int64_t t0, t1, k0, k1;
};

// Query rows per block where the spans' ends grow along the block (causal rows): each block of
// this many queries reads only the keys up to its last query's, so the products skip most of
// the masked upper triangle (at T = 256: 62.5% of the square's work in blocks of 64 instead of
// all of it) while each product stays large enough for the GEMM's kernels.
constexpr int64_t kCausalQueryRows = 64;

// Row b's queries cut where the span start changes, and a run of queries whose span ends grow
// (causal) cut further into blocks of kCausalQueryRows, each with its own narrower window.
void query_blocks(std::vector<QueryBlock>& out, const int64_t* lo, const int64_t* hi, int64_t b, int64_t T) {
  out.clear();
  const int64_t* l = lo + b * T;
  const int64_t* h = hi + b * T;
  for (int64_t t0 = 0; t0 < T;) {
    int64_t t1 = t0 + 1, k1 = h[t0];
    while (t1 < T && l[t1] == l[t0]) k1 = std::max(k1, h[t1++]);
    // The window of the first kCausalQueryRows queries: narrower than the block's only when
    // the span ends grow (no cut for bidirectional rows, whose queries all read every key).
    int64_t first_k1 = h[t0];
    for (int64_t t = t0; t < std::min(t1, t0 + kCausalQueryRows); ++t) first_k1 = std::max(first_k1, h[t]);
    if (t1 - t0 <= kCausalQueryRows + kCausalQueryRows / 2 || first_k1 >= k1) {
      out.push_back({t0, t1, l[t0], k1});
    } else {
      for (int64_t s0 = t0; s0 < t1;) {
        int64_t s1 = std::min(t1, s0 + kCausalQueryRows);
        if (t1 - s1 < kCausalQueryRows / 2) s1 = t1;  // no short tail block
        int64_t sk1 = h[s0];
        for (int64_t t = s0; t < s1; ++t) sk1 = std::max(sk1, h[t]);
        out.push_back({s0, s1, l[t0], sk1});
        s0 = s1;
      }
    }
    t0 = t1;
  }
}

// In place over row[0, W): softmax over [lo, hi] (relative to the row), 0 elsewhere.
// The max in lanes and the sum as an `omp simd` reduction: scalar loops before (the max a
// chain of vmaxss, the sum's order kept the exponentials from vectorising).
void masked_softmax(float* row, int64_t W, int64_t lo, int64_t hi) {
  const float mx = row_max(row + lo, hi - lo + 1);
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = lo; j <= hi; ++j) sum += (row[j] = exp_fast(row[j] - mx));
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < lo; ++j) row[j] = 0;
  for (int64_t j = lo; j <= hi; ++j) row[j] *= inv;
  for (int64_t j = hi + 1; j < W; ++j) row[j] = 0;
}

}  // namespace

namespace {

// How decode attention reads a cache of each element type: 16 values widened to f32 (load),
// or one (at). Widening is exact, so each type's numbers are those of an f32 cache holding the
// widened values.
struct CacheF32 {
  using Elem = float;
  static Floats16 load(const float* p) { return load16(p); }
  static float at(const float* p) { return *p; }
};
struct CacheBf16 {
  using Elem = uint16_t;
  static Floats16 load(const uint16_t* p) { return load16_bf16(p); }
  static float at(const uint16_t* p) { return bf16_to_f32(*p); }
};
struct CacheF16 {
  using Elem = uint16_t;
  static Floats16 load(const uint16_t* p) { return load16_f16(p); }
  static float at(const uint16_t* p) { return f16_to_f32(*p); }
};

// The lines of a position's [NKV, HS] that heads' slice [s0, s1) covers.
template <class E>
void prefetch_slice(const E* row, int64_t s0, int64_t s1) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t off = s0 * static_cast<int64_t>(sizeof(E)); off < s1 * static_cast<int64_t>(sizeof(E)); off += 64)
    __builtin_prefetch(p + off);
}

// attention_one_query_heads for heads of V whole vectors (HS = 16 V): each score one vector
// multiply-add chain and a lane sum; the values' weighted sums for groups of up to G heads
// carried in registers over all the positions, then stored (an `omp simd` loop per (position,
// head) before: a reduction's epilogue per score, the outputs loaded and stored again at every
// position). Only the keys are prefetched: the values, prefetched too during the scores, made
// it slower (W = 128, one thread, 12 heads of 64: 19.4 us a sequence from the caches before,
// 13.9 with the values' prefetch, 10.8-12.4 without; from memory 42.6, 30-31 and 27-31). Four
// heads' lane sums at once (horizontal_sums4) gained nothing measurable.
template <class R, int V>
void one_query_heads_vectors(float* ob, const float* q, const typename R::Elem* k, const typename R::Elem* v, int64_t W,
                             int64_t ld, int64_t rep, int64_t h0, int64_t h1, float scale, float* sc, int64_t s0,
                             int64_t s1) {
  constexpr int64_t HS = 16 * V;
  constexpr int64_t kAhead = 4;
  for (int64_t j = 0; j < std::min(kAhead, W); ++j) prefetch_slice(k + j * ld, s0, s1);
  for (int64_t j = 0; j < W; ++j) {
    if (j + kAhead < W) prefetch_slice(k + (j + kAhead) * ld, s0, s1);
    const typename R::Elem* kj = k + j * ld;
    for (int64_t h = h0; h < h1; ++h) {
      const float* qh = q + h * HS;
      const typename R::Elem* kh = kj + (h / rep) * HS;
      Floats16 acc = load16(qh) * R::load(kh);
#pragma GCC unroll 8
      for (int i = 1; i < V; ++i) acc += load16(qh + 16 * i) * R::load(kh + 16 * i);
      sc[(h - h0) * W + j] = scale * lane_sum(acc);
    }
  }
  for (int64_t h = h0; h < h1; ++h) masked_softmax(sc + (h - h0) * W, W, 0, W - 1);
  constexpr int G = V <= 24 ? 24 / V : 1;  // heads a group: G x V accumulators of the 32 registers
  for (int64_t hg = h0; hg < h1; hg += G) {
    const int64_t g = std::min<int64_t>(G, h1 - hg);
    Floats16 acc[G * V] = {};
    for (int64_t j = 0; j < W; ++j) {
      const typename R::Elem* vj = v + j * ld;
#pragma GCC unroll 24
      for (int hh = 0; hh < G; ++hh) {
        if (hh >= g) break;
        const float p = sc[(hg + hh - h0) * W + j];
        const typename R::Elem* vh = vj + ((hg + hh) / rep) * HS;
#pragma GCC unroll 8
        for (int i = 0; i < V; ++i) acc[hh * V + i] += p * R::load(vh + 16 * i);
      }
    }
    for (int hh = 0; hh < g; ++hh)
      for (int i = 0; i < V; ++i) std::memcpy(ob + (hg + hh) * HS + 16 * i, &acc[hh * V + i], sizeof(Floats16));
  }
}

template <class R>
void one_query_heads(float* out, const float* q, const void* k, const void* v, int64_t b, int64_t k0, int64_t k1,
                     int64_t S, int64_t NH, int64_t NKV, int64_t HS, int64_t h0, int64_t h1, std::vector<float>& sc) {
  using E = typename R::Elem;
  const int64_t rep = NH / NKV, ld = NKV * HS, W = k1 - k0 + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  sc.resize(static_cast<size_t>((h1 - h0) * W));  // scores, then probabilities
  // The slice of a position's [NKV, HS] these heads read, and a prefetch of it a few
  // positions ahead: the cache comes from memory (the weights read since evicted it) and
  // the work per position is too short for the hardware prefetcher to run ahead.
  const int64_t s0 = (h0 / rep) * HS, s1 = ((h1 - 1) / rep + 1) * HS;
  const E* kb = static_cast<const E*>(k) + (b * S + k0) * ld;
  const E* vb = static_cast<const E*>(v) + (b * S + k0) * ld;
  float* ob = out + b * NH * HS;
  const float* qb = q + b * NH * HS;
  switch (HS) {  // the head sizes of the seed models: whole vectors
    case 32: return one_query_heads_vectors<R, 2>(ob, qb, kb, vb, W, ld, rep, h0, h1, scale, sc.data(), s0, s1);
    case 48: return one_query_heads_vectors<R, 3>(ob, qb, kb, vb, W, ld, rep, h0, h1, scale, sc.data(), s0, s1);
    case 64: return one_query_heads_vectors<R, 4>(ob, qb, kb, vb, W, ld, rep, h0, h1, scale, sc.data(), s0, s1);
    case 128: return one_query_heads_vectors<R, 8>(ob, qb, kb, vb, W, ld, rep, h0, h1, scale, sc.data(), s0, s1);
    default: break;
  }
  constexpr int64_t kAhead = 4;
  for (int64_t j = 0; j < std::min(kAhead, W); ++j) prefetch_slice(kb + j * ld, s0, s1);
  for (int64_t j = 0; j < W; ++j) {
    if (j + kAhead < W) prefetch_slice(kb + (j + kAhead) * ld, s0, s1);
    prefetch_slice(vb + j * ld, s0, s1);  // for the second pass
    const E* kj = kb + j * ld;
    for (int64_t h = h0; h < h1; ++h) {
      const float* qh = qb + h * HS;
      const E* kh = kj + (h / rep) * HS;
      // Whole vectors, then the rest one by one: the same order for every cache type (an
      // `omp simd` reduction's order followed the vector width GCC chose for each).
      Floats16 acc{};
      int64_t i = 0;
      for (; i + 16 <= HS; i += 16) acc += load16(qh + i) * R::load(kh + i);
      float sum = lane_sum(acc);
      for (; i < HS; ++i) sum = std::fma(qh[i], R::at(kh + i), sum);
      sc[(h - h0) * W + j] = scale * sum;
    }
  }
  for (int64_t h = h0; h < h1; ++h) masked_softmax(sc.data() + (h - h0) * W, W, 0, W - 1);
  std::fill(ob + h0 * HS, ob + h1 * HS, 0.0f);
  for (int64_t j = 0; j < W; ++j) {
    const E* vj = vb + j * ld;
    for (int64_t h = h0; h < h1; ++h) {
      const float p = sc[(h - h0) * W + j];
      const E* vh = vj + (h / rep) * HS;
      float* oh = ob + h * HS;
#pragma omp simd
      for (int64_t i = 0; i < HS; ++i) oh[i] = std::fma(p, R::at(vh + i), oh[i]);
    }
  }
}

}  // namespace

void attention_one_query_heads(float* out, const float* q, const CachedKV& kv, int64_t b, int64_t k0, int64_t k1,
                               int64_t S, int64_t NH, int64_t NKV, int64_t HS, int64_t h0, int64_t h1,
                               std::vector<float>& sc) {
  if (kv.dtype == DType::BF16)
    return one_query_heads<CacheBf16>(out, q, kv.k, kv.v, b, k0, k1, S, NH, NKV, HS, h0, h1, sc);
  if (kv.dtype == DType::F16)
    return one_query_heads<CacheF16>(out, q, kv.k, kv.v, b, k0, k1, S, NH, NKV, HS, h0, h1, sc);
  one_query_heads<CacheF32>(out, q, kv.k, kv.v, b, k0, k1, S, NH, NKV, HS, h0, h1, sc);
}

// One query per row (decode, nothing saved): a few hundred short products, where a call
// into BLAS costs more than the arithmetic. Position-major: each cached position's keys and
// values for all heads ([NKV, HS], contiguous) are read once, in order, instead of one
// head's strided slices at a time.
void attention_decode(float* out, const float* q, const CachedKV& kv, const int64_t* lo, const int64_t* hi, int64_t B,
                      int64_t S, int64_t NH, int64_t NKV, int64_t HS) {
  auto heads = [&](int64_t b, int64_t h0, int64_t h1, std::vector<float>& sc) {
    attention_one_query_heads(out, q, kv, b, lo[b], hi[b], S, NH, NKV, HS, h0, h1, sc);
  };
  int64_t work = 0;  // multiply-adds
  for (int64_t b = 0; b < B; ++b) work += 2 * NH * (hi[b] - lo[b] + 1) * HS;
  // Measured on stories110m decode (12 heads of 64): up to about 170 cached positions one
  // thread is faster than two (27 against 41 us a layer at 64 positions).
  if (work < kParallelMinWork * 16) {
    std::vector<float> sc;
    for (int64_t b = 0; b < B; ++b) heads(b, 0, NH, sc);
    return;
  }
  // Rows over the threads; with fewer rows than threads, each row's heads split in groups.
  const int64_t groups = std::clamp<int64_t>(omp_get_max_threads() / B, 1, NH);
#pragma omp parallel
  {
    std::vector<float> sc;
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < groups; ++g) heads(b, NH * g / groups, NH * (g + 1) / groups, sc);
  }
}

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const int64_t* lo,
                       const int64_t* hi, int64_t B, int64_t T, int64_t P, int64_t S, int64_t NH, int64_t NKV,
                       int64_t HS, float dropout, uint64_t seed, int64_t v_ld) {
  const int64_t K = P + T;  // key slots in use
  const bool drop = dropout > 0 && att;
  const int64_t rep = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const int64_t qld = NH * HS, kvld = NKV * HS, vld = v_ld > 0 ? v_ld : kvld;
  // One (row, head) pair, block by block. scratch: a block's [M, W] scores when att is not
  // saved, else (dropout) its dropped probabilities that weight v.
  auto head = [&](int64_t b, int64_t h, std::vector<float>& scratch, std::vector<QueryBlock>& blocks) {
    float* att_bh = att ? att + (b * NH + h) * T * K : nullptr;
    const uint64_t base = static_cast<uint64_t>((b * NH + h) * T * K);
    query_blocks(blocks, lo, hi, b, T);
    for (const QueryBlock& qb : blocks) {
      // Only the key window these queries can see takes part in the products.
      const int64_t k0 = qb.k0, k1 = qb.k1, W = k1 - k0 + 1, M = qb.t1 - qb.t0;
      const float* qbh = q + (b * T + qb.t0) * qld + h * HS;
      const float* kb = k + (b * S + k0) * kvld + (h / rep) * HS;
      const float* vb = v + (b * S + k0) * vld + (h / rep) * HS;
      if (!att || drop) scratch.resize(static_cast<size_t>(M * W));
      // The block's scores, then probabilities: [M, W] at sb, row stride ld.
      float* sb = att ? att_bh + qb.t0 * K + k0 : scratch.data();
      const int64_t ld = att ? K : W;
      // sb[t, j] = scale * q_t . k_j
      sgemm(false, true, M, W, HS, scale, qbh, qld, kb, kvld, 0.0f, sb, ld);
      for (int64_t i = 0; i < M; ++i) {
        const int64_t t = qb.t0 + i;
        masked_softmax(sb + i * ld, W, lo[b * T + t] - k0, hi[b * T + t] - k0);
        if (att) {
          float* row = att_bh + t * K;
          std::fill(row, row + k0, 0.0f);
          std::fill(row + k1 + 1, row + K, 0.0f);
        }
      }
      const float* pr = sb;  // the probabilities that weight v
      int64_t pld = ld;
      if (drop) {
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < W; ++j)
            scratch[i * W + j] = sb[i * ld + j] * dropout_scale(seed, base + (qb.t0 + i) * K + k0 + j, dropout);
        pr = scratch.data();
        pld = W;
      }
      // out[t] = sum_j p[t, j] v_j
      sgemm(false, false, M, HS, W, 1.0f, pr, pld, vb, vld, 0.0f, out + (b * T + qb.t0) * qld + h * HS, qld);
    }
  };
  if (T == 1 && !att && vld == kvld) return attention_decode(out, q, CachedKV{k, v, DType::F32}, lo, hi, B, S, NH, NKV, HS);
  // A short window is a few microseconds of work: less than waking the team.
  if (B * NH * T * K * HS < kParallelMinWork * 4) {
    std::vector<float> scratch;
    std::vector<QueryBlock> blocks;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h) head(b, h, scratch, blocks);
    return;
  }
#pragma omp parallel
  {
    std::vector<float> scratch;
    std::vector<QueryBlock> blocks;
    // Dynamic: the two vCPUs of this VM often run at unequal speeds (identical halves of one
    // GEMM took 9.9 and 12.7 ms on the two threads), so a static split leaves the faster one
    // waiting at the end; a (row, head) unit is 50 to 100 us of work, far above the cost of
    // taking it. Each unit computes the same numbers on whichever thread runs it.
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h) head(b, h, scratch, blocks);
  }
}

void attention_forward_ref(float* out, float* att, const float* q, const float* k, const float* v,
                           const int64_t* lo, const int64_t* hi, int64_t B, int64_t T, int64_t P, int64_t S,
                           int64_t NH, int64_t NKV, int64_t HS) {
  const int64_t K = P + T;
  const int64_t rep = NH / NKV;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const float* qt = q + (b * T + t) * NH * HS + h * HS;
        const int64_t l = lo[b * T + t], u = hi[b * T + t];
        std::vector<double> p(static_cast<size_t>(K), 0.0);
        double mx = -INFINITY;
        for (int64_t j = l; j <= u; ++j) {
          const float* kj = k + (b * S + j) * NKV * HS + (h / rep) * HS;
          double dot = 0;
          for (int64_t i = 0; i < HS; ++i) dot += static_cast<double>(qt[i]) * kj[i];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = l; j <= u; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int64_t j = l; j <= u; ++j) p[j] /= sum;
        float* o = out + (b * T + t) * NH * HS + h * HS;
        for (int64_t i = 0; i < HS; ++i) {
          double acc = 0;
          for (int64_t j = l; j <= u; ++j) acc += p[j] * v[(b * S + j) * NKV * HS + (h / rep) * HS + i];
          o[i] = static_cast<float>(acc);
        }
        if (att)
          for (int64_t j = 0; j < K; ++j) att[((b * NH + h) * T + t) * K + j] = static_cast<float>(p[j]);
      }
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* att, const int64_t* lo, const int64_t* hi, int64_t B, int64_t T,
                        int64_t NH, int64_t NKV, int64_t HS, float dropout, uint64_t seed, bool add_to_grads,
                        int64_t v_ld) {
  const int64_t rep = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const int64_t qld = NH * HS, kvld = NKV * HS, vld = v_ld > 0 ? v_ld : kvld;
  const bool drop = dropout > 0;
#pragma omp parallel
  {
    std::vector<float> dp;  // a block's [M, W] dP, then dS
    std::vector<float> pd;  // a block's [M, W] dropped probabilities
    std::vector<QueryBlock> blocks;
#pragma omp for collapse(2) schedule(dynamic)  // as in attention_forward: unequal vCPUs
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t g = 0; g < NKV; ++g) {
        if (!add_to_grads)  // the unit's own slices of dq, dk, dv: no other unit touches them
          for (int64_t t = 0; t < T; ++t) {
            std::fill_n(dq + (b * T + t) * qld + g * rep * HS, rep * HS, 0.0f);
            std::fill_n(dk + (b * T + t) * kvld + g * HS, HS, 0.0f);
            std::fill_n(dv + (b * T + t) * vld + g * HS, HS, 0.0f);
          }
        query_blocks(blocks, lo, hi, b, T);
        for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
          const float* p_bh = att + (b * NH + h) * T * T;
          const uint64_t base = static_cast<uint64_t>((b * NH + h) * T * T);
          for (const QueryBlock& qb : blocks) {
            const int64_t k0 = qb.k0, k1 = qb.k1, W = k1 - k0 + 1, M = qb.t1 - qb.t0;
            const float* kb = k + (b * T + k0) * kvld + g * HS;
            const float* vb = v + (b * T + k0) * vld + g * HS;
            float* dkb = dk + (b * T + k0) * kvld + g * HS;
            float* dvb = dv + (b * T + k0) * vld + g * HS;
            const float* qbh = q + (b * T + qb.t0) * qld + h * HS;
            const float* dobh = dout + (b * T + qb.t0) * qld + h * HS;
            float* dqbh = dq + (b * T + qb.t0) * qld + h * HS;
            const float* p = p_bh + qb.t0 * T + k0;  // the block's probabilities [M, W], stride T
            const float* pw = p;                     // the probabilities that weighted v
            int64_t pwld = T;
            if (drop) {
              pd.resize(static_cast<size_t>(M * W));
              for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < W; ++j)
                  pd[i * W + j] = p[i * T + j] * dropout_scale(seed, base + (qb.t0 + i) * T + k0 + j, dropout);
              pw = pd.data();
              pwld = W;
            }
            // dv_j += sum_t pw[t, j] dout_t
            sgemm(true, false, W, HS, M, 1.0f, pw, pwld, dobh, qld, 1.0f, dvb, vld);
            // dP[t, j] = dout_t . v_j (times the mask under dropout)
            dp.resize(static_cast<size_t>(M * W));
            float* d = dp.data();
            sgemm(false, true, M, W, HS, 1.0f, dobh, qld, vb, vld, 0.0f, d, W);
            for (int64_t i = 0; i < M; ++i) {
              const int64_t t = qb.t0 + i;
              float* dr = d + i * W;
              const float* pr = p + i * T;
              const int64_t l = lo[b * T + t] - k0, u = hi[b * T + t] - k0;
              if (drop)
                for (int64_t j = l; j <= u; ++j) dr[j] *= dropout_scale(seed, base + t * T + k0 + j, dropout);
              // softmax backward: dS = P (dP - sum_j P dP), times the score scale
              float dot = 0;
#pragma omp simd reduction(+ : dot)
              for (int64_t j = l; j <= u; ++j) dot += pr[j] * dr[j];
              for (int64_t j = 0; j < l; ++j) dr[j] = 0;
              for (int64_t j = l; j <= u; ++j) dr[j] = scale * pr[j] * (dr[j] - dot);
              for (int64_t j = u + 1; j < W; ++j) dr[j] = 0;
            }
            // dq_t += sum_j dS[t, j] k_j;  dk_j += sum_t dS[t, j] q_t
            sgemm(false, false, M, HS, W, 1.0f, d, W, kb, kvld, 1.0f, dqbh, qld);
            sgemm(true, false, W, HS, M, 1.0f, d, W, qbh, qld, 1.0f, dkb, kvld);
          }
        }
      }
    }
  }
}

void attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                            const float* v, const float* att, const int64_t* lo, const int64_t* hi, int64_t B,
                            int64_t T, int64_t NH, int64_t NKV, int64_t HS, float dropout, uint64_t seed) {
  const int64_t rep = NH / NKV;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  const int64_t qld = NH * HS, kvld = NKV * HS;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t g = h / rep;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t l = lo[b * T + t], u = hi[b * T + t];
        const float* p = att + ((b * NH + h) * T + t) * T;
        const float* dot_ = dout + (b * T + t) * qld + h * HS;
        std::vector<double> m(static_cast<size_t>(T), 1.0), dp(static_cast<size_t>(T), 0.0);
        if (dropout > 0)
          for (int64_t j = 0; j < T; ++j)
            m[j] = dropout_scale(seed, static_cast<uint64_t>(((b * NH + h) * T + t) * T + j), dropout);
        double sum = 0;
        for (int64_t j = l; j <= u; ++j) {
          const float* vj = v + (b * T + j) * kvld + g * HS;
          double acc = 0;
          for (int64_t i = 0; i < HS; ++i) {
            acc += static_cast<double>(dot_[i]) * vj[i];
            dv[(b * T + j) * kvld + g * HS + i] += static_cast<float>(p[j] * m[j] * dot_[i]);
          }
          dp[j] = acc * m[j];
          sum += p[j] * dp[j];
        }
        for (int64_t j = l; j <= u; ++j) {
          const double ds = scale * p[j] * (dp[j] - sum);
          for (int64_t i = 0; i < HS; ++i) {
            dq[(b * T + t) * qld + h * HS + i] += static_cast<float>(ds * k[(b * T + j) * kvld + g * HS + i]);
            dk[(b * T + j) * kvld + g * HS + i] += static_cast<float>(ds * q[(b * T + t) * qld + h * HS + i]);
          }
        }
      }
    }
  }
}

}  // namespace lm
