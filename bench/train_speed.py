#!/usr/bin/python3
"""Training speed of lmkit against PyTorch eager on the same shapes and threads, in one run.

    /usr/bin/python3 bench/train_speed.py --bin build --threads 2 --rounds 3

For every shape, each round runs `lm-bench train` and then bench/torch_bench.py train (one
process each, alternating, so both see the same machine load); the table gives the median over
the rounds of each program's tokens/s (each itself the median of --repeats steps after a
warm-up step), their ratio, the median of the per-round ratios ("paired": both programs
under the same load) and lmkit's MFU (model FLOPs / s over the best FMA peak lm-bench
measured in the same process). Shapes: nanoGPT's CPU "baby" (4 layers, 4 heads, dim 128,
byte vocabulary 256, batch 12 x 64), stories15m 8 x 256 and stories110m 4 x 256.
--json prints every run as well. --wait-policy sets OMP_WAIT_POLICY for both programs (both use
OpenMP: lmkit with OpenBLAS's OpenMP build, PyTorch's ATen); on a shared, loaded machine the
default spinning waits for descheduled workers at every barrier, passive does not.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BABY_SETS = ["vocab_size=256", "pad_id=-1", "eos_id=-1"]  # the tiny preset is already 4 x 4 x 128
SHAPES = {  # name: (lmkit model, --set overrides, batch, seq)
    "baby": ("tiny", BABY_SETS, 12, 64),
    "stories15m": ("stories15m", [], 8, 256),
    "stories110m": ("stories110m", [], 4, 256),
}


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build", help="directory holding lm-bench and lm-inspect-config")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated subset of " + ",".join(SHAPES))
    ap.add_argument("--checkpointing", action="store_true", help="lmkit with gradient checkpointing")
    ap.add_argument("--wait-policy", choices=["passive", "active", "unset"], default="passive",
                    help="OMP_WAIT_POLICY for both programs (unset: the environment's)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.wait_policy != "unset":
        os.environ["OMP_WAIT_POLICY"] = a.wait_policy
    shapes = a.shapes.split(",")
    if not set(shapes) <= set(SHAPES) or a.rounds < 1:
        ap.error("unknown shape or --rounds < 1")
    lm_bench = os.path.join(a.bin, "lm-bench")
    inspect = os.path.join(a.bin, "lm-inspect-config")
    common = ["--threads", str(a.threads), "--repeats", str(a.repeats), "--warmup", str(a.warmup)]
    results = {s: {"lmkit": [], "torch": [], "mfu": []} for s in shapes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for s in shapes:
                model, sets, batch, seq = SHAPES[s]
                cfg_path = os.path.join(tmp, s + ".json")  # the same config for both programs
                with open(cfg_path, "w") as f:
                    cmd = [inspect, model, "--config"] + [x for kv in sets for x in ("--set", kv)]
                    f.write(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
                shape = ["--batch", str(batch), "--seq", str(seq)]
                lm = run_json([lm_bench, "train", "--model", cfg_path, "--json", "--sizes", "512,1024"] + shape + common
                              + (["--checkpointing"] if a.checkpointing else []))
                pt = run_json(["/usr/bin/python3", os.path.join(HERE, "torch_bench.py"), "train", "--config", cfg_path,
                               "--json"] + shape + common)
                results[s]["lmkit"].append(lm["train"]["tokens_per_s"])
                results[s]["mfu"].append(lm["train"]["mfu"])
                results[s]["torch"].append(pt["train"]["tokens_per_s"])
                if a.json:
                    print(json.dumps({"round": r, "shape": s, "lmkit": lm, "torch": pt}), flush=True)
                else:
                    print(f"round {r + 1} {s}: lmkit {results[s]['lmkit'][-1]:.0f} tok/s "
                          f"(MFU {100 * results[s]['mfu'][-1]:.0f}%, of the FMA peak {lm['fma_peak_gflops']:.1f} "
                          f"GFLOP/s), PyTorch {results[s]['torch'][-1]:.0f} tok/s", file=sys.stderr, flush=True)
    print(f"\n{'shape':<26} {'lmkit tok/s':>12} {'PyTorch tok/s':>14} {'ratio':>6} {'paired':>7} {'MFU':>5}   "
          f"(medians of {a.rounds} rounds, {a.threads} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")
    for s in shapes:
        model, sets, batch, seq = SHAPES[s]
        lm, pt, mfu = (statistics.median(results[s][k]) for k in ("lmkit", "torch", "mfu"))
        paired = statistics.median(x / y for x, y in zip(results[s]["lmkit"], results[s]["torch"]))  # same round
        spread = f"lmkit {min(results[s]['lmkit']):.0f}-{max(results[s]['lmkit']):.0f}, " \
                 f"PyTorch {min(results[s]['torch']):.0f}-{max(results[s]['torch']):.0f}"
        print(f"{s + f' {batch}x{seq}':<26} {lm:>12.0f} {pt:>14.0f} {lm / pt:>5.2f}x {paired:>6.2f}x {100 * mfu:>4.0f}%   ({spread})")


if __name__ == "__main__":
    main()
