// Inverted dropout with masks that are a pure function of (seed, element index): the seed
// is drawn from the run's lm::Rng once per dropout site and step (Transformer::train_step
// documents the order), the mask element i keeps its input when
// uniform24(splitmix64(seed + i * golden)) >= p and scales it by 1 / (1 - p). The forward
// and the backward pass regenerate the same mask, so nothing is stored, and the result
// does not depend on the thread count. p = 0 is the identity (p >= 1 zeroes everything).
#pragma once

#include <cstdint>

namespace lm {

// The multiplier of element i: 0 or 1 / (1 - p).
inline float dropout_scale(uint64_t seed, uint64_t i, float p) {
  uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float u = static_cast<float>(z >> 40) * 0x1.0p-24f;
  return u >= p ? 1.0f / (1.0f - p) : 0.0f;
}

// out [n] = inp * mask (out may alias inp). Element i of the buffer uses mask index i.
void dropout_forward(float* out, const float* inp, int64_t n, float p, uint64_t seed);
// dinp [n] += dout * mask.
void dropout_backward(float* dinp, const float* dout, int64_t n, float p, uint64_t seed);

}  // namespace lm
