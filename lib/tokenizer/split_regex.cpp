#include "tokenizer/split_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <new>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace lm {

namespace {

constexpr const char* kJsSpaceClass =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

}  // namespace

bool js_is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

std::string js_regex_to_pcre2(const std::string& js_pattern) {
  std::string s = js_pattern;
  // transformers.js: PROBLEMATIC_REGEX_MAP (JavaScript has no inline (?i:...) groups)
  replace_all(s, "(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))");
  std::string out;
  out.reserve(s.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      const char e = s[++i];
      if (e == 's') {
        out += in_class ? std::string(kJsSpaceClass) : cat("[", kJsSpaceClass, "]");
      } else if (e == 'S') {
        if (in_class) fail(ErrorKind::Unsupported, "\\S inside a character class is not supported");
        out += cat("[^", kJsSpaceClass, "]");
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

SplitRegex::SplitRegex(const std::string& js_pattern, const std::string& what) : js_(js_pattern) {
  pcre_ = js_regex_to_pcre2(js_pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_.data()), pcre_.size(), PCRE2_UTF, &err, &offset,
                                   nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail_data(cat(what, ": bad split pattern ", quote(js_pattern), ": ", reinterpret_cast<const char*>(msg),
                  " at offset ", offset));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT (unsupported CPU) pcre2_match interprets
  code_ = code;
}

SplitRegex::~SplitRegex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

SplitRegex::Matcher::Matcher(const SplitRegex& re) : re_(re) {
  auto* code = static_cast<pcre2_code*>(re.code_);
  match_data_ = pcre2_match_data_create_from_pattern(code, nullptr);
  auto* ctx = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(ctx, 0xFFFFFFFFu);
  pcre2_set_depth_limit(ctx, 0xFFFFFFFFu);
  auto* stack = pcre2_jit_stack_create(32 << 10, 64 << 20, nullptr);
  if (stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  context_ = ctx;
  jit_stack_ = stack;
  if (!match_data_ || !ctx) throw std::bad_alloc();
}

SplitRegex::Matcher::~Matcher() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  pcre2_match_context_free(static_cast<pcre2_match_context*>(context_));
  if (jit_stack_) pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
}

void SplitRegex::Matcher::split(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) {
  auto* code = static_cast<pcre2_code*>(re_.code_);
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  auto* ctx = static_cast<pcre2_match_context*>(context_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t pos = 0, prev = 0;
  while (pos <= n) {
    const int rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      fail(ErrorKind::Runtime, cat("split pattern ", quote(re_.js_), ": ", reinterpret_cast<const char*>(msg)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t s = ov[0], e = ov[1];
    if (s > prev) out.emplace_back(prev, s - prev);
    if (e > s) out.emplace_back(s, e - s);
    prev = e;
    if (e > s) {
      pos = e;
    } else {  // an empty match: go on one character later (JavaScript's AdvanceStringIndex)
      if (e >= n) break;
      pos = e + utf8::char_len(static_cast<uint8_t>(text[e]));
    }
  }
  if (prev < n) out.emplace_back(prev, n - prev);
}

}  // namespace lm
