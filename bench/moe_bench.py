#!/usr/bin/python3
"""What a mixture-of-experts layer costs against dense FFNs: `lm-bench` forward, train and decode of
a MoE model and of its dense peers, in interleaved rounds.

    /usr/bin/python3 bench/moe_bench.py --bin build/bin --rounds 3 --runner /work/bin/cpu

Three models of one shape (byte vocabulary, C = --dim, --layers layers, NH = C / 64, every layer
the same kind of FFN):
  dense   SwiGLU of width F (--width)
  dense2  SwiGLU of width 2F: the FLOPs of one routed expert plus the shared expert
  moe     --experts experts of width F, top-1, plus a shared expert of width F (Llama 4's layer)
With --preset NAME (a MoE preset, e.g. llama4-tiny) the three models are that preset as it is (moe)
and the preset with every MoE layer replaced by a dense SwiGLU of width Fe (dense) or 2 Fe (dense2),
everything else (attention, NoPE, chunking, vocabulary) unchanged.
Issue 13's target: the MoE layer costs about two dense FFNs, i.e. moe runs at about dense2's
tokens/s (not at the speed of E dense FFNs). Each round runs the three models back to back (one
lm-bench process each, the order rotating by round); the table gives each model's median
tokens/s over the rounds with its range, and the paired ratio moe / dense2 (the median of the
per-round ratios). Decode (batch 1) is held to the bandwidth bound from the bytes one token
actually reads (lm-inspect-config's params.decode_per_token: the router, one routed expert and
the shared expert per layer, the embedding as one row) plus the KV cache, against the bandwidth
lm-bench measured just before each run. The load average before each run is recorded.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile


def run_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=1536)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--benchmarks", default="forward,train,decode")
    ap.add_argument("--preset", default="", help="a MoE preset to measure instead of the --dim shape")
    ap.add_argument("--runner", default="", help="command prefix for every run, e.g. /work/bin/cpu")
    ap.add_argument("--json", action="store_true", help="print every run as JSON too")
    args = ap.parse_args()
    runner = shlex.split(args.runner)
    benches = args.benchmarks.split(",")

    base = {"dim": args.dim, "n_layers": args.layers, "n_heads": args.dim // 64, "vocab_size": 264, "pad_id": 256,
            "eos_id": 257, "bos_id": -1, "max_seq_len": max(args.seq, args.decode_tokens)}
    models = {
        "dense": dict(base, hidden_dim=args.width),
        "dense2": dict(base, hidden_dim=2 * args.width),
        "moe": dict(base, hidden_dim=args.width,
                    moe={"n_experts": args.experts, "top_k": 1, "hidden_dim": args.width, "shared_expert": True}),
    }
    if args.preset:
        own = run_json([os.path.join(args.bin, "lm-inspect-config"), args.preset, "--json"])["config"]
        moe = own["moe"]
        if moe["n_experts"] <= 0:
            raise SystemExit(f"{args.preset} has no experts")
        dense = {k: v for k, v in own.items() if k != "moe"}
        dense["max_seq_len"] = max(own["max_seq_len"], args.seq, args.decode_tokens)
        models = {
            "dense": dict(dense, hidden_dim=moe["hidden_dim"]),
            "dense2": dict(dense, hidden_dim=2 * moe["hidden_dim"]),
            "moe": dict(own, max_seq_len=dense["max_seq_len"]),
        }
        args.dim, args.layers, args.width, args.experts = own["dim"], own["n_layers"], moe["hidden_dim"], moe["n_experts"]
    tmp = tempfile.mkdtemp(prefix="moe_bench.")
    files, decode_params = {}, {}
    for name, cfg in models.items():
        files[name] = os.path.join(tmp, name + ".json")
        with open(files[name], "w") as f:
            json.dump(dict(cfg, name=f"{args.preset}-{name}" if args.preset else name), f)
        report = run_json([os.path.join(args.bin, "lm-inspect-config"), files[name], "--json"])
        decode_params[name] = report["params"]["decode_per_token"]
        kv = report["memory"]["kv_cache"]["per_token_f32"]
        print(f"{name:7s} {report['params']['total']:>12,} parameters, {report['params']['active']:>12,} active; "
              f"{report['flops']['matmul_per_token'] / 1e6:8.1f} MFLOP matmul per token; decode reads "
              f"{decode_params[name] * 4 / 1e6:.1f} MB of weights + {kv} B of KV per context position")
        decode_params[name] = (decode_params[name], kv)

    rows = {name: {b: [] for b in benches} for name in models}
    bound = {name: [] for name in models}
    names = list(models)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            load = os.getloadavg()[0]
            cmd = runner + [os.path.join(args.bin, "lm-bench")] + benches + [
                "--model", files[name], "--batch", str(args.batch), "--seq", str(args.seq),
                "--decode-tokens", str(args.decode_tokens), "--repeats", str(args.repeats),
                "--threads", str(args.threads), "--sizes", "1024", "--json"]
            out = run_json(cmd)
            if args.json:
                print(json.dumps({"round": r, "model": name, "load": load, "report": out}))
            for b in benches:
                rows[name][b].append(out[b]["tokens_per_s"])
            if "decode" in benches:
                params, kv = decode_params[name]
                per_token = 4 * params + kv * args.decode_tokens / 2  # the mean context of the run
                # lm-bench holds each run to the bandwidth read just before it, with every weight's
                # bytes; the same runs with the bytes actually read:
                fractions = [rd["gbytes_per_s"] / out["decode"]["bytes_per_token"] * per_token / rd["bandwidth_gbytes_per_s"]
                             for rd in out["decode"]["rounds"]]
                bound[name].append(statistics.median(fractions))
            print(f"round {r} {name:7s} load {load:4.2f}: " +
                  ", ".join(f"{b} {rows[name][b][-1]:8.1f} tok/s" for b in benches) +
                  (f", decode at {bound[name][-1] * 100:.0f}% of the active-bytes bound" if "decode" in benches else ""))

    print()
    print(f"{args.preset + ': ' if args.preset else ''}C {args.dim}, {args.layers} layers, F {args.width}, "
          f"{args.experts} experts top-1 + shared; "
          f"forward/train {args.batch} x {args.seq}, {args.threads} threads, {args.rounds} rounds")
    for b in benches:
        line = f"{b:8s}"
        for name in names:
            v = rows[name][b]
            line += f"  {name} {statistics.median(v):8.1f} ({min(v):.1f}-{max(v):.1f})"
        paired = statistics.median(m / d for m, d in zip(rows["moe"][b], rows["dense2"][b]))
        vs_dense = statistics.median(m / d for m, d in zip(rows["moe"][b], rows["dense"][b]))
        line += f"  moe/dense2 {paired:.2f}, moe/dense {vs_dense:.2f} (paired)"
        print(line)
    if "decode" in benches:
        print("decode fraction of the active-bytes bound (median over rounds): " +
              ", ".join(f"{n} {statistics.median(bound[n]) * 100:.0f}%" for n in names))


if __name__ == "__main__":
    main()
