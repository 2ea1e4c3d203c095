#!/usr/bin/env bash
# lmkit against its peers on the shapes of issue 16, paired in one script on one machine:
#   baby        training, nanoGPT's CPU "baby" shape (4L/4H/128d, 12 x 64)  vs nanoGPT (train.py, eager)
#   stories15m  training 8 x 256                                            vs PyTorch eager (bench/torch_bench.py)
#   stories110m training 4 x 256                                            vs PyTorch eager
#   pp15m/pp110m prompt processing, 128 tokens, last logits only           vs llama.cpp f32 (llama-bench -p 128 -n 0)
#
#   bench/peers_bench.sh [--rounds N] [--threads N] [--cases baby,stories15m,...]
#
# Rounds are interleaved (each round runs every case, lmkit then its peer, one process each), so
# both see the same load; the table gives medians and ranges over the rounds and the median of
# the per-round ratios, with `uptime` before and after. Both sides get the same threads and
# OMP_WAIT_POLICY (passive by default: on a shared machine the spinning default waits for
# descheduled workers at every barrier; llama.cpp's OpenMP pool lost 40% to it here).
# Peers are found, or built/prepared when their source is there:
#   LMKIT_BIN  (default build/bin)                      lm-bench, lm-train, lm-tokenize, lm-convert-checkpoint
#   NANOGPT    (default /work/peers/nanoGPT)            nanoGPT's source (git clone of karpathy/nanoGPT); its
#              shakespeare_char data is prepared from tests/data/tinyshakespeare.txt (no download)
#   LLAMA_CPP  (default /work/peers/llama.cpp)          built with cmake into build/ when build/bin/llama-bench is missing
#   TORCH_PY   (default /usr/bin/python3)               a Python with torch (nanoGPT, bench/torch_bench.py)
#   SP_MODEL   (default /work/shared/data/llama2-tokenizer/tokenizer.model) to write the 32000-vocab GGUFs
# The GGUFs hold random weights of the stories shapes (lm-train --steps 0, lm-convert-checkpoint
# --to gguf), kept in $WORK (default ~/.cache/lmkit/peers).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
BIN=${LMKIT_BIN:-$SRC/build/bin}
NANOGPT=${NANOGPT:-/work/peers/nanoGPT}
LLAMA_CPP=${LLAMA_CPP:-/work/peers/llama.cpp}
TORCH_PY=${TORCH_PY:-/usr/bin/python3}
SP_MODEL=${SP_MODEL:-/work/shared/data/llama2-tokenizer/tokenizer.model}
WORK=${WORK:-$HOME/.cache/lmkit/peers}
ROUNDS=3 THREADS=2 CASES=baby,stories15m,stories110m,pp15m,pp110m WAIT=passive
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --wait-policy) WAIT=$2; shift 2 ;;
    *) echo "peers_bench.sh: error: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "peers_bench.sh: error: $*" >&2; exit 1; }
for p in lm-bench lm-train lm-tokenize lm-convert-checkpoint lm-inspect-config; do
  [ -x "$BIN/$p" ] || die "$BIN/$p not found (build lmkit first, or set LMKIT_BIN)"
done
mkdir -p "$WORK"

case ,$CASES, in *,baby,*)
  [ -f "$NANOGPT/train.py" ] || die "nanoGPT source not found at $NANOGPT (git clone karpathy/nanoGPT there, or set NANOGPT)"
  if [ ! -f "$NANOGPT/data/shakespeare_char/train.bin" ]; then
    cp "$SRC/tests/data/tinyshakespeare.txt" "$NANOGPT/data/shakespeare_char/input.txt"
    (cd "$NANOGPT" && "$TORCH_PY" data/shakespeare_char/prepare.py >/dev/null)
  fi ;;
esac
case ,$CASES, in *,pp*)
  if [ ! -x "$LLAMA_CPP/build/bin/llama-bench" ]; then
    [ -f "$LLAMA_CPP/CMakeLists.txt" ] || die "llama.cpp not found at $LLAMA_CPP (set LLAMA_CPP)"
    cmake -S "$LLAMA_CPP" -B "$LLAMA_CPP/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON >/dev/null
    cmake --build "$LLAMA_CPP/build" -j"$THREADS" --target llama-bench >/dev/null
  fi
  for m in stories15m stories110m; do
    [ -f "$WORK/$m.gguf" ] && continue
    [ -f "$SP_MODEL" ] || die "SentencePiece model $SP_MODEL not found (set SP_MODEL)"
    head -c 100000 "$SRC/tests/data/tinyshakespeare.txt" > "$WORK/text.txt"
    "$BIN/lm-tokenize" -t "$SP_MODEL" "$WORK/text.txt" -o "$WORK/text.tok" --force
    rm -rf "$WORK/$m.run"
    "$BIN/lm-train" "$m" "$WORK/text.tok" -o "$WORK/$m.run" --steps 0 -q
    "$BIN/lm-convert-checkpoint" "$WORK/$m.run/model.safetensors" "$WORK/$m.gguf.tmp" --to gguf -q
    mv "$WORK/$m.gguf.tmp" "$WORK/$m.gguf"
  done ;;
esac
"$BIN/lm-inspect-config" tiny --set vocab_size=256 --set pad_id=-1 --set eos_id=-1 --config > "$WORK/baby.json"

export BIN NANOGPT LLAMA_CPP TORCH_PY WORK ROUNDS THREADS CASES SRC
[ "$WAIT" = unset ] || export OMP_WAIT_POLICY=$WAIT
export OMP_NUM_THREADS=$THREADS
echo "lmkit $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), $THREADS threads, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
echo "before: $(uptime)"
exec python3 "$HERE/peers_bench.py"
