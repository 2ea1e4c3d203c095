// Learning-rate schedules: linear warmup from lr/warmup to lr over `warmup` steps, then
// cosine, linear or constant decay to min_lr at `total` steps (nanoGPT's get_lr shape).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lm::train {

enum class DecayKind { Cosine, Linear, Constant };
const char* decay_kind_name(DecayKind k);  // "cosine", "linear", "constant"
std::optional<DecayKind> decay_kind_from_name(std::string_view name);

struct LrSchedule {
  DecayKind decay = DecayKind::Cosine;
  double lr = 1e-3;       // peak
  double min_lr = 0;      // reached at `total` (cosine, linear); constant stays at lr
  int64_t warmup = 0;     // steps
  int64_t total = 1;      // steps of the whole run

  // The learning rate of step `step` (0-based):
  //   step < warmup:  lr * (step + 1) / warmup
  //   else:           min_lr + (lr - min_lr) * f(r),  r = (step - warmup) / (total - warmup) in [0, 1],
  //                   f = (1 + cos(pi r)) / 2 (cosine), 1 - r (linear), 1 (constant)
  double at(int64_t step) const;
};

// Usage errors (named as lm-train's options) for a schedule no run can follow: lr or
// min_lr negative or not finite, min_lr above lr, warmup negative.
void validate(const LrSchedule& s);

}  // namespace lm::train
