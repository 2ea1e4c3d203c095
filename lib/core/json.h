// Strict JSON parsing for every JSON file lmkit reads (configs, conversion rules, loss weights,
// training state, tokenizer metadata): one SAX pass, linear in the text, bounded in depth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

namespace lm {

// The deepest nesting any lmkit reader accepts (configs need 3, tokenizer.json about 6).
// Deeper input is refused before it costs memory: a SAX handler's stack grows with depth.
inline constexpr size_t kMaxJsonDepth = 512;

// Parses `text` in one SAX pass (time and memory linear in its size); fails (ErrorKind::Data)
// with "<prefix>not valid JSON: ...", "<prefix>JSON nested deeper than 512 levels", or,
// because nlohmann silently keeps the last of repeated keys, "<prefix>duplicate key 'a.b'"
// (the key path; an element of an array shows as "a[2].b").
nlohmann::json parse_json_strict(std::string_view text, const std::string& prefix);
// The same, keeping the file's key order (for readers that report or write back in it).
nlohmann::ordered_json parse_ordered_json_strict(std::string_view text, const std::string& prefix);

// nlohmann's exception text without its "[json.exception.parse_error.101] " tag, for the
// parse_error hook of SAX handlers that report their own messages.
std::string json_error_text(const std::exception& e);
// "JSON nested deeper than 512 levels", the message of a depth refusal.
std::string json_depth_message();

// `v` as the integer type Int. nlohmann's get<Int>() casts a float or an integer out of Int's
// range without a check (undefined for 7e23 into uint64_t: fuzz_train_state); this throws
// nlohmann's type_error instead, which the readers turn into their Data errors.
template <class Int>
Int json_integer(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (std::in_range<Int>(u)) return static_cast<Int>(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (std::in_range<Int>(i)) return static_cast<Int>(i);
  }
  throw nlohmann::json::type_error::create(302, "expected an integer in range, got " + v.dump(), nullptr);
}

// Whether an input that may be JSON or safetensors is JSON: by its name (.json, .safetensors),
// else by its bytes (a safetensors header length that fits the file, followed by '{', is
// safetensors; text starting with '{' or '[' after white space is JSON).
bool looks_like_json(const std::string& path, const uint8_t* data, size_t size);

}  // namespace lm
