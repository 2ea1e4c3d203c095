// libFuzzer target: parse_json_strict, the parser behind every JSON file lmkit reads, held to
// nlohmann's own parser: what it accepts nlohmann accepts and reads to the same document; what
// it calls invalid nlohmann rejects; every other refusal is a repeated key or nesting past the
// bound. Only lm::Error may escape.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json reference = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  try {
    const nlohmann::json strict = lm::parse_json_strict(text, "");
    if (reference.is_discarded() || strict != reference) __builtin_trap();
  } catch (const lm::Error& e) {
    const std::string what = e.what();
    if (e.kind() != lm::ErrorKind::Data) __builtin_trap();
    if (what.rfind("not valid JSON: ", 0) == 0) {
      if (!reference.is_discarded()) __builtin_trap();
    } else if (what.rfind("duplicate key '", 0) != 0 && what != lm::json_depth_message()) {
      __builtin_trap();  // (these two stop the parse where they are found, so the text after may be invalid)
    }
  }
  return 0;
}
