#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/blas.h"

namespace lm {

void attention_spans(int64_t* lo, int64_t* hi, const int32_t* tokens, int64_t B, int64_t T, int64_t P, bool causal,
                     bool doc_mask, int64_t eos_id, int64_t* doc_start) {
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* tok = tokens + b * T;
    int64_t* l = lo + b * T;
    int64_t* h = hi + b * T;
    int64_t start = doc_start ? doc_start[b] : 0;
    for (int64_t t = 0; t < T; ++t) {
      l[t] = doc_mask ? start : 0;
      h[t] = causal ? P + t : P + T - 1;
      if (doc_mask && tok[t] == eos_id) start = P + t + 1;
    }
    if (doc_mask && !causal) {  // a query also sees the rest of its document: up to its EOS
      int64_t end = P + T - 1;
      for (int64_t t = T - 1; t >= 0; --t) {
        if (tok[t] == eos_id) end = P + t;
        h[t] = end;
      }
    }
    if (doc_start) doc_start[b] = start;
  }
}

namespace {

// In place over row[0, W): softmax over [lo, hi] (relative to the row), 0 elsewhere.
void masked_softmax(float* row, int64_t W, int64_t lo, int64_t hi) {
  float mx = -INFINITY;
  for (int64_t j = lo; j <= hi; ++j) mx = std::max(mx, row[j]);
  float sum = 0;
  for (int64_t j = lo; j <= hi; ++j) {
    row[j] = std::exp(row[j] - mx);
    sum += row[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < lo; ++j) row[j] = 0;
  for (int64_t j = lo; j <= hi; ++j) row[j] *= inv;
  for (int64_t j = hi + 1; j < W; ++j) row[j] = 0;
}

}  // namespace

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const int64_t* lo,
                       const int64_t* hi, int64_t B, int64_t T, int64_t P, int64_t S, int64_t NH, int64_t NKV,
                       int64_t HS) {
  const int64_t K = P + T;  // key slots in use
  const int64_t rep = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const int64_t qld = NH * HS, kvld = NKV * HS;
#pragma omp parallel
  {
    std::vector<float> scratch;  // [T, K] scores when att is not saved
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < NH; ++h) {
        // Only the key window some query of this row can see takes part in the products.
        const int64_t k0 = *std::min_element(lo + b * T, lo + (b + 1) * T);
        const int64_t k1 = *std::max_element(hi + b * T, hi + (b + 1) * T);
        const int64_t W = k1 - k0 + 1;
        float* sc;
        if (att) {
          sc = att + (b * NH + h) * T * K;
        } else {
          scratch.resize(static_cast<size_t>(T * K));
          sc = scratch.data();
        }
        const float* qbh = q + b * T * qld + h * HS;
        const float* kb = k + (b * S + k0) * kvld + (h / rep) * HS;
        const float* vb = v + (b * S + k0) * kvld + (h / rep) * HS;
        // sc[t, k0:k1] = scale * q_t . k_j
        sgemm(false, true, T, W, HS, scale, qbh, qld, kb, kvld, 0.0f, sc + k0, K);
        for (int64_t t = 0; t < T; ++t) {
          float* row = sc + t * K;
          masked_softmax(row + k0, W, lo[b * T + t] - k0, hi[b * T + t] - k0);
          if (att) {
            std::fill(row, row + k0, 0.0f);
            std::fill(row + k1 + 1, row + K, 0.0f);
          }
        }
        // out[t] = sum_j p[t, j] v_j
        sgemm(false, false, T, HS, W, 1.0f, sc + k0, K, vb, kvld, 0.0f, out + b * T * qld + h * HS, qld);
      }
    }
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

}  // namespace lm
