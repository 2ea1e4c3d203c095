#!/bin/bash
# Decode speed of quantized weights, lmkit against llama.cpp on the same GGUF files:
# stories15M- and stories110M-shaped random weights (lm-train --steps 0), written as f32 and
# q8_0 and q4_K GGUF by lm-convert-checkpoint (--cast; q4_K on the 110M shape only, whose rows
# are multiples of 256: stories15M's 288 are not), then ROUNDS interleaved rounds of
#   lm-bench decode --model X.gguf --decode-tokens 128 --threads 2
#   llama-bench -m X.gguf -p 0 -n 128 -t 2
# Prints median tokens/s of each, the ratio, and lmkit's fraction of the bandwidth bound
# (bytes actually read per token: the matrices as stored, the KV cache, over the measured
# read bandwidth). Run it under the team's CPU lock:
#   /work/bin/cpu bench/quant_bench.sh [BIN_DIR] [LLAMA_BIN_DIR]
set -euo pipefail
BIN=${1:-build/bin}
LLAMA=${2:-/work/peers/llama.cpp/build/bin}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-"stories15m stories110m"}
TYPES=${TYPES:-"f32 q8_0 q4_K"}
WORK=${WORK:-$(mktemp -d /tmp/quant_bench.XXXXXX)}
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
skip() { [ "$1" = stories15m ] && [ "$2" = q4_K ]; }
for shape in $SHAPES; do
  if [ ! -f "$WORK/$shape/model.safetensors" ]; then
    "$BIN/lm-train" "$shape" --steps 0 --seed 1 -o "$WORK/$shape" -q
  fi
  for t in $TYPES; do
    skip "$shape" "$t" && continue
    g="$WORK/$shape-$t.gguf"
    [ -f "$g" ] || { if [ "$t" = f32 ]; then "$BIN/lm-convert-checkpoint" -q --to gguf "$WORK/$shape/model.safetensors" "$g";
                     else "$BIN/lm-convert-checkpoint" -q --to gguf --cast "$t" "$WORK/$shape/model.safetensors" "$g"; fi; }
  done
done
for r in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    for t in $TYPES; do
      skip "$shape" "$t" && continue
      g="$WORK/$shape-$t.gguf"
      "$BIN/lm-bench" decode --model "$g" --decode-tokens 128 --threads 2 --repeats 3 --json > "$WORK/lm-$shape-$t-$r.json"
      "$LLAMA/llama-bench" -m "$g" -p 0 -n 128 -t 2 -r 3 -o json > "$WORK/llama-$shape-$t-$r.json" 2>/dev/null
    done
  done
done
python3 - "$WORK" "$ROUNDS" "$SHAPES" "$TYPES" <<'PY'
import json, statistics, sys
work, rounds, shapes, types = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
print("%-12s %-5s %10s %10s %7s %9s %8s" % ("shape", "type", "lmkit t/s", "llama t/s", "ratio", "MB/token", "bound"))
for s in shapes:
    for t in types:
        if s == "stories15m" and t == "q4_K":
            continue
        lm, ll, frac, mb = [], [], [], []
        for r in range(1, rounds + 1):
            d = json.load(open(f"{work}/lm-{s}-{t}-{r}.json"))["decode"]
            lm.append(d["tokens_per_s"]); frac.append(d["fraction_of_bound"]); mb.append(d["bytes_per_token"] / 1e6)
            ll.append(json.load(open(f"{work}/llama-{s}-{t}-{r}.json"))[0]["avg_ts"])
        a, b = statistics.median(lm), statistics.median(ll)
        print("%-12s %-5s %10.1f %10.1f %6.2fx %9.1f %7.0f%%" % (s, t, a, b, a / b, statistics.median(mb), 100 * statistics.median(frac)))
PY
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
