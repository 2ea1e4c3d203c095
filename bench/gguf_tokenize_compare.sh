#!/bin/bash
# lmkit's tokenizer read from a GGUF file's vocabulary against llama.cpp's llama-tokenize on the
# same file: LINES non-empty lines of tinyshakespeare (and a few lines of other scripts), each
# tokenized alone without BOS, by
#   llama-tokenize -m FILE -p LINE --ids --no-bos --log-disable [--no-parse-special for "llama"]
#   lm-tokenize -t FILE --lines --eos never --format text
# for each GGUF file given (default: llama.cpp's own vocabulary files for Llama's SentencePiece
# and GPT-2's BPE, and TinyStories' model as lmkit writes it with the Llama 2 tokenizer). Prints
# the lines compared and the differing ones per file; exits 1 on a difference.
#   /work/bin/cpu bench/gguf_tokenize_compare.sh [BIN_DIR] [LLAMA_BIN_DIR] [FILE.gguf ...]
set -euo pipefail
BIN=${1:-build/bin}
LLAMA=${2:-/work/peers/llama.cpp/build/bin}
shift 2 2>/dev/null || shift $#
LINES=${LINES:-300}
TEXT=${TEXT:-/work/shared/data/tinyshakespeare/input.txt}
MODELS=${MODELS:-/work/peers/llama.cpp/models}
WORK=${WORK:-$(mktemp -d /tmp/gguf_tok.XXXXXX)}
export LMKIT_TOKENIZER_CACHE=""
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=("$MODELS/ggml-vocab-llama-spm.gguf" "$MODELS/ggml-vocab-gpt-2.gguf")
  "$BIN/lm-train" stories15m --steps 0 --seed 1 -o "$WORK/m" -q
  "$BIN/lm-convert-checkpoint" -q --to gguf --tokenizer /work/shared/data/llama2-tokenizer/tokenizer.model \
    "$WORK/m/model.safetensors" "$WORK/llama2.gguf"
  files+=("$WORK/llama2.gguf")
fi
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
{
  awk -v n="$LINES" 'NF && c++ < n' "$TEXT"
  printf '%s\n' "naïve café — 東京 ✓ Привет мир ١٢٣ 😀" "  leading and  double  spaces" "digits 1234567890 3.14159" \
    "tabs	here" "don't you'll WE'VE" "x"
} > "$WORK/lines.txt"
status=0
for f in "${files[@]}"; do
  "$BIN/lm-tokenize" -t "$f" --lines --eos never --format text < "$WORK/lines.txt" > "$WORK/lmkit.txt"
  python3 - "$LLAMA" "$f" "$WORK/lines.txt" "$WORK/lmkit.txt" <<'PY' || status=1
import json, subprocess, sys
llama, f, lines_path, lmkit_path = sys.argv[1:]
data = open(f, "rb").read(1 << 20)
key = b"tokenizer.ggml.model"
k = data.find(key) + len(key) + 4 + 8  # key, type u32, string length u64
n = int.from_bytes(data[k - 8:k], "little")
model = data[k:k + n].decode()
special = ["--no-parse-special"] if model == "llama" else []  # SentencePiece reads no control pieces in text
lines = open(lines_path, encoding="utf-8").read().split("\n")[:-1]
ours = open(lmkit_path).read().split("\n")[:-1]
diff, tokens = 0, 0
for i, line in enumerate(lines):
    r = subprocess.run([f"{llama}/llama-tokenize", "-m", f, "-p", line, "--ids", "--no-bos", "--log-disable"] + special,
                       capture_output=True, text=True, check=True)
    want = json.loads(r.stdout.strip().splitlines()[-1])
    got = [int(x) for x in ours[i].split()] if i < len(ours) else None
    tokens += len(want)
    if got != want:
        diff += 1
        if diff <= 10:
            print(f"  text:  {line!r}\n  llama: {want}\n  lmkit: {got}")
print(f"{f.split('/')[-1]} ({model}): {len(lines)} lines, {tokens} tokens, differing lines: {diff}")
sys.exit(1 if diff else 0)
PY
done
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
exit $status
