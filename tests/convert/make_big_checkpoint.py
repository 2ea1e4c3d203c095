#!/usr/bin/env python3
"""Writes a large random lmkit checkpoint (plain Llama: RMSNorm, SwiGLU) for measuring
lm-convert-checkpoint's throughput and memory. Standard library only; tensors are streamed, so
the script itself needs little memory.

    lm-inspect-config llama2-7b --set n_layers=6 --config > cfg.json
    python3 tests/convert/make_big_checkpoint.py cfg.json big.safetensors
"""

import array
import json
import random
import struct
import sys


def shapes(c):
    C, L, NH, V = c["dim"], c["n_layers"], c["n_heads"], c["vocab_size"]
    NKV = c["n_kv_heads"] or NH
    HS = c["head_dim"] or C // NH
    F = c["hidden_dim"]
    if not F:
        F = int(2 * 4 * C / 3)
        if c["ffn_dim_multiplier"]:
            F = int(c["ffn_dim_multiplier"] * F)
        F = c["multiple_of"] * ((F + c["multiple_of"] - 1) // c["multiple_of"])
    if c["ffn_type"] != "swiglu" or c["norm_type"] != "rmsnorm" or c["attn_bias"] or c["ffn_bias"] or c["qk_norm"]:
        sys.exit("make_big_checkpoint: only plain Llama configs")
    out = {"tok_embeddings.weight": [V, C]}
    for l in range(L):
        p = "layers.%d." % l
        out.update({p + "attention_norm.weight": [C], p + "attention.wq.weight": [NH * HS, C],
                    p + "attention.wk.weight": [NKV * HS, C], p + "attention.wv.weight": [NKV * HS, C],
                    p + "attention.wo.weight": [C, NH * HS], p + "ffn_norm.weight": [C],
                    p + "feed_forward.w1.weight": [F, C], p + "feed_forward.w2.weight": [C, F],
                    p + "feed_forward.w3.weight": [F, C]})
    out["norm.weight"] = [C]
    if not c["tie_embeddings"]:
        out["output.weight"] = [V, C]
    return out


def main(cfg_path, out_path):
    cfg = json.load(open(cfg_path))
    sh = shapes(cfg)
    rng = random.Random(1)
    block = array.array("f", (rng.gauss(0, 0.02) for _ in range(1 << 20))).tobytes()  # 4 MB of N(0, 0.02)
    header, offset = {"__metadata__": {"format": "pt", "lmkit.config": json.dumps(cfg)}}, 0
    order = sorted(sh)
    for name in order:
        n = 4
        for d in sh[name]:
            n *= d
        header[name] = {"dtype": "F32", "shape": sh[name], "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for i, name in enumerate(order):
            b, e = header[name]["data_offsets"]
            n, start = e - b, (i * 4096) % len(block)
            while n > 0:
                chunk = block[start:start + n]
                f.write(chunk)
                n -= len(chunk)
                start = 0
    print("%s: %d tensors, %.2f GB" % (out_path, len(order), offset / 1e9))


if __name__ == "__main__":
    main(*sys.argv[1:3])
