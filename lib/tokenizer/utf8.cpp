#include "tokenizer/utf8.h"

namespace lm::utf8 {

namespace {
inline bool trail(uint8_t b) { return (b & 0xC0) == 0x80; }
inline bool valid_cp(uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }
}  // namespace

size_t spm_char(const uint8_t* p, size_t n, bool* valid) {
  const uint8_t b = p[0];
  *valid = true;
  if (b < 0x80) return 1;
  if (n >= 2 && (b & 0xE0) == 0xC0) {
    const uint32_t cp = (uint32_t{b & 0x1Fu} << 6) | (p[1] & 0x3Fu);
    if (trail(p[1]) && cp >= 0x80 && valid_cp(cp)) return 2;
  } else if (n >= 3 && (b & 0xF0) == 0xE0) {
    const uint32_t cp = (uint32_t{b & 0x0Fu} << 12) | (uint32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3Fu);
    if (trail(p[1]) && trail(p[2]) && cp >= 0x800 && valid_cp(cp)) return 3;
  } else if (n >= 4 && (b & 0xF8) == 0xF0) {
    const uint32_t cp = (uint32_t{b & 0x07u} << 18) | (uint32_t{p[1] & 0x3Fu} << 12) |
                        (uint32_t{p[2] & 0x3Fu} << 6) | (p[3] & 0x3Fu);
    if (trail(p[1]) && trail(p[2]) && trail(p[3]) && cp >= 0x10000 && valid_cp(cp)) return 4;
  }
  *valid = false;
  return 1;
}

bool well_formed(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    bool valid = true;
    i += spm_char(p + i, s.size() - i, &valid);
    if (!valid) return false;
  }
  return true;
}

size_t whatwg_sanitize(const uint8_t* raw, size_t n, bool last, std::string& out) {
  size_t i = 0;
  while (i < n) {
    // ASCII runs: the common case, copied in bulk.
    size_t j = i;
    while (j < n && raw[j] < 0x80) ++j;
    if (j > i) {
      out.append(reinterpret_cast<const char*>(raw + i), j - i);
      i = j;
      if (i == n) break;
    }
    const uint8_t b = raw[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {  // 80..C1, F5..FF: never a lead byte
      out += kReplacement;
      ++i;
      continue;
    }
    // Walk the continuation bytes; the first one out of range ends a maximal subpart.
    size_t k = 1;
    bool bad = false;
    for (; k <= need; ++k) {
      if (i + k >= n) break;
      const uint8_t c = raw[i + k];
      const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (c < l || c > h) {
        bad = true;
        break;
      }
    }
    if (!bad && k > need) {  // complete
      out.append(reinterpret_cast<const char*>(raw + i), need + 1);
      i += need + 1;
    } else if (!bad && !last) {  // cut short by the end of this block: wait for more
      return i;
    } else {  // the maximal subpart raw[i, i+k) becomes one U+FFFD; raw[i+k] is read again
      out += kReplacement;
      i += k;
    }
  }
  return i;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace lm::utf8
