#include "model/finite.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace lm {

namespace {
// Exponent bits all set: NaN or infinity (a bit test, so no compiler flag can fold it away).
inline bool non_finite(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) == 0x7f800000u;
}
}  // namespace

int64_t first_non_finite(const float* p, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  int64_t first = -1;
  // Chunks in parallel; the first bad chunk (lowest index) is searched again serially.
  int64_t bad_chunk = chunks;
#pragma omp parallel for schedule(static) reduction(min : bad_chunk) if (chunks > 4)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    bool bad = false;
    for (int64_t i = c * kChunk; i < end; ++i) bad |= non_finite(p[i]);
    if (bad && c < bad_chunk) bad_chunk = c;
  }
  if (bad_chunk < chunks)
    for (int64_t i = bad_chunk * kChunk; i < n && first < 0; ++i)
      if (non_finite(p[i])) first = i;
  return first;
}

std::optional<NonFiniteValue> find_non_finite(const ModelWeights& w) {
  const auto& table = w.layout().tensors();
  for (size_t i = 0; i < table.size(); ++i) {
    const Tensor t = w.tensor(i);
    const int64_t at = first_non_finite(t.data<float>(), table[i].numel);
    if (at >= 0) return NonFiniteValue{table[i].name, at, t.data<float>()[at]};
  }
  if (const float* lw = w.loss_weights()) {
    const int64_t at = first_non_finite(lw, w.config().vocab_size);
    if (at >= 0) return NonFiniteValue{"loss_weights", at, lw[at]};
  }
  return std::nullopt;
}

void require_finite(const ModelWeights& w, const std::string& source) {
  if (const auto bad = find_non_finite(w))
    fail_data(cat(source, ": tensor ", quote(bad->tensor), " holds a non-finite value (", bad->value, " at index ",
                  bad->index, ")"));
}

}  // namespace lm
