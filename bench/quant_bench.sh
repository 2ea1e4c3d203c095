#!/bin/bash
# Speed of quantized weights, lmkit against llama.cpp on the same GGUF files:
# stories15M- and stories110M-shaped random weights (lm-train --steps 0), written as f32 and
# q8_0, q4_K and q6_K GGUF by lm-convert-checkpoint (--cast; q4_K and q6_K on the 110M shape
# only, whose rows are multiples of 256: stories15M's 288 are not), then ROUNDS interleaved rounds of
#   decode (TYPES):            lm-bench decode --model X.gguf --decode-tokens 128 --threads 2
#                              llama-bench -m X.gguf -p 0 -n 128 -t 2
#   prompt processing (PP_TYPES, 128 tokens, last logits only):
#                              lm-bench forward --model X.gguf --prompt-tokens 128 --batch 1 --seq 128 --threads 2
#                              llama-bench -m X.gguf -p 128 -n 0 -t 2
# Prints, per shape, type and kind, the median tokens/s of each over the rounds with the
# range (min-max) of lmkit's, the ratio of the medians and its range over the rounds (each
# round's ratio), and for decode lmkit's fraction of the bandwidth bound (bytes actually read
# per token: the matrices as stored, the KV cache, over the measured read bandwidth).
# A round takes about a minute with the defaults; run it under the team's CPU lock, a few
# rounds at a time (WORK=dir keeps the models and the results of earlier rounds, and
# FIRST_ROUND=k numbers the new ones from k, so rounds run in separate lock holds add up):
#   /work/bin/cpu env WORK=/tmp/qb ROUNDS=2 bench/quant_bench.sh [BIN_DIR] [LLAMA_BIN_DIR]
#   /work/bin/cpu env WORK=/tmp/qb ROUNDS=2 FIRST_ROUND=3 bench/quant_bench.sh ...
set -euo pipefail
BIN=${1:-build/bin}
LLAMA=${2:-/work/peers/llama.cpp/build/bin}
ROUNDS=${ROUNDS:-3}
FIRST_ROUND=${FIRST_ROUND:-1}
SHAPES=${SHAPES:-"stories15m stories110m"}
TYPES=${TYPES:-"f32 q8_0 q4_K q6_K"}
PP_TYPES=${PP_TYPES:-"q8_0"}
WORK=${WORK:-$(mktemp -d /tmp/quant_bench.XXXXXX)}
mkdir -p "$WORK"
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
skip() { [ "$1" = stories15m ] && { [ "$2" = q4_K ] || [ "$2" = q6_K ]; }; }
for shape in $SHAPES; do
  if [ ! -f "$WORK/$shape/model.safetensors" ]; then
    "$BIN/lm-train" "$shape" --steps 0 --seed 1 -o "$WORK/$shape" -q
  fi
  for t in $TYPES $PP_TYPES; do
    skip "$shape" "$t" && continue
    g="$WORK/$shape-$t.gguf"
    [ -f "$g" ] || { if [ "$t" = f32 ]; then "$BIN/lm-convert-checkpoint" -q --to gguf "$WORK/$shape/model.safetensors" "$g";
                     else "$BIN/lm-convert-checkpoint" -q --to gguf --cast "$t" "$WORK/$shape/model.safetensors" "$g"; fi; }
  done
done
LAST_ROUND=$((FIRST_ROUND + ROUNDS - 1))
for r in $(seq "$FIRST_ROUND" "$LAST_ROUND"); do
  for shape in $SHAPES; do
    for t in $TYPES; do
      skip "$shape" "$t" && continue
      g="$WORK/$shape-$t.gguf"
      "$BIN/lm-bench" decode --model "$g" --decode-tokens 128 --threads 2 --repeats 3 --json > "$WORK/lm-decode-$shape-$t-$r.json"
      "$LLAMA/llama-bench" -m "$g" -p 0 -n 128 -t 2 -r 3 -o json > "$WORK/llama-decode-$shape-$t-$r.json" 2>/dev/null
    done
    for t in $PP_TYPES; do
      skip "$shape" "$t" && continue
      g="$WORK/$shape-$t.gguf"
      "$BIN/lm-bench" forward --model "$g" --prompt-tokens 128 --batch 1 --seq 128 --sizes 256 --threads 2 --repeats 3 \
        --json > "$WORK/lm-pp128-$shape-$t-$r.json"
      "$LLAMA/llama-bench" -m "$g" -p 128 -n 0 -t 2 -r 3 -o json > "$WORK/llama-pp128-$shape-$t-$r.json" 2>/dev/null
    done
  done
done
# Every round in WORK so far (1 .. LAST_ROUND) enters the medians.
python3 - "$WORK" "$LAST_ROUND" "$SHAPES" "$TYPES" "$PP_TYPES" <<'PY'
import json, os, statistics, sys
work, rounds, shapes, types, pp_types = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5].split()
print("%-12s %-5s %-6s %6s %10s %17s %10s %6s %13s %9s %6s" % (
    "shape", "type", "kind", "rounds", "lmkit t/s", "(range)", "llama t/s", "ratio", "(range)", "MB/token", "bound"))
for s in shapes:
    for kind, ts in (("decode", types), ("pp128", pp_types)):
        for t in ts:
            if s == "stories15m" and t in ("q4_K", "q6_K"):
                continue
            lm, ll, ratio, frac, mb = [], [], [], [], []
            for r in range(1, rounds + 1):
                a_path, b_path = f"{work}/lm-{kind}-{s}-{t}-{r}.json", f"{work}/llama-{kind}-{s}-{t}-{r}.json"
                if not (os.path.exists(a_path) and os.path.exists(b_path)):
                    continue
                d = json.load(open(a_path))["decode" if kind == "decode" else "prompt"]
                a, b = d["tokens_per_s"], json.load(open(b_path))[0]["avg_ts"]
                lm.append(a); ll.append(b); ratio.append(a / b)
                if kind == "decode":
                    frac.append(d["fraction_of_bound"]); mb.append(d["bytes_per_token"] / 1e6)
            if not lm:
                continue
            a, b = statistics.median(lm), statistics.median(ll)
            extra = ("%9.1f %5.0f%%" % (statistics.median(mb), 100 * statistics.median(frac))) if frac else "%9s %6s" % ("", "")
            print("%-12s %-5s %-6s %6d %10.1f %17s %10.1f %5.2fx %13s %s" % (
                s, t, kind, len(lm), a, "(%.1f-%.1f)" % (min(lm), max(lm)), b, a / b,
                "(%.2f-%.2f)" % (min(ratio), max(ratio)), extra))
PY
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
