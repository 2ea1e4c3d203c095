# Shared setup for the program tests: the binaries of this build first on PATH,
# bats-support/bats-assert loaded, a scratch directory per test, and what several files use.
LMKIT_SOURCE_DIR=${LMKIT_SOURCE_DIR:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
LMKIT_BIN=${LMKIT_BIN:-$LMKIT_SOURCE_DIR/build/bin}
PATH="$LMKIT_BIN:$PATH"
SHARED_DATA=${SHARED_DATA:-$LMKIT_SOURCE_DIR/../shared/data}
load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

# $TMP: a fresh scratch directory, removed after the test. A file with its own setup() calls it.
make_tmp() {
  TMP=$(mktemp -d "${BATS_TMPDIR:-/tmp}/lmkit.XXXXXX")
}

setup() {
  make_tmp
}

teardown() {
  rm -rf "$TMP"
}

# A micro model on the byte vocabulary (dim 32, one layer): a training step takes milliseconds.
MICRO=(tiny --set dim=32 --set n_heads=2 --set n_layers=1 --set hidden_dim=64)

corpus() {  # $TMP/all.tok from the bundled corpus (first 20 kB; the text in $TMP/text.txt)
  head -c 20000 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" > "$TMP/text.txt"
  lm-tokenize "$TMP/text.txt" -o "$TMP/all.tok"
}

# step, loss, lr, grad_norm of each JSON Lines log record (what must be equal bit for bit)
losses() { sed -E 's/,"tokens_per_s".*//' "$1"; }

# The two safetensors files hold the same tensors (names, dtypes, shapes), byte for byte; the
# metadata may differ.
same_tensors() {
  python3 -c 'import json, struct, sys
def tensors(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a == b, sorted(set(a) ^ set(b)) or [k for k in a if a[k] != b[k]]' "$1" "$2"
}
