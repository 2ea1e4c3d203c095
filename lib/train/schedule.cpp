#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace lm::train {

const char* decay_kind_name(DecayKind k) {
  switch (k) {
    case DecayKind::Cosine: return "cosine";
    case DecayKind::Linear: return "linear";
    case DecayKind::Constant: return "constant";
  }
  return "?";
}

std::optional<DecayKind> decay_kind_from_name(std::string_view name) {
  if (name == "cosine") return DecayKind::Cosine;
  if (name == "linear") return DecayKind::Linear;
  if (name == "constant") return DecayKind::Constant;
  return std::nullopt;
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (decay == DecayKind::Constant) return lr;
  const int64_t span = total - warmup;
  const double r = span <= 0 ? 1.0 : std::clamp(static_cast<double>(step - warmup) / static_cast<double>(span), 0.0, 1.0);
  const double f = decay == DecayKind::Cosine ? 0.5 * (1.0 + std::cos(std::numbers::pi * r)) : 1.0 - r;
  return min_lr + (lr - min_lr) * f;
}

void validate(const LrSchedule& s) {
  if (!(std::isfinite(s.lr) && s.lr >= 0)) fail_usage(cat("--lr must be a finite number >= 0, got ", s.lr));
  if (!(std::isfinite(s.min_lr) && s.min_lr >= 0))
    fail_usage(cat("--min-lr must be a finite number >= 0, got ", s.min_lr));
  if (s.min_lr > s.lr) fail_usage(cat("--min-lr ", s.min_lr, " is above --lr ", s.lr, " (the decay ends at min-lr)"));
  if (s.warmup < 0) fail_usage(cat("--warmup must be >= 0, got ", s.warmup));
}

}  // namespace lm::train
