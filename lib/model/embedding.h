// Token embedding lookup. Shape letters: N rows (B*T), V vocab, C dim.
#pragma once

#include <cstdint>

namespace lm {

// out [N, C] = wte [V, C] rows of tokens [N]. Throws a Data error for a token outside [0, V).
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int64_t V, int64_t C);

// Throws a Data error "token id X at index i is out of range for vocab V" for any token outside [0, V).
void check_token_ids(const int32_t* tokens, int64_t N, int64_t V, const char* what = "token");

// Backward of embedding_forward: dwte [V, C] rows of tokens [N] += dout [N, C] rows (rows of
// repeated tokens add up, in token order, so the result is deterministic).
void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C);

}  // namespace lm
