#!/bin/bash
# lmkit's GGUF output in llama.cpp, text in and out: a stories15M-shaped model with random
# weights (lm-train --steps 0; greedy tokens are comparable whatever the weights) and the Llama 2
# SentencePiece tokenizer, written by `lm-convert-checkpoint --to gguf --tokenizer`, then for each
# prompt (the first PROMPTS non-empty lines of tinyshakespeare, and a few made to test spaces,
# digits, bytes and non-ASCII text):
#   llama.cpp: tokenize with the file's vocabulary (BOS as the file says), greedy-decode N tokens
#              (bench/llama_greedy_ids.cpp against libllama);
#   lmkit:     lm-tokenize -t model.gguf --add-bos (the same vocabulary read back) and
#              lm-generate -m model.gguf -p TEXT --temperature 0 -n N --format ids.
# The prompt ids and the generated ids must be identical. Prints a summary and exits 1 on a
# difference. Run it under the team's CPU lock:
#   /work/bin/cpu bench/interop.sh [BIN_DIR] [LLAMA_BIN_DIR] [LLAMA_SRC_DIR]
set -euo pipefail
BIN=${1:-build/bin}
LLAMA=${2:-/work/peers/llama.cpp/build/bin}
LLAMA_SRC=${3:-/work/peers/llama.cpp}
TOK=${TOK:-/work/shared/data/llama2-tokenizer/tokenizer.model}
TEXT=${TEXT:-/work/shared/data/tinyshakespeare/input.txt}
PROMPTS=${PROMPTS:-20}
N=${N:-24}
SHAPE=${SHAPE:-stories15m}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-$(mktemp -d /tmp/interop.XXXXXX)}
export LMKIT_TOKENIZER_CACHE=""  # the GGUF file alone must carry the tokenizer
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
[ -f "$WORK/m/model.safetensors" ] || "$BIN/lm-train" "$SHAPE" --steps 0 --seed 1 -o "$WORK/m" -q
"$BIN/lm-convert-checkpoint" -q --to gguf --tokenizer "$TOK" "$WORK/m/model.safetensors" "$WORK/m.gguf"
g++ -O1 -std=c++17 "$HERE/llama_greedy_ids.cpp" -I"$LLAMA_SRC/include" -I"$LLAMA_SRC/ggml/include" -L"$LLAMA" -lllama \
  -Wl,-rpath,"$LLAMA" -o "$WORK/llama_greedy_ids"
{
  awk -v n="$PROMPTS" 'NF && c++ < n' "$TEXT"
  printf '%s\n' "Hello world" "  two leading spaces and  a double" "Numbers 12345 and 3.14159" "naïve café — 東京 ✓" \
    "tabs	and symbols #@!%^&*()" "ends with a space "
} > "$WORK/prompts.txt"
fail=0 count=0 gen=0
while IFS= read -r p; do
  count=$((count + 1))
  "$WORK/llama_greedy_ids" "$WORK/m.gguf" "$N" "$p" > "$WORK/llama.txt"
  llama_prompt=$(sed -n 1p "$WORK/llama.txt")
  llama_gen=$(sed -n 2p "$WORK/llama.txt" | sed 's/ *\b2$//')  # llama.cpp prints the EOS it stops at; lmkit does not
  lm_prompt=$(printf '%s' "$p" | "$BIN/lm-tokenize" -t "$WORK/m.gguf" --add-bos --eos never --format text)
  lm_gen=$("$BIN/lm-generate" -m "$WORK/m.gguf" -p "$p" --temperature 0 -n "$N" --format ids)
  if [ "$llama_prompt" != "$lm_prompt" ] || [ "$llama_gen" != "$lm_gen" ]; then
    fail=$((fail + 1))
    echo "DIFF prompt $count: $p"
    echo "  llama.cpp prompt: $llama_prompt"
    echo "  lmkit     prompt: $lm_prompt"
    echo "  llama.cpp greedy: $llama_gen"
    echo "  lmkit     greedy: $lm_gen"
  fi
  gen=$((gen + $(echo "$lm_gen" | wc -w)))
done < "$WORK/prompts.txt"
echo "prompts: $count, generated tokens compared: $gen, differing prompts: $fail"
echo "text of the first prompt, lmkit:     $("$BIN/lm-generate" -m "$WORK/m.gguf" -p "$(head -1 "$WORK/prompts.txt")" --temperature 0 -n "$N" | head -c 200)"
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
[ "$fail" -eq 0 ]
