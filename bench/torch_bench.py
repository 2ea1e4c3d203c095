#!/usr/bin/python3
"""Times the PyTorch reference (tests/fixtures/reference.py) on lm-bench's shapes, so the
README can give lmkit's speed as a ratio to PyTorch on the same machine, threads and run.

    /usr/bin/python3 bench/torch_bench.py --model stories15m --threads 2 --json
    lm-bench forward decode --model stories15m --threads 2 --json
    lm-inspect-config tiny --set vocab_size=256 --set pad_id=-1 --set eos_id=-1 --config > baby.json
    /usr/bin/python3 bench/torch_bench.py train --config baby.json --batch 12 --seq 64
    lm-bench train --model baby.json --batch 12 --seq 64

forward: reference.forward_hidden (eager PyTorch, float32, no grad) over a batch of
--batch x --seq random tokens, tokens/s at the median of --repeats runs after --warmup.
decode: batch-1 greedy-shape decoding of --decode-tokens tokens from an empty KV cache,
written with the reference's own layer functions (the reference itself has no cache).
train: one optimizer step as lm-bench's train benchmark times it: zero the gradients,
reference.forward_hidden with autograd, cross-entropy over --batch x --seq random targets,
backward, torch.nn.utils.clip_grad_norm_ to 1, torch.optim.AdamW (betas 0.9/0.95, eps 1e-8,
weight decay 0.1 on the matrices, lr 1e-4): tokens/s at the median step.
Weights are random (std 0.02), as lm-bench's presets. --config takes an lmkit config JSON
(lm-inspect-config NAME --config) instead of a preset, so both programs time the same shape.
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


def config_from_file(path):
    with open(path) as f:
        c = json.load(f)
    c = {k: v for k, v in c.items() if k in ref.DEFAULTS}  # drop fields the reference does not know
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


def train_step_fn(cfg, params, batch, seq, g):
    """One step (zero grads, forward, loss, backward, clip, AdamW) as a closure; params are
    made leaves that require grad (a tied classifier is the embedding tensor itself)."""
    for p in params.values():
        p.requires_grad_(True)
    decay = [p for n, p in params.items() if p.dim() >= 2]
    no_decay = [p for n, p in params.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, cfg["vocab_size"], (batch, seq + 1), generator=g)
    tokens, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    every = list(params.values())

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = ref.forward_hidden(cfg, params, tokens)
        loss = ref.loss(cfg, logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(every, 1.0)
        opt.step()
        return loss

    return step


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
    ap.add_argument("--config", help="lmkit config JSON (lm-inspect-config NAME --config) instead of --model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("benchmarks", nargs="*", help="forward, train and/or decode (default: forward and decode)")
    a = ap.parse_args()
    a.benchmarks = a.benchmarks or ["forward", "decode"]
    if not set(a.benchmarks) <= {"forward", "train", "decode"}:
        ap.error("benchmarks are forward, train and decode")
    if a.batch < 1 or a.seq < 1 or a.repeats < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--batch, --seq, --repeats and --threads must be positive, --warmup non-negative")
    torch.set_num_threads(a.threads)
    cfg = config_from_file(a.config) if a.config else config(a.model)
    name = a.config or a.model
    if a.seq > cfg["max_seq_len"]:
        ap.error(f"--seq {a.seq} is more than max_seq_len {cfg['max_seq_len']}")
    params = random_params(cfg)
    g = torch.Generator().manual_seed(1)
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "model": name}
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
    if "train" in a.benchmarks:  # last: it turns the weights into trained leaves
        step = train_step_fn(cfg, params, a.batch, a.seq, g)
        t = timed(step, a.warmup, a.repeats)
        report["train"] = {"batch": a.batch, "seq": a.seq, "tokens_per_s": a.batch * a.seq / t["median_s"],
                           "time": t}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"PyTorch {report['torch']} reference, {name}, {report['threads']} threads")
        if "forward" in report:
            f = report["forward"]
            print(f"forward {a.batch} x {a.seq}: {f['tokens_per_s']:.0f} tokens/s "
                  f"(min {f['time']['min_s'] * 1e3:.1f} ms, max {f['time']['max_s'] * 1e3:.1f} ms)")
        if "train" in report:
            f = report["train"]
            print(f"train {a.batch} x {a.seq}: {f['tokens_per_s']:.0f} tokens/s "
                  f"(min {f['time']['min_s'] * 1e3:.1f} ms, max {f['time']['max_s'] * 1e3:.1f} ms per step)")
        if "decode" in report:
            d = report["decode"]
            print(f"decode (batch 1, {d['tokens']} tokens): {d['tokens_per_s']:.1f} tokens/s")


if __name__ == "__main__":
    main()
