// libFuzzer target: a loss-weight file (lm-train --loss-weights): JSON {"id": weight} or a
// safetensors vector. The first two bytes give the vocabulary size (1..4096), the third how
// the file is named (.json, .safetensors, or neither: told apart by content). Only lm::Error
// may escape; weights that load are vocab_size finite, non-negative values, not all zero.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/loss_weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const int64_t vocab = 1 + (data[0] | (data[1] << 8)) % 4096;
  static const char* const names[] = {"w.json", "w.safetensors", "weights"};
  auto file = lm::MappedFile::from_bytes(std::vector<uint8_t>(data + 3, data + size), names[data[2] % 3]);
  try {
    const std::vector<float> w = lm::read_loss_weights(file, vocab);
    if (static_cast<int64_t>(w.size()) != vocab) __builtin_trap();
    bool any = false;
    for (float x : w) {
      if (!std::isfinite(x) || x < 0) __builtin_trap();
      any = any || x > 0;
    }
    if (!any) __builtin_trap();
  } catch (const lm::Error&) {
  }
  return 0;
}
