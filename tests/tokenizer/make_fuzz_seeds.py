#!/usr/bin/env python3
"""Writes the seeds of tests/fuzz/fuzz_tokenizer_model into DIR (the first byte picks the
reader: 0 SentencePiece, 1 tokenizer.json): small but complete models that use every
feature the readers know.  python3 tests/tokenizer/make_fuzz_seeds.py tests/fuzz/seeds/fuzz_tokenizer_model"""
import json
import os
import struct
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def varint(v):
    b = b""
    while v >= 0x80:
        b += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return b + bytes([v])


def field(n, t, payload):
    if t == 2:
        return varint(n << 3 | 2) + varint(len(payload)) + payload
    if t == 0:
        return varint(n << 3) + varint(payload)
    return varint(n << 3 | t) + payload


def sp_model(pieces, byte_fallback, remove_extra, dummy=True):
    body = b""
    for text, score, typ in pieces:
        p = field(1, 2, text.encode()) + field(2, 5, struct.pack("<f", score))
        if typ != 1:
            p += field(3, 0, typ)
        body += field(1, 2, p)
    body += field(2, 2, field(3, 0, 2) + field(35, 0, int(byte_fallback)) + field(44, 2, " ?? ".encode()))
    body += field(3, 2, field(1, 2, b"identity") + field(3, 0, int(dummy)) + field(4, 0, int(remove_extra)) +
                  field(5, 0, 1))
    return body


SP = "\u2581"
base = [("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), (SP, -10, 1), ("a", -1, 1), ("b", -2, 1), ("ab", -0.5, 1),
        (SP + "ab", -0.25, 1), ("<t>", 0, 4), ("ba", -0.1, 5), ("l", -3, 1), ("o", -3, 1), ("lo", -1, 1),
        ("\u6771", -5, 1), ("\u6771\u4eac", -4, 1)]
with open(os.path.join(out, "sp_tiny.model"), "wb") as f:
    f.write(b"\x00" + sp_model(base, False, True))
with open(os.path.join(out, "sp_byte_fallback.model"), "wb") as f:
    f.write(b"\x00" + sp_model(base + [("<0x%02X>" % b, 0, 6) for b in range(256)], True, False))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()


def bl(s):
    return "".join(B2U[b] for b in s.encode())


def hf(pre, merges_as_pairs):
    vocab = {B2U[b]: b for b in range(256)}
    merges = []
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("o", "r"), (" w", "or"),
                 ("'", "s"), ("1", "2")]:
        vocab.setdefault(bl(a + b), len(vocab))
        merges.append([bl(a), bl(b)] if merges_as_pairs else bl(a) + " " + bl(b))
    added = [{"id": len(vocab), "content": "<|endoftext|>", "special": True},
             {"id": len(vocab) + 1, "content": "<s>", "special": True, "lstrip": True},
             {"id": len(vocab) + 2, "content": "</s>", "special": True, "rstrip": True}]
    return {"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": pre,
            "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": merges_as_pairs}}


llama3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
          "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
pre_l3 = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
pre_gpt2 = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
with open(os.path.join(out, "hf_llama3_style.json"), "wb") as f:
    f.write(b"\x01" + json.dumps(hf(pre_l3, True), ensure_ascii=False).encode())
with open(os.path.join(out, "hf_gpt2_style.json"), "wb") as f:
    f.write(b"\x01" + json.dumps(hf(pre_gpt2, False), ensure_ascii=False).encode())
