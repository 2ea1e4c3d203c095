// libFuzzer target: arbitrary bytes through the GGUF reader. Only lm::Error may escape parsing;
// every tensor it hands out (views and dequantized Q8_0) must lie inside the buffer (ASan checks).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "convert/config_io.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto g = lm::GGUFFile::parse(lm::MappedFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz"));
    for (const auto& info : g.tensors()) {
      if (info.nbytes > (1u << 20)) continue;  // dequantizing huge claims is not the point
      lm::Tensor t = g.get(info);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes(); i += 64) sink ^= p[i];
      if (t.nbytes()) sink ^= p[t.nbytes() - 1];
    }
    for (const auto& [key, v] : g.metadata()) (void)v.type;
    try {
      lm::convert::gguf_config_assignments(g);  // typed key lookups on arbitrary metadata
    } catch (const lm::Error&) {
    }
  } catch (const lm::Error&) {
  }
  return 0;
}
