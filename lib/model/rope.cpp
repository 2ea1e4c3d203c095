#include "model/rope.h"
#include "core/threads.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace lm {

std::vector<double> rope_inv_freq(const ModelConfig& cfg) {
  const int64_t HS = cfg.head_size();
  const int64_t half = HS / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    f[i] = 1.0 / std::pow(cfg.rope_theta, static_cast<double>(2 * i) / static_cast<double>(HS));
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.type == RopeScalingType::Linear) {
    for (auto& x : f) x /= rs.factor;
  } else if (rs.type == RopeScalingType::Llama3) {
    const double old_len = static_cast<double>(rs.original_max_seq_len);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    for (auto& freq : f) {
      const double wavelen = 2 * std::numbers::pi / freq;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        freq /= rs.factor;
      } else {
        const double smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        freq = (1 - smooth) * freq / rs.factor + smooth * freq;
      }
    }
  }
  return f;
}

void rope_tables(float* cos, float* sin, const int64_t* pos, const double* inv_freq, int64_t N, int64_t half,
                 double scale_factor) {
  parallel_for(N, N * half, [&](int64_t n) {
    const double p = static_cast<double>(pos[n]) / scale_factor;
    for (int64_t i = 0; i < half; ++i) {
      const double a = p * inv_freq[i];
      cos[n * half + i] = static_cast<float>(std::cos(a));
      sin[n * half + i] = static_cast<float>(std::sin(a));
    }
  });
}

namespace {

// Row n's H heads: y = x rotated by (c, s) pairwise.
inline void rope_row(float* y, const float* x, const float* c, const float* s, int64_t H, int64_t HS) {
  const int64_t half = HS / 2;
  for (int64_t h = 0; h < H; ++h) {
    const float* xh = x + h * HS;
    float* yh = y + h * HS;
    for (int64_t i = 0; i < half; ++i) {
      const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
      yh[2 * i] = x0 * c[i] - x1 * s[i];
      yh[2 * i + 1] = x0 * s[i] + x1 * c[i];
    }
  }
}

// Row n's H heads rotated back, written: dx = the transposed rotation of dy.
inline void rope_back_row(float* dx, const float* dy, const float* c, const float* s, int64_t H, int64_t HS) {
  const int64_t half = HS / 2;
  for (int64_t h = 0; h < H; ++h) {
    const float* dyh = dy + h * HS;
    float* dxh = dx + h * HS;
    for (int64_t i = 0; i < half; ++i) {
      const float d0 = dyh[2 * i], d1 = dyh[2 * i + 1];
      dxh[2 * i] = d0 * c[i] + d1 * s[i];
      dxh[2 * i + 1] = d1 * c[i] - d0 * s[i];
    }
  }
}

}  // namespace

void rope_qk_forward(float* qr, float* kr, const float* q, const float* k, const float* cos, const float* sin,
                     int64_t N, int64_t NH, int64_t NKV, int64_t HS, int64_t in_ld) {
  const int64_t half = HS / 2;
  const int64_t q_ld = in_ld > 0 ? in_ld : NH * HS, k_ld = in_ld > 0 ? in_ld : NKV * HS;
  parallel_for(N, N * (NH + NKV) * HS, [&](int64_t n) {
    const float* c = cos + n * half;
    const float* s = sin + n * half;
    rope_row(qr + n * NH * HS, q + n * q_ld, c, s, NH, HS);
    rope_row(kr + n * NKV * HS, k + n * k_ld, c, s, NKV, HS);
  });
}

void rope_qk_backward(float* dq, float* dk, const float* dqr, const float* dkr, const float* cos, const float* sin,
                      int64_t N, int64_t NH, int64_t NKV, int64_t HS, int64_t out_ld) {
  const int64_t half = HS / 2;
  const int64_t q_ld = out_ld > 0 ? out_ld : NH * HS, k_ld = out_ld > 0 ? out_ld : NKV * HS;
  parallel_for(N, N * (NH + NKV) * HS, [&](int64_t n) {
    const float* c = cos + n * half;
    const float* s = sin + n * half;
    rope_back_row(dq + n * q_ld, dqr + n * NH * HS, c, s, NH, HS);
    rope_back_row(dk + n * k_ld, dkr + n * NKV * HS, c, s, NKV, HS);
  });
}

void rope_forward(float* out, const float* inp, const float* cos, const float* sin, int64_t N, int64_t H,
                  int64_t HS) {
  const int64_t half = HS / 2;
  parallel_for(N, N * H * HS, [&](int64_t n) {
    const float* c = cos + n * half;
    const float* s = sin + n * half;
    for (int64_t h = 0; h < H; ++h) {
      const float* x = inp + (n * H + h) * HS;
      float* y = out + (n * H + h) * HS;
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = x[2 * i], x1 = x[2 * i + 1];
        y[2 * i] = x0 * c[i] - x1 * s[i];
        y[2 * i + 1] = x0 * s[i] + x1 * c[i];
      }
    }
  });
}

void rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, int64_t N, int64_t H,
                   int64_t HS) {
  const int64_t half = HS / 2;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* c = cos + n * half;
    const float* s = sin + n * half;
    for (int64_t h = 0; h < H; ++h) {
      const float* dy = dout + (n * H + h) * HS;
      float* dx = dinp + (n * H + h) * HS;
      for (int64_t i = 0; i < half; ++i) {
        const float d0 = dy[2 * i], d1 = dy[2 * i + 1];
        dx[2 * i] += d0 * c[i] + d1 * s[i];
        dx[2 * i + 1] += d1 * c[i] - d0 * s[i];
      }
    }
  }
}

}  // namespace lm
