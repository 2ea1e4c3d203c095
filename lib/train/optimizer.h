// AdamW with decoupled weight decay (Loshchilov & Hutter; PyTorch's torch.optim.AdamW
// arithmetic), gradient clipping by global norm, and the per-tensor decay rule. The
// moments live in two arenas laid out exactly like the parameter arena (ParameterLayout),
// so the update is a flat loop over the table's ranges and a checkpoint is a table walk.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/params.h"

namespace lm::train {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_embeddings = true;  // tok_embeddings (and a tied classifier) get weight decay
};

// Usage errors (named as lm-train's options) for settings that make AdamW's arithmetic
// undefined or divergent by construction: beta1 or beta2 outside [0, 1), eps not > 0,
// weight decay negative; NaN and infinities everywhere.
void validate(const AdamWConfig& c);

// Whether a table entry gets weight decay: matrices (condition projections included) do;
// norms, biases and the QK-norm scales never do; token embeddings and the condition tables
// (class and count tables, mask and type embeddings) only when `decay_embeddings`. (The
// untied classifier `output.weight` is a matrix and decays.)
bool decays(const ParamInfo& p, bool decay_embeddings);

class AdamW {
 public:
  AdamW() = default;
  AdamW(const ParameterLayout& layout, const AdamWConfig& cfg);

  // One update of params [arena] from grads [arena] at learning rate `lr`; `t` counts
  // updates from 1 (bias correction). Only the table's ranges are touched (padding stays 0):
  //   g = grad_scale * grads   (clip_scale: clipping folded into this pass; grads unchanged)
  //   p -= lr * wd * p   (decaying tensors)
  //   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
  //   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  // The same bits as clip_grad_norm's scaling of the gradients in place, then a step at 1.
  void step(float* params, const float* grads, double lr, int64_t t, float grad_scale = 1.0f);
  // The same update (the same bits), and each range's gradients set to 0 in the same pass:
  // the next step accumulates into them without a separate memset of the arena (a
  // single-threaded 438 MB write per step at stories110M). Padding is not touched.
  void step_and_zero(float* params, float* grads, double lr, int64_t t, float grad_scale = 1.0f);

  const AdamWConfig& config() const { return cfg_; }
  float* m() { return m_.data_mut<float>(); }  // [arena_floats]
  float* v() { return v_.data_mut<float>(); }  // [arena_floats]
  const float* m() const { return m_.data<float>(); }
  const float* v() const { return v_.data<float>(); }
  int64_t arena_floats() const { return arena_floats_; }

 struct Range {
    int64_t offset, numel;
    bool decay;
  };

 private:
  template <bool kZeroGrads, typename Grad>
  void update(float* params, Grad* grads, double lr, int64_t t, float grad_scale);
  AdamWConfig cfg_;
  std::vector<Range> ranges_;
  int64_t arena_floats_ = 0;
  Tensor m_, v_;
};

// sqrt(sum g^2) over the table's ranges of a gradient arena, accumulated in double: fixed
// chunks of 8192 floats in fixed lanes, so the same bits for any thread count (exact resume).
double grad_global_norm(const ParameterLayout& layout, const float* grads);
// The same with one double accumulator in order: the reference the lanes are held to.
double grad_global_norm_ref(const ParameterLayout& layout, const float* grads);
// The factor gradient clipping scales by: max_norm / (norm + 1e-6) when norm > max_norm and
// finite (max_norm <= 0: no clipping), else 1.
float clip_scale(double norm, double max_norm);
// Scales the gradients by clip_scale(norm, max_norm) in place. Returns the norm before clipping.
// (A training step folds the scale into AdamW::step instead: one pass over the gradients less.)
double clip_grad_norm(const ParameterLayout& layout, float* grads, double max_norm);

}  // namespace lm::train
