# Shared setup for the program tests: the binaries of this build first on PATH,
# bats-support/bats-assert loaded, a scratch directory per test.
LMKIT_SOURCE_DIR=${LMKIT_SOURCE_DIR:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
LMKIT_BIN=${LMKIT_BIN:-$LMKIT_SOURCE_DIR/build/bin}
PATH="$LMKIT_BIN:$PATH"
SHARED_DATA=${SHARED_DATA:-$LMKIT_SOURCE_DIR/../shared/data}
load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

setup() {
  TMP=$(mktemp -d "${BATS_TMPDIR:-/tmp}/lmkit.XXXXXX")
}

teardown() {
  rm -rf "$TMP"
}
