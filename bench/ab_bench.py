#!/usr/bin/python3
"""Two builds of lmkit side by side: `lm-bench forward train` of each, in interleaved rounds.

    /usr/bin/python3 bench/ab_bench.py --before /tmp/before/bin --after build/bin --rounds 3 \
        --runner /work/bin/cpu --peak build/bench/gemm_bench

For each shape (stories15m 8 x 256 and stories110m 4 x 256 by default), each round runs the two
builds' lm-bench back to back (one process each; which goes first alternates by round, so both
see the same machine), each reporting forward and training-step tokens/s (the median of
--repeats timed runs after a warm-up) and its sgemm GFLOP/s. The table gives each build's median
over the rounds with its range, the ratio of the medians and the median of the per-round ratios
("paired"). With --peak (bench/gemm_bench), GFLOP/s are also given as a share of the AVX-512 (else
AVX2) FMA peak measured before the first round. --runner prefixes every command (a lock that keeps
other work off the cores while one runs). The load average before each run is recorded.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess

SHAPES = {"stories15m": (8, 256), "stories110m": (4, 256)}


def run_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="bin directory of the build to compare against")
    ap.add_argument("--after", required=True, help="bin directory of the build under test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="stories15m,stories110m")
    ap.add_argument("--sizes", default="1024,2048", help="lm-bench's square sgemm sizes")
    ap.add_argument("--runner", default="", help="command prefix for every run, e.g. /work/bin/cpu")
    ap.add_argument("--peak", default="", help="bench/gemm_bench binary: measure the FMA peak once first")
    ap.add_argument("--json", action="store_true", help="print every run as JSON too")
    args = ap.parse_args()
    runner = shlex.split(args.runner)

    peak, peak_isa = None, None
    if args.peak:
        peaks = run_json(runner + [args.peak, "--peak", "--threads", str(args.threads)])
        peak_isa = "avx512" if "avx512" in peaks else "avx2"
        peak = peaks.get(peak_isa)
        print(f"FMA peak ({peak_isa}, {args.threads} threads): {peak:.1f} GFLOP/s; load average {os.getloadavg()[0]:.2f}")

    runs = []
    for shape in args.shapes.split(","):
        batch, seq = SHAPES[shape]
        for r in range(args.rounds):
            order = [("before", args.before), ("after", args.after)]
            if r % 2:
                order.reverse()
            for label, bindir in order:
                load = os.getloadavg()[0]
                out = run_json(runner + [os.path.join(bindir, "lm-bench"), "forward", "train", "--model", shape,
                                         "--batch", str(batch), "--seq", str(seq), "--repeats", str(args.repeats),
                                         "--sizes", args.sizes, "--threads", str(args.threads), "--json"])
                runs.append({"shape": shape, "round": r, "build": label, "load": load, "report": out})
                print(f"  {shape} round {r} {label}: forward {out['forward']['tokens_per_s']:.0f} tok/s, "
                      f"train {out['train']['tokens_per_s']:.0f} tok/s, sgemm peak {out['sgemm_peak_gflops']:.0f} "
                      f"GFLOP/s, load {load:.2f}", flush=True)

    def col(shape, build, key):
        picks = {"forward": lambda o: o["forward"]["tokens_per_s"], "train": lambda o: o["train"]["tokens_per_s"],
                 "forward_gflops": lambda o: o["forward"]["gflops"], "train_gflops": lambda o: o["train"]["gflops"],
                 "sgemm": lambda o: o["sgemm_peak_gflops"]}
        return [picks[key](x["report"]) for x in runs if x["shape"] == shape and x["build"] == build]

    print(f"\n{'shape':12} {'what':16} {'before':>22} {'after':>22} {'ratio':>7} {'paired':>7}" +
          (f" {'after/peak':>10}" if peak else ""))
    for shape in args.shapes.split(","):
        for key, unit in (("forward", "tok/s"), ("train", "tok/s"), ("forward_gflops", "GFLOP/s"),
                          ("train_gflops", "GFLOP/s"), ("sgemm", "GFLOP/s")):
            b, a = col(shape, "before", key), col(shape, "after", key)
            mb, ma = statistics.median(b), statistics.median(a)
            paired = statistics.median([y / x for x, y in zip(b, a)])
            rb = f"{mb:.0f} ({min(b):.0f}-{max(b):.0f})"
            ra = f"{ma:.0f} ({min(a):.0f}-{max(a):.0f})"
            line = f"{shape:12} {key + ' ' + unit:16} {rb:>22} {ra:>22} {ma / mb:6.2f}x {paired:6.2f}x"
            if peak and key != "forward" and key != "train":
                line += f" {100 * ma / peak:9.0f}%"
            print(line)
    loads = [x["load"] for x in runs]
    print(f"\nload average before the runs: {min(loads):.2f} to {max(loads):.2f}")
    if args.json:
        print(json.dumps({"peak": {"isa": peak_isa, "gflops": peak}, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
