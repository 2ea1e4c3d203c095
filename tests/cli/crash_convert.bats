#!/usr/bin/env bats
# Crash safety of the writers: lm-convert-checkpoint's files and checkpoint directories (sharded
# or not, replacing one another), and lm-tokenize's output. kill -9 at random moments, fatal
# signals, a full disk: the target holds the old checkpoint or the new one, read back bit for bit,
# never a mix; a failed write into a new directory leaves nothing; no temporary file outlives the
# next writer in the directory, and a signalled writer removes its own before it ends.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
  # Two checkpoints of the same shapes (their shards share names), about 29 MB each.
  export CK="$BATS_FILE_TMPDIR"
  lm-train stories15m --set vocab_size=4096 --steps 0 -o "$CK/run1" --seed 1 -q
  lm-train stories15m --set vocab_size=4096 --steps 0 -o "$CK/run2" --seed 2 -q
  # And a larger one (about 34 MB), for the full disk.
  lm-train stories15m --set vocab_size=8192 --steps 0 -o "$CK/run3" --seed 3 -q
  export A="$CK/run1/model.safetensors" B="$CK/run2/model.safetensors" C="$CK/run3/model.safetensors"
  lm-convert-checkpoint -q "$A" "$CK/a.safetensors"
  lm-convert-checkpoint -q "$B" "$CK/b.safetensors"
  export SUM_A=$(sha256sum < "$CK/a.safetensors" | cut -c1-64) SUM_B=$(sha256sum < "$CK/b.safetensors" | cut -c1-64)
}

teardown() {
  if mountpoint -q "$TMP/mnt" 2>/dev/null; then umount "$TMP/mnt"; fi
  rm -rf "$TMP"
}

# The checksum of what a checkpoint (file or directory) reads back as, in lmkit's layout; fails
# when it does not read.
sum_of() {
  lm-convert-checkpoint -q "$1" "$TMP/readback.safetensors" || return 1
  sha256sum < "$TMP/readback.safetensors" | cut -c1-64
  rm -f "$TMP/readback.safetensors"
}
name_of_sum() { [ "$1" = "$SUM_A" ] && echo A || { [ "$1" = "$SUM_B" ] && echo B || echo "a mix"; }; }
# Runs `lm-convert-checkpoint -q ARGS...` (stderr into $TMP/err) and sends it SIG after a short
# delay; fails unless it ended normally or by SIG, and sets signalled_now to 1 when SIG ended it.
convert_and_signal() {
  local sig=$1 status=0
  shift
  # (a shell's background job ignores SIGINT: give it back its default action)
  env --default-signal lm-convert-checkpoint -q "$@" 2>"$TMP/err" 3>&- &
  local pid=$!
  short_delay
  kill -s "$sig" $pid 2>/dev/null || true
  wait $pid || status=$?
  signalled_now=0
  if ((status != 0)); then
    assert_equal "$status" "$((128 + $(kill -l "$sig")))"
    signalled_now=1
  fi
}
# Hidden files and directories under $1: what temporary files of writers look like.
leftovers() { find "$1" -mindepth 1 -name '.*'; }
# A random delay of 0 to 79 ms: conversions here take 50 to 100 ms.
short_delay() { sleep "0.0$((RANDOM % 8))$((RANDOM % 10))"; }

@test "kill -9 at random moments of conversions into a directory: it holds the old checkpoint or the new one" {
  # Sharded with the same shard names (old shards are moved aside first), other shard counts, one
  # file, Hugging Face's layout with config.json: each replacing whatever the last complete run left.
  local variants=("--shard-size 1MB" "--shard-size 1MB --to hf" "--shard-size 3MB" "" "--to hf" "--shard-size 1MB")
  lm-convert-checkpoint -q --shard-size 1MB "$A" "$TMP/d/"
  local cur=$SUM_A from want got killed=0 runs=36
  for i in $(seq 1 $runs); do
    if ((i % 2)); then from=$B want=$SUM_B; else from=$A want=$SUM_A; fi
    # shellcheck disable=SC2086
    lm-convert-checkpoint -q ${variants[i % ${#variants[@]}]} "$from" "$TMP/d/" 3>&- &
    local pid=$!
    short_delay
    kill -9 $pid 2>/dev/null && killed=$((killed + 1))
    wait $pid || true
    got=$(sum_of "$TMP/d") || fail "run $i: the directory does not read back: $(ls -A "$TMP/d")"
    [ "$got" = "$cur" ] || [ "$got" = "$want" ] ||
      fail "run $i: the directory reads back as $(name_of_sum "$got"), expected $(name_of_sum "$cur") (old) or $(name_of_sum "$want") (new)"
    cur=$got
  done
  ((killed >= runs / 4)) || fail "only $killed of $runs runs were killed before they ended"
  # The next complete run leaves the new checkpoint, no temporary files and no stray shards.
  lm-convert-checkpoint -q --shard-size 1MB "$B" "$TMP/d/"
  [ "$(sum_of "$TMP/d")" = "$SUM_B" ]
  assert_equal "$(leftovers "$TMP")" ""
  py_listed=$(python3 -c 'import json,sys; print("\n".join(sorted(set(json.load(open(sys.argv[1]))["weight_map"].values()))))' "$TMP/d/model.safetensors.index.json")
  assert_equal "$(cd "$TMP/d" && ls -A | grep -v -e '^model.safetensors.index.json$' -e '^config.json$' -e '^generation_config.json$')" "$py_listed"
}

@test "kill -9 at random moments of single-file conversions (safetensors, GGUF): the file is the old one or the new one" {
  lm-convert-checkpoint -q "$A" "$TMP/x.safetensors"
  local cur=$SUM_A from want got
  for i in $(seq 1 16); do
    if ((i % 2)); then from=$B want=$SUM_B; else from=$A want=$SUM_A; fi
    lm-convert-checkpoint -q "$from" "$TMP/x.safetensors" 3>&- &
    local pid=$!
    short_delay
    kill -9 $pid 2>/dev/null || true
    wait $pid || true
    got=$(sha256sum < "$TMP/x.safetensors" | cut -c1-64)
    [ "$got" = "$cur" ] || [ "$got" = "$want" ] || fail "run $i: $(name_of_sum "$got")"
    cur=$got
  done
  lm-convert-checkpoint -q --to gguf "$A" "$TMP/x.gguf"
  for i in $(seq 1 8); do
    lm-convert-checkpoint -q --to gguf "$B" "$TMP/x.gguf" 3>&- &
    local pid=$!
    short_delay
    kill -9 $pid 2>/dev/null || true
    wait $pid || true
    got=$(sum_of "$TMP/x.gguf") || fail "run $i: the GGUF file does not read back"
    [ "$got" = "$SUM_A" ] || [ "$got" = "$SUM_B" ] || fail "run $i: the GGUF file reads back as a mix"
  done
  lm-convert-checkpoint -q "$B" "$TMP/x.safetensors"
  assert_equal "$(leftovers "$TMP")" ""
}

@test "SIGINT, SIGTERM, SIGHUP, SIGPIPE: the writer removes its temporary files and ends by the signal" {
  lm-convert-checkpoint -q --shard-size 1MB "$A" "$TMP/d/"
  lm-convert-checkpoint -q "$A" "$TMP/x.safetensors"
  local signalled=0
  for sig in INT TERM HUP PIPE; do
    for i in 1 2 3; do
      local target="$TMP/d/" opts=(--shard-size 1MB)
      if ((i == 2)); then target="$TMP/x.safetensors" opts=(); fi
      convert_and_signal $sig "${opts[@]}" "$B" "$target"
      signalled=$((signalled + signalled_now))
      # No next run: the signalled process itself left nothing behind.
      assert_equal "$(leftovers "$TMP")" ""
      got=$(sum_of "$target")
      [ "$got" = "$SUM_A" ] || [ "$got" = "$SUM_B" ] || fail "$sig: $target reads back as a mix"
    done
  done
  ((signalled >= 3)) || fail "only $signalled runs ended by a signal"
}

@test "a termination signal at any moment ends the writer by that signal, never with an error of its cleanup" {
  # The signal thread removes the temporary files while the writer runs on: a rename that then
  # finds its file gone must not become the program's error (32 of 200 runs did, before).
  local runs=0
  for i in $(seq 1 40); do
    local sig=TERM
    ((i % 2)) && sig=HUP
    convert_and_signal $sig --shard-size 1MB "$B" "$TMP/d/"
    runs=$((runs + signalled_now))
    assert_equal "$(cat "$TMP/err")" ""
    assert_equal "$(leftovers "$TMP")" ""
  done
  ((runs >= 10)) || fail "only $runs runs ended by a signal"
}

# Starts `lm-tokenize ARGS... $TMP/fifo` on input that stalls (a FIFO this shell holds open) and
# waits until its temporary output exists; sets $pid.
start_stalled_tokenize() {
  rm -f "$TMP/fifo"
  mkfifo "$TMP/fifo"
  env --default-signal lm-tokenize "$@" "$TMP/fifo" 3>&- &
  pid=$!
  exec 5>"$TMP/fifo"
  printf 'some text\n' >&5
  for _ in $(seq 1 200); do [ -n "$(leftovers "$TMP")" ] && return 0; sleep 0.02; done
  fail "no temporary output appeared"
}

@test "lm-tokenize removes its temporary output on SIGINT, SIGTERM, SIGHUP and SIGPIPE" {
  for sig in INT TERM HUP PIPE; do
    start_stalled_tokenize -o "$TMP/out.tok"
    kill -s $sig $pid
    local status=0
    wait $pid || status=$?
    exec 5>&-
    assert_equal "$status" "$((128 + $(kill -l $sig)))"
    assert_equal "$(leftovers "$TMP")" ""
    [ ! -e "$TMP/out.tok" ]
  done
}

@test "temporary files of dead writers go at the next writer's start in their directory; a live writer's stay" {
  # This host's tag, read off a live writer's temporary name.
  start_stalled_tokenize -o "$TMP/probe.tok"
  local probe host dead
  probe=$(basename "$(leftovers "$TMP")")
  [[ $probe =~ ^\.probe\.tok\.lmkit-$pid-([0-9a-f]{8})-......$ ]] || fail "temporary name '$probe'"
  host=${BASH_REMATCH[1]}
  kill $pid
  wait $pid || true
  exec 5>&-
  rm "$TMP/fifo"
  dead=$(sh -c 'echo $$')  # a process that has ended
  mkdir -p "$TMP/w/d/.checkpoint.lmkit-$dead-$host-AbC123" "$TMP/w/.d.lmkit-$dead-$host-dEf456"
  touch "$TMP/w/.x.safetensors.lmkit-$dead-$host-Gh1jK2" \
        "$TMP/w/d/.checkpoint.lmkit-$dead-$host-AbC123/model-00001-of-00002.safetensors" \
        "$TMP/w/.d.lmkit-$dead-$host-dEf456/model.safetensors" \
        "$TMP/w/.live.lmkit-$$-$host-LmN0p1" \
        "$TMP/w/.other-host.lmkit-$dead-0badc0de-QrS2t3" \
        "$TMP/w/.not-ours.tmp"
  lm-convert-checkpoint -q "$A" "$TMP/w/x.safetensors"
  assert_equal "$(cd "$TMP/w" && ls -A | sort | tr '\n' ' ')" \
    ".live.lmkit-$$-$host-LmN0p1 .not-ours.tmp .other-host.lmkit-$dead-0badc0de-QrS2t3 d x.safetensors "
  lm-convert-checkpoint -q "$A" "$TMP/w/d"  # a directory output cleans inside it
  assert_equal "$(cd "$TMP/w/d" && ls -A)" "model.safetensors"
}

@test "a full disk: the old checkpoint stays whole, a new directory is not left, no temporary files remain" {
  mkdir "$TMP/mnt"
  mount -t tmpfs -o size=36m tmpfs "$TMP/mnt" 2>/dev/null || skip "cannot mount a tmpfs here (needs root): no full-disk test"
  # An existing sharded directory (29 MB); the new checkpoint (34 MB, its first shard 9 MB) does not fit.
  lm-convert-checkpoint -q --shard-size 1MB "$A" "$TMP/mnt/d/"
  local before
  before=$(ls -A "$TMP/mnt/d")
  run -1 lm-convert-checkpoint -q --shard-size 1MB "$C" "$TMP/mnt/d/"
  assert_output --partial "No space left on device"
  [ "$(sum_of "$TMP/mnt/d")" = "$SUM_A" ]
  assert_equal "$(ls -A "$TMP/mnt/d")" "$before"
  assert_equal "$(leftovers "$TMP/mnt")" ""
  # The same into a new directory: nothing of it is left.
  run -1 lm-convert-checkpoint -q --shard-size 1MB "$C" "$TMP/mnt/new/"
  assert_output --partial "No space left on device"
  [ ! -e "$TMP/mnt/new" ]
  assert_equal "$(leftovers "$TMP/mnt")" ""
  # One file over an existing one.
  rm -r "$TMP/mnt/d"
  lm-convert-checkpoint -q "$A" "$TMP/mnt/x.safetensors"
  run -1 lm-convert-checkpoint -q "$C" "$TMP/mnt/x.safetensors"
  assert_output --partial "No space left on device"
  cmp "$TMP/mnt/x.safetensors" "$CK/a.safetensors"
  assert_equal "$(cd "$TMP/mnt" && ls -A)" "x.safetensors"
}
