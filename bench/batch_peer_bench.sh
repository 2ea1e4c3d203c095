#!/bin/bash
# Batched decode against llama.cpp on the same GGUF files: llama-batched-bench (-npp 4 -ntg
# TOKENS -npl 1,4,16: its S_TG, generated tokens over all sequences per second of generation)
# against lm-generate --batch N (16 prompts of 4-5 tokens, TOKENS greedy tokens each with
# --ignore-eos; tokens/s over all sequences with each run's fixed cost, measured with -n 1,
# taken off), both reading the same GGUF (random stories-shaped weights, lm-train --steps 0,
# written by lm-convert-checkpoint --to gguf --cast TYPE with the Llama 2 tokenizer), 2 threads,
# ROUNDS interleaved rounds, medians and the median of the rounds' ratios. Both keep their KV
# caches in f16 (llama.cpp's default; lm-generate --kv-dtype KV, default f16) unless KV says
# otherwise.
# Run it under the team's CPU lock:
#   /work/bin/cpu bench/batch_peer_bench.sh [BIN_DIR] [LLAMA_BIN_DIR]
set -euo pipefail
BIN=${1:-build/bin}
LLAMA=${2:-/work/peers/llama.cpp/build/bin}
ROUNDS=${ROUNDS:-2}
SHAPES=${SHAPES:-stories110m}
TYPES=${TYPES:-"f32 bf16 q8_0"}
TOKENS=${TOKENS:-128}
THREADS=${THREADS:-2}
KV=${KV:-f16}
TOKENIZER=${TOKENIZER:-../shared/data/llama2-tokenizer/tokenizer.model}
WORK=${WORK:-$(mktemp -d /tmp/batch_peer_bench.XXXXXX)}
[ -x "$LLAMA/llama-batched-bench" ] || { echo "batch_peer_bench: no $LLAMA/llama-batched-bench (build llama.cpp's llama-batched-bench)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
for shape in $SHAPES; do
  [ -f "$WORK/$shape/model.safetensors" ] || "$BIN/lm-train" "$shape" --steps 0 --seed 1 -o "$WORK/$shape" -q
  for t in $TYPES; do
    [ -f "$WORK/$shape-$t.gguf" ] || "$BIN/lm-convert-checkpoint" -q --to gguf --cast "$t" --tokenizer "$TOKENIZER" \
      "$WORK/$shape/model.safetensors" "$WORK/$shape-$t.gguf"
  done
done
# 16 prompts of three words (4 or 5 tokens with BOS, as the GGUF's tokenizer reads them: a
# token stream would have to carry its fingerprint).
printf '%s\n' "Once upon a" "The little dog" "She said that" "In the morning" "He ran to" "A big red" \
  "They went home" "It was a" "The sun was" "Tom and Lily" "One day the" "Mom gave her" "The cat sat" \
  "We like to" "There was once" "After the rain" > "$WORK/prompts.txt"
now() { date +%s.%N; }
for r in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    for t in $TYPES; do
      M="$WORK/$shape-$t.gguf"
      "$LLAMA/llama-batched-bench" -m "$M" -c $((16 * (TOKENS + 8))) -b 2048 -ub 512 -npp 4 -ntg "$TOKENS" \
        -npl 1,4,16 -t "$THREADS" 2> /dev/null | grep -E '^\|[ ]+4 \|' > "$WORK/$shape-$t-llama-$r"
      t0=$(now); "$BIN/lm-generate" -m "$M" -i "$WORK/prompts.txt" --input-format lines -n 1 --format ids \
        --kv-dtype "$KV" --threads "$THREADS" > /dev/null; t1=$(now)
      echo "$t0 $t1" > "$WORK/$shape-$t-fixed-$r"
      for b in 1 4 16; do
        t0=$(now)
        "$BIN/lm-generate" -m "$M" -i "$WORK/prompts.txt" --input-format lines -n "$TOKENS" --temperature 0 \
          --ignore-eos --format ids --batch "$b" --kv-dtype "$KV" --threads "$THREADS" > /dev/null
        t1=$(now)
        echo "$t0 $t1" > "$WORK/$shape-$t-$b-$r"
      done
    done
  done
done
python3 - "$WORK" "$ROUNDS" "$SHAPES" "$TYPES" "$TOKENS" <<'PY'
import statistics, sys
work, rounds, shapes, types, T = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
def span(p):
    a, b = map(float, open(p).read().split())
    return b - a
print("%-12s %5s %4s %12s %12s %8s %16s" % ("shape", "type", "N", "lmkit tok/s", "llama tok/s", "ratio", "ratio range"))
for s in shapes:
    for t in types:
        for b in (1, 4, 16):
            ours, theirs, ratios = [], [], []
            for r in range(1, rounds + 1):
                rate = 16 * (T - 1) / (span(f"{work}/{s}-{t}-{b}-{r}") - span(f"{work}/{s}-{t}-fixed-{r}"))
                rows = {int(l.split("|")[3]): float(l.split("|")[8]) for l in open(f"{work}/{s}-{t}-llama-{r}")}
                ours.append(rate); theirs.append(rows[b]); ratios.append(rate / rows[b])
            print("%-12s %5s %4d %12.1f %12.1f %7.2fx %7.2f-%.2fx" % (s, t, b, statistics.median(ours), statistics.median(theirs),
                  statistics.median(ratios), min(ratios), max(ratios)))
PY
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
