#!/bin/bash
# Batched decode throughput: lm-generate --batch N (continuous batching, one forward per step
# for all sequences) on stories15M- and stories110M-shaped random weights (lm-train --steps 0),
# PROMPTS short prompts (4 tokens) of TOKENS greedy tokens each (--ignore-eos), at N = 1, 4, 16,
# in ROUNDS interleaved rounds, for each weight type of TYPES (default f32; others cast from
# the f32 model with lm-convert-checkpoint --cast, e.g. TYPES="f32 bf16 f16 q8_0"), each
# type's --batch N ids checked equal to its --batch 1 ids. Throughput = the decode steps' tokens over all sequences (all but
# each prompt's first) / (wall time - the same round's fixed cost, measured with -n 1: loading,
# checks, each prompt's prefill and the first token, sampled from the prefill's logits; -n 0
# stops before the prefill, which at N = 16 is about 8% of the run). Prints the median tokens/s,
# the speedup over N = 1, and the fraction reached of the two bounds:
#   bandwidth bound: N * read bandwidth / bytes read per step (every weight once per step for
#                    all N sequences, as lm-bench decode counts them for the type, plus each
#                    one's KV cache);
#   compute bound:   FMA peak (lm-bench's register-only FMA loop on the same threads) /
#                    flops per token (2 per weight of every matrix, attention over the mean
#                    context; the same for every type: the f32 model's count).
# Run it under the team's CPU lock:  /work/bin/cpu bench/batch_bench.sh [BIN_DIR]
set -euo pipefail
BIN=${1:-build/bin}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-"stories15m stories110m"}
TYPES=${TYPES:-f32}
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
  for t in $TYPES; do  # each type's bytes per token
    [ "$t" = f32 ] && { cp "$WORK/$shape.bench.json" "$WORK/$shape-f32.bench.json"; continue; }
    [ -f "$WORK/$shape/model-$t.safetensors" ] ||
      "$BIN/lm-convert-checkpoint" -q --cast "$t" "$WORK/$shape/model.safetensors" "$WORK/$shape/model-$t.safetensors"
    "$BIN/lm-bench" decode --model "$WORK/$shape/model-$t.safetensors" --decode-tokens "$TOKENS" \
      --threads "$THREADS" --repeats 3 --json > "$WORK/$shape-$t.bench.json"
  done
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
    for t in $TYPES; do
      M="$WORK/$shape/model.safetensors"
      [ "$t" = f32 ] || M="$WORK/$shape/model-$t.safetensors"
      t0=$(now); "$BIN/lm-generate" -m "$M" -i "$WORK/$shape.prompts.tok" --input-format tokens -n 1 --format ids \
        --threads "$THREADS" > /dev/null; t1=$(now)
      echo "$t0 $t1" > "$WORK/$shape-$t-fixed-$r"
      for b in $BATCHES; do
        t0=$(now)
        "$BIN/lm-generate" -m "$M" -i "$WORK/$shape.prompts.tok" --input-format tokens -n "$TOKENS" --temperature 0 \
          --ignore-eos --format ids --batch "$b" --threads "$THREADS" > "$WORK/$shape-$t-$b-$r.ids"
        t1=$(now)
        echo "$t0 $t1" > "$WORK/$shape-$t-$b-$r.time"
        first=$(echo $BATCHES | cut -d' ' -f1)
        cmp -s "$WORK/$shape-$t-$b-$r.ids" "$WORK/$shape-$t-$first-$r.ids" ||
          { echo "batch_bench: $shape $t: --batch $b gave other ids than --batch $first" >&2; exit 1; }
      done
    done
  done
done
python3 - "$WORK" "$ROUNDS" "$SHAPES" "$BATCHES" "$TOKENS" "$PROMPTS" "$TYPES" <<'PY'
import json, statistics, sys
work, rounds, shapes, batches, T, n = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5]), int(sys.argv[6])
types = sys.argv[7].split()
def span(p):
    a, b = map(float, open(p).read().split())
    return b - a
print("%-12s %5s %6s %10s %8s %10s %10s %8s %8s" % ("shape", "type", "batch", "tok/s", "speedup", "bw bound", "fma bound", "of bw", "of fma"))
for s in shapes:
    d = json.load(open(f"{work}/{s}.bench.json"))
    fma = d["fma_peak_gflops"] * 1e9
    flops = d["decode"]["bytes_per_token"] / 2  # 2 flops (a multiply-add) per f32 read: every weight, every cached k and v
    print("# %s: FMA peak %.0f GFLOP/s (%s), %.1f MFLOP per token" % (s, fma / 1e9, d.get("fma_peak_isa"), flops / 1e6))
    for t in types:
        dec = json.load(open(f"{work}/{s}-{t}.bench.json"))["decode"]
        bw = dec["bandwidth_gbytes_per_s"] * 1e9
        B1 = dec["bytes_per_token"]  # the weights (each read once per step) and one sequence's KV cache
        print("# %s %s: read bandwidth %.1f GB/s, %.1f MB per token (%s KV cache, as lm-generate's --kv-dtype auto); "
              "lm-bench decode %.1f tok/s" % (s, t, bw / 1e9, B1 / 1e6, dec.get("kv_dtype", "f32"), dec["tokens_per_s"]))
        base = None
        for b in batches:
            rates = []
            for r in range(1, rounds + 1):
                ids = sum(len(l.split()) for l in open(f"{work}/{s}-{t}-{b}-{r}.ids"))
                assert ids == n * T, (s, t, b, r, ids)
                rates.append((ids - n) / (span(f"{work}/{s}-{t}-{b}-{r}.time") - span(f"{work}/{s}-{t}-fixed-{r}")))
            rate = statistics.median(rates)
            base = base or rate
            bwb, fmab = int(b) * bw / B1, fma / flops
            print("%-12s %5s %6s %10.1f %7.2fx %10.0f %10.0f %7.0f%% %7.0f%%"
                  % (s, t, b, rate, rate / base, bwb, fmab, 100 * rate / bwb, 100 * rate / fmab))
PY
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
