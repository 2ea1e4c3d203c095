// Deterministic random numbers: xoshiro256** seeded through splitmix64. The whole
// state is four words, so a run can save it in a checkpoint and resume bit for bit.
#pragma once

#include <array>
#include <cstdint>

namespace lm {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);

  uint64_t next_u64();
  // Uniform in [0, 1) with 24 random bits (exactly representable floats).
  float uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }
  // Uniform integer in [0, n), unbiased (Lemire's method).
  uint64_t below(uint64_t n);
  // Standard normal (Box-Muller; the spare value is cached and part of the state).
  float normal();

  struct State {
    std::array<uint64_t, 4> s;
    float spare;
    bool has_spare;
  };
  State state() const { return {s_, spare_, has_spare_}; }
  void set_state(const State& st) {
    s_ = st.s;
    spare_ = st.spare;
    has_spare_ = st.has_spare;
  }

 private:
  std::array<uint64_t, 4> s_{};
  float spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace lm
