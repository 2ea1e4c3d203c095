// The pre-tokenizer split patterns of tokenizer.json ("Split" with a "Regex", and the
// GPT-2 pattern of "ByteLevel" with use_regex), matched with PCRE2 (JIT) under the
// semantics of the JavaScript reference (transformers.js, `new RegExp(pattern, "gu")`):
//
//  - \s and \S are ECMAScript white space: U+0009-000D, U+0020, U+00A0, U+1680,
//    U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF. (Hugging Face's Rust
//    library uses Unicode White_Space instead: U+0085 is space there and U+FEFF is not.)
//  - \d, \w and \b are ASCII, as in JavaScript; \p{...} classes are Unicode (PCRE2's
//    Unicode 14 tables).
//  - "(?i:'s|'t|'re|'ve|'m|'ll|'d)" becomes "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))",
//    as transformers.js rewrites it (so U+017F LONG S after an apostrophe is no contraction).
//  - matches are found left to right as String.prototype.matchAll does (after an empty
//    match the search goes on one character later); `split` keeps the text between
//    matches and the matches (the "Isolated" behaviour).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lm {

class SplitRegex {
 public:
  // Compiles `js_pattern`; a pattern PCRE2 rejects is a Data error naming `what` and the offset.
  SplitRegex(const std::string& js_pattern, const std::string& what);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  const std::string& js_pattern() const { return js_; }
  const std::string& pcre2_pattern() const { return pcre_; }

  // Per-thread matching state.
  class Matcher {
   public:
    explicit Matcher(const SplitRegex& re);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // Appends the pieces of `text` (well-formed UTF-8) as (offset, length): the gaps
    // between matches and the non-empty matches, in order.
    void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& out);

   private:
    const SplitRegex& re_;
    void* match_data_ = nullptr;
    void* context_ = nullptr;
    void* jit_stack_ = nullptr;
  };

 private:
  std::string js_, pcre_;
  void* code_ = nullptr;
};

// The JavaScript pattern rewritten for PCRE2 (see above). Throws Unsupported for \S inside
// a character class.
std::string js_regex_to_pcre2(const std::string& js_pattern);

// ECMAScript white space (String.prototype.trim, \s).
bool js_is_space(uint32_t cp);

}  // namespace lm
