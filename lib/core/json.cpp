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

}  // namespace lm
