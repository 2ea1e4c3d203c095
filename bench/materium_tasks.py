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
2. Block-wise positions. Records are [BOS] f... [ATOMS] (a a a a)... [LATTICE] [EOS]: 0..7
   filler tokens f before [ATOMS], then 1..12 blocks of 4 atoms over 16 elements, in which no
   slot repeats an element: slot k of a block draws uniformly from the elements slot k of the
   earlier blocks has not used. Every element is as likely in every slot, so no token tells its
   slot, and what an atom may be depends on its index within the block and on the atoms at
   that index in all earlier blocks. With block-wise ids those are all at one relative position
   (RoPE sees the same slot of every block at distance 0, the next slot at -1), so one head
   attends to all of them; with standard ids they are 4, 8, ..., 44 tokens back. The same model
   (same data, steps, seed) trains with rope_mode blockwise and, as its peer, with standard
   positions; the result gives both held-out losses against the task's entropy floor and against
   the floor of a model that knows the slots but not the exclusion, and of 200 structures
   sampled at temperature 1 from held-out [BOS] f... [ATOMS]: the share well formed (whole
   blocks, no slot repeating an element), the share with whole blocks, and the share of atoms
   after the first block that repeat their slot (uniform sampling's share is printed beside).
   The earlier version of this task (slot k drawn from a fixed set of its own) did not
   separate: standard positions read the slot off the last few atoms.
   The README's figures: --tasks blockwise --steps 20000 --block-records 20000, one mode per
   run (--block-modes blockwise, then standard) to keep each run short.

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
           "--batch", "16", "--seq", str(seq), "--sample", "sequential", "--lr", str(args.lr), "--warmup", "20",
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


BLK_VOCAB = 32
ELEMENTS = range(5, 21)        # 16 elements (--elements changes it)
FILLERS = range(21, 25)
MAX_FILLERS, MIN_BLOCKS, MAX_BLOCKS = 7, 1, 12


def blockwise_nll(record):
    """The task's own negative log-likelihood of one record's targets (nats, summed) and their
    number, as a model that knows the generating process pays: each atom is uniform over the
    elements its slot has not used yet, and the record ends after block j with probability
    1 / (MAX_BLOCKS - j + 1)."""
    atoms = record.index(ATOMS)
    fillers = atoms - 1
    nll = 0.0
    for i in range(fillers + 1):  # the i-th choice after [BOS]: another filler or [ATOMS]
        left = MAX_FILLERS + 1 - i
        nll -= math.log((left - 1) / left * (1 / len(FILLERS))) if i < fillers else math.log(1 / left)
    n = (record.index(LATTICE) - atoms - 1) // 4
    nll += 4 * sum(math.log(len(ELEMENTS) - b) for b in range(n))
    for j in range(1, n + 1):  # after block j: [LATTICE] or another block
        if j < MIN_BLOCKS:
            continue
        left = MAX_BLOCKS - j + 1
        nll -= math.log(1 / left) if j == n else math.log(1 - 1 / left)
    return nll, len(record) - 1  # [LATTICE] -> [EOS] is certain


def blockwise_task(args, d, rng):
    """Blocks of 4 atoms in which no slot repeats an element: slot k of every block draws
    uniformly from the elements that slot k of the earlier blocks has not used. Every element
    is as likely in every slot, so no token tells its slot; what an atom may be depends on the
    atoms in the same slot of all earlier blocks. With block-wise ids those are all at one
    relative position (the same id, or the next slot's), so one attention head finds them; with
    standard ids they are 4, 8, ..., 44 tokens back, and where a block ends is only known by
    counting from [ATOMS] modulo 4 over up to 48 tokens."""
    def records(n):
        out = []
        for _ in range(n):
            r = [BOS] + [rng.choice(FILLERS) for _ in range(rng.randint(0, MAX_FILLERS))] + [ATOMS]
            blocks = rng.randint(MIN_BLOCKS, MAX_BLOCKS)
            columns = [rng.sample(ELEMENTS, blocks) for _ in range(4)]
            for b in range(blocks):
                r += [columns[k][b] for k in range(4)]
            out.append(r + [LATTICE, EOS])
        return out

    def well_formed(tokens):
        if LATTICE not in tokens:
            return False
        atoms = tokens[:tokens.index(LATTICE)]
        if not atoms or len(atoms) % 4 or len(atoms) > 4 * MAX_BLOCKS or any(t not in ELEMENTS for t in atoms):
            return False
        return all(len(set(atoms[k::4])) == len(atoms[k::4]) for k in range(4))

    def whole_blocks(tokens):
        """[LATTICE] comes after a whole number of blocks (of elements): where blocks end is known."""
        if LATTICE not in tokens:
            return False
        atoms = tokens[:tokens.index(LATTICE)]
        return 0 < len(atoms) <= 4 * MAX_BLOCKS and len(atoms) % 4 == 0 and all(t in ELEMENTS for t in atoms)

    def repeats(samples):
        """Of the sampled atoms after the first block (up to [LATTICE]), the share that repeats an
        element already used in its slot; uniform sampling over the elements repeats
        (b / |elements|) of them in block b."""
        rep = n = 0
        for tokens in samples:
            atoms = tokens[:tokens.index(LATTICE)] if LATTICE in tokens else tokens
            for i, t in enumerate(atoms):
                if i >= 4 and t in ELEMENTS:
                    n += 1
                    rep += t in atoms[i % 4:i:4]
        return rep / max(n, 1)

    tr, va = os.path.join(d, "blk_train.tok"), os.path.join(d, "blk_val.tok")
    write_stream(tr, records(args.block_records), BLK_VOCAB)
    val = records(400)
    write_stream(va, val, BLK_VOCAB)
    prompts = os.path.join(d, "blk_p.tok")
    write_stream(prompts, [r[:r.index(ATOMS) + 1] for r in val[:200]], BLK_VOCAB)
    nll = [blockwise_nll(r) for r in val]
    targets = sum(n for _, n in nll)
    # What a model that knows each slot and where blocks end, but not the exclusion, pays:
    # every atom uniform over all 16 elements.
    blind = sum(x for x, _ in nll) + sum(
        sum(math.log(len(ELEMENTS)) - math.log(len(ELEMENTS) - b) for b in range((r.index(LATTICE) - r.index(ATOMS) - 1) // 4)) * 4
        for r in val)
    late = [b for r in val for b in range(1, (r.index(LATTICE) - r.index(ATOMS) - 1) // 4) for _ in range(4)]
    out = {"floor": sum(x for x, _ in nll) / targets, "floor_without_exclusion": blind / targets,
           "repeated_in_slot_if_uniform": sum(late) / len(ELEMENTS) / len(late)}
    seq = 1 + MAX_FILLERS + 1 + 4 * MAX_BLOCKS + 2
    for mode in args.block_modes.split(","):
        cfg = os.path.join(d, "blk_%s.json" % mode)
        model_config(cfg, rope_mode=mode, atoms_token_id=ATOMS, lattice_token_id=LATTICE, atom_block_size=4,
                     vocab_size=BLK_VOCAB, max_seq_len=seq + 1)
        model, last = train(args, d, "blk_" + mode, cfg, tr, va, seq)
        samples = generate(args, model, prompts, 4 * MAX_BLOCKS + 2, 1.0)
        out[mode] = {"train_loss": last["loss"], "val_loss": eval_loss(args, model, va, seq),
                     "well_formed": sum(map(well_formed, samples)) / len(samples),
                     "whole_blocks": sum(map(whole_blocks, samples)) / len(samples),
                     "repeated_in_slot": repeats(samples), "samples": len(samples)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bin", help="directory of the lm-* programs")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="keep the data and runs here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument("--tasks", default="condition,blockwise", help="which tasks (comma-separated)")
    ap.add_argument("--block-records", type=int, default=4000, help="training records of the block-wise task")
    ap.add_argument("--block-modes", default="blockwise,standard", help="rope modes the block-wise task trains")
    ap.add_argument("--elements", type=int, default=16, help="elements of the block-wise task (at most 16)")
    ap.add_argument("--max-blocks", type=int, default=12, help="most blocks of a block-wise record (at most --elements)")
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    global ELEMENTS, MAX_BLOCKS
    ELEMENTS, MAX_BLOCKS = range(5, 5 + args.elements), args.max_blocks
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
    if "blockwise" in res:
        print("block-wise task: atoms repeating their slot if sampled uniformly: %.1f%%" %
              (100 * res["blockwise"]["repeated_in_slot_if_uniform"]))
    for mode in args.block_modes.split(",") if "blockwise" in res else ():
        b = res["blockwise"]
        print("%-9s positions: val loss %.4f (entropy floor %.4f, %.4f without the exclusion); sampled structures "
              "well formed %.1f%%, whole blocks %.1f%%, atoms repeating their slot %.1f%% (%d)" %
              (mode, b[mode]["val_loss"], b["floor"], b["floor_without_exclusion"], 100 * b[mode]["well_formed"],
               100 * b[mode]["whole_blocks"], 100 * b[mode]["repeated_in_slot"], b[mode]["samples"]))


if __name__ == "__main__":
    main()
