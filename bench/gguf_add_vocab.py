#!/usr/bin/env python3
"""Copies a GGUF file adding a SentencePiece vocabulary (tokenizer.ggml.model = "llama",
tokens, scores, token types from a tokenizer.model, BOS added), so that llama.cpp's programs
that tokenize text (llama-perplexity, llama-simple) run on a GGUF lmkit wrote without one:
  bench/gguf_add_vocab.py in.gguf tokenizer.model out.gguf
(lm-convert-checkpoint --to gguf writes tokenizer.ggml.model = "none" today; a bench helper
until it writes the vocabulary itself.) Also:
  bench/gguf_add_vocab.py --strip in.gguf out.gguf      the tensors without the vocabulary
  bench/gguf_add_vocab.py --decode tokenizer.model ids.txt simple.txt LABEL
                                                        lm-generate's ids against llama-simple's text"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_min as g  # noqa: E402


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) of a protobuf message; length-delimited values as bytes."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("protobuf wire type %d" % w)
        yield f, w, v


def sentencepiece_pieces(path):
    pieces = []
    with open(path, "rb") as f:
        model = f.read()
    for f, w, v in fields(model):
        if f != 1 or w != 2:
            continue
        piece, score, kind = "", 0.0, 1  # SentencePiece.Type NORMAL by default
        for pf, pw, pv in fields(v):
            if pf == 1:
                piece = pv.decode("utf-8")
            elif pf == 2:
                score = struct.unpack("<f", pv)[0]
            elif pf == 3:
                kind = pv
        pieces.append((piece, score, kind))
    return pieces


def decode(pieces, ids):
    out = b""
    for i in ids:
        p, _, kind = pieces[i]
        if kind == 6:  # byte piece <0xNN>
            out += bytes([int(p[3:5], 16)])
        elif kind == 1:
            out += p.replace("\u2581", " ").encode("utf-8")
    return out.decode("utf-8", "replace")


def compare(tok, ids_file, simple_file, label):
    """--decode: lm-generate's ids (one line) decoded against llama-simple's text output."""
    pieces = sentencepiece_pieces(tok)
    ids = [int(v) for v in open(ids_file).read().split()]
    ours = decode(pieces, ids)
    theirs = open(simple_file, encoding="utf-8", errors="replace").read().rstrip("\n")
    same = len(ours) > 0 and theirs.endswith(ours)
    print("%-22s %-9s %s" % (label, "SAME" if same else "DIFFERENT", repr(ours[:60])))
    if not same:
        print("%-22s %-9s %s" % ("", "llama.cpp", repr(theirs[-len(ours) - 10:][:70])))


def strip(src, dst):
    """--strip: the same file with tokenizer.ggml.model = "none", no vocabulary and no
    lmkit.tokenizer (lm-generate asks for the tokenizer.model of a SentencePiece tokenizer it
    finds named in a GGUF file, even for token ids in and out)."""
    f = g.read(src)
    kv = {k: v for k, v in f.kv.items()
          if k != "lmkit.tokenizer" and (not k.startswith("tokenizer.ggml.") or k.endswith("_token_id"))}
    kv["tokenizer.ggml.model"] = (g.STRING, "none")
    g.write(dst + ".tmp", kv, f.tensors, f.data)
    os.replace(dst + ".tmp", dst)


def main():
    if sys.argv[1] == "--decode":
        compare(*sys.argv[2:6])
        return
    if sys.argv[1] == "--strip":
        strip(*sys.argv[2:4])
        return
    src, tok, dst = sys.argv[1:4]
    f = g.read(src)
    pieces = sentencepiece_pieces(tok)
    kv = {}
    for k, v in f.kv.items():
        if k.startswith("tokenizer."):
            continue
        kv[k] = v
    # SentencePiece's piece types are llama.cpp's token types (normal 1, unknown 2, control 3, byte 6).
    kv["tokenizer.ggml.model"] = (g.STRING, "llama")
    kv["tokenizer.ggml.tokens"] = (g.ARRAY, (g.STRING, [p for p, _, _ in pieces]))
    kv["tokenizer.ggml.scores"] = (g.ARRAY, (g.F32, [s for _, s, _ in pieces]))
    kv["tokenizer.ggml.token_type"] = (g.ARRAY, (g.I32, [k for _, _, k in pieces]))
    kv["tokenizer.ggml.bos_token_id"] = (g.U32, 1)
    kv["tokenizer.ggml.eos_token_id"] = (g.U32, 2)
    kv["tokenizer.ggml.unknown_token_id"] = (g.U32, 0)
    kv["tokenizer.ggml.add_bos_token"] = (g.BOOL, True)
    kv["tokenizer.ggml.add_eos_token"] = (g.BOOL, False)
    tmp = dst + ".tmp"
    g.write(tmp, kv, f.tensors, f.data)
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
