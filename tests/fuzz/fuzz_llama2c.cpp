// libFuzzer target: arbitrary bytes through the llama2.c reader (v0, v1, v2). Only lm::Error may
// escape; every tensor (fp32 views, dequantized Q8_0 groups) must lie inside the buffer (ASan).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "convert/config_io.h"
#include "convert/names.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = lm::Llama2cFile::parse(lm::MappedFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz"));
    lm::convert::config_from_llama2c(f.header());
    for (const auto& e : f.entries()) {
      lm::convert::llama2c_tensor_name(e.array, e.layer);
      lm::Tensor t = f.get(e);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes(); i += 64) sink ^= p[i];
      if (t.nbytes()) sink ^= p[t.nbytes() - 1];
    }
  } catch (const lm::Error&) {
  }
  lm::Llama2cFile::plausible_v0_header(data, size);
  return 0;
}
