#include "model/finite.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/loss_weights.h"
#include "model/params.h"

namespace lm {

namespace {

// The first element whose exponent bits are all ones (NaN or infinity). Blocks are tested
// without an early exit, so the loop vectorises; only a block that holds one is searched.
template <class Bits, Bits kExponent>
int64_t first_all_ones_exponent(const uint8_t* p, int64_t n) {
  constexpr int64_t kBlock = 1024;
  auto at = [p](int64_t i) {
    Bits b;
    std::memcpy(&b, p + static_cast<size_t>(i) * sizeof(Bits), sizeof(Bits));
    return (b & kExponent) == kExponent;
  };
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    bool any = false;
    for (int64_t i = start; i < end; ++i) any |= at(i);
    if (!any) continue;
    for (int64_t i = start; i < end; ++i)
      if (at(i)) return i;
  }
  return -1;
}

double element(const Tensor& t, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(t.raw()) + static_cast<size_t>(i) * dtype_size(t.dtype());
  switch (t.dtype()) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::F64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case DType::F16:
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return t.dtype() == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    default:
      return 0;
  }
}

std::optional<NonFinite> check(const std::string& name, const Tensor& t) {
  const int64_t i = first_non_finite(t);
  if (i < 0) return std::nullopt;
  return NonFinite{name, i, element(t, i)};
}

}  // namespace

std::string NonFinite::describe() const {
  const char* what = std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf";
  return cat("tensor ", quote(tensor), " holds ", what, " at element ", index);
}

int64_t first_non_finite(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  switch (t.dtype()) {
    case DType::F32: return first_all_ones_exponent<uint32_t, 0x7f800000u>(p, t.numel());
    case DType::F16: return first_all_ones_exponent<uint16_t, 0x7c00u>(p, t.numel());
    case DType::BF16: return first_all_ones_exponent<uint16_t, 0x7f80u>(p, t.numel());
    case DType::F64: return first_all_ones_exponent<uint64_t, 0x7ff0000000000000ull>(p, t.numel());
    default: return -1;
  }
}

std::optional<NonFinite> first_non_finite(const SafeTensorsFile& file) {
  for (const TensorInfo& info : file.tensors())
    if (auto bad = check(info.name, file.get(info.name))) return bad;
  return std::nullopt;
}

std::optional<NonFinite> first_non_finite(const ModelWeights& weights) {
  const auto& table = weights.layout().tensors();
  for (size_t i = 0; i < table.size(); ++i)
    if (auto bad = check(table[i].name, weights.tensor(i))) return bad;
  if (const float* w = weights.loss_weights()) {
    const int64_t V = weights.config().vocab_size;
    if (auto bad = check(kLossWeightsTensor, Tensor::view(DType::F32, {V}, w, nullptr))) return bad;
  }
  return std::nullopt;
}

void require_finite(const ModelWeights& weights, const std::string& source) {
  if (const auto bad = first_non_finite(weights)) fail_data(cat(source, ": ", bad->describe()));
}

}  // namespace lm
