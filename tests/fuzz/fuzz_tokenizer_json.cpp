// libFuzzer target: arbitrary bytes as a Hugging Face tokenizer.json, optionally followed by a
// NUL and the text of its tokenizer_config.json. Only lm::Error may escape loading; a
// tokenizer that loads must pass fuzz::exercise.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string_view json = all.substr(0, nul);
  const std::string_view config = nul == std::string_view::npos ? std::string_view() : all.substr(nul + 1);
  try {
    auto tok = lm::HfBpeTokenizer::from_json(json, config, "fuzz.json");
    fuzz::exercise(*tok);
  } catch (const lm::Error&) {
  }
  return 0;
}
