#!/usr/bin/python3
"""materium's two mechanisms (docs/materium.md) proven on synthetic tasks, through the programs.

    python3 bench/materium_tasks.py --bin build/bin --steps 300 [--json] [--out DIR]

1. Conditions, all three types, in a block-wise model. Records are
   [BOS] [ATOMS] a b c [LATTICE] [EOS]: an embedding class k in 0..3 decides a = 5 + k, a
   linear condition (x, y) decides b = 9 + [x > 0] + 2 [y > 0], and a formula condition (one
   [element, count] pair, element 16..19, count 1..4) decides c = its element. Nothing in
   the tokens tells them, so without the conditions the best loss is 3 ln 4 over the six
   targets (0.693 nats); with them every target is certain. The model trains with
   --condition-dropout 0.2 (classifier-free), then lm-eval-loss reports the held-out loss with
   the conditions, and lm-generate (greedy, from [BOS] [ATOMS]) the share of prompts whose three
   tokens are right, with the conditions and without (unconditional: chance is 1/64).
2. Block-wise positions. Records are [BOS] [ATOMS] (e i j l)... [LATTICE] [EOS] with 1..5
   blocks; in a block, slot 0 is an element 5..8 and slots 1, 2, 3 draw from {9, 10}, {11, 12},
   {13, 14}: what a token may be depends on its index within the block only. The same model
   trains with rope_mode blockwise and, as its peer in the same run, with standard positions;
   the table gives both held-out losses and the share of sampled structures (temperature 1,
   from [BOS] [ATOMS]) whose every block is well formed.

No PyTorch: the data are written here (token streams as docs/token-stream.md, raw kind) and
every number comes from lm-train, lm-eval-loss and lm-generate.
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

PAD, BOS, EOS, LATTICE, ATOMS = 0, 1, 2, 3, 4
VOCAB = 20


def write_stream(path, records, vocab=VOCAB):
    """A token stream (docs/token-stream.md) of raw tokens, one record per list, start 0."""
    with open(path, "wb") as f:
        f.write(b"LMKTOKS\0" + struct.pack("<IIIIIiiiiIQQ", 1, 64, 0, vocab, 2, -1, -1, -1, -1, 0, 0, 0))
        for r in records:
            body = struct.pack("<%dH" % len(r), *r)
            f.write(b"LMKR" + struct.pack("<IQ", len(r), 0) + body + b"\0" * ((8 - len(body) % 8) % 8))


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p.stdout


def model_config(path, **extra):
    cfg = {"dim": 64, "n_layers": 2, "n_heads": 4, "hidden_dim": 128, "vocab_size": VOCAB, "max_seq_len": 32,
           "pad_id": PAD, "bos_id": BOS, "eos_id": EOS}
    cfg.update(extra)
    with open(path, "w") as f:
        json.dump(cfg, f)


def train(args, d, name, config, data, val, seq, conditions=None, val_conditions=None, dropout=0.0):
    cmd = [os.path.join(args.bin, "lm-train"), config, data, "-o", os.path.join(d, name), "--steps", str(args.steps),
           "--batch", "16", "--seq", str(seq), "--sample", "sequential", "--lr", "3e-3", "--warmup", "20",
           "--seed", str(args.seed), "--val", val, "--json", "-q"]
    if conditions:
        cmd += ["--conditions", conditions, "--val-conditions", val_conditions]
    if dropout > 0:
        cmd += ["--condition-dropout", str(dropout)]
    log = [json.loads(line) for line in run(cmd).splitlines() if line.startswith("{")]
    return os.path.join(d, name, "model.safetensors"), log[-1]


def eval_loss(args, model, data, seq, conditions=None):
    cmd = [os.path.join(args.bin, "lm-eval-loss"), "-m", model, data, "--seq", str(seq), "--json"]
    if conditions:
        cmd += ["--conditions", conditions]
    return json.loads(run(cmd))["loss"]


def generate(args, model, prompts, n, temperature, conditions=None):
    cmd = [os.path.join(args.bin, "lm-generate"), "-m", model, "-i", prompts, "--input-format", "tokens",
           "--format", "ids", "-n", str(n), "--temperature", str(temperature), "--seed", str(args.seed), "-q"]
    if conditions:
        cmd += ["--conditions", conditions]
    return [[int(t) for t in line.split()] for line in run(cmd).splitlines()]


def condition_task(args, d, rng):
    def records(n):
        vals, recs = [], []
        for _ in range(n):
            k = rng.randrange(4)
            x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
            elements = [rng.randrange(16, 20)]
            formula = [[e, rng.randint(1, 4)] for e in elements]
            vals.append({"space_group": k, "band_gap": [round(x, 3), round(y, 3)], "formula": formula})
            recs.append([BOS, ATOMS, 5 + k, 9 + (x > 0) + 2 * (y > 0), elements[0], LATTICE, EOS])
        return vals, recs

    def conds(path, vals):
        with open(path, "w") as f:
            for v in vals:
                f.write(json.dumps(v) + "\n")

    train_vals, train_rec = records(4000)
    val_vals, val_rec = records(400)
    paths = {k: os.path.join(d, "cond_" + k) for k in ("train.tok", "train.jsonl", "val.tok", "val.jsonl", "p.tok",
                                                        "config.json")}
    write_stream(paths["train.tok"], train_rec)
    conds(paths["train.jsonl"], train_vals)
    write_stream(paths["val.tok"], val_rec)
    conds(paths["val.jsonl"], val_vals)
    write_stream(paths["p.tok"], [[BOS, ATOMS]] * len(val_rec))
    model_config(paths["config.json"], rope_mode="blockwise", atoms_token_id=ATOMS, lattice_token_id=LATTICE,
                 atom_block_size=4,
                 conditions=[{"name": "space_group", "proj_layer_type": "embedding", "input_dim": 4},
                             {"name": "band_gap", "proj_layer_type": "linear", "input_dim": 2},
                             {"name": "formula", "proj_layer_type": "formula", "input_dim": 4, "max_elements": 2}])
    model, last = train(args, d, "cond_run", paths["config.json"], paths["train.tok"], paths["val.tok"], 8,
                        paths["train.jsonl"], paths["val.jsonl"], dropout=0.2)
    loss = eval_loss(args, model, paths["val.tok"], 8, paths["val.jsonl"])
    want = [r[2:5] for r in val_rec]
    with_c = generate(args, model, paths["p.tok"], 3, 0, paths["val.jsonl"])
    without = generate(args, model, paths["p.tok"], 3, 0)
    acc = lambda got: sum(g[:3] == w for g, w in zip(got, want)) / len(want)
    per_slot = [sum(len(g) > i and g[i] == w[i] for g, w in zip(with_c, want)) / len(want) for i in range(3)]
    return {"train_loss": last["loss"], "val_loss": loss, "floor_without_conditions": 3 * math.log(4) / 6,
            "accuracy_per_token_embedding_linear_formula": per_slot,
            "accuracy_with_conditions": acc(with_c), "accuracy_unconditional": acc(without), "prompts": len(want)}


SLOTS = [range(5, 9), range(9, 11), range(11, 13), range(13, 15)]


def blockwise_floor():
    """The task's entropy per target (nats): n uniform in 1..5 blocks of ln 4 + 3 ln 2, and after
    block i < 5 the choice between [LATTICE] (probability 1 / (6 - i)) and another block."""
    nll = count = 0.0
    for n in range(1, 6):
        x = math.log(4) + 3 * math.log(2)
        for i in range(1, n):
            x += -math.log(1 - 1 / (6 - i)) + math.log(4) + 3 * math.log(2)
        if n < 5:
            x += -math.log(1 / (6 - n))
        nll += x / 5
        count += (4 * n + 3) / 5
    return nll / count


def blockwise_task(args, d, rng):
    def records(n):
        out = []
        for _ in range(n):
            r = [BOS, ATOMS]
            for _ in range(rng.randint(1, 5)):
                r += [rng.choice(list(s)) for s in SLOTS]
            out.append(r + [LATTICE, EOS])
        return out

    def well_formed(tokens):
        if LATTICE not in tokens:
            return False
        atoms = tokens[:tokens.index(LATTICE)]
        return len(atoms) > 0 and len(atoms) % 4 == 0 and all(t in SLOTS[i % 4] for i, t in enumerate(atoms))

    tr, va = os.path.join(d, "blk_train.tok"), os.path.join(d, "blk_val.tok")
    write_stream(tr, records(4000))
    write_stream(va, records(400))
    prompts = os.path.join(d, "blk_p.tok")
    write_stream(prompts, [[BOS, ATOMS]] * 200)
    out = {"floor": blockwise_floor()}
    for mode in ("blockwise", "standard"):
        cfg = os.path.join(d, "blk_%s.json" % mode)
        model_config(cfg, rope_mode=mode, atoms_token_id=ATOMS, lattice_token_id=LATTICE, atom_block_size=4)
        model, last = train(args, d, "blk_" + mode, cfg, tr, va, 24)
        samples = generate(args, model, prompts, 24, 1.0)
        out[mode] = {"train_loss": last["loss"], "val_loss": eval_loss(args, model, va, 24),
                     "well_formed": sum(map(well_formed, samples)) / len(samples), "samples": len(samples)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bin", help="directory of the lm-* programs")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="keep the data and runs here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument("--tasks", default="condition,blockwise", help="which tasks (comma-separated)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    d = args.out or tempfile.mkdtemp(prefix="materium_tasks.")
    os.makedirs(d, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3]
    tasks = args.tasks.split(",")
    res = {"steps": args.steps, "loadavg": load}
    if "condition" in tasks:
        res["condition"] = condition_task(args, d, rng)
    if "blockwise" in tasks:
        res["blockwise"] = blockwise_task(args, d, rng)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print("materium synthetic tasks, %d steps each (load average %s)" % (args.steps, " ".join(load)))
    if "condition" in res:
        c = res["condition"]
        print("conditions: val loss %.4f (floor without them %.4f); greedy first 3 tokens right: %.1f%% with conditions, "
          "%.1f%% unconditional (%d prompts)" % (c["val_loss"], c["floor_without_conditions"],
                                                 100 * c["accuracy_with_conditions"], 100 * c["accuracy_unconditional"],
                                                 c["prompts"]))
    for mode in ("blockwise", "standard") if "blockwise" in res else ():
        b = res["blockwise"]
        print("%-9s positions: val loss %.4f (entropy floor %.4f), sampled structures well formed %.1f%% (%d)" %
              (mode, b[mode]["val_loss"], b["floor"], 100 * b[mode]["well_formed"], b[mode]["samples"]))


if __name__ == "__main__":
    main()
