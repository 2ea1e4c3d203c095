// Element types of tensors and their names in safetensors, plus f16/bf16 conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace lm {

enum class DType : uint8_t { F32, F16, BF16, F64, I8, I16, I32, I64, U8, U16, U32, U64, Bool };

size_t dtype_size(DType t);                          // bytes per element
std::string_view dtype_name(DType t);                // safetensors spelling: "F32", "BF16", ...
std::optional<DType> dtype_from_name(std::string_view name);  // inverse of dtype_name

// IEEE half <-> float, round to nearest even (as torch .half()).
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// bfloat16 <-> float, round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// A bf16 as the bf16 dot product reads it (vdpbf16ps): a denormal as a zero of its sign.
inline float bf16_to_f32_daz(uint16_t h) { return bf16_to_f32((h & 0x7f80u) == 0 ? h & 0x8000u : h); }

}  // namespace lm
