#include "model/matmul.h"

#include <algorithm>
#include <cstring>

#include <vector>

#include "core/blas.h"
#include "core/panels.h"
#include "core/quant.h"
#include "core/error.h"
#include "core/rows.h"
#include "core/threads.h"

namespace lm {

int64_t few_rows_chunk(int64_t IC) { return std::max<int64_t>(1, (int64_t{32} << 10) / std::max<int64_t>(IC, 1)); }
int64_t few_rows_chunk(const WeightView& w) {
  return w.panels ? std::max(few_rows_chunk(w.cols), kPanelChunkRows) : few_rows_chunk(w.cols);
}
int64_t row_group(int64_t N) { return N >= kBlockedMinRows ? 4 : 1; }
int64_t row_group(int64_t N, const WeightView& w) { return w.panels ? kPanelRows : row_group(N); }

namespace {

// Few rows (decode): one pass over the weights, rows of W shared out by parallel_chunks.
// OpenBLAS's sgemm does not turn M = 1 into a gemv and runs about 3x below the memory bound here.
void matmul_forward_few_rows(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                             int64_t IC, int64_t OC) {
  const WeightView w = f32_weights(weight, OC, IC);
  parallel_chunks_grouped(OC, few_rows_chunk(IC), row_group(N),
                          [&](int64_t lo, int64_t hi) { matmul_rows(out, inp, w, bias, N, lo, hi - lo); });
}

}  // namespace

namespace {

thread_local Bf16Matmuls* t_bf16 = nullptr;  // the calling thread's active bf16 matmuls
thread_local bool t_rows = false;             // a RowKernelScope is active
thread_local bool t_prompt = false;           // a PromptRowsScope is active

// out rows = bias (the GEMM then adds with beta = 1).
void fill_bias(float* out, const float* bias, int64_t N, int64_t OC) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) std::memcpy(out + n * OC, bias, static_cast<size_t>(OC) * sizeof(float));
}

// bf16(x) for n floats into scratch buffer `slot`.
const uint16_t* rounded(Bf16Matmuls& m, int slot, const float* x, int64_t n) {
  uint16_t* out = m.scratch(slot, n);
  round_to_bf16(out, x, n);
  return out;
}

// The weight's bf16 copy, or (not registered) the weight rounded into scratch buffer `slot`.
const uint16_t* weight_bf16(Bf16Matmuls& m, int slot, const float* w, int64_t n) {
  const uint16_t* copy = m.find(w);
  return copy ? copy : rounded(m, slot, w, n);
}

// out [N, OC] = xb [N, IC] @ bf16(weight)^T (+ bias), xb already rounded.
void forward_bf16(Bf16Matmuls& m, float* out, const uint16_t* xb, const float* weight, const float* bias, int64_t N,
                  int64_t IC, int64_t OC) {
  if (bias) fill_bias(out, bias, N, OC);
  const uint16_t* wb = weight_bf16(m, 1, weight, OC * IC);
  gemm_bf16(false, true, N, OC, IC, 1.0f, xb, IC, wb, IC, bias ? 1.0f : 0.0f, out, OC);
}

}  // namespace

namespace {
int64_t f32_few_rows() { return t_prompt ? kPromptFewRows : kMatmulFewRows; }
}  // namespace

bool few_rows_path(int64_t N) { return (N <= f32_few_rows() || t_rows) && !t_bf16; }
int64_t few_rows_limit(WeightType type) {
  switch (type) {
    case WeightType::BF16: return 256;
    case WeightType::F16: return 128;
    case WeightType::Q8_0: return 64;
    default: return f32_few_rows();
  }
}
bool few_rows_path(int64_t N, WeightType type) { return (N <= few_rows_limit(type) || t_rows) && !t_bf16; }
bool few_rows_path(int64_t N, const WeightView& w) {
  if (w.panels && w.type == WeightType::F32 && t_prompt && N <= kPanelPromptRows && !t_bf16) return true;
  if (w.panels && weight_type_blocked(w.type) && N <= kIntPanelRows && !t_bf16) return true;
  return few_rows_path(N, w.type);
}

RowKernelScope::RowKernelScope() : prev_(t_rows) { t_rows = true; }
RowKernelScope::~RowKernelScope() { t_rows = prev_; }
bool row_kernel_forced() { return t_rows; }
PromptRowsScope::PromptRowsScope() : prev_(t_prompt) { t_prompt = true; }
PromptRowsScope::~PromptRowsScope() { t_prompt = prev_; }

Bf16Matmuls* active_bf16_matmuls() { return t_bf16; }

Bf16Matmuls::Scope::Scope(Bf16Matmuls* m) : prev_(t_bf16) { t_bf16 = m; }
Bf16Matmuls::Scope::~Scope() { t_bf16 = prev_; }

void Bf16Matmuls::add_weights(const float* w, int64_t n) {
  if (n <= 0) return;
  int64_t at = 0;
  for (const Entry& e : entries_) {
    if (w < e.w + e.n && e.w < w + n) fail(ErrorKind::Runtime, "internal: overlapping bf16 weight copies");
    at = std::max(at, e.at + (e.n + 31) / 32 * 32);  // copies start on 64-byte boundaries
  }
  Entry added{w, n, at};
  entries_.insert(std::upper_bound(entries_.begin(), entries_.end(), added,
                                   [](const Entry& a, const Entry& b) { return a.w < b.w; }),
                  added);
  fresh_ = false;
}

void Bf16Matmuls::clear_weights() {
  entries_.clear();
  fresh_ = false;
}

void Bf16Matmuls::refresh() {
  int64_t total = 0;
  for (const Entry& e : entries_) total = std::max(total, e.at + (e.n + 31) / 32 * 32);
  if (copies_.numel() != total) copies_ = Tensor::zeros(DType::BF16, {total});
  uint16_t* base = copies_.data_mut<uint16_t>();
  for (const Entry& e : entries_) round_to_bf16(base + e.at, e.w, e.n);
  fresh_ = true;
}

const uint16_t* Bf16Matmuls::find(const float* w) const {
  // The last tensor starting at or before w, if w lies inside it.
  auto it = std::upper_bound(entries_.begin(), entries_.end(), w, [](const float* p, const Entry& e) { return p < e.w; });
  if (it == entries_.begin()) return nullptr;
  if (!fresh_) fail(ErrorKind::Runtime, "internal: bf16 weight copies used before refresh()");
  --it;
  if (w >= it->w + it->n) return nullptr;
  return copies_.data<uint16_t>() + it->at + (w - it->w);
}

uint16_t* Bf16Matmuls::scratch(int slot, int64_t n) {
  Tensor& t = scratch_[slot];
  if (t.numel() < std::max<int64_t>(n, 1)) t = Tensor::zeros(DType::BF16, {std::max<int64_t>(n, 1)});
  return t.data_mut<uint16_t>();
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC) {
  if (Bf16Matmuls* m = t_bf16) {
    forward_bf16(*m, out, rounded(*m, 0, inp, N * IC), weight, bias, N, IC, OC);
    return;
  }
  if (few_rows_path(N)) {
    matmul_forward_few_rows(out, inp, weight, bias, N, IC, OC);
    return;
  }
  if (bias) fill_bias(out, bias, N, OC);
  sgemm(false, true, N, OC, IC, 1.0f, inp, weight, bias ? 1.0f : 0.0f, out);
}

void matmul_forward_parts(std::initializer_list<MatmulPart> parts, const float* inp, int64_t N, int64_t IC) {
  if (Bf16Matmuls* m = t_bf16) {  // the input rounded once for all parts
    const uint16_t* xb = rounded(*m, 0, inp, N * IC);
    for (const MatmulPart& p : parts) forward_bf16(*m, p.out, xb, p.weight, p.bias, N, IC, p.OC);
    return;
  }
  if (!few_rows_path(N)) {
    for (const MatmulPart& p : parts) matmul_forward(p.out, inp, p.weight, p.bias, N, IC, p.OC);
    return;
  }
  int64_t rows = 0;
  for (const MatmulPart& p : parts) rows += p.OC;
  // The parts' rows stacked, shared out as one range: each part's rows in [lo, hi) are one
  // matmul_rows call.
  parallel_chunks_grouped(rows, few_rows_chunk(IC), row_group(N), [&](int64_t lo, int64_t hi) {
    int64_t start = 0;  // the part's first row in the stack
    for (const MatmulPart& p : parts) {
      const int64_t a = std::max(lo, start), b = std::min(hi, start + p.OC);
      if (a < b) matmul_rows(p.out, inp, f32_weights(p.weight, p.OC, IC), p.bias, N, a - start, b - a);
      start += p.OC;
    }
  });
}

namespace {

// f32 rows of a typed matrix for the GEMM path (prompt processing, evaluation): decoded
// once per call into a scratch buffer reused between calls.
const float* decoded_weights(const WeightView& w) {
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(w.rows * w.cols));
  const auto* base = static_cast<const unsigned char*>(w.data);
  float* dst = scratch.data();
  parallel_chunks(w.rows, few_rows_chunk(w.cols), [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o) dequantize_row(w.type, base + o * w.row_bytes, w.cols, dst + o * w.cols);
  });
  return dst;
}

}  // namespace

void matmul_forward(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N) {
  // Plain f32 rows take the float path (GEMM or the blocked rows); with panels the row
  // kernel's products come from them.
  if (w.type == WeightType::F32 && w.row_bytes == w.cols * static_cast<int64_t>(sizeof(float)) &&
      !(w.panels && few_rows_path(N, w))) {
    matmul_forward(out, inp, static_cast<const float*>(w.data), bias, N, w.cols, w.rows);
    return;
  }
  require_row_kernel(w.type);
  if (!few_rows_path(N, w)) {
    matmul_forward(out, inp, decoded_weights(w), bias, N, w.cols, w.rows);
    return;
  }
  const RowsInput in(inp, N, w);
  parallel_chunks_grouped(w.rows, few_rows_chunk(w), row_group(N, w),
                          [&](int64_t lo, int64_t hi) { matmul_rows(out, in, w, bias, lo, hi - lo); });
}

void matmul_forward_parts(std::initializer_list<MatmulViewPart> parts, const float* inp, int64_t N) {
  bool few = parts.size() > 0;  // every part's type takes the row kernel at N
  for (const MatmulViewPart& p : parts) {
    require_row_kernel(p.weight->type);
    few = few && few_rows_path(N, *p.weight);
  }
  if (!few) {
    for (const MatmulViewPart& p : parts) matmul_forward(p.out, inp, *p.weight, p.bias, N);
    return;
  }
  const int64_t IC = parts.begin()->weight->cols;
  // One prepared input per kind of view among the parts (they share the input row): its
  // type, and whether it has panels.
  std::vector<RowsInput> inputs;
  std::vector<size_t> which;
  bool panels = false;  // pieces of whole panels when any part has them (its rows: a multiple of 16 in practice)
  for (const MatmulViewPart& p : parts) {
    panels = panels || p.weight->panels;
    size_t k = 0;
    while (k < which.size() && !same_rows_input(*parts.begin()[k].weight, *p.weight)) ++k;
    if (k < which.size()) {
      which.push_back(which[k]);
    } else {
      which.push_back(inputs.size());
      inputs.emplace_back(inp, N, *p.weight);
    }
  }
  int64_t rows = 0;
  for (const MatmulViewPart& p : parts) rows += p.weight->rows;
  parallel_chunks_grouped(rows, panels ? std::max(few_rows_chunk(IC), kPanelChunkRows) : few_rows_chunk(IC),
                          panels ? kPanelRows : row_group(N), [&](int64_t lo, int64_t hi) {
    int64_t start = 0;
    size_t k = 0;
    for (const MatmulViewPart& p : parts) {
      const int64_t OC = p.weight->rows;
      const int64_t a = std::max(lo, start), b = std::min(hi, start + OC);
      if (a < b) matmul_rows(p.out, inputs[which[k]], *p.weight, p.bias, a - start, b - a);
      start += OC;
      ++k;
    }
  });
}

void matmul_forward_ref(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                        int64_t OC) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t o = 0; o < OC; ++o) {
      double acc = bias ? bias[o] : 0.0;
      const float* x = inp + n * IC;
      const float* w = weight + o * IC;
      for (int64_t i = 0; i < IC; ++i) acc += static_cast<double>(x[i]) * w[i];
      out[n * OC + o] = static_cast<float>(acc);
    }
  }
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool add_to_dinp) {
  const float dinp_beta = add_to_dinp ? 1.0f : 0.0f;
  if (Bf16Matmuls* m = t_bf16) {
    const uint16_t* db = rounded(*m, 0, dout, N * OC);
    if (dinp)
      gemm_bf16(false, false, N, IC, OC, 1.0f, db, OC, weight_bf16(*m, 1, weight, OC * IC), IC, dinp_beta, dinp, IC);
    gemm_bf16(true, false, OC, IC, N, 1.0f, db, OC, rounded(*m, 2, inp, N * IC), IC, 1.0f, dweight, IC);
  } else {
    if (dinp) sgemm(false, false, N, IC, OC, 1.0f, dout, weight, dinp_beta, dinp);
    sgemm(true, false, OC, IC, N, 1.0f, dout, inp, 1.0f, dweight);
  }
  if (dbias) {
    constexpr int64_t kBlock = 64;  // columns per task; rows summed in order (deterministic)
#pragma omp parallel for schedule(static)
    for (int64_t o0 = 0; o0 < OC; o0 += kBlock) {
      const int64_t o1 = std::min(OC, o0 + kBlock);
      float acc[kBlock] = {};
      for (int64_t n = 0; n < N; ++n) {
        const float* d = dout + n * OC;
        for (int64_t o = o0; o < o1; ++o) acc[o - o0] += d[o];
      }
      for (int64_t o = o0; o < o1; ++o) dbias[o] += acc[o - o0];
    }
  }
}

void matmul_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                         const float* weight, int64_t N, int64_t IC, int64_t OC) {
  if (dinp) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < IC; ++i) {
        double acc = 0;
        for (int64_t o = 0; o < OC; ++o) acc += static_cast<double>(dout[n * OC + o]) * weight[o * IC + i];
        dinp[n * IC + i] += static_cast<float>(acc);
      }
  }
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < OC; ++o) {
    for (int64_t i = 0; i < IC; ++i) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += static_cast<double>(dout[n * OC + o]) * inp[n * IC + i];
      dweight[o * IC + i] += static_cast<float>(acc);
    }
    if (dbias) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += dout[n * OC + o];
      dbias[o] += static_cast<float>(acc);
    }
  }
}

}  // namespace lm
