#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/threads.h"
#include "model/ffn.h"
#include "model/matmul.h"

namespace lm {

MoEShape moe_shape(const ModelConfig& c, int64_t N) {
  MoEShape s;
  s.N = N;
  s.C = c.dim;
  s.E = c.moe.n_experts;
  s.K = c.moe.top_k;
  s.Fe = c.moe_hidden();
  s.routing = c.moe.routing;
  s.shared = c.moe.shared_expert;
  return s;
}

std::vector<std::pair<void**, int64_t>> moe_buffers(MoEActivations& a, const MoEShape& s) {
  const int64_t A = s.N * s.K;
  std::vector<std::pair<void**, int64_t>> out = {
      {reinterpret_cast<void**>(&a.logits), s.N * s.E}, {reinterpret_cast<void**>(&a.expert), A},
      {reinterpret_cast<void**>(&a.gate), A},           {reinterpret_cast<void**>(&a.order), A},
      {reinterpret_cast<void**>(&a.row), A},            {reinterpret_cast<void**>(&a.offsets), s.E + 1},
      {reinterpret_cast<void**>(&a.xs), A * s.C},       {reinterpret_cast<void**>(&a.h1), A * s.Fe},
      {reinterpret_cast<void**>(&a.h3), A * s.Fe},      {reinterpret_cast<void**>(&a.act), A * s.Fe},
      {reinterpret_cast<void**>(&a.ye), A * s.C}};
  if (s.shared) {
    out.push_back({reinterpret_cast<void**>(&a.sh1), s.N * s.Fe});
    out.push_back({reinterpret_cast<void**>(&a.sh3), s.N * s.Fe});
    out.push_back({reinterpret_cast<void**>(&a.sact), s.N * s.Fe});
  }
  return out;
}

std::vector<std::pair<void**, int64_t>> moe_buffers(MoEScratch& g, const MoEShape& s) {
  const int64_t A = s.N * s.K;  // >= N: the shared expert's backward uses the first N rows
  return {{reinterpret_cast<void**>(&g.dxs), A * s.C},   {reinterpret_cast<void**>(&g.dact), A * s.Fe},
          {reinterpret_cast<void**>(&g.dh1), A * s.Fe},  {reinterpret_cast<void**>(&g.dh3), A * s.Fe},
          {reinterpret_cast<void**>(&g.dgate), A},       {reinterpret_cast<void**>(&g.dlogits), s.N * s.E}};
}

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// The K largest of E logits, largest first; among equal logits the lower index first.
template <class T>
void top_k(int32_t* idx, const T* logits, int64_t E, int64_t K) {
  int64_t filled = 0;
  for (int64_t e = 0; e < E; ++e) {
    const T v = logits[e];
    int64_t p = filled;  // insertion place: after every kept logit >= v (earlier indices win ties)
    while (p > 0 && v > logits[idx[p - 1]]) --p;
    if (p >= K) continue;
    for (int64_t q = std::min(filled, K - 1); q > p; --q) idx[q] = idx[q - 1];
    idx[p] = static_cast<int32_t>(e);
    if (filled < K) ++filled;
  }
}

void zero(float* p, int64_t n) {
  parallel_for(n, n, [&](int64_t i) { p[i] = 0; });
}

// Every assignment's expert and gate, then the assignments grouped by expert.
void route(MoEActivations& a, const MoEShape& s) {
  const int64_t N = s.N, E = s.E, K = s.K, A = N * K;
  if (A > std::numeric_limits<int32_t>::max())
    fail(ErrorKind::Usage, cat("mixture of experts: ", N, " tokens x top_k ", K, " exceed 2^31 assignments"));
  const bool softmax = s.routing == MoERouting::Softmax;
  parallel_for(N, N * E, [&](int64_t n) {
    const float* l = a.logits + n * E;
    int32_t* idx = a.expert + n * K;
    float* g = a.gate + n * K;
    top_k(idx, l, E, K);
    if (!softmax) {
      for (int64_t k = 0; k < K; ++k) g[k] = sigmoid(l[idx[k]]);
      return;
    }
    const float top = l[idx[0]];
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += g[k] = std::exp(l[idx[k]] - top);
    for (int64_t k = 0; k < K; ++k) g[k] /= sum;
  });
  // Counting sort by expert (stable: tokens ascending within an expert).
  int32_t* off = a.offsets;
  std::memset(off, 0, static_cast<size_t>(E + 1) * sizeof(int32_t));
  for (int64_t i = 0; i < A; ++i) ++off[a.expert[i] + 1];
  for (int64_t e = 0; e < E; ++e) off[e + 1] += off[e];
  std::vector<int32_t> cursor(off, off + E);
  for (int64_t i = 0; i < A; ++i) {
    const int32_t r = cursor[static_cast<size_t>(a.expert[i])]++;
    a.order[r] = static_cast<int32_t>(i);
    a.row[i] = r;
  }
}

// fn(e, r0, m) for every expert e with m > 0 grouped rows from r0. Either one expert after
// another, each GEMM on every thread, or, when there are several experts of similar sizes
// (training batches), the experts spread over the threads, each on one: a GEMM of a few
// hundred rows split over the threads pays a fork and a join per call, and three to six calls
// per expert and layer add up. Experts go largest first to the thread that is free (LPT). Each
// expert's numbers depend only on its own rows and the thread count, not on the schedule.
template <class Fn>
void for_each_expert(const int32_t* offsets, int64_t E, Fn&& fn) {
  std::vector<int64_t> active;
  int64_t rows = 0, largest = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = offsets[e + 1] - offsets[e];
    if (m == 0) continue;
    active.push_back(e);
    rows += m;
    largest = std::max(largest, m);
  }
  const int64_t threads = thread_count(), n = static_cast<int64_t>(active.size());
  // Not inside a RowKernelScope: it holds on the calling thread only.
  const bool spread = !row_kernel_forced() && threads > 1 && n >= 2 * threads && largest * n <= 2 * rows && rows > kMatmulFewRows * n;
  if (!spread) {
    for (int64_t e : active) fn(e, static_cast<int64_t>(offsets[e]), offsets[e + 1] - offsets[e]);
    return;
  }
  std::stable_sort(active.begin(), active.end(),
                   [&](int64_t a, int64_t b) { return offsets[a + 1] - offsets[a] > offsets[b + 1] - offsets[b]; });
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t e = active[static_cast<size_t>(i)];
    fn(e, static_cast<int64_t>(offsets[e]), offsets[e + 1] - offsets[e]);
  }
}

}  // namespace

void moe_forward(float* out, MoEActivations& a, const float* inp, const MoEParams& w, const MoEShape& s) {
  const int64_t N = s.N, C = s.C, E = s.E, K = s.K, Fe = s.Fe, A = N * K;
  const bool sigmoid_routing = s.routing == MoERouting::Sigmoid;
  matmul_forward(a.logits, inp, w.router, nullptr, N, C, E);
  route(a, s);

  // Gather each assignment's input into its expert's rows (scaled by the gate: Llama 4).
  parallel_for(A, A * C, [&](int64_t r) {
    const int64_t i = a.order[r];
    const float scale = sigmoid_routing ? a.gate[i] : 1.0f;
    const float* x = inp + (i / K) * C;
    float* dst = a.xs + r * C;
    for (int64_t c = 0; c < C; ++c) dst[c] = scale * x[c];
  });
  // One GEMM per expert over its rows; an expert nobody chose is not read.
  for_each_expert(a.offsets, E, [&](int64_t e, int64_t r0, int64_t m) {
    swiglu_up_forward(a.act + r0 * Fe, a.h1 + r0 * Fe, a.h3 + r0 * Fe, a.xs + r0 * C, w.w1 + e * Fe * C, nullptr,
                      w.w3 + e * Fe * C, nullptr, m, C, Fe);
    matmul_forward(a.ye + r0 * C, a.act + r0 * Fe, w.w2 + e * C * Fe, nullptr, m, Fe, C);
  });
  if (s.shared) {
    swiglu_up_forward(a.sact, a.sh1, a.sh3, inp, w.shared_w1, nullptr, w.shared_w3, nullptr, N, C, Fe);
    matmul_forward(out, a.sact, w.shared_w2, nullptr, N, Fe, C);
  } else {
    zero(out, N * C);
  }
  // Each token adds its experts' outputs in slot order (weighted by the gate: Mixtral).
  parallel_for(N, A * C, [&](int64_t n) {
    float* y = out + n * C;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = n * K + k;
      const float weight = sigmoid_routing ? 1.0f : a.gate[i];
      const float* ye = a.ye + static_cast<int64_t>(a.row[i]) * C;
      for (int64_t c = 0; c < C; ++c) y[c] += weight * ye[c];
    }
  });
}

double moe_balance_loss(const MoEActivations& a, const MoEShape& s) {
  const int64_t N = s.N, E = s.E, K = s.K;
  std::vector<double> P(static_cast<size_t>(E), 0.0), p(static_cast<size_t>(E));
  for (int64_t n = 0; n < N; ++n) {
    const float* l = a.logits + n * E;
    double top = l[0], sum = 0;
    for (int64_t e = 1; e < E; ++e) top = std::max(top, static_cast<double>(l[e]));
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(l[e] - top);
    for (int64_t e = 0; e < E; ++e) P[e] += p[e] / sum;
  }
  double aux = 0;
  for (int64_t e = 0; e < E; ++e) {
    const double f = static_cast<double>(a.offsets[e + 1] - a.offsets[e]) / static_cast<double>(N * K);
    aux += f * P[e] / static_cast<double>(N);
  }
  return static_cast<double>(E) * aux;
}

namespace {

// dlogits [N, E] += scale * d(E sum_e f_e P_e)/d(logits): with p_n = softmax(logits_n),
// d/dlogit_nj = (E / N) p_nj (f_j - sum_e p_ne f_e) (f is a count: no gradient).
void balance_backward(float* dlogits, const MoEActivations& a, const MoEShape& s, float scale) {
  const int64_t N = s.N, E = s.E, K = s.K;
  std::vector<double> f(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e)
    f[e] = static_cast<double>(a.offsets[e + 1] - a.offsets[e]) / static_cast<double>(N * K);
  const double c = static_cast<double>(scale) * static_cast<double>(E) / static_cast<double>(N);
  parallel_for(N, N * E, [&](int64_t n) {
    const float* l = a.logits + n * E;
    double top = l[0], sum = 0, pf = 0;
    for (int64_t e = 1; e < E; ++e) top = std::max(top, static_cast<double>(l[e]));
    for (int64_t e = 0; e < E; ++e) sum += std::exp(l[e] - top);
    for (int64_t e = 0; e < E; ++e) pf += std::exp(l[e] - top) / sum * f[e];
    for (int64_t e = 0; e < E; ++e)
      dlogits[n * E + e] += static_cast<float>(c * std::exp(l[e] - top) / sum * (f[e] - pf));
  });
}

}  // namespace

void moe_backward(float* dinp, const MoEParams& g, const float* dout, const float* inp, const MoEActivations& a,
                  const MoEParams& w, const MoEShape& s, float aux_scale, const MoEScratch& t) {
  const int64_t N = s.N, C = s.C, E = s.E, K = s.K, Fe = s.Fe, A = N * K;
  const bool sigmoid_routing = s.routing == MoERouting::Sigmoid;

  // Shared expert: out += w2 (silu(w1 x) * w3 x), in the first N rows of the scratch.
  if (s.shared) {
    zero(t.dact, N * Fe);
    matmul_backward(t.dact, g.shared_w2, nullptr, dout, a.sact, w.shared_w2, N, Fe, C);
    zero(t.dh1, N * Fe);
    zero(t.dh3, N * Fe);
    swiglu_backward(t.dh1, t.dh3, t.dact, a.sh1, a.sh3, N * Fe);
    matmul_backward(dinp, g.shared_w1, nullptr, t.dh1, inp, w.shared_w1, N, C, Fe);
    matmul_backward(dinp, g.shared_w3, nullptr, t.dh3, inp, w.shared_w3, N, C, Fe);
  }

  // The experts' output gradients by grouped row (Mixtral: times the gate; and the gate's own).
  parallel_for(A, A * C, [&](int64_t r) {
    const int64_t i = a.order[r];
    const float* dy = dout + (i / K) * C;
    float* d = t.dxs + r * C;
    if (sigmoid_routing) {
      std::memcpy(d, dy, static_cast<size_t>(C) * sizeof(float));
      return;
    }
    const float* ye = a.ye + r * C;
    const float gate = a.gate[i];
    float dgate = 0;
    for (int64_t c = 0; c < C; ++c) {
      d[c] = gate * dy[c];
      dgate += dy[c] * ye[c];
    }
    t.dgate[i] = dgate;
  });
  // Per expert: back through w2, the SwiGLU, then w1 and w3 (the output gradients' rows become
  // the input gradients' once read).
  zero(t.dact, A * Fe);
  zero(t.dh1, A * Fe);
  zero(t.dh3, A * Fe);
  for_each_expert(a.offsets, E, [&](int64_t e, int64_t r0, int64_t m) {
    float* dxs = t.dxs + r0 * C;
    matmul_backward(t.dact + r0 * Fe, g.w2 + e * C * Fe, nullptr, dxs, a.act + r0 * Fe, w.w2 + e * C * Fe, m, Fe, C);
    swiglu_backward(t.dh1 + r0 * Fe, t.dh3 + r0 * Fe, t.dact + r0 * Fe, a.h1 + r0 * Fe, a.h3 + r0 * Fe, m * Fe);
    zero(dxs, m * C);
    matmul_backward(dxs, g.w1 + e * Fe * C, nullptr, t.dh1 + r0 * Fe, a.xs + r0 * C, w.w1 + e * Fe * C, m, C, Fe);
    matmul_backward(dxs, g.w3 + e * Fe * C, nullptr, t.dh3 + r0 * Fe, a.xs + r0 * C, w.w3 + e * Fe * C, m, C, Fe);
  });

  // Back to the tokens, then the gates' gradients into the router's logits.
  zero(t.dlogits, N * E);
  parallel_for(N, A * C, [&](int64_t n) {
    const float* x = inp + n * C;
    float* dx = dinp + n * C;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = n * K + k;
      const float* d = t.dxs + static_cast<int64_t>(a.row[i]) * C;
      if (sigmoid_routing) {  // xs = gate * x
        const float gate = a.gate[i];
        float dgate = 0;
        for (int64_t c = 0; c < C; ++c) {
          dx[c] += gate * d[c];
          dgate += d[c] * x[c];
        }
        t.dlogits[n * E + a.expert[i]] = dgate * gate * (1.0f - gate);
      } else {
        for (int64_t c = 0; c < C; ++c) dx[c] += d[c];
      }
    }
    if (!sigmoid_routing) {  // softmax over the selected logits: dl_k = w_k (dw_k - sum_j w_j dw_j)
      float mean = 0;
      for (int64_t k = 0; k < K; ++k) mean += a.gate[n * K + k] * t.dgate[n * K + k];
      for (int64_t k = 0; k < K; ++k)
        t.dlogits[n * E + a.expert[n * K + k]] = a.gate[n * K + k] * (t.dgate[n * K + k] - mean);
    }
  });
  if (aux_scale != 0) balance_backward(t.dlogits, a, s, aux_scale);
  matmul_backward(dinp, g.router, nullptr, t.dlogits, inp, w.router, N, C, E);
}

// ---- reference twins ----

namespace {

struct RefRouting {
  std::vector<double> logits;   // [E]
  std::vector<int32_t> chosen;  // [K]
  std::vector<double> sel;      // [E] 1 for the chosen experts
  std::vector<double> coef;     // [E] output weight: sel (sigmoid) or sel * softmax over the chosen
  std::vector<double> in_scale; // [E] input scale: sel * sigmoid(logit) (sigmoid) or 1 (softmax)
};

RefRouting ref_route(const float* x, const MoEParams& w, const MoEShape& s) {
  const int64_t C = s.C, E = s.E, K = s.K;
  RefRouting r;
  r.logits.assign(static_cast<size_t>(E), 0.0);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t c = 0; c < C; ++c) r.logits[e] += static_cast<double>(w.router[e * C + c]) * x[c];
  r.chosen.assign(static_cast<size_t>(K), -1);
  r.sel.assign(static_cast<size_t>(E), 0.0);
  for (int64_t k = 0; k < K; ++k) {  // K passes of an argmax over the experts not yet chosen
    int64_t best = -1;
    for (int64_t e = 0; e < E; ++e)
      if (r.sel[e] == 0 && (best < 0 || r.logits[e] > r.logits[best])) best = e;
    r.chosen[k] = static_cast<int32_t>(best);
    r.sel[best] = 1;
  }
  r.coef = r.sel;
  r.in_scale.assign(static_cast<size_t>(E), 1.0);
  if (s.routing == MoERouting::Sigmoid) {
    for (int64_t e = 0; e < E; ++e) r.in_scale[e] = r.sel[e] / (1.0 + std::exp(-r.logits[e]));
  } else {
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += r.sel[e] * std::exp(r.logits[e]);
    for (int64_t e = 0; e < E; ++e) r.coef[e] = r.sel[e] * std::exp(r.logits[e]) / sum;
  }
  return r;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// One SwiGLU FFN on z [C] (w1, w3 [Fe, C], w2 [C, Fe]): u1, u3 [Fe] and the output [C].
void ref_ffn(std::vector<double>& u1, std::vector<double>& u3, std::vector<double>& y, const double* z, const float* w1,
             const float* w3, const float* w2, int64_t C, int64_t Fe) {
  u1.assign(static_cast<size_t>(Fe), 0.0);
  u3.assign(static_cast<size_t>(Fe), 0.0);
  y.assign(static_cast<size_t>(C), 0.0);
  for (int64_t f = 0; f < Fe; ++f)
    for (int64_t c = 0; c < C; ++c) {
      u1[f] += w1[f * C + c] * z[c];
      u3[f] += w3[f * C + c] * z[c];
    }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t f = 0; f < Fe; ++f) y[c] += w2[c * Fe + f] * silu(u1[f]) * u3[f];
}

// Backward of ref_ffn for output gradient dy [C] at input z: weight gradients into the double
// accumulators gw1, gw3 [Fe, C], gw2 [C, Fe]; returns dz [C].
std::vector<double> ref_ffn_backward(double* gw1, double* gw3, double* gw2, const double* dy, const double* z,
                                     const std::vector<double>& u1, const std::vector<double>& u3, const float* w1,
                                     const float* w3, const float* w2, int64_t C, int64_t Fe) {
  std::vector<double> dz(static_cast<size_t>(C), 0.0);
  for (int64_t f = 0; f < Fe; ++f) {
    double da = 0;
    for (int64_t c = 0; c < C; ++c) {
      da += dy[c] * w2[c * Fe + f];
      gw2[c * Fe + f] += dy[c] * silu(u1[f]) * u3[f];
    }
    const double sg = 1.0 / (1.0 + std::exp(-u1[f]));
    const double du1 = da * u3[f] * sg * (1.0 + u1[f] * (1.0 - sg)), du3 = da * silu(u1[f]);
    for (int64_t c = 0; c < C; ++c) {
      gw1[f * C + c] += du1 * z[c];
      gw3[f * C + c] += du3 * z[c];
      dz[c] += du1 * w1[f * C + c] + du3 * w3[f * C + c];
    }
  }
  return dz;
}

std::vector<double> softmax_all(const double* l, int64_t E) {
  std::vector<double> p(static_cast<size_t>(E));
  double top = l[0], sum = 0;
  for (int64_t e = 1; e < E; ++e) top = std::max(top, l[e]);
  for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(l[e] - top);
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace

void moe_forward_ref(float* out, float* logits, const float* inp, const MoEParams& w, const MoEShape& s) {
  const int64_t N = s.N, C = s.C, E = s.E, Fe = s.Fe;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const RefRouting r = ref_route(x, w, s);
    if (logits)
      for (int64_t e = 0; e < E; ++e) logits[n * E + e] = static_cast<float>(r.logits[e]);
    std::vector<double> y(static_cast<size_t>(C), 0.0), z(static_cast<size_t>(C)), u1, u3, h;
    for (int64_t e = 0; e < E; ++e) {  // every expert, masked
      for (int64_t c = 0; c < C; ++c) z[c] = r.in_scale[e] * x[c];
      ref_ffn(u1, u3, h, z.data(), w.w1 + e * Fe * C, w.w3 + e * Fe * C, w.w2 + e * C * Fe, C, Fe);
      for (int64_t c = 0; c < C; ++c) y[c] += r.coef[e] * h[c];
    }
    if (s.shared) {
      for (int64_t c = 0; c < C; ++c) z[c] = x[c];
      ref_ffn(u1, u3, h, z.data(), w.shared_w1, w.shared_w3, w.shared_w2, C, Fe);
      for (int64_t c = 0; c < C; ++c) y[c] += h[c];
    }
    for (int64_t c = 0; c < C; ++c) out[n * C + c] = static_cast<float>(y[c]);
  }
}

double moe_balance_loss_ref(const float* logits, const MoEShape& s) {
  const int64_t N = s.N, E = s.E, K = s.K;
  std::vector<double> f(static_cast<size_t>(E), 0.0), P(static_cast<size_t>(E), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> l(logits + n * E, logits + (n + 1) * E);
    const std::vector<double> p = softmax_all(l.data(), E);
    std::vector<int32_t> idx(static_cast<size_t>(K));
    top_k(idx.data(), l.data(), E, K);
    for (int32_t e : idx) f[e] += 1.0 / static_cast<double>(N * K);
    for (int64_t e = 0; e < E; ++e) P[e] += p[e] / static_cast<double>(N);
  }
  double aux = 0;
  for (int64_t e = 0; e < E; ++e) aux += f[e] * P[e];
  return static_cast<double>(E) * aux;
}

void moe_backward_ref(float* dinp, const MoEParams& g, const float* dout, const float* inp, const MoEParams& w,
                      const MoEShape& s, float aux_scale) {
  const int64_t N = s.N, C = s.C, E = s.E, K = s.K, Fe = s.Fe;
  std::vector<RefRouting> routes;
  std::vector<double> f(static_cast<size_t>(E), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    routes.push_back(ref_route(inp + n * C, w, s));
    for (int32_t e : routes.back().chosen) f[e] += 1.0 / static_cast<double>(N * K);
  }
  std::vector<double> gw1(static_cast<size_t>(E * Fe * C), 0.0), gw3(gw1.size(), 0.0), gw2(gw1.size(), 0.0);
  std::vector<double> gs1(static_cast<size_t>(Fe * C), 0.0), gs3(gs1.size(), 0.0), gs2(gs1.size(), 0.0);
  std::vector<double> gr(static_cast<size_t>(E * C), 0.0);
  std::vector<double> z(static_cast<size_t>(C)), dy(static_cast<size_t>(C)), u1, u3, h;
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const RefRouting& r = routes[n];
    std::vector<double> dx(static_cast<size_t>(C), 0.0), dlogit(static_cast<size_t>(E), 0.0);
    std::vector<double> dcoef(static_cast<size_t>(E), 0.0);
    for (int64_t e = 0; e < E; ++e) {  // every expert: the masked ones give zero gradients
      for (int64_t c = 0; c < C; ++c) {
        z[c] = r.in_scale[e] * x[c];
        dy[c] = r.coef[e] * dout[n * C + c];
      }
      ref_ffn(u1, u3, h, z.data(), w.w1 + e * Fe * C, w.w3 + e * Fe * C, w.w2 + e * C * Fe, C, Fe);
      for (int64_t c = 0; c < C; ++c) dcoef[e] += dout[n * C + c] * h[c];
      const std::vector<double> dz =
          ref_ffn_backward(gw1.data() + e * Fe * C, gw3.data() + e * Fe * C, gw2.data() + e * C * Fe, dy.data(),
                           z.data(), u1, u3, w.w1 + e * Fe * C, w.w3 + e * Fe * C, w.w2 + e * C * Fe, C, Fe);
      double din_scale = 0;
      for (int64_t c = 0; c < C; ++c) {
        dx[c] += r.in_scale[e] * dz[c];
        din_scale += dz[c] * x[c];
      }
      if (s.routing == MoERouting::Sigmoid) {
        const double sg = 1.0 / (1.0 + std::exp(-r.logits[e]));
        dlogit[e] += r.sel[e] * din_scale * sg * (1.0 - sg);
      }
    }
    if (s.routing == MoERouting::Softmax) {
      double mean = 0;
      for (int64_t e = 0; e < E; ++e) mean += r.coef[e] * dcoef[e];
      for (int64_t e = 0; e < E; ++e) dlogit[e] += r.coef[e] * (dcoef[e] - mean);
    }
    if (s.shared) {
      for (int64_t c = 0; c < C; ++c) {
        z[c] = x[c];
        dy[c] = dout[n * C + c];
      }
      ref_ffn(u1, u3, h, z.data(), w.shared_w1, w.shared_w3, w.shared_w2, C, Fe);
      const std::vector<double> dz = ref_ffn_backward(gs1.data(), gs3.data(), gs2.data(), dy.data(), z.data(), u1, u3,
                                                      w.shared_w1, w.shared_w3, w.shared_w2, C, Fe);
      for (int64_t c = 0; c < C; ++c) dx[c] += dz[c];
    }
    if (aux_scale != 0) {
      const std::vector<double> p = softmax_all(r.logits.data(), E);
      double pf = 0;
      for (int64_t e = 0; e < E; ++e) pf += p[e] * f[e];
      for (int64_t e = 0; e < E; ++e)
        dlogit[e] += aux_scale * static_cast<double>(E) / static_cast<double>(N) * p[e] * (f[e] - pf);
    }
    for (int64_t e = 0; e < E; ++e)
      for (int64_t c = 0; c < C; ++c) {
        gr[e * C + c] += dlogit[e] * x[c];
        dx[c] += dlogit[e] * w.router[e * C + c];
      }
    for (int64_t c = 0; c < C; ++c) dinp[n * C + c] += static_cast<float>(dx[c]);
  }
  auto add = [](float* dst, const std::vector<double>& src) {
    for (size_t i = 0; i < src.size(); ++i) dst[i] += static_cast<float>(src[i]);
  };
  add(g.router, gr);
  add(g.w1, gw1);
  add(g.w2, gw2);
  add(g.w3, gw3);
  if (s.shared) {
    add(g.shared_w1, gs1);
    add(g.shared_w2, gs2);
    add(g.shared_w3, gs3);
  }
}

}  // namespace lm
