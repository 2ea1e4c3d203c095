// libFuzzer target: arbitrary bytes through the conditions file reader (docs/materium.md) of a
// model with one condition of each type. Only lm::Error may escape; every value a line gives
// must keep the batch's promises (checked with __builtin_trap).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/stream.h"
#include "model/conditions_file.h"

namespace {

lm::ModelConfig fuzz_config() {
  lm::ModelConfig c;
  c.dim = 8;
  c.vocab_size = 40;
  c.conditions = {{"space_group", lm::ProjLayerType::Embedding, 12, 0, 0},
                  {"band_gap", lm::ProjLayerType::Linear, 2, 0, 0},
                  {"formula", lm::ProjLayerType::Formula, 6, 0, 3}};
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lm::ModelConfig cfg = fuzz_config();
  try {
    lm::ConditionsReader reader(lm::memory_source(data, size, "fuzz"), cfg);
    lm::ConditionBatch cb(cfg, 1);
    while (reader.next(cb, 0)) {
      const auto& sg = cb.values(0);
      if (!sg.null[0] && (sg.classes[0] < 0 || sg.classes[0] >= 12)) __builtin_trap();
      const auto& f = cb.values(2);
      if (!f.null[0] && (f.formula[0] < 0 || f.formula[0] >= 40 || f.formula[1] < 1 || f.formula[1] > 6))
        __builtin_trap();
      if (cb.positions() != 5) __builtin_trap();
    }
  } catch (const lm::Error&) {
  }
  return 0;
}
