#include "core/json.h"

#include <set>
#include <vector>

#include "core/error.h"

namespace lm {

using json = nlohmann::json;

json parse_json_strict(const std::string& text, const std::string& prefix) {
  std::vector<std::set<std::string>> keys_per_object;
  std::vector<std::string> path;  // key path of the objects being parsed, for the message
  std::string duplicate;
  std::string last_key;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        path.push_back(last_key);
        break;
      case json::parse_event_t::object_end:
        keys_per_object.pop_back();
        path.pop_back();
        break;
      case json::parse_event_t::key: {
        last_key = parsed.get<std::string>();
        if (!keys_per_object.back().insert(last_key).second && duplicate.empty()) {
          std::string full;
          for (size_t i = 1; i < path.size(); ++i)
            if (!path[i].empty()) full += path[i] + ".";
          duplicate = full + last_key;
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(text, callback);
  } catch (const json::exception& e) {
    std::string what = e.what();
    const auto pos = what.find("] ");
    fail_data(cat(prefix, "not valid JSON: ", pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  if (!duplicate.empty()) fail_data(cat(prefix, "duplicate key ", quote(duplicate)));
  return doc;
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool looks_like_json(const std::string& path, const uint8_t* data, size_t size) {
  if (ends_with(path, ".json")) return true;
  if (ends_with(path, ".safetensors")) return false;
  if (size > 8 && data[8] == '{') {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n <= size - 8) return false;
  }
  for (size_t i = 0; i < size; ++i) {
    const uint8_t c = data[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{' || c == '[';
  }
  return false;
}

}  // namespace lm
