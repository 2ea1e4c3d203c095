#include "tokenizer/hf_bpe.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "tokenizer/utf8.h"
#include "tokenizer/word_cache.h"

namespace lm {

using json = nlohmann::json;

namespace hf {

uint32_t byte_to_unicode(uint8_t b) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    std::array<bool, 256> direct{};
    for (int c = '!'; c <= '~'; ++c) direct[c] = true;
    for (int c = 0xA1; c <= 0xAC; ++c) direct[c] = true;
    for (int c = 0xAE; c <= 0xFF; ++c) direct[c] = true;
    uint32_t n = 0;
    for (int c = 0; c < 256; ++c) t[c] = direct[c] ? static_cast<uint32_t>(c) : 256 + n++;
    return t;
  }();
  return table[b];
}

}  // namespace hf

namespace {

// What the loader pulls out of the JSON while it is parsed, instead of building a
// document of a quarter million entries: model.vocab and model.merges.
struct Captured {
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string bad;  // the first structural problem seen in them
  std::string duplicate;
};

// A SAX handler that builds the document except model.vocab and model.merges, which go
// straight into `cap`, and catches duplicate keys (nlohmann's parser keeps the last).
class TokenizerSax final : public nlohmann::json_sax<json> {
 public:
  TokenizerSax(json& root, Captured& cap) : root_(root), cap_(cap) {}

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool binary(binary_t&) override { return value(json(nullptr)); }
  bool string(string_t& v) override {
    if (mode_ == Mode::Merges) return merge_string(v);
    if (mode_ == Mode::MergePair) {
      pair_.push_back(std::move(v));
      return true;
    }
    return value(json(std::move(v)));
  }
  bool start_object(std::size_t) override { return open(false); }
  bool start_array(std::size_t) override { return open(true); }
  bool key(string_t& k) override {
    if (mode_ != Mode::Normal) {
      key_ = std::move(k);
      return true;
    }
    json* obj = stack_.back();
    if (obj->contains(k) && cap_.duplicate.empty()) cap_.duplicate = path() + k;
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = "not valid JSON: " + json_error_text(e);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  enum class Mode { Normal, Vocab, Merges, MergePair, Skip };

  std::string path() const {
    std::string p;
    for (size_t i = 1; i < names_.size(); ++i) p += names_[i] + ".";
    return p;
  }
  void bad(const std::string& what) {
    if (cap_.bad.empty()) cap_.bad = what;
  }
  bool merge_string(const std::string& m) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
      bad(cat("model.merges[", cap_.merges.size(), "] ", quote(m), ": expected two tokens separated by one space"));
    cap_.merges.emplace_back(m.substr(0, sp), sp == std::string::npos ? std::string() : m.substr(sp + 1));
    return true;
  }
  bool value(json v) {
    switch (mode_) {
      case Mode::Vocab:
        if (!v.is_number_integer()) {
          bad(cat("model.vocab ", quote(key_), ": expected an integer id, got ", v.type_name()));
          cap_.vocab.emplace_back(std::move(key_), -1);
        } else {
          cap_.vocab.emplace_back(std::move(key_), v.get<int64_t>());
        }
        return true;
      case Mode::Merges:
        bad(cat("model.merges[", cap_.merges.size(), "]: expected a string or a pair"));
        cap_.merges.emplace_back();
        return true;
      case Mode::MergePair:
        bad(cat("model.merges[", cap_.merges.size(), "]: expected two strings"));
        pair_.emplace_back();
        return true;
      case Mode::Skip: return true;
      case Mode::Normal: break;
    }
    if (stack_.empty()) {
      root_ = std::move(v);
      return true;
    }
    json* parent = stack_.back();
    if (parent->is_array()) parent->push_back(std::move(v));
    else (*parent)[key_] = std::move(v);
    return true;
  }
  bool open(bool array) {
    if (modes_.size() >= kMaxJsonDepth) {  // the stacks below grow with depth: 10^7 levels took 1.15 GB
      error_ = json_depth_message();
      return false;
    }
    const std::string name = stack_.empty() || !stack_.back() ? "" : stack_.back()->is_array() ? "[]" : key_;
    modes_.push_back(mode_);
    names_.push_back(name);
    if (mode_ == Mode::Normal) {
      const bool vocab = !array && names_.size() == 3 && names_[1] == "model" && name == "vocab";
      const bool merges = array && names_.size() == 3 && names_[1] == "model" && name == "merges";
      if (vocab || merges) {
        mode_ = vocab ? Mode::Vocab : Mode::Merges;
        (*stack_.back())[name] = nullptr;  // the key was there (for duplicates and "merges" checks)
        stack_.push_back(nullptr);
        return true;
      }
      json v = array ? json::array() : json::object();
      json* slot;
      if (stack_.empty()) {
        root_ = std::move(v);
        slot = &root_;
      } else if (stack_.back()->is_array()) {
        stack_.back()->push_back(std::move(v));
        slot = &stack_.back()->back();
      } else {
        slot = &((*stack_.back())[key_] = std::move(v));
      }
      stack_.push_back(slot);
      return true;
    }
    if (mode_ == Mode::Merges && array) {
      mode_ = Mode::MergePair;
      pair_.clear();
    } else {
      if (mode_ == Mode::Vocab) bad(cat("model.vocab ", quote(key_), ": expected an integer id, got an ", array ? "array" : "object"));
      if (mode_ == Mode::Merges) bad(cat("model.merges[", cap_.merges.size(), "]: expected a string or a pair"));
      if (mode_ == Mode::MergePair) bad(cat("model.merges[", cap_.merges.size(), "]: expected two strings"));
      mode_ = Mode::Skip;
    }
    stack_.push_back(nullptr);
    return true;
  }
  bool close() {
    if (mode_ == Mode::MergePair) {
      if (pair_.size() != 2) bad(cat("model.merges[", cap_.merges.size(), "]: expected two strings, got ", pair_.size()));
      pair_.resize(2);
      cap_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
    }
    mode_ = modes_.back();
    modes_.pop_back();
    names_.pop_back();
    stack_.pop_back();
    return true;
  }

  json& root_;
  Captured& cap_;
  std::vector<json*> stack_;  // containers being built (null inside vocab and merges)
  std::vector<Mode> modes_;
  std::vector<std::string> names_;
  Mode mode_ = Mode::Normal;
  std::string key_;
  std::vector<std::string> pair_;
  std::string error_;
};

json parse_tokenizer_json(std::string_view text, const std::string& q, Captured& cap) {
  json doc;
  TokenizerSax sax(doc, cap);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax);
  if (!ok || !sax.error().empty()) fail_data(cat(q, ": ", sax.error()));
  if (!cap.duplicate.empty()) fail_data(cat(q, ": duplicate key ", quote(cap.duplicate)));
  if (!cap.bad.empty()) fail_data(cat(q, ": ", cap.bad));
  return doc;
}

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool bool_member(const json& obj, const char* key, bool def, const std::string& q, const std::string& where) {
  const json* v = member(obj, key);
  if (!v) return def;
  if (!v->is_boolean()) fail_data(cat(q, ": ", where, key, ": expected true or false, got ", v->type_name()));
  return v->get<bool>();
}

std::string string_member(const json& obj, const char* key, const std::string& q, const std::string& where) {
  const json* v = member(obj, key);
  if (!v) return {};
  if (!v->is_string()) fail_data(cat(q, ": ", where, key, ": expected a string, got ", v->type_name()));
  return v->get<std::string>();
}

[[noreturn]] void unsupported(const std::string& q, const std::string& what) {
  fail(ErrorKind::Unsupported, cat(q, ": unsupported tokenizer.json: ", what));
}

std::string escape_regex(const std::string& s) {  // a "String" split pattern as a regex
  std::string out;
  for (char c : s) {
    if (std::strchr("\\^$.|?*+()[]{}/-", c) && c != '\0') out += '\\';
    out += c;
  }
  return out;
}

hf::PreTokenizerStep parse_step(const json& j, const std::string& q, const std::string& where) {
  const std::string type = string_member(j, "type", q, where);
  hf::PreTokenizerStep s;
  if (type == "ByteLevel") {
    s.kind = hf::PreTokenizerStep::ByteLevel;
    s.add_prefix_space = bool_member(j, "add_prefix_space", false, q, where);
    s.use_regex = bool_member(j, "use_regex", true, q, where);
    return s;
  }
  if (type == "Split") {
    s.kind = hf::PreTokenizerStep::Split;
    const json* pattern = member(j, "pattern");
    if (!pattern || !pattern->is_object()) fail_data(cat(q, ": ", where, "pattern: expected an object"));
    const std::string regex = string_member(*pattern, "Regex", q, where + "pattern.");
    const std::string str = string_member(*pattern, "String", q, where + "pattern.");
    if (!regex.empty()) s.pattern = regex;
    else if (!str.empty()) s.pattern = escape_regex(str);
    else fail_data(cat(q, ": ", where, "pattern: expected a Regex or a String"));
    const std::string behavior = string_member(j, "behavior", q, where);
    if (behavior != "Isolated") unsupported(q, cat("Split behavior ", quote(behavior), " (lmkit supports Isolated)"));
    if (bool_member(j, "invert", false, q, where)) unsupported(q, "an inverted Split pattern");
    return s;
  }
  unsupported(q, cat("pre-tokenizer ", quote(type.empty() ? std::string("?") : type)));
}

std::string token_content(const json& v) {  // "<s>" or {"content": "<s>", ...} in tokenizer_config.json
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

}  // namespace

struct HfLoader {
  static void load(HfBpeTokenizer& t, std::string_view text, std::string_view config, const std::string& name) {
    const std::string q = quote(name);
    Captured cap;
    const json doc = parse_tokenizer_json(text, q, cap);
    if (!doc.is_object()) fail_data(cat(q, ": not a tokenizer.json (expected a JSON object)"));
    const json* model = member(doc, "model");
    if (!model || !model->is_object()) fail_data(cat(q, ": not a tokenizer.json (no \"model\" object)"));
    std::string type = string_member(*model, "type", q, "model.");
    if (type.empty() && model->contains("merges")) type = "BPE";
    if (type != "BPE")
      unsupported(q, cat("model type ", quote(type.empty() ? std::string("?") : type), " (lmkit reads BPE models)"));
    if (bool_member(*model, "byte_fallback", false, q, "model.")) unsupported(q, "byte_fallback BPE (lmkit reads byte-level BPE)");
    if (!string_member(*model, "continuing_subword_prefix", q, "model.").empty())
      unsupported(q, "a continuing_subword_prefix");
    if (!string_member(*model, "end_of_word_suffix", q, "model.").empty()) unsupported(q, "an end_of_word_suffix");
    if (const json* d = member(*model, "dropout"); d && !(d->is_number() && d->get<double>() == 0.0))
      unsupported(q, "BPE dropout");
    t.ignore_merges_ = bool_member(*model, "ignore_merges", false, q, "model.");
    if (cap.vocab.empty()) fail_data(cat(q, ": model.vocab is missing or empty"));

    if (const json* n = member(doc, "normalizer"))
      unsupported(q, cat("normalizer ", quote(n->is_object() ? n->value("type", std::string("?")) : std::string("?"))));
    const json* pre = member(doc, "pre_tokenizer");
    if (!pre) unsupported(q, "no pre_tokenizer (lmkit reads byte-level BPE)");
    if (string_member(*pre, "type", q, "pre_tokenizer.") == "Sequence") {
      const json* list = member(*pre, "pretokenizers");
      if (!list || !list->is_array()) fail_data(cat(q, ": pre_tokenizer.pretokenizers: expected an array"));
      for (size_t i = 0; i < list->size(); ++i)
        t.steps_.push_back(parse_step((*list)[i], q, cat("pre_tokenizer.pretokenizers[", i, "].")));
    } else {
      t.steps_.push_back(parse_step(*pre, q, "pre_tokenizer."));
    }
    if (t.steps_.empty() || t.steps_.back().kind != hf::PreTokenizerStep::ByteLevel)
      unsupported(q, "a pre_tokenizer that does not end with ByteLevel");
    for (size_t i = 0; i + 1 < t.steps_.size(); ++i)
      if (t.steps_[i].kind == hf::PreTokenizerStep::ByteLevel) unsupported(q, "ByteLevel before other pre-tokenizers");
    const json* dec = member(doc, "decoder");
    const std::string dec_type = dec ? string_member(*dec, "type", q, "decoder.") : std::string("none");
    if (dec_type != "ByteLevel") unsupported(q, cat("decoder ", quote(dec_type), " (lmkit decodes ByteLevel)"));

    // Vocabulary.
    int64_t max_id = -1;
    for (const auto& [tok, id] : cap.vocab) {
      if (id < 0 || id >= int64_t{tokstream::kMaxRecordTokens})
        fail_data(cat(q, ": model.vocab ", quote(tok), ": id ", id, " is out of range"));
      max_id = std::max(max_id, id);
    }
    std::vector<hf::AddedToken> added;
    if (const json* list = member(doc, "added_tokens")) {
      if (!list->is_array()) fail_data(cat(q, ": added_tokens: expected an array"));
      for (size_t i = 0; i < list->size(); ++i) {
        const json& a = (*list)[i];
        const std::string where = cat("added_tokens[", i, "].");
        const json* id = member(a, "id");
        if (!id || !id->is_number_integer() || id->get<int64_t>() < 0 ||
            id->get<int64_t>() >= int64_t{tokstream::kMaxRecordTokens})
          fail_data(cat(q, ": ", where, "id: expected an id"));
        hf::AddedToken tok;
        tok.id = static_cast<uint32_t>(id->get<int64_t>());
        tok.content = string_member(a, "content", q, where);
        if (tok.content.empty()) fail_data(cat(q, ": ", where, "content: expected a non-empty string"));
        tok.special = bool_member(a, "special", false, q, where);
        tok.lstrip = bool_member(a, "lstrip", false, q, where);
        tok.rstrip = bool_member(a, "rstrip", false, q, where);
        max_id = std::max<int64_t>(max_id, tok.id);
        added.push_back(std::move(tok));
      }
    }
    const size_t V = static_cast<size_t>(max_id + 1);
    const size_t defined = cap.vocab.size() + added.size();
    if (V > 2 * defined + 1024)  // a file with a few huge ids would make this many empty slots
      fail_data(cat(q, ": ids go up to ", max_id, " for only ", defined, " tokens"));
    t.bytes_.assign(V, {});
    t.text_.assign(V, {});
    t.kind_.assign(V, 0);
    int16_t inverse[512];  // byte-level character (all below U+0200) -> byte, or -1
    std::fill(std::begin(inverse), std::end(inverse), int16_t{-1});
    for (int b = 0; b < 256; ++b) inverse[hf::byte_to_unicode(static_cast<uint8_t>(b))] = static_cast<int16_t>(b);
    for (auto& [tok, id64] : cap.vocab) {
      const uint32_t id = static_cast<uint32_t>(id64);
      if (t.kind_[id]) fail_data(cat(q, ": model.vocab: id ", id, " is given to both ", quote(t.text_[id]), " and ", quote(tok)));
      t.kind_[id] = 1;
      std::string& bytes = t.bytes_[id];
      bool mapped = true;
      for (size_t i = 0; i < tok.size();) {
        bool valid;
        const size_t k = utf8::spm_char(reinterpret_cast<const uint8_t*>(tok.data()) + i, tok.size() - i, &valid);
        size_t j = i;
        const uint32_t cp = valid ? utf8::next_code_point(tok, j) : 0xFFFFFFFFu;
        if (cp >= 512 || inverse[cp] < 0) {
          mapped = false;
          break;
        }
        bytes += static_cast<char>(inverse[cp]);
        i += k;
      }
      if (!mapped) {
        bytes = tok;
        t.kind_[id] = 4;  // (for now) a token byte-level BPE cannot reach
      }
      t.text_[id] = std::move(tok);
    }
    StringIdMap by_text;  // keys in text_, which no longer moves
    by_text.reserve(cap.vocab.size());
    for (size_t id = 0; id < V; ++id)
      if (t.kind_[id] && !by_text.insert(t.text_[id], static_cast<uint32_t>(id)))
        fail_data(cat(q, ": duplicate key ", quote("model.vocab." + t.text_[id])));
    t.by_bytes_.reserve(cap.vocab.size());
    for (size_t id = 0; id < V; ++id) {  // keys point into bytes_, which no longer moves
      if (t.kind_[id] == 4) t.kind_[id] = 1;
      else if (t.kind_[id] == 1) t.by_bytes_.insert(t.bytes_[id], static_cast<uint32_t>(id));
    }
    for (int b = 0; b < 256; ++b) {
      const char byte = static_cast<char>(b);
      const uint32_t* id = t.by_bytes_.find(std::string_view(&byte, 1));
      if (!id)
        fail_data(cat(q, ": model.vocab has no token for byte 0x", "0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15],
                      " (not a byte-level vocabulary)"));
      t.byte_token_[b] = *id;
    }
    // Merges: rank by position, the last of duplicates wins (as transformers.js's Map).
    t.merges_.reserve(cap.merges.size());
    std::string ab;
    for (size_t r = 0; r < cap.merges.size(); ++r) {
      const auto& [a, b] = cap.merges[r];
      ab.assign(a).append(b);
      const uint32_t *ia = by_text.find(a), *ib = by_text.find(b), *im = by_text.find(ab);
      if (!ia || !ib || !im)
        fail_data(cat(q, ": model.merges[", r, "] ", quote(a + " " + b), ": ", quote(!ia ? a : !ib ? b : ab),
                      " is not in the vocabulary"));
      t.merges_[(uint64_t{*ia} << 32) | *ib] = {static_cast<uint32_t>(r), *im};
    }
    // Added tokens.
    for (auto& a : added) {
      if (t.kind_[a.id] == 1 && t.text_[a.id] != a.content)
        fail_data(cat(q, ": added token ", quote(a.content), " has id ", a.id, " of vocabulary token ", quote(t.text_[a.id])));
      if (t.kind_[a.id] >= 2) fail_data(cat(q, ": added_tokens: id ", a.id, " is given twice"));
      t.kind_[a.id] = a.special ? 3 : 2;
      t.bytes_[a.id] = a.content;
      t.text_[a.id] = a.content;
      t.strip_added_ = t.strip_added_ || a.lstrip || a.rstrip;
    }
    t.added_ = std::move(added);
    t.trie_.emplace_back();
    t.trie_token_.push_back(-1);
    for (size_t i = 0; i < t.added_.size(); ++i) {
      uint32_t node = 0;
      for (char c : t.added_[i].content) {
        const uint8_t b = static_cast<uint8_t>(c);
        const auto it = t.trie_[node].find(b);
        if (it != t.trie_[node].end()) {
          node = it->second;
        } else {
          const uint32_t next = static_cast<uint32_t>(t.trie_.size());
          t.trie_[node].emplace(b, next);
          t.trie_.emplace_back();
          t.trie_token_.push_back(-1);
          node = next;
        }
      }
      t.trie_token_[node] = static_cast<int32_t>(i);  // a later duplicate content wins, as in a Map
      t.added_first_byte_[static_cast<uint8_t>(t.added_[i].content[0])] = true;
    }

    // Split patterns.
    bool known = true;
    for (const auto& s : t.steps_) {
      if (s.kind == hf::PreTokenizerStep::Split) {
        t.regexes_.push_back(std::make_unique<SplitRegex>(s.pattern, q));
        known = known && (s.pattern == hf::kLlama3Pattern || s.pattern == hf::kGpt2Pattern);
      } else if (s.use_regex) {
        t.regexes_.push_back(std::make_unique<SplitRegex>(hf::kGpt2Pattern, q));
      }
    }
    bool letter_space_in_added = false;
    for (const auto& a : t.added_)
      for (size_t i = 0; i + 1 < a.content.size(); ++i)
        if (std::isalpha(static_cast<unsigned char>(a.content[i])) && a.content[i + 1] == ' ') letter_space_in_added = true;
    t.cut_letter_space_ = known && !letter_space_in_added && !t.strip_added_;

    // Identity.
    t.spec_.kind = TokenizerKind::HfBpe;
    t.spec_.vocab_size = static_cast<uint32_t>(V);
    auto id_of = [&](const std::string& content) -> int32_t {
      if (content.empty()) return -1;
      for (const auto& a : t.added_)
        if (a.content == content) return static_cast<int32_t>(a.id);
      const uint32_t* id = by_text.find(content);
      return id ? static_cast<int32_t>(*id) : -1;
    };
    std::string bos, eos, pad;
    bool from_config = false;
    if (!config.empty()) {
      const json c = parse_json_strict(config, cat(q, ": its tokenizer_config.json: "));
      if (c.is_object()) {
        from_config = true;
        if (c.contains("bos_token")) bos = token_content(c["bos_token"]);
        if (c.contains("eos_token")) eos = token_content(c["eos_token"]);
        if (c.contains("pad_token")) pad = token_content(c["pad_token"]);
      }
    }
    if (!from_config) {
      if (const json* pp = member(doc, "post_processor"); pp && pp->value("type", std::string()) == "TemplateProcessing") {
        const json* single = member(*pp, "single");
        if (single && single->is_array() && !single->empty() && (*single)[0].contains("SpecialToken"))
          bos = (*single)[0]["SpecialToken"].value("id", std::string());
      }
      for (const char* name : {"<|begin_of_text|>", "<s>", "<|endoftext|>"})
        if (bos.empty() && id_of(name) >= 0) bos = name;
      for (const char* name : {"<|end_of_text|>", "</s>", "<|endoftext|>"})
        if (eos.empty() && id_of(name) >= 0) eos = name;
    }
    t.spec_.bos_id = id_of(bos);
    t.spec_.eos_id = id_of(eos);
    t.spec_.pad_id = id_of(pad);
    t.spec_.unk_id = id_of(string_member(*model, "unk_token", q, "model."));

    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](const void* p, size_t n) {
      const auto* b = static_cast<const uint8_t*>(p);
      for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    };
    static constexpr char kTag[] = "lmkit-hf-bpe-v1\n";
    mix(kTag, sizeof(kTag) - 1);
    for (size_t i = 0; i < V; ++i) {
      const uint32_t len = static_cast<uint32_t>(t.text_[i].size());
      const uint8_t le[4] = {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len >> 16),
                             static_cast<uint8_t>(len >> 24)};
      mix(&t.kind_[i], 1);
      mix(le, 4);
      mix(t.text_[i].data(), t.text_[i].size());
    }
    t.spec_.fingerprint = h;
  }
};

HfBpeTokenizer::~HfBpeTokenizer() = default;

std::vector<std::pair<uint32_t, uint32_t>> HfBpeTokenizer::merges_by_rank() const {
  std::vector<std::pair<uint32_t, std::pair<uint32_t, uint32_t>>> ranked;
  ranked.reserve(merges_.size());
  merges_.for_each([&](uint64_t key, const Merge& m) {
    ranked.push_back({m.rank, {static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(key)}});
  });
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::pair<uint32_t, uint32_t>> out;
  out.reserve(ranked.size());
  for (const auto& r : ranked) out.push_back(r.second);
  return out;
}

std::unique_ptr<HfBpeTokenizer> HfBpeTokenizer::from_json(std::string_view json_text, std::string_view config,
                                                          const std::string& name) {
  std::unique_ptr<HfBpeTokenizer> t(new HfBpeTokenizer());
  HfLoader::load(*t, json_text, config, name);
  return t;
}

std::unique_ptr<HfBpeTokenizer> HfBpeTokenizer::load(const std::string& path) {
  const auto f = MappedFile::open(path);
  std::string config;
  if (path != "-") {
    const auto cfg = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    std::error_code ec;
    if (std::filesystem::is_regular_file(cfg, ec)) config = read_text_file(cfg.string());
  }
  return from_json(std::string_view(reinterpret_cast<const char*>(f->data()), f->size()), config, f->path());
}

// ---------------------------------------------------------------- preparing and cutting

namespace {
class Sanitizer final : public TextTokenizer::Preparer {
 public:
  void reset() override {}
  size_t prepare(const uint8_t* raw, size_t n, bool last, std::string& out) override {
    return utf8::whatwg_sanitize(raw, n, last, out);
  }
};
}  // namespace

std::unique_ptr<TextTokenizer::Preparer> HfBpeTokenizer::make_preparer() const { return std::make_unique<Sanitizer>(); }

size_t HfBpeTokenizer::last_cut(std::string_view text, size_t from) const {
  if (!cut_letter_space_) return 0;
  for (size_t c = text.size() - 1; c > 0 && c >= from; --c)
    if (text[c] == ' ' && std::isalpha(static_cast<unsigned char>(text[c - 1]))) return c;
  return 0;
}

// ---------------------------------------------------------------- encoding

class HfBpeTokenizer::Enc final : public TextTokenizer::Encoder {
 public:
  explicit Enc(const HfBpeTokenizer& t) : t_(t) {
    for (const auto& re : t.regexes_) matchers_.push_back(std::make_unique<SplitRegex::Matcher>(*re));
  }

  void encode(std::string_view text, std::vector<uint32_t>& out) override {
    // Sections: the text between added tokens, and the added tokens.
    sections_.clear();
    size_t start = 0, i = 0;
    const size_t n = text.size();
    while (i < n) {
      if (!t_.added_first_byte_[static_cast<uint8_t>(text[i])]) {
        ++i;
        continue;
      }
      uint32_t node = 0;
      int32_t match = -1;
      size_t match_len = 0;
      for (size_t j = i; j < n; ++j) {
        const auto it = t_.trie_[node].find(static_cast<uint8_t>(text[j]));
        if (it == t_.trie_[node].end()) break;
        node = it->second;
        if (t_.trie_token_[node] >= 0) {
          match = t_.trie_token_[node];
          match_len = j + 1 - i;
        }
      }
      if (match < 0) {
        ++i;
        continue;
      }
      if (i > start) sections_.push_back({text.substr(start, i - start), -1});
      sections_.push_back({text.substr(i, match_len), match});
      i += match_len;
      start = i;
    }
    if (start < n) sections_.push_back({text.substr(start), -1});
    if (t_.strip_added_) strip();
    for (const Section& s : sections_) {
      if (s.added >= 0) {
        out.push_back(t_.added_[static_cast<size_t>(s.added)].id);
      } else if (!s.text.empty()) {
        section(s.text, out);
      }
    }
  }

 private:
  struct Section {
    std::string_view text;
    int32_t added;
  };

  static size_t trim_start(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      if (!js_is_space(utf8::next_code_point(s, j))) break;
      i = j;
    }
    return i;
  }
  static size_t trim_end(std::string_view s) {  // the length without trailing white space
    size_t e = s.size();
    while (e > 0) {
      const size_t p = utf8::prev_char_start(s, e);
      size_t j = p;
      if (!js_is_space(utf8::next_code_point(s, j))) break;
      e = p;
    }
    return e;
  }
  void strip() {
    for (size_t i = 0; i < sections_.size(); ++i) {
      if (sections_[i].added < 0) continue;
      const auto& a = t_.added_[static_cast<size_t>(sections_[i].added)];
      if (a.lstrip && i > 0 && sections_[i - 1].added < 0)
        sections_[i - 1].text = sections_[i - 1].text.substr(0, trim_end(sections_[i - 1].text));
      if (a.rstrip && i + 1 < sections_.size() && sections_[i + 1].added < 0)
        sections_[i + 1].text.remove_prefix(trim_start(sections_[i + 1].text));
    }
  }

  void section(std::string_view text, std::vector<uint32_t>& out) {
    pieces_.clear();
    pieces_.push_back(text);
    scratch_.clear();
    size_t m = 0;
    for (const auto& step : t_.steps_) {
      if (step.kind == hf::PreTokenizerStep::ByteLevel && step.add_prefix_space) {
        for (auto& p : pieces_) {
          if (!p.empty() && p[0] == ' ') continue;
          scratch_.emplace_back(" " + std::string(p));
          p = scratch_.back();
        }
      }
      // Split keeps the text between matches (Isolated); ByteLevel keeps only the matches
      // (String.prototype.match), but GPT-2's pattern matches every character, so there
      // is never text between its matches.
      if (step.kind == hf::PreTokenizerStep::Split || step.use_regex) {
        next_.clear();
        SplitRegex::Matcher& matcher = *matchers_[m++];
        for (std::string_view p : pieces_) {
          spans_.clear();
          matcher.split(p, spans_);
          for (const auto& [o, l] : spans_) next_.push_back(p.substr(o, l));
        }
        pieces_.swap(next_);
      }
    }
    for (std::string_view p : pieces_) word(p, out);
  }

  void word(std::string_view w, std::vector<uint32_t>& out) {
    if (w.empty()) return;
    cache_.encode(w, out, [this](std::string_view piece, std::vector<uint32_t>& to) { bpe(piece, to); });
  }

  struct Sym {
    uint32_t id;
    int prev, next;
  };
  struct Cand {
    uint32_t rank;
    int left;
    uint32_t left_id, right_id;
  };
  struct Worse {  // the lowest rank first, then the leftmost
    bool operator()(const Cand& a, const Cand& b) const { return a.rank > b.rank || (a.rank == b.rank && a.left > b.left); }
  };

  void push(int left) {
    const int right = sym_[left].next;
    if (right < 0) return;
    const Merge* m = t_.merges_.find((uint64_t{sym_[left].id} << 32) | sym_[right].id);
    if (!m) return;
    heap_.push({m->rank, left, sym_[left].id, sym_[right].id});
  }

  void bpe(std::string_view w, std::vector<uint32_t>& out) {
    if (t_.ignore_merges_) {
      if (const uint32_t* id = t_.by_bytes_.find(w)) {
        out.push_back(*id);
        return;
      }
    }
    sym_.clear();
    for (size_t i = 0; i < w.size(); ++i)
      sym_.push_back({t_.byte_token_[static_cast<uint8_t>(w[i])], static_cast<int>(i) - 1,
                      i + 1 < w.size() ? static_cast<int>(i + 1) : -1});
    for (size_t i = 0; i + 1 < sym_.size(); ++i) push(static_cast<int>(i));
    while (!heap_.empty()) {
      const Cand c = heap_.top();
      heap_.pop();
      Sym& l = sym_[c.left];
      if (l.id != c.left_id || l.next < 0) continue;  // stale: the left symbol was merged
      Sym& r = sym_[l.next];
      if (r.id != c.right_id) continue;  // stale: the right symbol was merged
      l.id = t_.merges_.find((uint64_t{c.left_id} << 32) | c.right_id)->id;
      l.next = r.next;
      if (r.next >= 0) sym_[r.next].prev = c.left;
      r.id = UINT32_MAX;  // gone
      if (l.prev >= 0) push(l.prev);
      push(c.left);
    }
    for (int i = 0; i != -1; i = sym_[i].next) out.push_back(sym_[i].id);
  }

  const HfBpeTokenizer& t_;
  std::vector<std::unique_ptr<SplitRegex::Matcher>> matchers_;
  std::vector<Section> sections_;
  std::vector<std::string_view> pieces_, next_;
  std::deque<std::string> scratch_;
  std::vector<std::pair<size_t, size_t>> spans_;
  WordCache cache_;
  std::vector<Sym> sym_;
  std::priority_queue<Cand, std::vector<Cand>, Worse> heap_;
};

std::unique_ptr<TextTokenizer::Encoder> HfBpeTokenizer::make_encoder() const { return std::make_unique<Enc>(*this); }

// ---------------------------------------------------------------- decoding

size_t HfBpeTokenizer::decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t id = tokens[i];
    if (id >= kind_.size() || kind_[id] == 0) return i;
    const int32_t sid = static_cast<int32_t>(id);
    if (sid == spec_.bos_id || sid == spec_.eos_id || sid == spec_.pad_id) continue;
    out.insert(out.end(), bytes_[id].begin(), bytes_[id].end());
  }
  return n;
}

std::string HfBpeTokenizer::describe_token(uint32_t token) const {
  if (token >= kind_.size()) return cat("token ", token, " is outside the vocabulary of ", kind_.size(), " tokens");
  if (kind_[token] == 0) return cat("token ", token, " is not defined by the tokenizer");
  return cat("token ", token, " ", quote(text_[token]));
}

}  // namespace lm
