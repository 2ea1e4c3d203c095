// Where weights stop being numbers: the first NaN or infinity of a tensor, of a checkpoint
// file, or of a model's parameters (lm-inspect-config warns about it; a model that holds one
// gives no meaningful output).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/tensor.h"

namespace lm {

class SafeTensorsFile;
class ModelWeights;

struct NonFinite {
  std::string tensor;  // its name
  int64_t index = 0;   // of the element, in row-major order
  double value = 0;    // NaN, +inf or -inf
  std::string describe() const;  // "tensor 'x' holds nan at element 12"
};

// The index of the first NaN or infinite element of a floating-point tensor (F32, F16, BF16,
// F64; read in place, aligned or not), -1 when all are finite or the dtype is not a float.
int64_t first_non_finite(const Tensor& t);
// The first non-finite element of any floating-point tensor of the file, in the file's order.
std::optional<NonFinite> first_non_finite(const SafeTensorsFile& file);
// The first non-finite parameter (then loss weight) of a model, in layout order.
std::optional<NonFinite> first_non_finite(const ModelWeights& weights);
// Data error "<source>: tensor 'x' holds nan at element 12" for a model that holds one
// (lm-train, lm-eval-loss and lm-generate refuse such a model).
void require_finite(const ModelWeights& weights, const std::string& source);

}  // namespace lm
