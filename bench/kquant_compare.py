#!/usr/bin/env python3
"""How many blocks of lmkit's quantizers differ from llama-quantize's on the same tensors:
LLAMA.gguf is llama-quantize's output (say Q4_K_M or Q4_0, no importance matrix), each OURS.gguf
an `lm-convert-checkpoint --to gguf --cast TYPE` of the same f32 weights. Every tensor stored in
the same block type in LLAMA.gguf and in one of the OURS files is compared block by block;
prints the counts per type.
  bench/kquant_compare.py LLAMA.gguf OURS.gguf...      (e.g. lmkit's q4_K and q6_K casts)"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_min as g

llama, ours = g.read(sys.argv[1]), [g.read(p) for p in sys.argv[2:]]
counts = {}  # type -> [tensors, blocks, differ]
for t in llama.tensors:
    if g.BLOCKS.get(t["type"], (1, 0))[0] == 1:
        continue
    for f in ours:
        o = next((x for x in f.tensors if x["name"] == t["name"] and x["type"] == t["type"]), None)
        if o is None:
            continue
        assert o["dims"] == t["dims"], (t["name"], o["dims"], t["dims"])
        bb = g.BLOCKS[t["type"]][1]
        a, b = llama.data(t), f.data(o)
        n = len(a) // bb
        c = counts.setdefault(t["type"], [0, 0, 0])
        c[0] += 1
        c[1] += n
        c[2] += sum(a[i * bb:(i + 1) * bb] != b[i * bb:(i + 1) * bb] for i in range(n))
        break
for t, (tensors, blocks, differ) in sorted(counts.items()):
    print("%s: %d tensors, %d blocks, %d differ (%.3f%%)" % (g.TYPE_NAMES[t], tensors, blocks, differ, 100.0 * differ / max(blocks, 1)))
