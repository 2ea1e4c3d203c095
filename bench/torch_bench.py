#!/usr/bin/python3
"""Times the PyTorch reference (tests/fixtures/reference.py) on lm-bench's shapes, so the
README can give lmkit's speed as a ratio to PyTorch on the same machine, threads and run.

    /usr/bin/python3 bench/torch_bench.py --model stories15m --threads 2 --json
    lm-bench forward decode --model stories15m --threads 2 --json

forward: reference.forward_hidden (eager PyTorch, float32, no grad) over a batch of
--batch x --seq random tokens, tokens/s at the median of --repeats runs after --warmup.
decode: batch-1 greedy-shape decoding of --decode-tokens tokens from an empty KV cache,
written with the reference's own layer functions (the reference itself has no cache).
Weights are random (std 0.02), as lm-bench's presets.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import reference as ref  # noqa: E402

PRESETS = {  # lib/model/presets.cpp: llama2.c TinyStories models
    "stories15m": dict(dim=288, n_layers=6, n_heads=6, max_seq_len=256),
    "stories42m": dict(dim=512, n_layers=8, n_heads=8, max_seq_len=1024),
    "stories110m": dict(dim=768, n_layers=12, n_heads=12, max_seq_len=1024),
}


def config(name):
    c = dict(PRESETS[name], vocab_size=32000, multiple_of=32, norm_eps=1e-5, tie_embeddings=True)
    return ref.full_config(c)


def random_params(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in ref.param_shapes(cfg).items():
        if name.endswith("norm.weight"):
            params[name] = torch.ones(shape)
        else:
            params[name] = torch.randn(shape, generator=g) * 0.02
    return params


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def decode_tokens(cfg, params, tokens):
    """Batch-1 decode with a KV cache: one token per step, the reference's layers."""
    C, L = cfg["dim"], cfg["n_layers"]
    NH, NKV, HS = cfg["n_heads"], ref.kv_heads(cfg), ref.head_size(cfg)
    S = len(tokens)
    kc = torch.zeros(L, S, NKV, HS)
    vc = torch.zeros(L, S, NKV, HS)
    out = params["tok_embeddings.weight"] if cfg["tie_embeddings"] else params["output.weight"]
    rep = NH // NKV
    for t, tok in enumerate(tokens):
        pos = torch.tensor([[t]])
        cos, sin = ref.rope_cos_sin(cfg, pos)
        h = params["tok_embeddings.weight"][tok].view(1, 1, C)
        for i in range(L):
            p = f"layers.{i}"
            x = ref.norm(cfg, params, p + ".attention_norm", h)
            q = ref.linear(params, p + ".attention.wq", x).view(1, 1, NH, HS)
            k = ref.linear(params, p + ".attention.wk", x).view(1, 1, NKV, HS)
            v = ref.linear(params, p + ".attention.wv", x).view(1, 1, NKV, HS)
            q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
            kc[i, t] = k[0, 0]
            vc[i, t] = v[0, 0]
            keys = kc[i, : t + 1].repeat_interleave(rep, dim=1).transpose(0, 1)  # [NH, t+1, HS]
            vals = vc[i, : t + 1].repeat_interleave(rep, dim=1).transpose(0, 1)
            att = torch.softmax((keys @ q[0, 0, :, :, None]).squeeze(-1) / math.sqrt(HS), dim=-1)  # [NH, t+1]
            y = (att[:, None, :] @ vals).reshape(1, 1, NH * HS)
            h = h + ref.linear(params, p + ".attention.wo", y)
            h = h + ref.feed_forward(cfg, params, p + ".feed_forward", ref.norm(cfg, params, p + ".ffn_norm", h))
        h = ref.norm(cfg, params, "norm", h)
        logits = h @ out.T
    return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="stories15m", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("benchmarks", nargs="*", help="forward and/or decode (default: both)")
    a = ap.parse_args()
    a.benchmarks = a.benchmarks or ["forward", "decode"]
    if not set(a.benchmarks) <= {"forward", "decode"}:
        ap.error("benchmarks are forward and decode")
    torch.set_num_threads(a.threads)
    cfg = config(a.model)
    params = random_params(cfg)
    g = torch.Generator().manual_seed(1)
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "model": a.model}
    with torch.no_grad():
        if "forward" in a.benchmarks:
            tokens = torch.randint(0, cfg["vocab_size"], (a.batch, a.seq), generator=g)
            t = timed(lambda: ref.forward_hidden(cfg, params, tokens), a.warmup, a.repeats)
            report["forward"] = {"batch": a.batch, "seq": a.seq, "tokens_per_s": a.batch * a.seq / t["median_s"],
                                 "time": t}
        if "decode" in a.benchmarks:
            n = min(a.decode_tokens, cfg["max_seq_len"])
            tokens = torch.randint(0, cfg["vocab_size"], (n,), generator=g).tolist()
            t = timed(lambda: decode_tokens(cfg, params, tokens), a.warmup, a.repeats)
            report["decode"] = {"batch": 1, "tokens": n, "tokens_per_s": n / t["median_s"], "time": t}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"PyTorch {report['torch']} reference, {a.model}, {report['threads']} threads")
        if "forward" in report:
            f = report["forward"]
            print(f"forward {a.batch} x {a.seq}: {f['tokens_per_s']:.0f} tokens/s "
                  f"(min {f['time']['min_s'] * 1e3:.1f} ms, max {f['time']['max_s'] * 1e3:.1f} ms)")
        if "decode" in report:
            d = report["decode"]
            print(f"decode (batch 1, {d['tokens']} tokens): {d['tokens_per_s']:.1f} tokens/s")


if __name__ == "__main__":
    main()
