#include "core/json.h"

#include <type_traits>
#include <unordered_set>
#include <vector>

#include "core/error.h"

namespace lm {

using json = nlohmann::json;

namespace {

// Builds the document from nlohmann's SAX events. Unlike json::parse with a callback (whose
// DOM builder scans the whole parent object after every nested object closes: quadratic in a
// safetensors header), each event costs O(log n) at most: a repeated key is found while
// inserting (by the object's own key map, or for ordered_json, whose objects are vectors, by a
// hash set per open object), and nesting stops at kMaxJsonDepth.
template <class Json>
class StrictDomBuilder final : public nlohmann::json_sax<Json> {
  using Base = nlohmann::json_sax<Json>;
  using typename Base::binary_t;
  using typename Base::number_float_t;
  using typename Base::number_integer_t;
  using typename Base::number_unsigned_t;
  using typename Base::string_t;
  static constexpr bool kOrdered = std::is_same_v<Json, nlohmann::ordered_json>;

 public:
  explicit StrictDomBuilder(Json& root) : root_(root) {}

  bool null() override { return put(Json(nullptr)); }
  bool boolean(bool v) override { return put(Json(v)); }
  bool number_integer(number_integer_t v) override { return put(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(Json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return put(Json(v)); }
  bool string(string_t& v) override { return put(Json(std::move(v))); }
  bool binary(binary_t&) override { return put(Json(nullptr)); }  // only binary formats have these
  bool start_object(std::size_t) override { return open(Json::object()); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    auto& members = *stack_.back()->template get_ptr<typename Json::object_t*>();
    if constexpr (kOrdered) {
      if (!keys_.back().insert(k).second) return duplicate(k);
      members.emplace_back(std::move(k), nullptr);
      slot_ = &members.back().second;
      slot_key_ = &members.back().first;
    } else {
      const auto [it, inserted] = members.try_emplace(std::move(k));  // k is left intact when present
      if (!inserted) return duplicate(k);
      slot_ = &it->second;
      slot_key_ = &it->first;
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = "not valid JSON: " + json_error_text(e);
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool duplicate(const std::string& k) {
    error_ = cat("duplicate key ", quote(key_path(k)));
    return false;
  }
  Json* place(Json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& parent = *stack_.back();
    if (parent.is_array()) {
      auto& elements = *parent.template get_ptr<typename Json::array_t*>();
      elements.push_back(std::move(v));
      return &elements.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  bool put(Json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(Json&& container) {
    if (stack_.size() >= kMaxJsonDepth) {
      error_ = json_depth_message();
      return false;
    }
    const bool in_object = !stack_.empty() && stack_.back()->is_object();
    const bool object = container.is_object();
    // Pointers into a parent stay valid while the child is open: only the innermost grows.
    stack_.push_back(place(std::move(container)));
    names_.push_back(in_object ? slot_key_ : nullptr);
    if constexpr (kOrdered) {
      if (object) keys_.emplace_back();
    }
    return true;
  }
  bool close() {
    if constexpr (kOrdered) {
      if (stack_.back()->is_object()) keys_.pop_back();
    }
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

  Json& root_;
  std::vector<Json*> stack_;                // open containers, outermost first
  std::vector<const std::string*> names_;   // the key each sits under (null: array element or root)
  Json* slot_ = nullptr;                    // where the value of the last key goes
  const std::string* slot_key_ = nullptr;
  std::vector<std::unordered_set<std::string>> keys_;  // ordered_json: the keys of each open object
  std::string error_;
};

template <class Json>
Json parse_strict(std::string_view text, const std::string& prefix) {
  Json doc;
  StrictDomBuilder<Json> builder(doc);
  if (!Json::sax_parse(text.data(), text.data() + text.size(), &builder)) fail_data(prefix + builder.error());
  return doc;
}


}  // namespace

json parse_json_strict(std::string_view text, const std::string& prefix) { return parse_strict<json>(text, prefix); }

nlohmann::ordered_json parse_ordered_json_strict(std::string_view text, const std::string& prefix) {
  return parse_strict<nlohmann::ordered_json>(text, prefix);
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
