// libFuzzer target: a training checkpoint's run state (lmkit.train metadata, read by
// --resume): step, generators, data position and fingerprints, and the run's settings as
// TrainOptions. Only lm::Error may escape (nlohmann's exceptions on a wrong type included).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const lm::train::TrainState state = lm::train::train_state_from_json(text, "'checkpoint'");
    lm::train::TrainOptions o;
    o.apply_run_settings(state.settings);
  } catch (const lm::Error&) {
  }
  return 0;
}
