// UTF-8 helpers for the text tokenizers, each with the exact rules of the reference
// it serves:
//
//  - spm_char: SentencePiece's DecodeUTF8/IsValidDecodeUTF8 (sentencepiece util.h): a
//    character is 1-4 bytes with trail bytes 10xxxxxx, no overlong forms, no surrogates,
//    at most U+10FFFF; anything else is malformed and SentencePiece replaces ONE byte with
//    U+FFFD and goes on with the next byte.
//  - whatwg_sanitize: the WHATWG Encoding Standard's UTF-8 decoder (what TextDecoder,
//    and so the JavaScript reference of tokenizer.json, does, and what Python's
//    bytes.decode("utf-8", "replace") does): each maximal subpart of an ill-formed
//    sequence becomes one U+FFFD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lm::utf8 {

inline constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// The length of the character at p[0..n) (n >= 1) by SentencePiece's rule, and whether it
// is well formed. A malformed character has length 1 (SentencePiece consumes one byte).
// A well-formed multi-byte character needs all its bytes within n: a sequence cut short
// by n is malformed, so a streaming caller keeps up to 3 bytes back until it knows more.
size_t spm_char(const uint8_t* p, size_t n, bool* valid);

// Appends raw[0..k) to `out` with every ill-formed sequence replaced by U+FFFD (WHATWG
// rule) and returns k. Unless `last`, an incomplete sequence at the end of raw (at most 3
// bytes that could still become a character) is left unconsumed for the next call.
size_t whatwg_sanitize(const uint8_t* raw, size_t n, bool last, std::string& out);

// Whether every character of s is well formed (what a JSON string may hold).
bool well_formed(std::string_view s);

// Code point of the well-formed character starting at s[i]; advances i past it.
inline uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
  const uint8_t b = p[0];
  if (b < 0x80) {
    i += 1;
    return b;
  }
  if (b < 0xE0) {
    i += 2;
    return (uint32_t{b & 0x1Fu} << 6) | (p[1] & 0x3Fu);
  }
  if (b < 0xF0) {
    i += 3;
    return (uint32_t{b & 0x0Fu} << 12) | (uint32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3Fu);
  }
  i += 4;
  return (uint32_t{b & 0x07u} << 18) | (uint32_t{p[1] & 0x3Fu} << 12) | (uint32_t{p[2] & 0x3Fu} << 6) | (p[3] & 0x3Fu);
}

// Start of the character that ends just before s[i] (i > 0) in well-formed UTF-8.
inline size_t prev_char_start(std::string_view s, size_t i) {
  do --i;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80);
  return i;
}

// Length of a well-formed character from its first byte (SentencePiece's OneCharLen).
inline size_t char_len(uint8_t first) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[first >> 4]; }

void append(std::string& out, uint32_t cp);

}  // namespace lm::utf8
