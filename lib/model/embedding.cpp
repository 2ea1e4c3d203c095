#include "model/embedding.h"
#include "core/threads.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace lm {

void check_token_ids(const int32_t* tokens, int64_t N, int64_t V, const char* what) {
  for (int64_t n = 0; n < N; ++n)
    if (tokens[n] < 0 || tokens[n] >= V)
      fail_data(cat(what, " id ", tokens[n], " at index ", n, " is out of range for vocab size ", V));
}

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int64_t V, int64_t C) {
  check_token_ids(tokens, N, V);
  parallel_for(N, N * C, [&](int64_t n) {
    std::memcpy(out + n * C, wte + static_cast<int64_t>(tokens[n]) * C, static_cast<size_t>(C) * sizeof(float));
  });
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C) {
  constexpr int64_t kBlock = 64;  // each task owns a slice of columns, so no two write the same float
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t c1 = std::min(C, c0 + kBlock);
    for (int64_t n = 0; n < N; ++n) {
      float* w = dwte + static_cast<int64_t>(tokens[n]) * C;
      const float* d = dout + n * C;
      for (int64_t c = c0; c < c1; ++c) w[c] += d[c];
    }
  }
}

}  // namespace lm
