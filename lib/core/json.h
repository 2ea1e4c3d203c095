// Strict JSON parsing for every JSON file lmkit reads (configs, conversion rules).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lm {

// Parses `text`; fails (ErrorKind::Data) with "<prefix>not valid JSON: ..." or, because
// nlohmann silently keeps the last of repeated keys, "<prefix>duplicate key 'a.b'".
nlohmann::json parse_json_strict(const std::string& text, const std::string& prefix);

}  // namespace lm
