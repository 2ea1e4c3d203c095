#include "model/embedding.h"

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
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(out + n * C, wte + static_cast<int64_t>(tokens[n]) * C, static_cast<size_t>(C) * sizeof(float));
}

}  // namespace lm
