// Finiteness of weights: NaN or infinity in a parameter means a diverged run or a corrupt
// file, and a program that loads such a model must say so rather than compute with it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "model/params.h"

namespace lm {

// Index of the first NaN or infinity in p[0..n), or -1 when all are finite.
int64_t first_non_finite(const float* p, int64_t n);

struct NonFiniteValue {
  std::string tensor;  // the parameter's name (or "loss_weights")
  int64_t index = 0;   // flat index in it
  float value = 0;     // nan, inf or -inf
};
// The first non-finite value of `w` (its parameters in table order, then its loss
// weights), or nullopt when every value is finite.
std::optional<NonFiniteValue> find_non_finite(const ModelWeights& w);
// Data error "<source>: tensor 'X' holds a non-finite value (nan at index I)" for a model
// with one.
void require_finite(const ModelWeights& w, const std::string& source);

}  // namespace lm
