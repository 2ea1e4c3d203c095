#include "core/json.h"

#include <vector>

#include "core/error.h"

namespace lm {

using json = nlohmann::json;

namespace {

// Builds the document from nlohmann's SAX events. Unlike json::parse with a callback (whose
// DOM builder scans the whole parent object after every nested object closes: quadratic in a
// safetensors header), each event costs O(log n) at most: a repeated key is found by the
// object's own key map while inserting, and nesting stops at kMaxJsonDepth.
class StrictDomBuilder final : public nlohmann::json_sax<json> {
 public:
  explicit StrictDomBuilder(json& root) : root_(root) {}

  bool null() override { return put(json(nullptr)); }
  bool boolean(bool v) override { return put(json(v)); }
  bool number_integer(number_integer_t v) override { return put(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return put(json(v)); }
  bool string(string_t& v) override { return put(json(std::move(v))); }
  bool binary(binary_t&) override { return put(json(nullptr)); }  // only binary formats have these
  bool start_object(std::size_t) override { return open(json::object()); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    auto& members = *stack_.back()->get_ptr<json::object_t*>();
    const auto [it, inserted] = members.try_emplace(std::move(k));  // k is left intact when present
    if (!inserted) {
      error_ = cat("duplicate key ", quote(key_path(k)));
      return false;
    }
    slot_ = &it->second;
    slot_key_ = &it->first;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = "not valid JSON: " + json_error_text(e);
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  json* place(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      auto& elements = *parent.get_ptr<json::array_t*>();
      elements.push_back(std::move(v));
      return &elements.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  bool put(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& container) {
    if (stack_.size() >= kMaxJsonDepth) {
      error_ = json_depth_message();
      return false;
    }
    const bool in_object = !stack_.empty() && stack_.back()->is_object();
    // Pointers into a parent stay valid while the child is open: only the innermost grows.
    stack_.push_back(place(std::move(container)));
    names_.push_back(in_object ? slot_key_ : nullptr);
    return true;
  }
  bool close() {
    stack_.pop_back();
    names_.pop_back();
    return true;
  }

  // "a.b[2].c" for key `last` in the innermost open object.
  std::string key_path(const std::string& last) const {
    std::string path;
    for (size_t i = 1; i < stack_.size(); ++i) {
      if (names_[i]) {
        if (!path.empty()) path += '.';
        path += *names_[i];
      } else {
        path += cat("[", stack_[i - 1]->size() - 1, "]");  // the open child is the array's last element
      }
    }
    if (!path.empty()) path += '.';
    return path + last;
  }

  json& root_;
  std::vector<json*> stack_;                // open containers, outermost first
  std::vector<const std::string*> names_;   // the key each sits under (null: array element or root)
  json* slot_ = nullptr;                    // where the value of the last key goes
  const std::string* slot_key_ = nullptr;
  std::string error_;
};

}  // namespace

json parse_json_strict(std::string_view text, const std::string& prefix) {
  json doc;
  StrictDomBuilder builder(doc);
  if (!json::sax_parse(text.data(), text.data() + text.size(), &builder)) fail_data(prefix + builder.error());
  return doc;
}

std::string json_error_text(const std::exception& e) {
  const std::string what = e.what();
  const auto pos = what.find("] ");
  return pos == std::string::npos ? what : what.substr(pos + 2);
}

std::string json_depth_message() { return cat("JSON nested deeper than ", kMaxJsonDepth, " levels"); }

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
