// The default micro-step: Transformer::train_step (forward, loss, backward).
#include "core/error.h"
#include "train/trainer.h"

namespace lm::train {

StepFunction transformer_step() {
  return [](Transformer& model, const Batch& batch, const ParameterTensors& grads, float grad_scale,
            Rng& rng) -> double {
    (void)model, (void)batch, (void)grads, (void)grad_scale, (void)rng;
    fail(ErrorKind::Unsupported, "training needs the backward pass, which this build does not have yet",
         "--steps 0 writes a randomly initialised checkpoint");
  };
}

}  // namespace lm::train
