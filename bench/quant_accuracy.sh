#!/bin/bash
# Accuracy of quantized weights: perplexity of a small Llama trained here on tinyshakespeare
# (Llama 2 SentencePiece vocabulary, 4 layers of 256, rows of 256 and 768 so every k-quant
# applies), in f32 and quantized, by lmkit's lm-eval-loss and llama.cpp's llama-perplexity on
# the same GGUF files and the same tokens of held-out text:
#   /work/bin/cpu bench/quant_accuracy.sh [BIN_DIR] [LLAMA_BIN_DIR]
#
# Data: the last 10% of tinyshakespeare's lines are held out (not trained on).
# The model: lm-train (TRAIN_STEPS steps of 8 x 256 tokens), kept in $WORK between runs.
# Files: the f32 checkpoint as GGUF (lm-convert-checkpoint --to gguf, with the vocabulary
# added by bench/gguf_add_vocab.py so llama.cpp can tokenize), quantized by llama-quantize
# (Q8_0, Q4_0, Q4_K_M = q4_K + q6_K) and by lmkit (--cast, as GGUF and as lmkit checkpoints).
#
# The comparison is exact by construction. llama-perplexity (examples/perplexity, default
# mode) tokenizes the text with BOS first, cuts it into chunks of CTX tokens, sets each
# chunk's first token to BOS, and scores only the second half of each chunk: the logits at
# positions CTX/2 .. CTX-2 against the next tokens (CTX-1-CTX/2 targets per chunk). Here the
# tokens are llama.cpp's own (llama-tokenize on the f32 GGUF, checked equal to lm-tokenize's),
# each chunk becomes one record [BOS, t1 .. t(CTX-1)] of a token stream, and lm-eval-loss
# --seq CTX scores all its CTX-1 targets; a second stream of the first CTX/2+1 tokens of each
# chunk gives the first half's CTX/2 targets (causal attention: the same logits), and their
# difference of summed losses is exactly llama-perplexity's set of targets.
set -euo pipefail
BIN=$(cd "${1:-build/bin}" && pwd)
LLAMA=${2:-/work/peers/llama.cpp/build/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/quant_accuracy}
CTX=${CTX:-256}
TRAIN_STEPS=${TRAIN_STEPS:-250}
TEXT=${TEXT:-/work/shared/data/tinyshakespeare/input.txt}
SP=${SP:-/work/shared/data/llama2-tokenizer/tokenizer.model}
TYPES=${TYPES:-"Q8_0 Q4_0 Q4_K_M"}
CASTS=${CASTS:-"q8_0 q4_0 q4_K q6_K"}
mkdir -p "$WORK"
cd "$WORK"
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"

if [ ! -f run/model.safetensors ]; then
  n=$(wc -l < "$TEXT")
  head -n $((n * 9 / 10)) "$TEXT" > train.txt
  tail -n +$((n * 9 / 10 + 1)) "$TEXT" > heldout.txt
  "$BIN/lm-tokenize" -q -t "$SP" train.txt -o train.tok
  "$BIN/lm-train" stories15m --set dim=256 --set n_layers=4 --set n_heads=4 --set hidden_dim=768 \
    --set tie_embeddings=false train.tok --steps "$TRAIN_STEPS" --batch 8 --seq 256 --lr 2e-3 --warmup 20 \
    --log-every 50 -o run -q --threads 2
fi
[ -f f32.gguf ] || { "$BIN/lm-convert-checkpoint" -q --to gguf run/model.safetensors f32-novocab.gguf &&
                    python3 "$HERE/gguf_add_vocab.py" f32-novocab.gguf "$SP" f32.gguf && rm f32-novocab.gguf; }
for t in $TYPES; do
  [ -f "llama-$t.gguf" ] || "$LLAMA/llama-quantize" f32.gguf "llama-$t.gguf" "$t" > "quantize-$t.log" 2>&1
done
for c in $CASTS; do
  [ -f "lmkit-$c.gguf" ] || { "$BIN/lm-convert-checkpoint" -q --to gguf --cast "$c" run/model.safetensors x.gguf &&
                              python3 "$HERE/gguf_add_vocab.py" x.gguf "$SP" "lmkit-$c.gguf" && rm x.gguf; }
  [ -f "lmkit-$c.safetensors" ] || "$BIN/lm-convert-checkpoint" -q --cast "$c" run/model.safetensors "lmkit-$c.safetensors"
done

# The tokens: llama.cpp's, as llama-perplexity makes them (BOS added, no special parsing).
"$LLAMA/llama-tokenize" -m f32.gguf -f heldout.txt --ids --no-escape --no-parse-special --log-disable > llama-ids.txt 2>/dev/null
"$BIN/lm-tokenize" -q -t "$SP" --add-bos heldout.txt -o heldout.tok
python3 - "$CTX" <<'PY'
import ast, struct, sys
ctx = int(sys.argv[1])
ids = ast.literal_eval(open("llama-ids.txt").read().strip().splitlines()[-1])
raw = open("heldout.tok", "rb").read()
header, pos, lm = raw[:64], 64, []
while pos < len(raw):
    assert raw[pos:pos + 4] == b"LMKR"
    count = struct.unpack_from("<I", raw, pos + 4)[0]
    lm += struct.unpack_from("<%dH" % count, raw, pos + 16)
    pos += 16 + (2 * count + 7) // 8 * 8
same = lm == ids
print("# tokens: llama.cpp %d, lmkit %d, %s" % (len(ids), len(lm), "identical" if same else "DIFFERENT (llama.cpp's used)"))
bos = struct.unpack_from("<i", header, 28)[0]
assert bos == ids[0] == 1
chunks = len(ids) // ctx
def stream(path, length):
    with open(path, "wb") as f:
        f.write(header)
        for c in range(chunks):
            rec = [bos] + ids[c * ctx + 1:c * ctx + length]
            f.write(b"LMKR" + struct.pack("<IQ", len(rec), 0) + struct.pack("<%dH" % len(rec), *rec))
            f.write(b"\0" * ((8 - 2 * len(rec) % 8) % 8))
stream("chunks.tok", ctx)
stream("halves.tok", ctx // 2 + 1)
open("chunks.txt", "w").write("%d %d\n" % (chunks, chunks * (ctx - 1 - ctx // 2)))
PY
read -r CHUNKS TARGETS < chunks.txt

# lmkit: summed nats of the second halves = all targets - first halves' targets.
lm_ppl() {
  local a b
  a=$("$BIN/lm-eval-loss" --threads 2 -m "$1" --seq "$CTX" --bytes 1 --json chunks.tok)
  b=$("$BIN/lm-eval-loss" --threads 2 -m "$1" --seq "$CTX" --bytes 1 --json halves.tok)
  python3 -c '
import json, math, sys
a, b, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
na, nb = a["tokens"], b["tokens"]
assert na - nb == n, (na, nb, n)
print("%.4f" % math.exp((a["loss"] * na - b["loss"] * nb) / n))' "$a" "$b" "$TARGETS"
}
llama_ppl() {
  "$LLAMA/llama-perplexity" -m "$1" -f heldout.txt -c "$CTX" -b "$CTX" -t 2 > "ppl-$(basename "$1").log" 2>&1
  sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "ppl-$(basename "$1").log"
}

rows=("f32 f32.gguf")
for t in $TYPES; do rows+=("llama-quantize:$t llama-$t.gguf"); done
for c in $CASTS; do rows+=("lmkit--cast:$c lmkit-$c.gguf"); done
echo "# held-out tinyshakespeare: $CHUNKS chunks of $CTX tokens, $TARGETS scored targets (second halves)"
printf '%-22s %-24s %9s %9s %9s %9s %9s %8s\n' "weights" "file" "MB" "lmkit" "llama.cpp" "lmkit/f32" "llama/f32" "lm/llama"
f32_lm="" f32_ll=""
for r in "${rows[@]}"; do
  set -- $r
  lm=$(lm_ppl "$2"); ll=$(llama_ppl "$2")
  [ -n "$f32_lm" ] || { f32_lm=$lm; f32_ll=$ll; }
  python3 -c '
import os, sys
name, f, lm, ll, flm, fll = sys.argv[1:]
lm, ll, flm, fll = map(float, (lm, ll, flm, fll))
print("%-22s %-24s %9.1f %9.4f %9.4f %+8.3f%% %+8.3f%% %+7.3f%%" % (name, f, os.path.getsize(f) / 1e6, lm, ll,
      100 * (lm / flm - 1), 100 * (ll / fll - 1), 100 * (lm / ll - 1)))' "$1" "$2" "$lm" "$ll" "$f32_lm" "$f32_ll"
done
# lmkit checkpoints (--cast to safetensors) score as their GGUF twins:
for c in $CASTS; do
  printf '%-22s %-24s %9s %9s\n' "lmkit:$c" "lmkit-$c.safetensors" "" "$(lm_ppl "lmkit-$c.safetensors")"
done

# Greedy tokens: lm-generate on each GGUF against llama-simple (greedy sampler) on the same
# file and prompt (llama.cpp's prompt ids, BOS first), GEN_TOKENS new tokens.
GEN_TOKENS=${GEN_TOKENS:-32}
PROMPT=${PROMPT:-"ROMEO:"}
"$LLAMA/llama-tokenize" -m f32.gguf -p "$PROMPT" --ids --no-escape --log-disable 2>/dev/null | tail -n 1 > prompt-ids.txt
python3 - "$SP" <<'PY'
import ast, struct
ids = ast.literal_eval(open("prompt-ids.txt").read())
header = open("heldout.tok", "rb").read()[:64]
with open("prompt.tok", "wb") as f:
    f.write(header + b"LMKR" + struct.pack("<IQ", len(ids), 0) + struct.pack("<%dH" % len(ids), *ids))
    f.write(b"\0" * ((8 - 2 * len(ids) % 8) % 8))
PY
echo "# greedy, prompt \"$PROMPT\", $GEN_TOKENS tokens: lm-generate vs llama-simple on the same file"
for r in "${rows[@]}"; do
  set -- $r
  # lm-generate reads the same tensors from a copy without the vocabulary (it asks for the
  # tokenizer.model of a SentencePiece vocabulary it finds in a GGUF file).
  python3 "$HERE/gguf_add_vocab.py" --strip "$2" "novocab-$2"
  "$BIN/lm-generate" --threads 2 -m "novocab-$2" --input-format tokens --temperature 0 -n "$GEN_TOKENS" --format ids < prompt.tok > "gen-$2.ids"
  "$LLAMA/llama-simple" -m "$2" -n "$GEN_TOKENS" "$PROMPT" > "simple-$2.txt" 2>/dev/null
  python3 "$HERE/gguf_add_vocab.py" --decode "$SP" "gen-$2.ids" "simple-$2.txt" "$1"
done
echo "# $(date -u +%FT%TZ) load: $(uptime | sed 's/.*load average: //')"
