// The default micro-step: Transformer::train_step (forward with dropout, loss, backward).
#include "train/trainer.h"

namespace lm::train {

StepFunction transformer_step() {
  return [](Transformer& model, const Batch& batch, const ParameterTensors& grads, float grad_scale,
            Rng& rng) -> TrainStepResult {
    TrainStepOptions opt;
    opt.rng = &rng;
    opt.grad_scale = grad_scale;
    opt.loss_weights = model.weights().loss_weights();  // null unless the config has loss_weights
    opt.conditions = batch.has_conditions ? &batch.conditions : nullptr;
    opt.vision = batch.has_vision ? batch.vision.data() : nullptr;
    const bool own_positions = model.config().is_materium();  // the model computes them (docs/materium.md)
    return model.train_step(grads, batch.inputs.data(), batch.has_pos && !own_positions ? batch.pos.data() : nullptr,
                            batch.targets.data(), batch.B, batch.T, opt);
  };
}

}  // namespace lm::train
