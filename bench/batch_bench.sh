#!/bin/bash
# Batched decode throughput: lm-generate --batch N (continuous batching, one forward per step
# for all sequences) on stories15M- and stories110M-shaped random weights (lm-train --steps 0),
# PROMPTS short prompts (4 tokens) of TOKENS greedy tokens each (--ignore-eos), at N = 1, 4, 16,
# in ROUNDS interleaved rounds. Throughput = the decode steps' tokens over all sequences (all but
# each prompt's first) / (wall time - the same round's fixed cost, measured with -n 1: loading,
# checks, each prompt's prefill and the first token, sampled from the prefill's logits; -n 0
# stops before the prefill, which at N = 16 is about 8% of the run). Prints the median tokens/s,
# the speedup over N = 1, and the fraction reached of the two bounds:
#   bandwidth bound: N * read bandwidth / bytes read per step (every weight once per step for
#                    all N sequences, as lm-bench decode counts them, plus each one's KV cache);
#   compute bound:   FMA peak (lm-bench's register-only FMA loop on the same threads) /
#                    flops per token (2 per weight of every matrix, attention over the mean context).
# Run it under the team's CPU lock:  /work/bin/cpu bench/batch_bench.sh [BIN_DIR]
set -euo pipefail
BIN=${1:-build/bin}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-"stories15m stories110m"}
BATCHES=${BATCHES:-"1 4 16"}
TOKENS=${TOKENS:-128}
PROMPTS=${PROMPTS:-16}
THREADS=${THREADS:-2}
WORK=${WORK:-$(mktemp -d /tmp/batch_bench.XXXXXX)}
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
for shape in $SHAPES; do
  [ -f "$WORK/$shape/model.safetensors" ] || "$BIN/lm-train" "$shape" --steps 0 --seed 1 -o "$WORK/$shape" -q
  # The FMA peak (sgemm's run measures it), the read bandwidth and batch-1 decode's bytes per token.
  "$BIN/lm-bench" sgemm decode --sizes 512 --model "$WORK/$shape/model.safetensors" --decode-tokens "$TOKENS" \
    --threads "$THREADS" --repeats 3 --json > "$WORK/$shape.bench.json"
  python3 - "$WORK/$shape.prompts.tok" "$PROMPTS" 32000 <<'PY'
import json, random, struct, sys
path, n, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
with open(path, "wb") as f:  # a raw u16 token stream (docs/token-stream.md), one 4-token record per prompt
    f.write(b"LMKTOKS\0" + struct.pack("<IIIIIiiiiIQQ", 1, 64, 0, V, 2, -1, -1, -1, -1, 0, 0, 0))
    for _ in range(n):  # the stories shapes' vocabulary: 32000
        body = struct.pack("<4H", *[rng.randrange(3, V) for _ in range(4)])
        f.write(b"LMKR" + struct.pack("<IQ", 4, 0) + body)
PY
done
now() { date +%s.%N; }
for r in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    M="$WORK/$shape/model.safetensors"
    t0=$(now); "$BIN/lm-generate" -m "$M" -i "$WORK/$shape.prompts.tok" --input-format tokens -n 1 --format ids \
      --threads "$THREADS" > /dev/null; t1=$(now)
    echo "$t0 $t1" > "$WORK/$shape-fixed-$r"
    for b in $BATCHES; do
      t0=$(now)
      "$BIN/lm-generate" -m "$M" -i "$WORK/$shape.prompts.tok" --input-format tokens -n "$TOKENS" --temperature 0 \
        --ignore-eos --format ids --batch "$b" --threads "$THREADS" > "$WORK/$shape-$b-$r.ids"
      t1=$(now)
      echo "$t0 $t1" > "$WORK/$shape-$b-$r.time"
    done
  done
done
python3 - "$WORK" "$ROUNDS" "$SHAPES" "$BATCHES" "$TOKENS" "$PROMPTS" <<'PY'
import json, statistics, sys
work, rounds, shapes, batches, T, n = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5]), int(sys.argv[6])
def span(p):
    a, b = map(float, open(p).read().split())
    return b - a
print("%-12s %6s %10s %8s %10s %10s %8s %8s" % ("shape", "batch", "tok/s", "speedup", "bw bound", "fma bound", "of bw", "of fma"))
for s in shapes:
    d = json.load(open(f"{work}/{s}.bench.json"))
    fma = d["fma_peak_gflops"] * 1e9
    dec = d["decode"]
    bw = dec["bandwidth_gbytes_per_s"] * 1e9
    B1 = dec["bytes_per_token"]  # f32 weights (each read once per step) and one sequence's KV cache
    flops = B1 / 2  # 2 flops (a multiply-add) per f32 read: every weight, and every cached k and v
    print("# %s: FMA peak %.0f GFLOP/s (%s), read bandwidth %.1f GB/s, %.1f MB and %.1f MFLOP per token; "
          "lm-bench decode %.1f tok/s" % (s, fma / 1e9, d.get("fma_peak_isa"), bw / 1e9, B1 / 1e6, flops / 1e6, dec["tokens_per_s"]))
    base = None
    for b in batches:
        rates = []
        for r in range(1, rounds + 1):
            ids = sum(len(l.split()) for l in open(f"{work}/{s}-{b}-{r}.ids"))
            assert ids == n * T, (s, b, r, ids)
            rates.append((ids - n) / (span(f"{work}/{s}-{b}-{r}.time") - span(f"{work}/{s}-fixed-{r}")))
        rate = statistics.median(rates)
        base = base or rate
        bwb, fmab = int(b) * bw / B1, fma / flops
        print("%-12s %6s %10.1f %7.2fx %10.0f %10.0f %7.0f%% %7.0f%%" % (s, b, rate, rate / base, bwb, fmab, 100 * rate / bwb, 100 * rate / fmab))
PY
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
