#!/usr/bin/python3
"""bf16 compute against f32 on nanoGPT's CPU "baby" task, in one run.

    python3 bench/bf16_baby.py --bin build/bin --threads 2 --steps 2000 --rounds 3

Two parts, both on the same machine in the same run:
  1. Quality: `lm-train` with the README's baby recipe (tiny Shakespeare, byte tokenizer, last
     10% held out; 4 layers, 4 heads, dim 128, batch 12 x 64, lr 1e-3 cosine to 1e-4, warmup
     100, beta2 0.99, weight decay 0.1, clip 1, the same seed), once with --dtype f32 and once
     with --dtype bf16: the validation curve of both, the final validation loss ratio
     (bf16 / f32) and each run's wall clock and tokens/s (the training steps' own times from
     the log, validation excluded).
  2. Speed: `lm-bench train` at the same shape, f32 and bf16 alternating for --rounds rounds
     (each the median of --repeats steps after a warm-up step): the medians, ranges and the
     median of the per-round ratios ("paired": both under the same load).
The load average (1 minute) is printed before every run. --wait-policy sets OMP_WAIT_POLICY
(default passive: on a loaded machine spinning OpenMP workers wait for descheduled ones). --json prints every record as well.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BABY_SETS = ["vocab_size=256", "pad_id=-1", "eos_id=-1"]  # lm-bench: the tiny preset is 4 x 4 x 128
RECIPE = ["--batch", "12", "--seq", "64", "--lr", "1e-3", "--min-lr", "1e-4", "--warmup", "100", "--decay", "cosine",
          "--beta2", "0.99", "--weight-decay", "0.1", "--grad-clip", "1", "--seed", "1337"]


def load1():
    return os.getloadavg()[0]


def tokens(lm, text, out):
    subprocess.run([f"{lm}/lm-tokenize", "--no-eos", text, "-o", out], check=True)


def train(lm, work, dtype, steps, val_every, val_batches, threads):
    run = os.path.join(work, dtype)
    load = load1()
    t0 = time.monotonic()
    cmd = [f"{lm}/lm-train", "tiny", os.path.join(work, "train.tok"), "--val", os.path.join(work, "val.tok"),
           "-o", run, "--steps", str(steps), "--val-every", str(val_every), "--dtype", dtype,
           "--val-batches", str(val_batches), "--threads", str(threads), "--log-every", "1", "-q"] + RECIPE
    subprocess.run(cmd, check=True)
    wall = time.monotonic() - t0
    log = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    val = {r["step"]: r["val_loss"] for r in log if "val_loss" in r}
    # training steps only (each record's tokens/s is its own step's): tokens over the summed step times
    step_s = sum(12 * 64 / r["tokens_per_s"] for r in log)
    return {"dtype": dtype, "load1": load, "wall_s": wall, "val": val, "final_train_loss": log[-1]["loss"],
            "tokens_per_s": len(log) * 12 * 64 / step_s, "log": log}


def bench(lm, dtype, threads, repeats):
    load = load1()
    cmd = [f"{lm}/lm-bench", "train", "--model", "tiny", "--batch", "12", "--seq", "64", "--dtype", dtype,
           "--threads", str(threads), "--repeats", str(repeats), "--sizes", "256", "--json"]
    for s in BABY_SETS:
        cmd += ["--set", s]
    r = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    return {"dtype": dtype, "load1": load, "tokens_per_s": r["train"]["tokens_per_s"],
            "bf16_gemm": r.get("bf16_gemm"), "cpu": r["cpu"]["model"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"), help="directory of the lm-* programs")
    ap.add_argument("--text", default=os.path.join(HERE, "..", "tests", "data", "tinyshakespeare.txt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--val-batches", type=int, default=0, help="validation batches of 12 x 64 (0: all 145)")
    ap.add_argument("--wait-policy", default="passive", help="OMP_WAIT_POLICY for every run ('unset': leave it)")
    ap.add_argument("--rounds", type=int, default=3, help="lm-bench rounds (0: skip the speed part)")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per lm-bench run")
    ap.add_argument("--json", action="store_true", help="also print every record as JSON")
    a = ap.parse_args()
    if a.wait_policy != "unset":  # on a shared machine spinning workers wait for descheduled ones
        os.environ["OMP_WAIT_POLICY"] = a.wait_policy
    lm = os.path.abspath(a.bin)
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.threads} threads, "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    records = []
    with tempfile.TemporaryDirectory(prefix="bf16_baby.") as work:
        text = open(a.text, "rb").read()
        cut = len(text) * 9 // 10
        for name, part in (("train", text[:cut]), ("val", text[cut:])):
            with open(os.path.join(work, f"{name}.txt"), "wb") as f:
                f.write(part)
            tokens(lm, os.path.join(work, f"{name}.txt"), os.path.join(work, f"{name}.tok"))
        runs = {}
        for dtype in ("f32", "bf16"):
            r = train(lm, work, dtype, a.steps, a.val_every, a.val_batches, a.threads)
            runs[dtype] = r
            records.append({k: v for k, v in r.items() if k != "log"})
            print(f"lm-train --dtype {dtype}: {a.steps} steps in {r['wall_s']:.1f} s wall (load {r['load1']:.2f} "
                  f"before), {r['tokens_per_s']:.0f} tokens/s, final val loss {r['val'][a.steps]:.4f}", flush=True)
    f32, bf16 = runs["f32"], runs["bf16"]
    steps = sorted(f32["val"])
    print("\n| step | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for r in (f32, bf16):
        print(f"| val loss {r['dtype']} | " + " | ".join(f"{r['val'][s]:.4f}" for s in steps) + " |")
    print("| bf16 / f32 | " + " | ".join(f"{bf16['val'][s] / f32['val'][s]:.4f}" for s in steps) + " |")
    ratio = bf16["val"][a.steps] / f32["val"][a.steps]
    print(f"\nfinal val loss bf16 / f32 = {ratio:.4f} ({(ratio - 1) * 100:+.2f}%)")
    print(f"lm-train tokens/s bf16 / f32 = {bf16['tokens_per_s'] / f32['tokens_per_s']:.3f} "
          f"({bf16['tokens_per_s']:.0f} / {f32['tokens_per_s']:.0f}); wall {bf16['wall_s']:.1f} s / {f32['wall_s']:.1f} s")

    if a.rounds > 0:
        rows = {"f32": [], "bf16": []}
        paired = []
        for _ in range(a.rounds):
            pair = {}
            for dtype in ("f32", "bf16"):
                r = bench(lm, dtype, a.threads, a.repeats)
                records.append(r)
                rows[dtype].append(r)
                pair[dtype] = r["tokens_per_s"]
            paired.append(pair["bf16"] / pair["f32"])
        print(f"\nlm-bench train, baby 12 x 64, {a.rounds} rounds x {a.repeats} steps, bf16 GEMM "
              f"{rows['bf16'][0]['bf16_gemm']}, {rows['f32'][0]['cpu']}:")
        print("| dtype | tokens/s median (range) | load average before each |")
        print("|---|---|---|")
        for dtype in ("f32", "bf16"):
            t = [r["tokens_per_s"] for r in rows[dtype]]
            print(f"| {dtype} | {statistics.median(t):,.0f} ({min(t):,.0f} to {max(t):,.0f}) | "
                  + ", ".join(f"{r['load1']:.2f}" for r in rows[dtype]) + " |")
        med = statistics.median(r["tokens_per_s"] for r in rows["bf16"]) / statistics.median(
            r["tokens_per_s"] for r in rows["f32"])
        print(f"bf16 / f32 = {med:.3f} (paired: median {statistics.median(paired):.3f}, "
              f"{min(paired):.3f} to {max(paired):.3f})")
    if a.json:
        for r in records:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
