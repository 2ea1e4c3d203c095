// Small helpers several unit test files share: the message of an expected error, the small
// grouped-query Llama the decode tests run, and a small batch of random tokens to train on.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/config.h"

namespace lm::test {

// The message of the lm::Error `f` throws; a test failure (and "") when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// The same, of an error that must be of `kind`: its message, then " | " and its hint when it has one.
inline std::string error_and_hint_of(const std::function<void()>& f, ErrorKind kind = ErrorKind::Data) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    return e.hint().empty() ? std::string(e.what()) : std::string(e.what()) + " | " + e.hint();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// A small Llama with grouped-query attention: dim 64, 2 layers, 4 query heads over 2 kv heads,
// the FFN width from multiple_of 32; decode and batched decode run it in milliseconds.
inline ModelConfig small_gqa_llama(const std::string& name, int64_t vocab_size, int64_t max_seq_len) {
  ModelConfig c;
  c.name = name;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = vocab_size;
  c.multiple_of = 32;
  c.max_seq_len = max_seq_len;
  return c;
}

// B = 2 rows of T = 8 tokens and targets drawn from [1, V) (seed 3), the sixth target the pad id
// 0: a step's loss then skips one position.
struct TokenBatch {
  int64_t B = 2, T = 8;
  std::vector<int32_t> tokens, targets;
};

inline TokenBatch small_token_batch(int64_t V) {
  TokenBatch b;
  Rng rng(3);
  for (int64_t i = 0; i < b.B * b.T; ++i) {
    b.tokens.push_back(static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(V - 1))));
    b.targets.push_back(static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(V - 1))));
  }
  b.targets[5] = 0;  // pad
  return b;
}

}  // namespace lm::test
