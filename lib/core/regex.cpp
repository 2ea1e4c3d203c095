#include "core/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <new>

#include "core/error.h"

namespace lm {

namespace {

// Backtracking steps one match may take: names are short, so a pattern needing more is
// pathological (a real one needs a few thousand at most).
constexpr uint32_t kMatchLimit = 1'000'000;

std::string pcre2_message(int code) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(code, msg, sizeof(msg));
  return reinterpret_cast<const char*>(msg);
}

// Match data and limits, made once per thread and grown as patterns need.
struct Scratch {
  pcre2_match_context* context = nullptr;
  pcre2_match_data* data = nullptr;
  uint32_t pairs = 0;
  Scratch() {
    context = pcre2_match_context_create(nullptr);
    if (!context) throw std::bad_alloc();
    pcre2_set_match_limit(context, kMatchLimit);
  }
  ~Scratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
  }
  pcre2_match_data* data_for(const pcre2_code* code) {
    uint32_t groups = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
    if (!data || pairs < groups + 1) {
      pcre2_match_data_free(data);
      pairs = groups + 1;
      data = pcre2_match_data_create(pairs, nullptr);
      if (!data) throw std::bad_alloc();
    }
    return data;
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

Regex::Regex(const std::string& pattern, bool ignore_case) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_DOLLAR_ENDONLY | (ignore_case ? PCRE2_CASELESS : 0u), &err, &offset, nullptr);
  if (!code)
    fail(ErrorKind::Usage, cat("invalid regular expression ", quote(pattern), " (", pcre2_message(err), " at offset ", offset, ")"));
  code_ = std::shared_ptr<void>(code, [](void* p) { pcre2_code_free(static_cast<pcre2_code*>(p)); });
}

bool Regex::match(std::string_view s, size_t start, unsigned options, Match* m) const {
  const auto* code = static_cast<const pcre2_code*>(code_.get());
  Scratch& sc = scratch();
  pcre2_match_data* data = sc.data_for(code);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, options, data, sc.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    const std::string shown = s.size() > 80 ? std::string(s.substr(0, 77)) + "..." : std::string(s);
    fail(ErrorKind::Usage, cat("regular expression ", quote(pattern_), " on ", quote(shown), ": ", pcre2_message(rc)));
  }
  if (m) {
    uint32_t groups = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
    m->subject = s;
    m->groups.resize(groups + 1);
    for (uint32_t i = 0; i <= groups; ++i) {
      const bool set = i < static_cast<uint32_t>(rc) && ov[2 * i] != PCRE2_UNSET;
      m->groups[i] = set ? std::make_pair(size_t{ov[2 * i]}, size_t{ov[2 * i + 1]})
                         : std::make_pair(std::string::npos, std::string::npos);
    }
  }
  return true;
}

bool Regex::search(std::string_view s) const { return match(s, 0, 0, nullptr); }

bool Regex::full_match(std::string_view s, Match* m) const {
  return match(s, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, m);
}

std::string Regex::Match::group(size_t i) const {
  if (i >= groups.size() || groups[i].first == std::string::npos) return {};
  return std::string(subject.substr(groups[i].first, groups[i].second - groups[i].first));
}

std::string Regex::format(const Match& m, std::string_view fmt) {
  std::string out;
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '$' || i + 1 == fmt.size()) {
      out += fmt[i];
      continue;
    }
    const char c = fmt[i + 1];
    if (c == '$') {
      out += '$';
      ++i;
    } else if (c == '&') {
      out += m.group(0);
      ++i;
    } else if (c == '`') {
      out += m.subject.substr(0, m.groups[0].first);
      ++i;
    } else if (c == '\'') {
      out += m.subject.substr(m.groups[0].second);
      ++i;
    } else if (is_digit(c)) {  // one digit, or two when a second follows (as std::regex formats)
      size_t n = static_cast<size_t>(c - '0');
      i += 1;
      if (i + 1 < fmt.size() && is_digit(fmt[i + 1])) n = n * 10 + static_cast<size_t>(fmt[++i] - '0');
      out += m.group(n);
    } else {
      out += '$';
    }
  }
  return out;
}

std::string Regex::replace_all(std::string_view s, std::string_view fmt) const {
  std::string out;
  size_t last = 0, start = 0;
  bool matched_before = false, after_empty = false;
  Match m;
  while (start <= s.size()) {
    // After an empty match, first try a non-empty one at the same place (as std::regex_iterator).
    if (!match(s, start, after_empty ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0u, &m)) {
      if (!after_empty) break;
      after_empty = false;
      ++start;
      continue;
    }
    const size_t pos = m.groups[0].first, end = m.groups[0].second;
    if (!(pos == end && matched_before && pos == last)) {
      out.append(s.substr(last, pos - last));
      out += format(m, fmt);
      last = end;
      matched_before = true;
    }
    after_empty = pos == end;
    start = end;
  }
  out.append(s.substr(last));
  return out;
}

}  // namespace lm
