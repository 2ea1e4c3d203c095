#!/usr/bin/env bats
# Man pages and shell completions stay in sync with each program's option
# declaration: every option that `--lmkit-options` reports (the same CLI11
# declaration that --help prints) must appear in the man page and in completion.

load helpers

programs() {
  local p
  for p in "$LMKIT_SOURCE_DIR"/tools/lm-*.cpp; do basename "$p" .cpp; done
}

@test "every program has a man page that renders without warnings" {
  for p in lm $(programs); do
    [ -f "$LMKIT_SOURCE_DIR/man/$p.1" ] || fail "no man page man/$p.1"
    run groff -man -Tutf8 -ww -z "$LMKIT_SOURCE_DIR/man/$p.1"
    assert_success
    assert_output ""
  done
}

@test "every option of every program appears in its man page and --help" {
  for p in $(programs); do
    opts=$("$p" --lmkit-options | cut -f1 | tr ' ' '\n' | grep -- '^-')
    [ -n "$opts" ] || fail "$p --lmkit-options printed no options"
    page=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$LMKIT_SOURCE_DIR/man/$p.1")
    help=$("$p" --help)
    for o in $opts; do
      grep -qF -- "$o" <<<"$page" || fail "$p: option $o is missing from man/$p.1"
      grep -qF -- "$o" <<<"$help" || fail "$p: option $o is missing from --help"
    done
  done
}

@test "bash completion offers every option of every program" {
  source "$LMKIT_SOURCE_DIR/completions/lmkit.bash"
  for p in $(programs); do
    grep -q -- " $p" <(complete -p "$p") || fail "no bash completion registered for $p"
    COMP_WORDS=("$p" "--"); COMP_CWORD=1
    _lmkit_complete
    for o in $("$p" --lmkit-options | cut -f1 | tr ' ' '\n' | grep -- '^--'); do
      printf '%s\n' "${COMPREPLY[@]}" | grep -qxF -- "$o" || fail "$p: bash completion lacks $o"
    done
    # through the dispatcher too
    sub=${p#lm-}
    COMP_WORDS=(lm "$sub" "--"); COMP_CWORD=2
    _lmkit_complete
    [ ${#COMPREPLY[@]} -gt 0 ] || fail "lm $sub: no completion"
  done
  COMP_WORDS=(lm to); COMP_CWORD=1
  _lmkit_complete
  assert_equal "${COMPREPLY[*]}" "tokenize"
}

@test "zsh completion names every program" {
  for p in lm $(programs); do
    head -1 "$LMKIT_SOURCE_DIR/completions/_lmkit" | grep -qw -- "$p" || fail "_lmkit #compdef lacks $p"
  done
  if command -v zsh >/dev/null; then
    run zsh -n "$LMKIT_SOURCE_DIR/completions/_lmkit"
    assert_success
  fi
}

@test "lm dispatches to lm-* programs and reports unknown commands" {
  run lm --help
  assert_success
  assert_output --partial "tokenize"
  run lm --version
  assert_success
  assert_output --partial "lmkit"
  run lm inspect-config --version
  assert_success
  assert_output --partial "lm-inspect-config"
  run lm no-such-command
  assert_failure 2
  assert_output --partial "lm: error: 'no-such-command' is not an lm command"
  run lm
  assert_failure 2
}

@test "--version names the commit the programs were built from, not the one cmake was configured at" {
  commit=$(git -C "$LMKIT_SOURCE_DIR" rev-parse --short HEAD 2>/dev/null) || skip "the source is not a git checkout"
  for p in lm lm-bench lm-train; do
    run "$p" --version
    assert_success
    assert_output --partial "($commit"  # (a binary older than the checkout's commit fails: rebuild)
  done
}

@test "every program answers --help on stdout and --version, and rejects unknown options with exit 2" {
  for p in $(programs); do
    run "$p" --help
    assert_success
    assert_output --partial "Usage"
    run "$p" --version
    assert_success
    assert_output --regexp "^$p \(lmkit\) [0-9]"
    run "$p" --no-such-option
    assert_failure 2
    assert_output --partial "$p: error:"
  done
}
