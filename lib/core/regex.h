// Regular expressions over names (tensor names, rule patterns, sizes): PCRE2 on bytes. Unlike
// std::regex, whose matcher recurses once per character (a 300 kB tensor name overflowed the
// stack) and backtracks without limit (a rule such as "(.**)x" never finished), PCRE2 keeps
// its backtracking on the heap and stops after a bounded amount of work with an error.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lm {

class Regex {
 public:
  // The syntax of ECMAScript regular expressions as far as names use it (PCRE2 reads a superset;
  // '$' matches only at the very end). A bad pattern throws ErrorKind::Usage:
  // "invalid regular expression 'p' (<why> at offset N)".
  explicit Regex(const std::string& pattern, bool ignore_case = false);

  // The groups of a match, as byte ranges of the subject (npos for a group that took no part).
  struct Match {
    std::string_view subject;
    std::vector<std::pair<size_t, size_t>> groups;
    std::string group(size_t i) const;
  };

  bool search(std::string_view s) const;
  // The whole of `s` matches; fills `m` when given.
  bool full_match(std::string_view s, Match* m = nullptr) const;
  // ECMAScript replacement text for a match: $& (the match), $` and $' (before and after it),
  // $n and $nn (groups; an absent group gives ""), $$ (a '$').
  static std::string format(const Match& m, std::string_view fmt);
  // Every non-overlapping match replaced by format(match, fmt), as sed's s///g; an empty match
  // right after a match is skipped, so ".*" replaces a name once rather than twice.
  std::string replace_all(std::string_view s, std::string_view fmt) const;

  const std::string& pattern() const { return pattern_; }

 private:
  bool match(std::string_view s, size_t start, unsigned options, Match* m) const;
  std::shared_ptr<void> code_;
  std::string pattern_;
};

}  // namespace lm
