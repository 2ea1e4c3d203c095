// libFuzzer target: arbitrary bytes through the safetensors reader. Only lm::Error may escape
// parsing; every tensor view it hands out must lie inside the buffer (ASan checks the reads).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto st = lm::SafeTensorsFile::parse(lm::MappedFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz"));
    for (const auto& info : st.tensors()) {
      lm::Tensor t = st.get(info.name);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes(); i += 64) sink ^= p[i];
      if (t.nbytes()) sink ^= p[t.nbytes() - 1];
      if (t.numel() < (1 << 16) && (info.dtype == lm::DType::F16 || info.dtype == lm::DType::BF16)) t.to_f32();
    }
  } catch (const lm::Error&) {
  }
  return 0;
}
