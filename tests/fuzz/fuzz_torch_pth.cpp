// libFuzzer target: arbitrary bytes through the PyTorch checkpoint reader (zip central directory,
// restricted unpickler). Only lm::Error may escape; every tensor it hands out must lie inside the
// buffer (ASan checks the reads), strided ones included.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/torch_pth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto ck = lm::TorchCheckpoint::parse(lm::MappedFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz"));
    for (const auto& info : ck.tensors()) {
      const lm::Tensor t = ck.get(info);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes(); i += 64) sink ^= p[i];
      if (t.nbytes()) sink ^= p[t.nbytes() - 1];
    }
  } catch (const lm::Error&) {
  }
  return 0;
}
