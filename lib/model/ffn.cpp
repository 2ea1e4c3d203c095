#include "model/ffn.h"
#include "core/threads.h"

#include <cmath>
#include <numbers>

namespace lm {

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void gelu_forward(float* out, const float* inp, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    const float s = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
#pragma omp parallel for schedule(static) if (n >= kParallelMinWork)
    for (int64_t i = 0; i < n; ++i) {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + std::tanh(s * (x + 0.044715f * x * x * x)));
    }
  } else {
    const float s = static_cast<float>(1.0 / std::numbers::sqrt2);
#pragma omp parallel for schedule(static) if (n >= kParallelMinWork)
    for (int64_t i = 0; i < n; ++i) {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + std::erf(x * s));
    }
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = 1.0f / (1.0f + std::exp(-g));
    const float silu = g * s;
    dgate[i] += dout[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
    dup[i] += dout[i] * silu;
  }
}

void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n, bool tanh_approx) {
  if (tanh_approx) {
    const float s = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float x = inp[i];
      const float th = std::tanh(s * (x + 0.044715f * x * x * x));
      const float d = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * s * (1.0f + 3.0f * 0.044715f * x * x);
      dinp[i] += dout[i] * d;
    }
  } else {
    const float s = static_cast<float>(1.0 / std::numbers::sqrt2);
    const float k = static_cast<float>(1.0 / std::sqrt(2.0 * std::numbers::pi));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float x = inp[i];
      const float d = 0.5f * (1.0f + std::erf(x * s)) + x * k * std::exp(-0.5f * x * x);
      dinp[i] += dout[i] * d;
    }
  }
}

}  // namespace lm
