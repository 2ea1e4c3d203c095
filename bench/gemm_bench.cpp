// gemm_bench: lm::sgemm (the backend it runs on this CPU) against OpenBLAS in the same process,
// and both against the machine's FMA peak per ISA measured in the same run (lm::fma_peak_gflops).
//
//     build/bench/gemm_bench [--threads N] [--rounds R] [--only square|stories15m|stories110m]
//     build/bench/gemm_bench --peak [--threads N]   # the FMA peaks alone, as JSON
//
// Shapes: square 1024^3 to 4096^3, then every GEMM of a stories15m (8 x 256) and stories110m
// (4 x 256) training step as lm::matmul_forward/backward calls it (forward x W^T, backward
// dinp = dout W and dW += dout^T x, beta as the model passes it), and attention's per-head
// products (run the way attention runs them: one head per thread inside a parallel region).
// For every shape each round times lm::sgemm, then OpenBLAS, back to back (a batch of calls of
// at least about 20 GFLOP each); the table gives the medians over the rounds, the ratio, and
// lm::sgemm's share of the AVX-512 (else AVX2) FMA peak. The last lines weight each training
// shape by its count per step: GEMM time of a step on each backend, and its rate.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/blas.h"
#include "core/cpu_features.h"
#include "core/fma_peak.h"
#include "core/rng.h"
#include "core/threads.h"

namespace {

struct Shape {
  std::string group, name;
  bool ta, tb;
  int64_t M, N, K;
  float beta;
  int per_step;     // calls per training step (0: not a training-step shape)
  int64_t heads;    // > 0: attention, `heads` concurrent single-threaded products of this shape
};

// One model's training step as matmul_forward/backward and attention call lm::sgemm.
// rows = B * T; C dim, F hidden, V vocabulary, L layers, NH heads of HS, T sequence.
void add_model(std::vector<Shape>& out, const std::string& g, int64_t rows, int64_t C, int64_t F, int64_t V, int L,
               int64_t B, int64_t NH, int64_t T) {
  const int64_t HS = C / NH;
  // forward: out[rows, OC] = x[rows, IC] W[OC, IC]^T. q/k/v and w1/w3 run as one GEMM each
  // over the stacked weights (Transformer::fused_qkv, fused_w13: rows 3C and 2F).
  out.push_back({g, "fwd x Wqkv^T", false, true, rows, 3 * C, C, 0.0f, L, 0});
  out.push_back({g, "fwd x Wo^T", false, true, rows, C, C, 0.0f, L, 0});
  out.push_back({g, "fwd x W13^T", false, true, rows, 2 * F, C, 0.0f, L, 0});
  out.push_back({g, "fwd x W2^T", false, true, rows, C, F, 0.0f, L, 0});
  out.push_back({g, "fwd x Wcls^T", false, true, rows, V, C, 0.0f, 1, 0});
  // backward: dinp[rows, IC] (+)= dout[rows, OC] W[OC, IC] (the first product into a buffer writes it)
  out.push_back({g, "dinp Wqkv", false, false, rows, C, 3 * C, 0.0f, L, 0});
  out.push_back({g, "dinp Wo", false, false, rows, C, C, 0.0f, L, 0});
  out.push_back({g, "dinp W13", false, false, rows, C, 2 * F, 0.0f, L, 0});
  out.push_back({g, "dinp W2", false, false, rows, F, C, 0.0f, L, 0});
  out.push_back({g, "dinp Wcls", false, false, rows, C, V, 1.0f, 1, 0});
  // backward: dW[OC, IC] += dout[rows, OC]^T x[rows, IC]
  out.push_back({g, "dW qkv", true, false, 3 * C, C, rows, 1.0f, L, 0});
  out.push_back({g, "dW o", true, false, C, C, rows, 1.0f, L, 0});
  out.push_back({g, "dW 13", true, false, 2 * F, C, rows, 1.0f, L, 0});
  out.push_back({g, "dW 2", true, false, C, F, rows, 1.0f, L, 0});
  out.push_back({g, "dW cls", true, false, V, C, rows, 1.0f, 1, 0});
  // attention per (row, head), all heads of a layer at once
  const int64_t heads = B * NH;
  out.push_back({g, "attn q k^T", false, true, T, T, HS, 0.0f, 0, heads});
  out.push_back({g, "attn p v", false, false, T, HS, T, 0.0f, 0, heads});
  out.push_back({g, "attn dv/dk (p^T d)", true, false, T, HS, T, 1.0f, 0, heads});
  out.push_back({g, "attn dq (dS k)", false, false, T, HS, T, 1.0f, 0, heads});
}

struct Operands {
  std::vector<float> a, b, c;
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void run(lm::GemmBackend backend, const Shape& s, Operands& o) {
  const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
  if (s.heads == 0) {
    lm::sgemm_on(backend, s.ta, s.tb, s.M, s.N, s.K, 1.0f, o.a.data(), lda, o.b.data(), ldb, s.beta, o.c.data(), s.N);
    return;
  }
  const int64_t sa = s.M * s.K, sb = s.K * s.N, sc = s.M * s.N;
#pragma omp parallel for schedule(static)
  for (int64_t h = 0; h < s.heads; ++h)
    lm::sgemm_on(backend, s.ta, s.tb, s.M, s.N, s.K, 1.0f, o.a.data() + h * sa, lda, o.b.data() + h * sb, ldb, s.beta,
                 o.c.data() + h * sc, s.N);
}

double flops(const Shape& s) { return 2.0 * s.M * s.N * s.K * std::max<int64_t>(1, s.heads); }

// Seconds per call: a batch of calls of at least ~20 GFLOP in all (50 to 100 ms: single short
// calls run slower, as a core idle for a few ms comes back slowly on this VM).
double time_batch(lm::GemmBackend backend, const Shape& s, Operands& o) {
  const int calls = std::max(1, static_cast<int>(2e10 / flops(s)));
  const double t0 = now();
  for (int i = 0; i < calls; ++i) run(backend, s, o);
  return (now() - t0) / calls;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, rounds = 5;
  std::string only;
  bool peak_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (arg == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--peak") {
      peak_only = true;
    } else if (arg == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: gemm_bench [--threads N] [--rounds R] [--only square|stories15m|stories110m] [--peak]\n");
      return 2;
    }
  }
  lm::set_threads(threads);
  const int nt = lm::thread_count();
  if (peak_only) {
    std::printf("{\"threads\": %d", nt);
    for (lm::Isa isa : {lm::Isa::avx2, lm::Isa::avx512})
      if (lm::cpu_has(isa)) std::printf(", \"%s\": %.1f", lm::isa_name(isa), lm::fma_peak_gflops(isa, nt));
    std::printf("}\n");
    return 0;
  }

  std::vector<Shape> shapes;
  for (int64_t n : {1024, 2048, 4096}) shapes.push_back({"square", "NN", false, false, n, n, n, 0.0f, 0, 0});
  shapes.push_back({"square", "NT", false, true, 2048, 2048, 2048, 0.0f, 0, 0});
  shapes.push_back({"square", "TN", true, false, 2048, 2048, 2048, 0.0f, 0, 0});
  add_model(shapes, "stories15m", 8 * 256, 288, 768, 32000, 6, 8, 6, 256);
  add_model(shapes, "stories110m", 4 * 256, 768, 2048, 32000, 12, 4, 12, 256);
  if (!only.empty())
    shapes.erase(std::remove_if(shapes.begin(), shapes.end(), [&](const Shape& s) { return s.group != only; }),
                 shapes.end());

  const bool avx512 = lm::cpu_has(lm::Isa::avx512);
  std::printf("gemm_bench: %d threads; lm::sgemm runs %s; peer %s\n", nt, lm::gemm_config(), lm::blas_config());
  std::printf("cpu features: %s\n", lm::cpu_features_string().c_str());
  double peak = 0;
  for (lm::Isa isa : {lm::Isa::avx2, lm::Isa::avx512}) {
    if (!lm::cpu_has(isa)) continue;
    const double g = lm::fma_peak_gflops(isa, nt);
    std::printf("FMA peak %-6s %d threads: %.1f GFLOP/s\n", lm::isa_name(isa), nt, g);
    if (isa == (avx512 ? lm::Isa::avx512 : lm::Isa::avx2)) peak = g;
  }
  std::printf("\n%-12s %-20s %2s %6s %6s %6s %5s %10s %10s %7s %8s\n", "group", "shape", "op", "M", "N", "K", "x",
              "lm GFLOP/s", "OpenBLAS", "ratio", "of peak");

  struct Step {
    double lm = 0, openblas = 0, flops = 0;
  };
  std::vector<std::pair<std::string, Step>> steps;
  lm::Rng rng(1);
  for (const Shape& s : shapes) {
    Operands o;
    const int64_t h = std::max<int64_t>(1, s.heads);
    o.a.resize(static_cast<size_t>(h * s.M * s.K));
    o.b.resize(static_cast<size_t>(h * s.K * s.N));
    o.c.assign(static_cast<size_t>(h * s.M * s.N), 0.0f);
    for (float& x : o.a) x = rng.uniform() - 0.5f;
    for (float& x : o.b) x = rng.uniform() - 0.5f;
    run(lm::gemm_backend(), s, o);  // warm-up (oneDNN builds its kernels on first use)
    run(lm::GemmBackend::openblas, s, o);
    std::vector<double> t_lm, t_ob;
    for (int r = 0; r < rounds; ++r) {
      t_lm.push_back(time_batch(lm::gemm_backend(), s, o));
      t_ob.push_back(time_batch(lm::GemmBackend::openblas, s, o));
    }
    const double f = flops(s), g_lm = f / median(t_lm) * 1e-9, g_ob = f / median(t_ob) * 1e-9;
    char op[3] = {s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', 0};
    std::printf("%-12s %-20s %2s %6lld %6lld %6lld %5lld %10.1f %10.1f %6.2fx %7.0f%%\n", s.group.c_str(),
                s.name.c_str(), op, static_cast<long long>(s.M), static_cast<long long>(s.N),
                static_cast<long long>(s.K), static_cast<long long>(h), g_lm, g_ob, g_lm / g_ob, 100.0 * g_lm / peak);
    std::fflush(stdout);
    if (s.per_step > 0) {
      auto it = std::find_if(steps.begin(), steps.end(), [&](const auto& p) { return p.first == s.group; });
      if (it == steps.end()) it = steps.insert(steps.end(), {s.group, Step{}});
      it->second.lm += s.per_step * median(t_lm);
      it->second.openblas += s.per_step * median(t_ob);
      it->second.flops += s.per_step * f;
    }
  }
  for (const auto& [group, st] : steps)
    std::printf("\n%s training step, its matmuls (weighted by calls per step): lm::sgemm %.1f ms = %.1f GFLOP/s "
                "(%.0f%% of peak), OpenBLAS %.1f ms = %.1f GFLOP/s: %.2fx",
                group.c_str(), st.lm * 1e3, st.flops / st.lm * 1e-9, 100.0 * st.flops / st.lm * 1e-9 / peak,
                st.openblas * 1e3, st.flops / st.openblas * 1e-9, st.openblas / st.lm);
  if (!steps.empty()) std::printf("\n");
  std::printf("\nFMA peak again after the run: %.1f GFLOP/s (%s)\n",
              lm::fma_peak_gflops(avx512 ? lm::Isa::avx512 : lm::Isa::avx2, nt), avx512 ? "avx512" : "avx2");
  return 0;
}
