#!/usr/bin/env python3
"""Checks a llama2.c legacy (v0) checkpoint byte by byte against the layout in formats.md §3 and the
lmkit-named tensors of a reference safetensors file (standard library only; shares nothing with lmkit).

    check_llama2c.py FILE.bin REF.safetensors
v0: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 = untied
classifier stored last), then fp32 arrays stacked over layers: token_embedding, rms_att, wq, wk, wv, wo,
rms_ffn, w1, w2, w3, rms_final, freq_cis_real [T, HS/2], freq_cis_imag [T, HS/2], (wcls).
"""

import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    data = open(argv[1], "rb").read()
    ref, _ = st.read(argv[2])
    dim, hidden, L, NH, NKV, vocab, T = struct.unpack("<7i", data[:28])
    V, HS = abs(vocab), dim // NH
    pos = 28

    def take(n_floats, what):
        nonlocal pos
        b = data[pos:pos + 4 * n_floats]
        if len(b) != 4 * n_floats:
            raise SystemExit("check_llama2c: %s: truncated in %s" % (argv[1], what))
        pos += 4 * n_floats
        return b

    def same(b, name):
        dtype, shape, want = ref[name]
        if dtype != "F32" or b != want:
            raise SystemExit("check_llama2c: %s: %s differs from the reference" % (argv[1], name))

    arrays = [("tok_embeddings.weight", None, V * dim), ("attention_norm.weight", L, dim), ("attention.wq.weight", L, NH * HS * dim),
              ("attention.wk.weight", L, NKV * HS * dim), ("attention.wv.weight", L, NKV * HS * dim),
              ("attention.wo.weight", L, dim * NH * HS), ("ffn_norm.weight", L, dim), ("feed_forward.w1.weight", L, hidden * dim),
              ("feed_forward.w2.weight", L, dim * hidden), ("feed_forward.w3.weight", L, hidden * dim), ("norm.weight", None, dim)]
    for name, layers, n in arrays:
        if layers is None:
            same(take(n, name), name)
        else:
            for l in range(layers):
                same(take(n, name), "layers.%d.%s" % (l, name))
    for part, fn in (("freq_cis_real", math.cos), ("freq_cis_imag", math.sin)):
        vals = struct.unpack("<%df" % (T * HS // 2), take(T * HS // 2, part))
        for t in range(T):
            for i in range(HS // 2):
                want = fn(t * 10000.0 ** (-2 * i / HS))
                if abs(vals[t * HS // 2 + i] - want) > 1e-4 * max(1, t):
                    raise SystemExit("check_llama2c: %s[%d, %d] = %g, expected %g" % (part, t, i, vals[t * HS // 2 + i], want))
    if vocab < 0:
        same(take(V * dim, "wcls"), "output.weight")
    elif "output.weight" in ref:
        raise SystemExit("check_llama2c: positive vocab_size (shared classifier) but the reference has output.weight")
    if pos != len(data):
        raise SystemExit("check_llama2c: %s: %d trailing bytes" % (argv[1], len(data) - pos))
    print("ok: dim %d, hidden %d, %d layers, %d/%d heads, vocab %d (%s), seq_len %d, %d bytes"
          % (dim, hidden, L, NH, NKV, V, "shared" if vocab > 0 else "untied", T, len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
