// The max of a row of floats in 16 lanes (vmaxps through GCC vector types): an `omp simd
// reduction(max)` loop over std::max stays scalar here, a chain of dependent vmaxss (perf: most
// of the cross-entropy's time at V = 32000, and of attention's softmax). The max is exact, so
// the lanes change no bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace lm {

inline float row_max(const float* x, int64_t n) {
  typedef float Floats16 __attribute__((vector_size(64)));  // GCC lowers it to the machine's vectors
  Floats16 lane;
  for (int j = 0; j < 16; ++j) lane[j] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Floats16 v;
    std::memcpy(&v, x + i, sizeof v);
    lane = v > lane ? v : lane;
  }
  float mx = -INFINITY;
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  for (int j = 0; j < 16; ++j) mx = lane[j] > mx ? lane[j] : mx;
  return mx;
}

}  // namespace lm
