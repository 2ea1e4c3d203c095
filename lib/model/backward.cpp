// Transformer::train_step: the training forward (dropout), the loss and the backward pass.
#include "core/error.h"
#include "model/transformer.h"

namespace lm {

TrainStepResult Transformer::train_step(const ParameterTensors&, const int32_t*, const int64_t*, const int32_t*,
                                        int64_t, int64_t, const TrainStepOptions&) {
  fail(ErrorKind::Unsupported, "training is not implemented yet");
}

}  // namespace lm
