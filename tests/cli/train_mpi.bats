#!/usr/bin/env bats
# lm-train data parallel under Open MPI (mpirun -np 2): the same steps as one process with
# twice the batch, rank 0 alone writes, exact resume, errors reported once. Skipped when
# mpirun is missing or this build has no MPI. Micro models: the file runs in seconds.

load helpers  # MICRO, corpus, losses

setup() {
  command -v mpirun >/dev/null || skip "no mpirun (Debian: apt-get install openmpi-bin libopenmpi-dev)"
  [ "${LMKIT_MPI:-1}" != 0 ] || skip "this build has no MPI (LMKIT_MPI=OFF)"
  make_tmp
  corpus
}

# Two ranks of lm-train, one thread each. Under make test-asan, LeakSanitizer reports Open
# MPI's own allocations (its dlopen'ed components, MPI_Finalize keeps them): no leak check
# in MPI jobs; address errors are still caught.
mpi2() {
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    mpirun --allow-run-as-root --oversubscribe -np 2 lm-train "$@"
}

# field $2 of every record of log $1, one per line
field() { grep -oE "\"$2\":[^,}]+" "$1" | cut -d: -f2; }

# the two files of numbers agree within a relative tolerance $3
close() {
  paste "$1" "$2" | awk -v tol="$3" '{ d = $1 - $2; if (d < 0) d = -d; s = $1 < 0 ? -$1 : $1;
    if (d > tol * s + 1e-12) { print "line " NR ": " $1 " vs " $2; bad = 1 } } END { exit bad }'
}

# 2 ranks of lm-train "${@:2}" --batch 1 and one process with --batch 2: $1 steps logged, the
# same losses (1e-4 relative).
losses_like_one_process() {
  local steps=$1
  shift
  run mpi2 "$@" --batch 1 -o "$TMP/mpi" -q
  assert_success
  lm-train "$@" --batch 2 -o "$TMP/one" -q
  field "$TMP/mpi/log.jsonl" loss > "$TMP/a"
  field "$TMP/one/log.jsonl" loss > "$TMP/b"
  [ "$(wc -l < "$TMP/a")" -eq "$steps" ]
  close "$TMP/a" "$TMP/b" 1e-4 || fail "the loss differs from one process with --batch 2"
}

@test "2 ranks train like one process with twice the batch; rank 0 alone writes and prints" {
  args=("${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 3 --val-every 2 --steps 6 --seq 16
        --grad-accum 2 --warmup 2 --threads 1)
  run mpi2 "${args[@]}" --batch 2 -o "$TMP/mpi" --json
  assert_success
  lm-train "${args[@]}" --batch 4 -o "$TMP/one" -q
  # one log, one --json copy of it, one summary, one run directory
  [ "$(wc -l < "$TMP/mpi/log.jsonl")" -eq 6 ]
  diff <(grep '^{' <<<"$output") "$TMP/mpi/log.jsonl"
  [ "$(grep -c 'done at step 6/6' <<<"$output")" -eq 1 ]
  [ "$(ls "$TMP/mpi" | tr '\n' ' ')" = "checkpoint.safetensors log.jsonl model.safetensors " ]
  for f in loss grad_norm val_loss; do
    field "$TMP/mpi/log.jsonl" $f > "$TMP/a"
    field "$TMP/one/log.jsonl" $f > "$TMP/b"
    [ -s "$TMP/a" ] && [ "$(wc -l < "$TMP/a")" -eq "$(wc -l < "$TMP/b")" ]
    close "$TMP/a" "$TMP/b" 1e-4 || fail "$f differs from one process with --batch 4"
  done
  # the first step's loss is the same mean over the same 4 x 2 rows, up to rounding
  close <(field "$TMP/mpi/log.jsonl" loss | head -1) <(field "$TMP/one/log.jsonl" loss | head -1) 1e-6
  # the loss falls
  first=$(field "$TMP/mpi/log.jsonl" loss | head -1)
  last=$(field "$TMP/mpi/log.jsonl" loss | tail -1)
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss did not fall: $first -> $last"
  # tokens count both ranks: 6 steps x 2 micro-batches x (2 ranks x 2 rows) x 16
  grep -aq 'tokens\\":768,' "$TMP/mpi/checkpoint.safetensors"
  grep -aq 'ranks\\":2' "$TMP/mpi/checkpoint.safetensors"
  run grep -aq 'ranks\\":' "$TMP/one/checkpoint.safetensors"
  assert_failure
}

@test "2 ranks with sequential chunks match one process: rows weighted by their counted (non-PAD) targets" {
  # one record per line: short records, their last windows mostly PAD, so the two ranks'
  # rows of a micro-batch count different numbers of targets
  head -c 3000 "$TMP/text.txt" | lm-tokenize --lines -o "$TMP/lines.tok"
  args=("${MICRO[@]}" "$TMP/lines.tok" --sample sequential --steps 5 --seq 16 --grad-accum 2 --threads 1 -q)
  mpi2 "${args[@]}" --batch 3 -o "$TMP/mpi"
  lm-train "${args[@]}" --batch 6 -o "$TMP/one"
  for f in loss grad_norm; do
    close <(field "$TMP/mpi/log.jsonl" $f) <(field "$TMP/one/log.jsonl" $f) 1e-4 || fail "$f differs"
  done
  # equal row weights would not do: the first step's loss is exact to rounding only when weighted
  close <(field "$TMP/mpi/log.jsonl" loss | head -1) <(field "$TMP/one/log.jsonl" loss | head -1) 1e-6
}

@test "a 2-rank run stopped and resumed on 2 ranks equals the uninterrupted run bit for bit" {
  args=("${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 1 --val-every 2 --steps 6 --batch 2
        --seq 16 --grad-accum 2 --warmup 2 --threads 1 -q --set dropout=0.1)
  mpi2 "${args[@]}" -o "$TMP/full"
  mpi2 "${args[@]}" -o "$TMP/part" --stop-after 3
  [ "$(wc -l < "$TMP/part/log.jsonl")" -eq 3 ]
  grep -aq 'rank_rngs\\":\[' "$TMP/part/checkpoint.safetensors"
  run mpi2 --resume "$TMP/part" --threads 1
  assert_success
  assert_output --partial "done at step 6/6"
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
}

@test "a 2-rank run resumes on 2 ranks only" {
  mpi2 "${MICRO[@]}" "$TMP/all.tok" --steps 2 --batch 2 --seq 16 --threads 1 -q -o "$TMP/run" --stop-after 1
  run lm-train --resume "$TMP/run"
  assert_failure 2
  assert_output "lm-train: error: the run in '$TMP/run' trains on 2 processes, not 1; resume it with mpirun -np 2 lm-train --resume $TMP/run"
  lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 2 --batch 2 --seq 16 --threads 1 -q -o "$TMP/one" --stop-after 1
  run mpi2 --resume "$TMP/one"
  assert_failure
  [ "$(grep -c '^lm-train: error: ' <<<"$output")" -eq 1 ]
  assert_output --partial "lm-train: error: the run in '$TMP/one' trains on 1 process, not 2"
}

@test "errors under mpirun: exit nonzero, one error line, from rank 0" {
  run mpi2 "${MICRO[@]}" "$TMP/all.tok" -o "$TMP/r" --steps 2 --batch 0
  assert_failure
  [ "$(grep -c 'lm-train: error' <<<"$output")" -eq 1 ]
  assert_output --partial "lm-train: error: --batch: Value 0 not in range"
  [ ! -e "$TMP/r" ]

  # a failure on rank 0 alone (it alone creates the run directory) ends both ranks
  : > "$TMP/file"
  run mpi2 "${MICRO[@]}" "$TMP/all.tok" -o "$TMP/file/run" --steps 2 --seq 16
  assert_failure
  [ "$(grep -c 'lm-train: error' <<<"$output")" -eq 1 ]
  assert_output --partial "lm-train: error: cannot create run directory '$TMP/file/run'"
}

@test "an error after training started ends every rank: one line, its exit status, no MPI_Abort" {
  # a NaN loss: every rank reaches it at the same step
  run mpi2 "${MICRO[@]}" "$TMP/all.tok" -o "$TMP/nan" --steps 50 --batch 2 --seq 16 --lr 1e3 --grad-clip 0 \
    --save-every 1 --threads 1 -q
  assert_failure 1
  [ "$(grep -c '^lm-train: error: ' <<<"$output")" -eq 1 ]
  assert_output --regexp "lm-train: error: loss is -?nan at step [0-9]+; training stopped"
  assert_output --partial "; the last good checkpoint (step "
  refute_output --partial "MPI_ABORT"
  # a save that fails on rank 0 alone (the model's path is a directory now)
  mpi2 "${MICRO[@]}" "$TMP/all.tok" -o "$TMP/run" --steps 4 --batch 2 --seq 16 --stop-after 2 --threads 1 -q
  rm "$TMP/run/model.safetensors"
  mkdir "$TMP/run/model.safetensors"
  run mpi2 --resume "$TMP/run" --threads 1 -q
  assert_failure 1
  [ "$(grep -c '^lm-train: error: ' <<<"$output")" -eq 1 ]
  assert_output --partial "lm-train: error: cannot write '$TMP/run/model.safetensors': is a directory"
  refute_output --partial "MPI_ABORT"
  # without mpirun's own notice (-q) the error is all there is; a usage error keeps status 2
  run env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    mpirun --allow-run-as-root --oversubscribe -q -np 2 lm-train --resume "$TMP/run" --threads 1 -q
  assert_failure 1
  assert_output "lm-train: error: cannot write '$TMP/run/model.safetensors': is a directory"
  run env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    mpirun --allow-run-as-root --oversubscribe -q -np 2 lm-train --resume "$TMP/run" --lr 0.1
  assert_failure 2
  assert_output "lm-train: error: --lr cannot be given with --resume (the run keeps its settings)"
}

@test "rank 0 locks the run directory for the whole run" {
  # mpirun itself in the background, not mpi2 (a function: $! would be the subshell running it,
  # whose death on SIGTERM left mpirun and its ranks training 100000 steps, holding the test's
  # output open and loading the machine for the tests running beside it)
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun --allow-run-as-root --oversubscribe -np 2 \
    lm-train "${MICRO[@]}" "$TMP/all.tok" -o "$TMP/run" --steps 100000 --batch 2 --seq 16 --threads 1 -q &
  pid=$!
  for _ in $(seq 300); do [ -s "$TMP/run/log.jsonl" ] && break; sleep 0.05; done
  run lm-train --resume "$TMP/run"
  assert_failure 1
  assert_output --regexp "^lm-train: error: '$TMP/run' is in use by another lm-train \(pid [0-9]+\)"
  holder=$(sed -E 's/.*pid ([0-9]+).*/\1/' <<<"${lines[0]}")
  [ "$(cat "$TMP/run/.lock")" = "$holder" ]
  kill -TERM "$pid"
  wait "$pid" || true
  # the ranks went with mpirun: nothing holds the directory (a resume gets past the lock)
  run lm-train --resume "$TMP/run"
  assert_failure 2
  assert_output --partial "lm-train: error: the run in '$TMP/run' trains on 2 processes, not 1"
}

@test "2 ranks train a materium model with conditions (and condition dropout) like one process" {
  export LMKIT_SOURCE_DIR
  python3 - "$TMP" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
d = sys.argv[1]
m.write_stream(d + "/s.tok", [[1, 4, 10, 11, 12, 13, 3, 2], [1, 4, 14, 15, 16, 17, 3, 30, 2], [1, 4, 18, 3, 2],
                              [1, 5, 6, 2]], vocab=40)
with open(d + "/c.jsonl", "w") as f:
    for v in [{"space_group": 3, "band_gap": [1.5, -2], "formula": [[8, 2], [5, 1]]},
              {"space_group": 11, "band_gap": None, "formula": [[39, 6]]},
              {"space_group": None, "band_gap": [0, 0.25], "formula": None},
              {"space_group": 0, "band_gap": [1, 1], "formula": [[7, 1]]}]:
        f.write(json.dumps(v) + "\n")
PY
  args=("$LMKIT_SOURCE_DIR/tests/fixtures/materium/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl"
        --sample sequential --seq 12 --steps 4 --lr 1e-3 --warmup 0 --condition-dropout 0.5 --threads 1)
  losses_like_one_process 4 "${args[@]}"
}

@test "2 ranks train a vision model with --vision (each rank its rows' features) like one process" {
  python3 - "$TMP" <<'PY'
import json, random, struct, sys
d = sys.argv[1]
rng = random.Random(3)
lines = []
for i in range(6):
    s = [rng.choice("abcdefgh") for _ in range(rng.randint(12, 27))]
    for _ in range(i % 3): s.insert(rng.randrange(len(s)), "#")
    lines.append("".join(s))
open(d + "/lines.txt", "w").write("\n".join(lines) + "\n")
h, data = {}, b""
for i, l in enumerate(lines):
    k = l.count("#")
    if not k: continue
    raw = struct.pack("<%df" % (8 * k), *[rng.gauss(0, 1) for _ in range(8 * k)])
    h["record.%d" % i] = {"dtype": "F32", "shape": [k, 8], "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(d + "/v.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + data)
PY
  lm-tokenize --lines --no-eos "$TMP/lines.txt" -o "$TMP/lines.tok"
  args=("${MICRO[@]}" --set vision_dim=8 --set image_token_id=35 "$TMP/lines.tok" --vision "$TMP/v.safetensors"
        --sample sequential --seq 16 --steps 4 --lr 3e-3 --warmup 0 --threads 1)
  losses_like_one_process 4 "${args[@]}"
}
