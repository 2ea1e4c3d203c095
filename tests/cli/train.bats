#!/usr/bin/env bats
# lm-train: initial checkpoints, exact resume (stopped and interrupted runs), NaN runs, bad
# inputs. Models are micro-sized so the whole file runs in seconds.

load helpers  # MICRO, corpus, losses

@test "--steps 0 writes a random initial checkpoint, the same for the same seed" {
  run lm-train tiny --steps 0 --seed 3 -o "$TMP/a" -q
  assert_success
  assert_output ""
  [ -f "$TMP/a/model.safetensors" ] && [ -f "$TMP/a/checkpoint.safetensors" ]
  lm-train tiny --steps 0 --seed 3 -o "$TMP/b" -q
  lm-train tiny --steps 0 --seed 4 -o "$TMP/c" -q
  cmp "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"
  ! cmp -s "$TMP/a/model.safetensors" "$TMP/c/model.safetensors"
  run lm-inspect-config "$TMP/a/model.safetensors" --json
  assert_success
  assert_output --partial '"dim": 128'
  grep -aq '"lmkit.tokenizer":"{\\"eos_id\\":257,\\"fingerprint\\":\\"0x[0-9a-f]*\\",\\"kind\\":\\"byte-v1\\"' "$TMP/a/model.safetensors"
}

@test "a checkpoint on stdin starts a run (read once: a second read would find stdin empty)" {
  lm-train tiny --steps 0 --seed 3 -o "$TMP/a" -q
  run lm-train - --steps 0 -o "$TMP/b" -q < "$TMP/a/model.safetensors"
  assert_success
  cmp "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"
}

@test "training logs JSON Lines to the run directory and, with --json, to stdout" {
  corpus
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 2 -o "$TMP/run" \
    --steps 4 --batch 2 --seq 16 --json -q
  assert_success
  [ "$(echo "$output" | wc -l)" -eq 4 ]
  assert_line --index 0 --regexp '^\{"step":1,"loss":[0-9.e-]+,"lr":[0-9.e-]+,"grad_norm":[0-9.e-]+,"tokens_per_s":[0-9.e-]+,"elapsed":[0-9.e-]+\}$'
  assert_line --index 3 --regexp '"step":4,.*"val_loss":[0-9.]+\}$'
  diff <(echo "$output") "$TMP/run/log.jsonl"
  # the final model is a plain checkpoint of the trained config
  run lm-inspect-config "$TMP/run/model.safetensors" --config
  assert_output --partial '"dim": 32'
}

@test "a run stopped with --stop-after and resumed equals an uninterrupted run bit for bit" {
  corpus
  args=("${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 1 --val-every 2 --steps 6 --batch 2
        --seq 16 --grad-accum 2 --warmup 2 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/full"
  run lm-train "${args[@]}" -o "$TMP/part" --stop-after 4
  assert_success
  run lm-train --resume "$TMP/part" --threads 1
  assert_success
  assert_output --partial "done at step 6/6"
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
}

@test "sequential sampling with position ids resumes exactly too" {
  corpus
  args=("${MICRO[@]}" "$TMP/all.tok" --sample sequential --steps 5 --batch 2 --seq 16 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/full"
  # relative stream paths are recorded absolute: the resume works from anywhere
  (cd "$TMP" && lm-train "${MICRO[@]}" all.tok --sample sequential --steps 5 --batch 2 --seq 16 --threads 1 -q \
    -o part --stop-after 2)
  (cd / && lm-train --resume "$TMP/part" --threads 1 -q)
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
}

@test "SIGINT saves and ends by the signal; resuming completes the same run" {
  corpus
  args=("${MICRO[@]}" "$TMP/all.tok" --steps 400 --batch 2 --seq 16 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/part" &
  pid=$!
  for _ in $(seq 200); do
    [ "$(wc -l < "$TMP/part/log.jsonl" 2>/dev/null || echo 0)" -ge 5 ] && break
    sleep 0.05
  done
  kill -INT "$pid"
  status=0
  wait "$pid" || status=$?
  [ "$status" -eq 130 ] || fail "exit status $status, expected 130 (SIGINT)"
  step=$(wc -l < "$TMP/part/log.jsonl")
  [ "$step" -lt 400 ] || skip "the run finished before the signal"
  run lm-train --resume "$TMP/part" --threads 1
  assert_success
  assert_output --partial "done at step 400/400"
  lm-train "${args[@]}" -o "$TMP/full"
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
}

@test "SIGTERM saves too" {
  corpus
  lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 100000 --batch 2 --seq 16 -o "$TMP/run" -q &
  pid=$!
  for _ in $(seq 200); do
    [ -s "$TMP/run/log.jsonl" ] && break
    sleep 0.05
  done
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  [ "$status" -eq 143 ]
  run lm-inspect-config "$TMP/run/model.safetensors"
  assert_success
}

@test "a NaN loss stops with a clear error and keeps the last good checkpoint" {
  corpus
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 50 --batch 2 --seq 16 --lr 1e30 --grad-clip 0 --warmup 0 \
    --save-every 1 -o "$TMP/run" -q
  assert_failure 1
  assert_output --regexp '^lm-train: error: (loss|gradient norm) is (nan|inf|-nan) at step [0-9]+; training stopped; the last good checkpoint \(step [0-9]+'
  [ "${#lines[@]}" -eq 1 ]
  good=$(sed -E 's/.*checkpoint \(step ([0-9]+)\).*/\1/' <<<"${lines[0]}")
  [ "$(wc -l < "$TMP/run/log.jsonl")" -eq "$good" ]
  run lm-inspect-config "$TMP/run/model.safetensors"
  assert_success
}

@test "bad inputs: empty stream, stream shorter than a window, vocabulary mismatch, unwritable directory" {
  : > "$TMP/empty.txt"
  lm-tokenize "$TMP/empty.txt" -o "$TMP/empty.tok"
  run lm-train "${MICRO[@]}" "$TMP/empty.tok" -o "$TMP/r1" --steps 2
  assert_failure 1
  assert_output --partial "lm-train: error: training data: no tokens"

  printf 'hello' | lm-tokenize -o "$TMP/short.tok"
  run lm-train "${MICRO[@]}" "$TMP/short.tok" -o "$TMP/r2" --steps 2 --seq 16
  assert_failure 1
  assert_output --partial "lm-train: error: training data: 6 tokens are shorter than one window of 17"

  corpus
  run lm-train "${MICRO[@]}" --set vocab_size=300 "$TMP/all.tok" -o "$TMP/r3" --steps 2 --seq 16
  assert_failure 1
  assert_output --partial "training data: vocabulary mismatch: the tokens are byte-v1 (vocab 264"

  run lm-train "${MICRO[@]}" "$TMP/all.tok" --val "$TMP/short.tok" -o "$TMP/r4" --steps 2 --seq 16
  assert_failure 1
  assert_output --partial "validation data: 6 tokens are shorter"

  : > "$TMP/file"
  run lm-train "${MICRO[@]}" "$TMP/all.tok" -o "$TMP/file/run" --steps 2 --seq 16
  assert_failure 1
  assert_output --partial "lm-train: error: cannot create run directory '$TMP/file/run'"

  run lm-train "${MICRO[@]}" "$TMP/missing.tok" -o "$TMP/r5" --steps 2
  assert_failure 1
  assert_output --partial "missing.tok"
  [ ! -e "$TMP/r1" ] && [ ! -e "$TMP/r2" ] && [ ! -e "$TMP/r3" ]
}

@test "usage errors: no model, no run directory, no data, a taken directory, settings on --resume" {
  run lm-train
  assert_failure 2
  run lm-train tiny --steps 1
  assert_failure 2
  assert_output --partial "no run directory"
  run lm-train tiny -o "$TMP/r" --steps 1
  assert_failure 2
  assert_output --partial "no training data"
  lm-train tiny --steps 0 -o "$TMP/r" -q
  run lm-train tiny --steps 0 -o "$TMP/r"
  assert_failure 2
  assert_output --partial "already holds a training run"
  run lm-train --resume "$TMP/r" --lr 0.1
  assert_failure 2
  assert_output --partial "--lr cannot be given with --resume"
  run lm-train --resume "$TMP/nothing"
  assert_failure 1
  run lm-train tiny --steps 0 --seq 100000 -o "$TMP/r9"
  assert_failure 2
  assert_output --partial "exceeds the model's max_seq_len"
}

@test "fine-tuning starts from a checkpoint's weights" {
  corpus
  lm-train "${MICRO[@]}" --steps 0 -o "$TMP/init" -q
  run lm-train "$TMP/init/model.safetensors" "$TMP/all.tok" -o "$TMP/ft" --steps 2 --batch 2 --seq 16 --json -q
  assert_success
  [ "$(echo "$output" | wc -l)" -eq 2 ]
  run lm-inspect-config "$TMP/ft/model.safetensors" --config
  assert_output --partial '"dim": 32'
}

@test "an lm-train built without MPI refuses to be one of several processes" {
  [ "${LMKIT_MPI:-1}" = 0 ] || skip "this build has MPI (train_mpi.bats runs its jobs)"
  OMPI_COMM_WORLD_SIZE=2 run lm-train tiny --steps 0 -o "$TMP/x"
  assert_failure 1
  assert_output --partial "started as one of 2 processes (OMPI_COMM_WORLD_SIZE), but this lm-train was built without MPI"
  [ ! -e "$TMP/x" ]
  run lm-train tiny --steps 0 -o "$TMP/x" -q  # one process is fine
  assert_success
}
