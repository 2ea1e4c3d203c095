#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <regex>
#include <string>

#include "core/error.h"
#include "core/regex.h"

namespace lm {
namespace {

std::string usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
    return e.what();
  }
  return "";
}

TEST(Regex, MatchesAndFormatsAsStdRegexDid) {
  // What the rules and layout tables rely on, checked against std::regex on short names.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"(^layers\.(\d+)\.)", "blk.$1."},  {R"((.*)\.w1\.weight)", "$1.x"}, {"a", "[$&]"}, {".*", "x"},
      {"", "-"},                           {"b*", "<$&>"},                    {"(a)|(b)", "$2$1"},
      {"o", "$`|$'"},                      {"l(a)", "$$1 $11 $01 $9"},        {R"(\.)", "$"},
  };
  for (const std::string name : {"layers.12.attention.wq.weight", "model.w1.weight", "banana", "", "abba"}) {
    for (const auto& [pattern, fmt] : cases) {
      const Regex re(pattern);
      const std::regex ref(pattern);
      EXPECT_EQ(re.search(name), std::regex_search(name, ref)) << pattern << " on " << name;
      EXPECT_EQ(re.full_match(name), std::regex_match(name, ref)) << pattern << " on " << name;
      Regex::Match m;
      std::smatch sm;
      if (re.full_match(name, &m) && std::regex_match(name, sm, ref)) {
        EXPECT_EQ(Regex::format(m, fmt), sm.format(fmt));
      }
    }
  }
  // replace_all is sed's s///g; an empty match right after a match is skipped.
  EXPECT_EQ(Regex(".*").replace_all("ab", "x"), "x");
  EXPECT_EQ(Regex("b*").replace_all("abba", "<$&>"), "<>a<bb>a<>");
  EXPECT_EQ(Regex("").replace_all("ab", "-"), "-a-b-");
  EXPECT_EQ(Regex(R"(^layers\.(\d+)\.)").replace_all("layers.3.w", "blk.$1."), "blk.3.w");
  EXPECT_EQ(Regex("a$").replace_all("aa\n", "x"), "aa\n");  // '$' is the very end only
  EXPECT_TRUE(Regex("size", true).full_match("SiZe"));
}

TEST(Regex, BadPatternsAreUsageErrors) {
  EXPECT_EQ(usage_error([] { Regex("(x"); }).rfind("invalid regular expression '(x' (", 0), 0u);
  // A repeat count std::regex overflowed a long on (undefined behaviour, found by fuzzing the rules).
  EXPECT_NE(usage_error([] { Regex("a{99999999999999999999}"); }), "");
  // So did a backreference number (tests/fuzz/seeds/fuzz_rules/ub_backref_overflow.json).
  EXPECT_NE(usage_error([] { Regex("^liyebs\\99999999999999999999\\d+)\\."); }), "");
  // PCRE2 reads a number too large for a group as the digits themselves; a small one is refused.
  EXPECT_TRUE(Regex("(a)\\99999999999999999999").full_match("a99999999999999999999"));
  EXPECT_NE(usage_error([] { Regex("(a)\\9"); }), "");
}

TEST(Regex, LongNamesAndPathologicalPatternsEndWithinBounds) {
  // std::regex recursed once per character: a 300 kB tensor name overflowed the stack.
  const std::string name = "layers." + std::string(300'000, '0') + ".attention.wq.weight";
  Regex::Match m;
  ASSERT_TRUE(Regex(R"(layers\.(\d+)\.(.*))").full_match(name, &m));
  EXPECT_EQ(m.group(1).size(), 300'000u);
  // Catastrophic backtracking (a fuzzed rule "(.**)" never finished) stops at the work limit.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string err = usage_error([] { Regex("(a*)*[bc]").search(std::string(40, 'a') + "!"); });
  EXPECT_NE(err.find("match limit"), std::string::npos) << err;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

}  // namespace
}  // namespace lm
