// libFuzzer target: arbitrary bytes through the readers of outside config formats (Hugging Face
// config.json, Meta params.json, telling the conventions apart) and of the tokenizer spec a
// checkpoint carries. Only lm::Error may escape; what is read must write back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "convert/config_io.h"
#include "core/error.h"
#include "tokenizer/spec_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const lm::ModelConfig c = lm::convert::config_from_hf_json(text, "config.json");
    if (lm::convert::hf_unsupported(c).empty()) lm::convert::config_to_hf_json(c, "float32");
  } catch (const lm::Error&) {
  }
  try {
    const lm::ModelConfig c = lm::convert::config_from_params_json(text, "params.json");
    if (lm::convert::params_unsupported(c).empty()) lm::convert::config_to_params_json(c);
  } catch (const lm::Error&) {
  }
  try {
    lm::convert::config_convention(text, "x.json");
  } catch (const lm::Error&) {
  }
  try {
    lm::spec_to_json(lm::spec_from_json(text, "'m'"));
  } catch (const lm::Error&) {
  }
  return 0;
}
