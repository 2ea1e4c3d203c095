// libFuzzer target: model config text in each convention a program reads. The first byte
// picks the reader: lmkit config JSON (which must also survive a round trip through
// config_to_json unchanged), a Hugging Face config.json, a Meta params.json, the convention
// detection of --config, the lmkit.tokenizer metadata JSON, --set KEY=VALUE lines over a
// preset, or a seed model's config (materium, xlstm-jax, MobileLLM, soma: detected, read,
// and written back). The writers get every config read: an invalid one they refuse with a
// Data error. Only lm::Error may escape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "convert/config_io.h"
#include "core/error.h"
#include "eval/model_tokenizer.h"
#include "model/config.h"
#include "model/config_formats.h"
#include "model/presets.h"

namespace {

bool valid(const lm::ModelConfig& c) {
  try {
    lm::validate(c, "fuzz");
    return true;
  } catch (const lm::Error&) {
    return false;
  }
}

void lmkit_config(const std::string& text) {
  const lm::ModelConfig c = lm::config_from_json(text, "config.json");
  valid(c);
  const lm::ModelConfig back = lm::config_from_json(lm::config_to_json(c), "round trip");
  if (!(back == c)) __builtin_trap();
}

// A writer given an invalid config refuses it (Data; it would divide by n_heads 0), unless a
// field it has no key for is refused first (Unsupported).
template <class Write>
std::string write_checked(const lm::ModelConfig& c, Write write) {
  if (valid(c)) return write();
  try {
    write();
  } catch (const lm::Error& e) {
    // (a field the format has no key for is named first, as Unsupported)
    if (e.kind() == lm::ErrorKind::Data || e.kind() == lm::ErrorKind::Unsupported) throw;
  }
  __builtin_trap();
}

void hf_config(const std::string& text) {
  const lm::ModelConfig c = lm::convert::config_from_hf_json(text, "config.json");
  const std::string out = write_checked(c, [&] { return lm::convert::config_to_hf_json(c, "float32"); });
  lm::convert::config_from_hf_json(out, "round trip");
}

void meta_config(const std::string& text) {
  const lm::ModelConfig c = lm::convert::config_from_params_json(text, "params.json");
  const std::string out = write_checked(c, [&] { return lm::convert::config_to_params_json(c); });
  lm::convert::config_from_params_json(out, "round trip");
}

void any_config(const std::string& text) {  // as load_config_arg tells them apart
  const std::string conv = lm::convert::config_convention(text, "config.json");
  if (conv == "hf") hf_config(text);
  else if (conv == "meta") meta_config(text);
  else lmkit_config(text);
}

void overrides(const std::string& text) {
  lm::ModelConfig c = lm::preset("tiny");
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    lm::apply_override(c, text.substr(begin, end - begin));
    begin = end + 1;
  }
  valid(c);
}

void seed_config(const std::string& text) {
  const auto format = lm::detect_seed_format(text, "seed.json");
  if (!format) return;
  const lm::SeedConfig c = lm::config_from_seed_json(text, *format, "seed.json");
  if (!valid(c.config)) {
    write_checked(c.config, [&] { return lm::config_to_seed_json(c.config, *format); });
    return;
  }
  try {
    lm::config_to_seed_json(c.config, *format);
  } catch (const lm::Error& e) {
    if (e.kind() != lm::ErrorKind::Unsupported) __builtin_trap();  // only "no equivalent" may stop a write-back
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 7) {
      case 0: lmkit_config(text); break;
      case 1: hf_config(text); break;
      case 2: meta_config(text); break;
      case 3: any_config(text); break;
      case 4: lm::model_tokenizer_spec(text, 32000, "'model'"); break;
      case 5: overrides(text); break;
      case 6: seed_config(text); break;
    }
  } catch (const lm::Error&) {
  }
  return 0;
}
