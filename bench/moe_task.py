#!/usr/bin/python3
"""A task for the mixture of experts (issue 13's "Proof"): two interleaved tasks marked by a token;
does top-1 routing separate them?

    /usr/bin/python3 bench/moe_task.py --bin build/bin --steps 300 --runner /work/bin/cpu [--task KIND]
        [--control no-marker|same-table] [--set moe.shared_expert=false ...]

The text is lines of segments, each opened by a marker, '<' (task A) or '>' (task B), chosen at
random, so the tasks interleave inside every line. Each task has a fixed random table over the 26
letters. --task:
  chain      the marker, then 3 to 12 letters: a random first letter, each next one the previous
             one mapped by the task's table (both tasks write lowercase letters);
  translate  the marker, then 2 to 6 pairs: a random source letter and its target, the source
             mapped by the task's table into the task's alphabet (A: uppercase, B: lowercase);
  query      as translate with '?' between a source letter and its target: the place that must
             apply the table holds the same token in both tasks ('?'), so only the context (the
             letter one place back, the marker further back) can route it; --one-item puts a
             marker before every item.
The routed places are the letters of a chain, the source letters of translate and the '?' of
query; only the task's marker tells which table applies.

The script tokenizes the text (byte-level), trains the `llama4-tiny` preset (4 layers, C 128,
8 experts of 256 top-1 + a shared expert on every layer, sigmoid routing, balance-loss
coefficient 0.01; NoPE on layer 3 and attention chunks of 64 on the others) with lm-train (--set
changes it, e.g. moe.shared_expert=false so that the experts must carry the tables), then reads
the checkpoint with the PyTorch reference (tests/fixtures/reference.py) on held-out text and
reports, per MoE layer, at the routed places:
  - routing purity: the share of places whose top-1 expert serves mostly their own task (0.5 is
    chance for two tasks, 1.0 a clean split), and each expert's share of each task;
  - the task information: I(expert; task) / H(task), the part of the task's bit the expert choice
    tells (0 = none, 1 = a clean split), and the same given the letter, I(expert; task | letter) /
    H(task | letter): whether a letter goes to other experts in the two tasks;
  - I(expert; letter) in bits (log2 26 = 4.7 when the experts split by letter alone);
  - the share of places whose expert changes when the two markers are swapped in the text (the
    marker's own influence on the routing, everything else the same).
It also reports the cross-entropy where the next character is determined by the place and the
task (0 when both tables are learnt) and where it is a random letter (ln 26 = 3.26 at best), and
the balance loss from the training log. Controls: no-marker shows both tasks with the same
marker '|' (the task is invisible: translate leaks it through the targets' alphabet, query
--one-item does not); same-table gives both tasks A's table and alphabet (nothing to separate).
The last line is a JSON summary.
"""
import argparse
import json
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))

LETTERS = "abcdefghijklmnopqrstuvwxyz"


UPPER = LETTERS.upper()


def make_text(rng, kind, tables, lines, width, shown, one_item=False):
    """The text and three per-character lists: the task of each routed place ('<', '>', or None:
    markers, newlines and, for "translate", the targets), whether the next character is
    determined by this one and the task, and whether it is a uniformly random letter.
    `shown` maps each task to the marker character the text shows for it."""
    out, tasks, det, rnd = [], [], [], []
    for _ in range(lines):
        line, task, d, r = "", [], [], []
        while len(line) < width:
            marker = rng.choice("<>")
            table, alphabet = tables[marker]
            c = rng.randrange(26)
            seg, st, sd, sr = shown[marker], [None], [False], [True]
            if kind == "chain":  # c, table(c), table(table(c)), ...
                n = rng.randint(3, 12)
                for i in range(n):
                    seg += LETTERS[c]
                    st.append(marker)
                    sd.append(i + 1 < n)
                    sr.append(False)
                    c = table[c]
            elif kind == "translate":  # pairs of a random source letter and its target in the task's alphabet
                n = rng.randint(2, 6)
                for i in range(n):
                    c = rng.randrange(26)
                    seg += LETTERS[c] + alphabet[table[c]]
                    st += [marker, None]
                    sd += [True, False]
                    sr += [False, i + 1 < n]
            else:  # query: a random letter, '?', then its target: the routed place is always '?'
                n = rng.randint(2, 4) if not one_item else 1
                for i in range(n):
                    c = rng.randrange(26)
                    seg += LETTERS[c] + "?" + alphabet[table[c]]
                    st += [None, marker, None]
                    sd += [False, True, False]
                    sr += [False, False, i + 1 < n]
            line += seg
            task += st
            d += sd
            r += sr
        out.append(line)
        # The segment's last character is followed by the next segment's marker (or the newline).
        tasks += task + [None]
        det += d + [False]
        rnd += r + [False]
    return "\n".join(out) + "\n", tasks, det, rnd


def entropy(counts):
    n = sum(counts)
    return -sum(c / n * math.log2(c / n) for c in counts if c)


def mutual_information(pairs):
    """I(X; Y) in bits over a list of (x, y) pairs."""
    xs, ys, joint = {}, {}, {}
    for x, y in pairs:
        xs[x] = xs.get(x, 0) + 1
        ys[y] = ys.get(y, 0) + 1
        joint[(x, y)] = joint.get((x, y), 0) + 1
    return entropy(xs.values()) + entropy(ys.values()) - entropy(joint.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--preset", default="llama4-tiny")
    ap.add_argument("--set", action="append", default=[],
                    help="lm-train --set KEY=VALUE (default: the preset as it is)")
    ap.add_argument("--runner", default="", help="command prefix for lm-train, e.g. /work/bin/cpu")
    ap.add_argument("--dir", default="", help="work directory (default: a new temporary one)")
    ap.add_argument("--task", choices=("chain", "translate", "query"), default="chain",
                    help="chain: each letter maps to the next by the marker's permutation (both tasks write the "
                         "same letters); translate: each random source letter is followed by its target, an "
                         "uppercase letter for '<' and a lowercase one for '>' (shared inputs, separate outputs); query: "
                         "as translate with a '?' between each letter and its target, the routed place")
    ap.add_argument("--one-item", action="store_true", help="query: one item per marker (the marker two places back)")
    ap.add_argument("--analyse", action="store_true",
                    help="do not train: measure the run already in --dir (same --seed and --control)")
    ap.add_argument("--control", choices=("none", "no-marker", "same-table"), default="none",
                    help="no-marker: both tasks shown with the same marker '|' (the task is invisible); "
                         "same-table: both markers map by the same permutation (nothing to separate)")
    args = ap.parse_args()
    runner = shlex.split(args.runner)
    work = args.dir or tempfile.mkdtemp(prefix="moe_task.")
    os.makedirs(work, exist_ok=True)

    rng = random.Random(args.seed)
    perms = {m: rng.sample(range(26), 26) for m in "<>"}
    if args.control == "same-table":
        perms[">"] = perms["<"]
    alphabets = {"<": UPPER if args.task != "chain" and args.control != "same-table" else LETTERS, ">": LETTERS}
    tables = {m: (perms[m], alphabets[m]) for m in "<>"}
    shown = {"<": "|", ">": "|"} if args.control == "no-marker" else {"<": "<", ">": ">"}
    val = None
    for name, lines in (("train", 4000), ("val", 200)):
        text, tasks, det, rnd = make_text(rng, args.task, tables, lines, 200, shown, args.one_item)
        if name == "val":
            val = (tasks, det, rnd)
        with open(os.path.join(work, name + ".txt"), "w") as f:
            f.write(text)
        subprocess.run([os.path.join(args.bin, "lm-tokenize"), "--no-eos", os.path.join(work, name + ".txt"), "-o",
                        os.path.join(work, name + ".tok"), "--force"], check=True)

    run = os.path.join(work, "run")
    cmd = runner + [os.path.join(args.bin, "lm-train"), args.preset, os.path.join(work, "train.tok"), "-o", run,
                    "--steps", str(args.steps), "--batch", str(args.batch), "--seq", str(args.seq), "--lr",
                    str(args.lr), "--warmup", str(max(1, args.steps // 10)), "--threads", str(args.threads),
                    "--seed", str(args.seed), "--log-every", "10", "-q"]
    for s in args.set:
        cmd += ["--set", s]
    load = os.getloadavg()[0]
    if not args.analyse:
        subprocess.run(cmd, check=True)
    log = [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]
    print(f"trained {args.preset} for {args.steps} steps of {args.batch} x {args.seq} (load average {load:.1f}); "
          f"training loss {log[0]['loss']:.3f} at step {log[0]['step']} -> {log[-1]['loss']:.3f}, "
          f"balance loss {log[-1].get('moe_aux', float('nan')):.3f} (1 = balanced)")

    import torch
    import reference as ref
    weights, meta = ref.load_safetensors(os.path.join(run, "model.safetensors"))
    cfg = ref.full_config(json.loads(meta["lmkit.config"]))
    params = {k: v.to(torch.float64) for k, v in weights.items()}
    text = open(os.path.join(work, "val.txt"), "rb").read()
    T = args.seq
    rows = [list(text[i:i + T]) for i in range(0, len(text) - T, T)]
    tokens = torch.tensor(rows, dtype=torch.int64)
    # The same text with the two markers swapped: which letters change expert when only the
    # marker says otherwise (the marker's own influence on the routing).
    swap = {ord("<"): ord(">"), ord(">"): ord("<")}
    flipped = torch.tensor([[swap.get(b, b) for b in row] for row in rows], dtype=torch.int64)
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        logits, _, router = ref.forward_full(cfg, params, tokens)
        _, _, router_flipped = ref.forward_full(cfg, params, flipped)

    # Each place's labels, from the generator (so the no-marker control is measured the same way).
    task, det, rnd = ([labels[r * T:(r + 1) * T] for r in range(len(rows))] for labels in val)
    # Cross-entropy of predicting place t + 1 from place t where the next character is determined
    # (by this one and the task) and where it is a random letter.
    logp = torch.log_softmax(logits, dim=-1)
    determined, first = [], []
    for r, row in enumerate(rows):
        for t in range(T - 1):
            if det[r][t]:
                determined.append(-logp[r, t, row[t + 1]].item())
            elif rnd[r][t]:
                first.append(-logp[r, t, row[t + 1]].item())
    print(f"held-out cross-entropy: determined places {statistics.mean(determined):.4f} nats "
          f"({len(determined)} places), random letters {statistics.mean(first):.3f} "
          f"(ln 26 = {math.log(26):.3f})")

    moe_layers = [i for i in range(cfg["n_layers"]) if ref.is_moe_layer(cfg, i)]
    E = cfg["moe"]["n_experts"]
    summary = {"task": args.task, "control": args.control, "load": round(load, 1), "loss": log[-1]["loss"],
               "determined_ce": statistics.mean(determined), "first_ce": statistics.mean(first), "layers": {}}
    for layer, logits_l, flipped_l in zip(moe_layers, router, router_flipped):
        choice = logits_l.argmax(-1)  # the top-1 (first) expert
        choice_flipped = flipped_l.argmax(-1)
        counts = {m: [0] * E for m in "<>"}
        by_task, by_letter, by_letter_task = [], [], {}
        moved = 0
        for r in range(len(rows)):
            for t in range(T):
                if task[r][t]:
                    e = int(choice[r, t])
                    counts[task[r][t]][e] += 1
                    by_task.append((e, task[r][t]))
                    letter = rows[r][t - 1] if args.task == "query" else rows[r][t]  # query: the letter before '?'
                    by_letter.append((e, letter))
                    by_letter_task.setdefault(letter, []).append((e, task[r][t]))
                    moved += int(choice_flipped[r, t]) != e
        total = {m: sum(counts[m]) for m in "<>"}
        pure = sum(max(counts["<"][e], counts[">"][e]) for e in range(E)) / (total["<"] + total[">"])
        # How much of the task (1 bit) and of the letter (log2 26 bits) the expert choice tells.
        task_bits = mutual_information(by_task) / entropy([total["<"], total[">"]])
        letter_bits = mutual_information(by_letter)
        # Given the letter, how much of the task the expert tells: I(expert; task | letter) / H(task | letter).
        n = len(by_task)
        cond_mi = sum(len(v) / n * mutual_information(v) for v in by_letter_task.values())
        cond_h = sum(len(v) / n * entropy([sum(1 for _, m in v if m == "<"), sum(1 for _, m in v if m == ">")])
                     for v in by_letter_task.values())
        task_given_letter = cond_mi / cond_h
        moved_share = moved / n
        split = "  ".join(f"e{e} {counts['<'][e] / total['<'] * 100:4.1f}/{counts['>'][e] / total['>'] * 100:4.1f}"
                          for e in range(E))
        print(f"layer {layer}: routing purity {pure:.3f}, expert tells {task_bits:.3f} of the task's bit "
              f"({task_given_letter:.3f} given the letter) and {letter_bits:.2f} bits of the letter; "
              f"{moved_share:.3f} of the letters change expert when the marker is swapped; "
              f"per expert % of '<' / % of '>' letters: {split}")
        summary["layers"][layer] = {"purity": round(pure, 3), "task_info": round(task_bits, 3),
                                    "task_info_given_letter": round(task_given_letter, 3),
                                    "letter_bits": round(letter_bits, 2), "moved_by_marker": round(moved_share, 3)}
    print("summary " + json.dumps(summary))
    print(f"(work directory {work})")


if __name__ == "__main__":
    main()
