#!/usr/bin/env python3
"""Writes tests/data/unicode_mix.txt: random text for the tokenizer exactness tests.

Lines of mixed scripts, emoji (with ZWJ sequences, skin tones, flags), combining marks,
digits of many scripts, every kind of white space and control character, contractions in
odd cases, U+2581 and U+FFFD, and ill-formed UTF-8 (lone continuation bytes, cut-short
sequences, overlong forms, encoded surrogates, bytes F5-FF). Only characters assigned in
Unicode 14.0 (this Python's unicodedata, and PCRE2 10.42's tables) are used, so a newer
Unicode database in a reference cannot classify them differently.

The output is committed; this script is kept beside the tests to show how it was made
(`python3 tests/tokenizer/make_unicode_mix.py > tests/data/unicode_mix.txt`). It depends
on Python's random module, so another Python may make a different (equally good) file.
"""
import random
import sys
import unicodedata

rng = random.Random(20261123)
assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version

RANGES = {
    "latin": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF)],
    "greek": [(0x370, 0x3FF)],
    "cyrillic": [(0x400, 0x4FF)],
    "armenian_hebrew_arabic": [(0x531, 0x58F), (0x591, 0x5F4), (0x600, 0x6FF), (0x750, 0x77F)],
    "indic": [(0x900, 0x97F), (0x980, 0x9FF), (0xB80, 0xBFF), (0xD00, 0xD7F)],
    "thai_lao_tibetan": [(0xE00, 0xE7F), (0xE80, 0xEFF), (0xF00, 0xFFF)],
    "cjk": [(0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x3400, 0x4DBF), (0x20000, 0x2A6DF)],
    "symbols": [(0x2000, 0x206F), (0x20A0, 0x20C0), (0x2100, 0x214F), (0x2190, 0x23FF), (0x2500, 0x259F),
                (0x25A0, 0x27BF), (0x3000, 0x303F), (0xFF00, 0xFFEF)],
    "emoji": [(0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF)],
    "combining": [(0x300, 0x36F), (0x1AB0, 0x1ACE), (0x20D0, 0x20F0)],
    "digits": [(0x30, 0x39), (0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19), (0x2460, 0x249B), (0x1D7CE, 0x1D7FF),
               (0xBC, 0xBE), (0x2150, 0x218B)],
    "private": [(0xE000, 0xE0FF)],
}
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\x0b", "\x0c", "\r", "\xa0", "\u1680", "\u2000", "\u2003", "\u2009",
          "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\x85", "\u180e", "\u200b"]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b", "\x1f", "\x7f", "\x80", "\x9f", "\u200d", "\u200e", "\u2066"]
WORDS = ["the", "The", "THE", "don't", "I'M", "we'LL", "they'Re", "it'S", "you'VE", "he'D", "o'clock", "'s", "'t",
         "'ſ", "ſt", "\u212a", "Ünïcödé", "naïve", "façade", "東京", "Москва", "Αθήνα", "مرحبا", "שלום", "नमस्ते",
         "ก๋วยเตี๋ยว", "한국어", "123", "1234567", "3.14159", "1,000,000", "0x1F", "e=mc²", "x²+y²", "½", "Ⅻ",
         "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<0x41>", "\u2581", "\u2581\u2581x",
         "\ufffd", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "❤️", "e\u0301", "a\u0308\u0323", "www.example.com/a?b=c&d",
         "foo_bar", "CamelCase", "snake_case_42", "...", "!!!", "?!", "—", "–", "«»", "「」", "“quoted”", "(paren)",
         "$100", "@user", "#tag", "%", "\\n", "\\", "tab\there", "  leading", "trailing  "]
# Ill-formed UTF-8, as raw bytes.
BAD = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xe2\x82", b"\xe2\x96", b"\xf0\x9f\x98", b"\xed\xa0\x80",
       b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff",
       b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xe2\x82\x28"]


def assigned(cp):
    return unicodedata.category(chr(cp)) not in ("Cn", "Cs")


def random_char(kind):
    lo, hi = rng.choice(RANGES[kind])
    for _ in range(100):
        cp = rng.randint(lo, hi)
        if assigned(cp):
            return chr(cp)
    return "?"


def random_token():
    r = rng.random()
    if r < 0.30:
        return rng.choice(WORDS)
    if r < 0.45:
        return rng.choice(SPACES)
    if r < 0.50:
        return rng.choice(CONTROLS)
    if r < 0.55:
        return rng.choice(BAD)
    kind = rng.choice(list(RANGES))
    return "".join(random_char(kind) for _ in range(rng.randint(1, 8)))


def line():
    parts = []
    for _ in range(rng.randint(0, 24)):
        t = random_token()
        parts.append(t if isinstance(t, bytes) else t.encode("utf-8", "surrogatepass"))
        if rng.random() < 0.5:
            parts.append(b" ")
    return b"".join(parts).replace(b"\n", b" ")


out = sys.stdout.buffer
for _ in range(1500):
    out.write(line() + b"\n")
# The last line has no line break, and some stretches are long.
out.write(("word " * 3000).encode() + b"\n")
out.write((" " * 5000 + "x" + "\t" * 100 + "\r\n" * 3).encode() + b"\n")
out.write("末尾".encode() + b"\xe2\x96")
