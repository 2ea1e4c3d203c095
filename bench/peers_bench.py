"""The rounds of bench/peers_bench.sh (which finds the peers and sets the environment): each
round runs every case, lmkit then its peer; prints medians, ranges and paired ratios."""
import json
import os
import re
import statistics
import subprocess
import sys

E = os.environ
BIN, WORK, THREADS = E["BIN"], E["WORK"], E["THREADS"]
LM = [os.path.join(BIN, "lm-bench")]
LM_COMMON = ["--threads", THREADS, "--json", "--sizes=1024"]
TORCH_BENCH = [E["TORCH_PY"], os.path.join(E["SRC"], "bench", "torch_bench.py"), "--threads", THREADS, "--json"]
BABY = ["--model", "tiny", "--set", "vocab_size=256", "--set", "pad_id=-1", "--set", "eos_id=-1"]


def run(cmd, cwd=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    if p.returncode != 0:
        sys.exit(f"peers_bench: error: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


def lm_train(model_args, batch, seq, repeats):
    r = json.loads(run(LM + ["train", *model_args, "--batch", str(batch), "--seq", str(seq),
                             "--repeats", str(repeats), "--warmup", "1", *LM_COMMON]))
    return r["train"]["tokens_per_s"], r["train"]["mfu"], r["fma_peak_gflops"]


def nanogpt_baby():
    # nanoGPT's README CPU command (baby shape, no compile), timed by its own per-iteration log.
    out = run([E["TORCH_PY"], "train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
               "--eval_iters=1", "--eval_interval=100000", "--log_interval=1", "--block_size=64", "--batch_size=12",
               "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=30", "--lr_decay_iters=2000",
               "--dropout=0.0", "--always_save_checkpoint=False", "--out_dir=" + os.path.join(WORK, "nanogpt-out")],
              cwd=E["NANOGPT"])
    ms = [float(m) for m in re.findall(r"iter (?:\d+): loss [\d.]+, time ([\d.]+)ms", out)][5:]  # past warm-up
    return 12 * 64 / (statistics.median(ms) / 1e3)


def torch_train(model, batch, seq, repeats):
    r = json.loads(run(TORCH_BENCH + ["train", "--model", model, "--batch", str(batch), "--seq", str(seq),
                                      "--repeats", str(repeats), "--warmup", "1"]))
    return r["train"]["tokens_per_s"]


def lm_prompt(model):
    r = json.loads(run(LM + ["forward", "--model", model, "--batch", "1", "--seq", "1", "--prompt-tokens", "128",
                             "--repeats", "5", "--warmup", "1", *LM_COMMON]))
    return r["prompt"]["tokens_per_s"], r["prompt"]["mfu"], r["fma_peak_gflops"]


def llama_pp(model):
    r = json.loads(run([os.path.join(E["LLAMA_CPP"], "build", "bin", "llama-bench"), "-m",
                        os.path.join(WORK, model + ".gguf"), "-p", "128", "-n", "0", "-t", THREADS, "-r", "5",
                        "-o", "json"]))
    return r[0]["avg_ts"]


CASES = {  # name: (what, lmkit run -> (tok/s, mfu, peak), peer name, peer run -> tok/s, target ratio)
    "baby": ("train 12x64, baby 4L/4H/128d", lambda: lm_train(BABY, 12, 64, 10), "nanoGPT", nanogpt_baby, 2.0),
    "stories15m": ("train 8x256, stories15m", lambda: lm_train(["--model", "stories15m"], 8, 256, 3),
                   "PyTorch eager", lambda: torch_train("stories15m", 8, 256, 3), 3.0),
    "stories110m": ("train 4x256, stories110m", lambda: lm_train(["--model", "stories110m"], 4, 256, 2),
                    "PyTorch eager", lambda: torch_train("stories110m", 4, 256, 2), 3.0),
    "pp15m": ("pp128, stories15m, last logits", lambda: lm_prompt("stories15m"), "llama.cpp f32",
              lambda: llama_pp("stories15m"), 1.2),
    "pp110m": ("pp128, stories110m, last logits", lambda: lm_prompt("stories110m"), "llama.cpp f32",
               lambda: llama_pp("stories110m"), 1.2),
}


def spread(v):
    return f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"


def main():
    names = E["CASES"].split(",")
    if not set(names) <= set(CASES):
        sys.exit(f"peers_bench: error: cases are {','.join(CASES)}")
    res = {n: {"lm": [], "peer": [], "mfu": [], "peak": []} for n in names}
    for rnd in range(int(E["ROUNDS"])):
        for n in names:
            what, lm, peer_name, peer, _ = CASES[n]
            tps, mfu, peak = lm()
            ptps = peer()
            for k, v in (("lm", tps), ("peer", ptps), ("mfu", mfu), ("peak", peak)):
                res[n][k].append(v)
            print(f"round {rnd + 1} {n}: lmkit {tps:.0f} tok/s (MFU {100 * mfu:.0f}% of {peak:.0f} GFLOP/s), "
                  f"{peer_name} {ptps:.0f} tok/s, {tps / ptps:.2f}x", flush=True)
    print(f"after: {subprocess.run(['uptime'], stdout=subprocess.PIPE, text=True).stdout.strip()}")
    print(f"\n{'case':<34} {'lmkit tok/s':>20} {'peer tok/s':>20} {'peer':<14} {'ratio (range)':>20} "
          f"{'MFU':>12} {'target':>8}")
    for n in names:
        what, _, peer_name, _, target = CASES[n]
        r = res[n]
        ratios = [a / b for a, b in zip(r["lm"], r["peer"])]
        mfu = [100 * m for m in r["mfu"]]
        ok = statistics.median(ratios) >= target
        print(f"{what:<34} {spread(r['lm']):>20} {spread(r['peer']):>20} {peer_name:<14} "
              f"{statistics.median(ratios):>6.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
              f"{statistics.median(mfu):>5.0f}% ({min(mfu):.0f}-{max(mfu):.0f}) "
              f">={target}x {'met' if ok else 'NOT met'}")
    print(f"MFU: of the best FMA peak lm-bench measured in each run (median {statistics.median(sum((res[n]['peak'] for n in names), [])):.0f} GFLOP/s)")


main()
