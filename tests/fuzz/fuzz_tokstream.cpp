// libFuzzer target: arbitrary bytes through the token readers (zstd detection, token
// stream, llm.c, raw u16) and the byte-level V1 decoder. Only lm::Error may escape; the
// chunks handed out must keep the reader's promises (checked with __builtin_trap).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "tokstream_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (auto format : {lm::TokenInputFormat::Auto, lm::TokenInputFormat::U16}) {
    try {
      fuzz::read_everything(data, size, format);
    } catch (const lm::Error&) {
    }
  }
  return 0;
}
