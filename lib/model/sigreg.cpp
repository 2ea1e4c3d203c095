#include "model/sigreg.h"

#include <algorithm>
#include <cmath>

#include "core/blas.h"

namespace lm {

namespace {

struct Grid {
  std::vector<double> t, phi, w;  // [P]
  double dt = 0;
};

Grid make_grid(const SigRegConfig& cfg) {
  const int64_t P = cfg.points;
  Grid g;
  g.dt = cfg.t_max / static_cast<double>(P - 1);
  g.t.resize(static_cast<size_t>(P));
  g.phi.resize(static_cast<size_t>(P));
  g.w.resize(static_cast<size_t>(P));
  for (int64_t k = 0; k < P; ++k) {
    g.t[k] = cfg.t_max * static_cast<double>(k) / static_cast<double>(P - 1);
    g.phi[k] = std::exp(-0.5 * g.t[k] * g.t[k]);
    g.w[k] = (k == 0 || k == P - 1 ? g.dt : 2 * g.dt) * g.phi[k];
  }
  return g;
}

}  // namespace

void sigreg_draw_noise(float* noise, Rng& rng, int64_t C, int64_t S) {
  for (int64_t i = 0; i < C * S; ++i) noise[i] = rng.normal();
}

void sigreg_projections(float* A, const float* noise, int64_t C, int64_t S) {
  std::vector<double> norm(static_cast<size_t>(S), 0.0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t s = 0; s < S; ++s) norm[s] += static_cast<double>(noise[c * S + s]) * noise[c * S + s];
  for (auto& x : norm) x = std::sqrt(x);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t s = 0; s < S; ++s) A[c * S + s] = static_cast<float>(noise[c * S + s] / norm[s]);
}

// t_k = k dt, so cos/sin(t_k x) follow from cos/sin(dt x) by the angle-addition recurrence
// (in double: 16 steps lose nothing visible in float32).
double sigreg_forward(float* proj, float* cmean, float* smean, const float* x, const float* A, int64_t N, int64_t C,
                      int64_t S, const SigRegConfig& cfg) {
  const int64_t P = cfg.points;
  const Grid g = make_grid(cfg);
  sgemm(false, false, N, S, C, 1.0f, x, A, 0.0f, proj);
  double total = 0;
#pragma omp parallel reduction(+ : total)
  {
    std::vector<double> cs(static_cast<size_t>(P)), sn(static_cast<size_t>(P));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      std::fill(cs.begin(), cs.end(), 0.0);
      std::fill(sn.begin(), sn.end(), 0.0);
      for (int64_t s = 0; s < S; ++s) {
        const double a = g.dt * proj[n * S + s];
        const double ca = std::cos(a), sa = std::sin(a);
        double c = 1, si = 0;  // k = 0
        for (int64_t k = 0; k < P; ++k) {
          cs[k] += c;
          sn[k] += si;
          const double c2 = c * ca - si * sa;
          si = si * ca + c * sa;
          c = c2;
        }
      }
      double stat = 0;
      for (int64_t k = 0; k < P; ++k) {
        const double cm = cs[k] / static_cast<double>(S), sm = sn[k] / static_cast<double>(S);
        stat += g.w[k] * ((cm - g.phi[k]) * (cm - g.phi[k]) + sm * sm);
        if (cmean) cmean[n * P + k] = static_cast<float>(cm);
        if (smean) smean[n * P + k] = static_cast<float>(sm);
      }
      total += stat * static_cast<double>(S);
    }
  }
  return total / static_cast<double>(N);
}

// d stat_n / d x_ns = sum_k 2 w_k t_k (s_nk cos(t_k x_ns) - (c_nk - phi_k) sin(t_k x_ns))
// (the factor S of stat_n cancels the 1/S of the means).
void sigreg_backward(float* dx, float* dproj, float dstat, const float* proj, const float* cmean, const float* smean,
                     const float* A, int64_t N, int64_t C, int64_t S, const SigRegConfig& cfg) {
  const int64_t P = cfg.points;
  const Grid g = make_grid(cfg);
  const double scale = static_cast<double>(dstat) / static_cast<double>(N);
#pragma omp parallel
  {
    std::vector<double> ac(static_cast<size_t>(P)), as(static_cast<size_t>(P));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < P; ++k) {  // coefficients of cos and sin(t_k x)
        ac[k] = 2 * g.w[k] * g.t[k] * smean[n * P + k];
        as[k] = -2 * g.w[k] * g.t[k] * (cmean[n * P + k] - g.phi[k]);
      }
      for (int64_t s = 0; s < S; ++s) {
        const double a = g.dt * proj[n * S + s];
        const double ca = std::cos(a), sa = std::sin(a);
        double c = 1, si = 0, acc = 0;
        for (int64_t k = 0; k < P; ++k) {
          acc += ac[k] * c + as[k] * si;
          const double c2 = c * ca - si * sa;
          si = si * ca + c * sa;
          c = c2;
        }
        dproj[n * S + s] = static_cast<float>(acc * scale);
      }
    }
  }
  sgemm(false, true, N, C, S, 1.0f, dproj, A, 1.0f, dx);  // dx += dproj @ A^T
}

double sigreg_forward_ref(const float* x, const float* A, int64_t N, int64_t C, int64_t S, const SigRegConfig& cfg) {
  const int64_t P = cfg.points;
  const Grid g = make_grid(cfg);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> cs(static_cast<size_t>(P), 0.0), sn(static_cast<size_t>(P), 0.0);
    for (int64_t s = 0; s < S; ++s) {
      double p = 0;
      for (int64_t c = 0; c < C; ++c) p += static_cast<double>(x[n * C + c]) * A[c * S + s];
      for (int64_t k = 0; k < P; ++k) {
        cs[k] += std::cos(g.t[k] * p) / static_cast<double>(S);
        sn[k] += std::sin(g.t[k] * p) / static_cast<double>(S);
      }
    }
    double stat = 0;
    for (int64_t k = 0; k < P; ++k) stat += g.w[k] * ((cs[k] - g.phi[k]) * (cs[k] - g.phi[k]) + sn[k] * sn[k]);
    total += stat * static_cast<double>(S);
  }
  return total / static_cast<double>(N);
}

void sigreg_backward_ref(float* dx, float dstat, const float* x, const float* A, int64_t N, int64_t C, int64_t S,
                         const SigRegConfig& cfg) {
  const int64_t P = cfg.points;
  const Grid g = make_grid(cfg);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> p(static_cast<size_t>(S), 0.0), cs(static_cast<size_t>(P), 0.0), sn(static_cast<size_t>(P), 0.0);
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t c = 0; c < C; ++c) p[s] += static_cast<double>(x[n * C + c]) * A[c * S + s];
      for (int64_t k = 0; k < P; ++k) {
        cs[k] += std::cos(g.t[k] * p[s]) / static_cast<double>(S);
        sn[k] += std::sin(g.t[k] * p[s]) / static_cast<double>(S);
      }
    }
    for (int64_t s = 0; s < S; ++s) {
      double d = 0;
      for (int64_t k = 0; k < P; ++k)
        d += 2 * g.w[k] * g.t[k] * (sn[k] * std::cos(g.t[k] * p[s]) - (cs[k] - g.phi[k]) * std::sin(g.t[k] * p[s]));
      d *= static_cast<double>(dstat) / static_cast<double>(N);
      for (int64_t c = 0; c < C; ++c) dx[n * C + c] += static_cast<float>(d * A[c * S + s]);
    }
  }
}

double sigreg_value(const float* x, const float* noise, int64_t N, int64_t C, const SigRegConfig& cfg) {
  const int64_t S = cfg.slices;
  std::vector<float> A(static_cast<size_t>(C * S)), proj(static_cast<size_t>(N * S));
  sigreg_projections(A.data(), noise, C, S);
  return sigreg_forward(proj.data(), nullptr, nullptr, x, A.data(), N, C, S, cfg);
}

void mean_embedding(float* out, const float* x, int64_t N, int64_t C) {
  std::vector<double> acc(static_cast<size_t>(C), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) acc[c] += x[n * C + c];
  for (int64_t c = 0; c < C; ++c) out[c] = static_cast<float>(acc[c] / static_cast<double>(N));
}

}  // namespace lm
