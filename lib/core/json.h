// Strict JSON parsing for every JSON file lmkit reads (configs, conversion rules).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace lm {

// Parses `text`; fails (ErrorKind::Data) with "<prefix>not valid JSON: ..." or, because
// nlohmann silently keeps the last of repeated keys, "<prefix>duplicate key 'a.b'".
nlohmann::json parse_json_strict(const std::string& text, const std::string& prefix);

// Whether an input that may be JSON or safetensors is JSON: by its name (.json, .safetensors),
// else by its bytes (a safetensors header length that fits the file, followed by '{', is
// safetensors; text starting with '{' or '[' after white space is JSON).
bool looks_like_json(const std::string& path, const uint8_t* data, size_t size);

}  // namespace lm
