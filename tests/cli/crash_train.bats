#!/usr/bin/env bats
# Crash safety of lm-train's run directory: kill -9 at random moments of runs that save at
# every step (most of their time is spent writing checkpoints), two writers on one
# directory, and a full disk (a small tmpfs; skipped when mounting is not permitted). Each
# case checks that the run directory holds the previous checkpoint intact or the new one
# complete, that --resume then ends bit for bit where an uninterrupted run ends, and that
# no temporary file is left once the next run has started.

load helpers  # MICRO, corpus, losses

# Saves dominate a step of this model (17 MB of checkpoint, a step of 16 tokens).
SAVER=(tiny --set dim=256 --set n_heads=4 --set n_layers=2 --set hidden_dim=512)

setup() {
  make_tmp
  corpus
}

teardown() {
  [ -n "${MNT:-}" ] && umount "$MNT" 2>/dev/null
  rm -rf "$TMP"
}

# Nothing in run directory $1 but the run's files.
only_run_files() {
  local extra
  extra=$(ls -A "$1" | grep -vxE '\.lock|checkpoint\.safetensors|model\.safetensors|log\.jsonl' || true)
  [ -z "$extra" ] || fail "left in $1: $extra"
}

@test "kill -9 at random moments of saving: a loadable checkpoint, an exact resume, no temporary files after" {
  args=("${SAVER[@]}" "$TMP/all.tok" --steps 24 --batch 1 --seq 16 --save-every 1 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/full"
  mid_save=0
  for i in $(seq 10); do
    run_dir="$TMP/run$i"
    lm-train "${args[@]}" -o "$run_dir" &
    pid=$!
    for _ in $(seq 400); do [ -e "$run_dir/checkpoint.safetensors" ] && break; sleep 0.01; done
    if ((i % 2)); then  # anywhere
      sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
    else  # inside a save: once a temporary file is there (writing takes ms, the rename after it more)
      for _ in $(seq 5000); do compgen -G "$run_dir/.*.safetensors.*" > /dev/null && break; done
      sleep "0.00$((RANDOM % 3))"
    fi
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    compgen -G "$run_dir/.*.safetensors.*" > /dev/null && mid_save=$((mid_save + 1))
    # the checkpoint in place is whole: it loads, and so does the model
    lm-inspect-config "$run_dir/checkpoint.safetensors" > /dev/null
    lm-inspect-config "$run_dir/model.safetensors" > /dev/null
    run lm-train --resume "$run_dir" --threads 1 -q
    assert_success
    only_run_files "$run_dir"
    diff <(losses "$TMP/full/log.jsonl") <(losses "$run_dir/log.jsonl")
    cmp "$TMP/full/model.safetensors" "$run_dir/model.safetensors"
    rm -rf "$run_dir"
  done
  echo "# $mid_save of 10 kills left a save's temporary file behind" >&3
  [ "$mid_save" -ge 1 ] || fail "no kill landed while a save was writing: the test did not test it"
}

@test "two writers on one run directory: one runs, the other is refused, the log is one run's" {
  args=("${MICRO[@]}" "$TMP/all.tok" --steps 300 --batch 2 --seq 16 --save-every 10 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/run" 2> "$TMP/a.err" &
  a=$!
  lm-train "${args[@]}" -o "$TMP/run" 2> "$TMP/b.err" &
  b=$!
  sa=0 sb=0
  wait "$a" || sa=$?
  wait "$b" || sb=$?
  [ $((sa + sb)) -ne 0 ] || fail "both writers ran"
  [ "$sa" -eq 0 ] || [ "$sb" -eq 0 ] || fail "neither writer ran: $(cat "$TMP/a.err" "$TMP/b.err")"
  refused=$(cat "$TMP/a.err" "$TMP/b.err")
  [ "$(wc -l <<<"$refused")" -le 2 ]
  grep -qE "is in use by another lm-train \(pid ($a|$b)\)|already holds a training run" <<<"$refused"
  # one run's log: steps 1..300 once each, in order
  diff <(grep -oE '"step":[0-9]+' "$TMP/run/log.jsonl" | cut -d: -f2) <(seq 300)
  lm-train "${args[@]}" -o "$TMP/ref"
  cmp "$TMP/ref/model.safetensors" "$TMP/run/model.safetensors"

  # two resumes at once: the same
  lm-train "${args[@]}" -o "$TMP/part" --stop-after 5
  lm-train --resume "$TMP/part" --threads 1 -q 2> "$TMP/a.err" &
  a=$!
  lm-train --resume "$TMP/part" --threads 1 -q 2> "$TMP/b.err" &
  b=$!
  sa=0 sb=0
  wait "$a" || sa=$?
  wait "$b" || sb=$?
  [ "$sa" -eq 0 ] || [ "$sb" -eq 0 ] || fail "neither resume ran: $(cat "$TMP/a.err" "$TMP/b.err")"
  if [ "$sa" -ne 0 ] && [ "$sb" -ne 0 ]; then fail "both resumes failed"; fi
  if [ "$sa" -ne 0 ] || [ "$sb" -ne 0 ]; then
    grep -qE "is in use by another lm-train \(pid ($a|$b)\)" "$TMP/a.err" "$TMP/b.err" || fail "$(cat "$TMP/a.err" "$TMP/b.err")"
  fi
  diff <(losses "$TMP/ref/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/ref/model.safetensors" "$TMP/part/model.safetensors"
}

@test "a full disk: the save fails with one line, the previous checkpoint stays, no temporary files" {
  MNT="$TMP/small"
  mkdir "$MNT"
  # room for one checkpoint (324 kB) and model (108 kB), not for a second checkpoint beside them
  mount -t tmpfs -o size=600k tmpfs "$MNT" 2>/dev/null ||
    skip "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): the disk-full case is not run"
  args=("${MICRO[@]}" "$TMP/all.tok" --steps 6 --batch 2 --seq 16 --save-every 1 --threads 1 -q)
  run lm-train "${args[@]}" -o "$MNT/run"
  assert_failure 1
  [ "${#lines[@]}" -eq 1 ] || fail "$output"
  assert_output --regexp "^lm-train: error: cannot write '$MNT/run/(checkpoint|model)\.safetensors': No space left on device$"
  only_run_files "$MNT/run"
  lm-inspect-config "$MNT/run/checkpoint.safetensors" > /dev/null
  # moved to a disk with room, the run resumes and ends where an uninterrupted run ends
  cp -r "$MNT/run" "$TMP/moved"
  run lm-train --resume "$TMP/moved" --threads 1 -q
  assert_success
  lm-train "${args[@]}" -o "$TMP/ref"
  diff <(losses "$TMP/ref/log.jsonl") <(losses "$TMP/moved/log.jsonl")
  cmp "$TMP/ref/model.safetensors" "$TMP/moved/model.safetensors"
  # the decompressed copy of a zstd stream needs room in $TMPDIR too
  rm -rf "$MNT/run"
  head -c 600000 /dev/zero | tr '\0' 'a' > "$TMP/a.txt"
  lm-tokenize "$TMP/a.txt" | zstd -q > "$TMP/a.tok.zst"
  run env TMPDIR="$MNT" lm-train "${MICRO[@]}" "$TMP/a.tok.zst" --steps 1 --seq 16 -o "$TMP/z"
  assert_failure 1
  assert_output --partial "lm-train: error: cannot write the tokens of '$TMP/a.tok.zst' to a temporary file in '$MNT': No space left on device; set TMPDIR to"
  [ -z "$(ls -A "$MNT")" ]
  [ ! -e "$TMP/z" ]
}
