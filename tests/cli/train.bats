#!/usr/bin/env bats
# lm-train: initial checkpoints, exact resume (stopped and interrupted runs), NaN runs, bad
# inputs. Models are micro-sized so the whole file runs in seconds.

load helpers  # MICRO, corpus, losses
load nonfinite  # poison

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
  # steps of about half a millisecond: the run lasts about a second, far longer than one poll
  args=("${MICRO[@]}" "$TMP/all.tok" --steps 2000 --batch 8 --seq 64 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/part" &
  pid=$!
  for _ in $(seq 500); do
    [ "$( (wc -l < "$TMP/part/log.jsonl") 2>/dev/null || echo 0)" -ge 5 ] && break
    sleep 0.02
  done
  kill -INT "$pid" 2>/dev/null || true
  status=0
  wait "$pid" || status=$?
  step=$(wc -l < "$TMP/part/log.jsonl")
  # (a stalled machine can still let all the steps end before the signal comes)
  if [ "$status" -eq 0 ] && [ "$step" -eq 2000 ]; then skip "the run finished before the signal"; fi
  [ "$status" -eq 130 ] || fail "exit status $status, expected 130 (SIGINT), after $step steps"
  run lm-train --resume "$TMP/part" --threads 1
  assert_success
  assert_output --partial "done at step 2000/2000"
  lm-train "${args[@]}" -o "$TMP/full"
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
}

@test "termination signals wait in a thread of their own: no thread that computes can be interrupted by one" {
  # oneDNN 2.6's JIT sgemm points rsp into the heap while it runs: a handler's frame there
  # corrupted malloc's lists (lm-train aborted after a SIGINT about once in a hundred runs).
  corpus
  lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 100000 --batch 2 --seq 16 --threads 2 -o "$TMP/run" -q &
  pid=$!
  for _ in $(seq 200); do
    [ "$(wc -l < "$TMP/run/log.jsonl" 2>/dev/null || echo 0)" -ge 3 ] && break
    sleep 0.05
  done
  threads=0 waiting=0
  for task in /proc/"$pid"/task/*; do
    if [ "$(cat "$task/comm")" = lm-signals ]; then  # in sigwait: the kernel shows them unblocked
      waiting=$((waiting + 1))
      continue
    fi
    blocked=$(awk '/^SigBlk:/ {print $2}' "$task/status")
    # SIGHUP, SIGINT, SIGTERM: bits 0, 1 and 14 of the mask
    (( (16#$blocked & 0x4003) == 0x4003 )) || { kill -9 "$pid"; fail "thread $task does not block them (SigBlk $blocked)"; }
    threads=$((threads + 1))
  done
  kill -INT "$pid"
  status=0
  wait "$pid" || status=$?
  [ "$waiting" -eq 1 ] || fail "expected one signal thread, saw $waiting"
  [ "$threads" -ge 2 ] || fail "expected the main thread and an OpenMP worker, saw $threads"
  [ "$status" -eq 130 ] || fail "exit status $status, expected 130 (SIGINT)"
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

@test "a NaN loss stops with a clear error and keeps the last good checkpoint: finite weights, finite loss" {
  corpus
  # lr 1e3 diverges after a few finite steps; the checkpoint of the step before the NaN is
  # itself what gave the NaN, so the one kept is older
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 50 --batch 2 --seq 16 --lr 1e3 --grad-clip 0 --warmup 0 \
    --save-every 1 -o "$TMP/run" -q --threads 1
  assert_failure 1
  [ "${#lines[@]}" -eq 1 ]
  assert_output --regexp '^lm-train: error: (loss|gradient norm) is (nan|inf|-nan) at step [0-9]+; training stopped; the last good checkpoint \(step [0-9]+\) is kept'
  bad=$(sed -E 's/.* at step ([0-9]+);.*/\1/' <<<"${lines[0]}")
  good=$(sed -E 's/.*checkpoint \(step ([0-9]+)\).*/\1/' <<<"${lines[0]}")
  [ "$good" -eq $((bad - 2)) ] || fail "kept step $good, NaN at step $bad"
  [ "$(wc -l < "$TMP/run/log.jsonl")" -eq $((bad - 1)) ]
  grep -aq "step\\\\\":$good," "$TMP/run/checkpoint.safetensors"
  # the kept model loads (finite weights) and its loss is a number
  run lm-eval-loss -m "$TMP/run/model.safetensors" "$TMP/all.tok" --max-windows 4 --json
  assert_success
  assert_output --regexp '"loss": [0-9]'
  # resuming it redoes the steps (the same NaN: the data and settings are the run's)
  run lm-train --resume "$TMP/run" --threads 1 -q
  assert_failure 1
  assert_line --index 0 "${lines[0]}"
}

@test "weights that overflow are never saved: the save is refused, nothing non-finite is written" {
  corpus
  # one step at lr 1e38: a finite loss, then every weight overflows; the run's end saves
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 1 --batch 2 --seq 16 --lr 1e38 --grad-clip 0 --warmup 0 \
    -o "$TMP/run" -q --threads 1
  assert_failure 1
  [ "${#lines[@]}" -eq 1 ]
  assert_output --regexp "^lm-train: error: weight '[a-z_.0-9]+' is (nan|-nan|inf|-inf) after step 1; training stopped; nothing was saved; try a lower --lr$"
  [ ! -e "$TMP/run/checkpoint.safetensors" ] && [ ! -e "$TMP/run/model.safetensors" ]
  # a checkpoint with non-finite weights is refused as a model to fine-tune
  lm-train "${MICRO[@]}" --steps 0 -o "$TMP/init" -q
  poison "$TMP/init/model.safetensors"
  run lm-train "$TMP/init/model.safetensors" "$TMP/all.tok" -o "$TMP/ft" --steps 2 --seq 16
  assert_failure 1
  assert_output --regexp "^lm-train: error: '$TMP/init/model.safetensors': tensor '[a-z_.0-9]+' holds nan at element 0$"
  poison "$TMP/init/checkpoint.safetensors"
  run lm-train --resume "$TMP/init" --steps 1
  assert_failure 1
  assert_output --regexp "^lm-train: error: '$TMP/init/checkpoint.safetensors': tensor '[a-z_.0-9]+' holds nan at element 0$"
}

@test "option values no run can use are usage errors" {
  corpus
  for args in "--lr nan" "--lr -1" "--lr inf" "--min-lr nan" "--min-lr -1" "--lr 0.001 --min-lr 0.01" \
              "--grad-clip -1" "--grad-clip nan" "--beta1 1" "--beta1 -0.1" "--beta2 1.5" "--beta2 nan" \
              "--weight-decay -0.1" "--weight-decay inf" "--eps 0" "--eps -1" "--eps nan"; do
    run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 2 --seq 16 -o "$TMP/r" $args
    assert_failure 2
    [ "${#lines[@]}" -eq 1 ] || fail "$args: ${#lines[@]} lines"
    assert_output --regexp "^lm-train: error: --(lr|min-lr|grad-clip|beta1|beta2|weight-decay|eps) "
    [ ! -e "$TMP/r" ]
  done
  run lm-train --resume "$TMP/r" --allow-data-change --eps 0
  assert_failure 2
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 2 --seq 16 -o "$TMP/r" --allow-data-change
  assert_failure 2
  assert_output --partial "--allow-data-change goes with --resume"
}

@test "one writer per run directory: a second lm-train is refused naming the holder's pid" {
  corpus
  lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 100000 --batch 2 --seq 16 -o "$TMP/run" -q --threads 1 &
  pid=$!
  for _ in $(seq 200); do [ -s "$TMP/run/log.jsonl" ] && break; sleep 0.05; done
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 10 --seq 16 -o "$TMP/run"
  assert_failure 1
  assert_output "lm-train: error: '$TMP/run' is in use by another lm-train (pid $pid); wait for it to finish, or choose another run directory"
  run lm-train --resume "$TMP/run"
  assert_failure 1
  assert_output --partial "lm-train: error: '$TMP/run' is in use by another lm-train (pid $pid)"
  kill -TERM "$pid"
  wait "$pid" || true
  # the lock went with its holder
  run lm-train --resume "$TMP/run" --stop-after 1 --threads 1 -q
  assert_success
  # a directory holding only a log holds a run (one that died before saving)
  mkdir "$TMP/logonly"
  echo '{"step":1,"loss":5}' > "$TMP/logonly/log.jsonl"
  run lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 2 --seq 16 -o "$TMP/logonly"
  assert_failure 2
  assert_output --partial "lm-train: error: '$TMP/logonly' already holds a training run (a log, no checkpoint)"
  [ "$(cat "$TMP/logonly/log.jsonl")" = '{"step":1,"loss":5}' ]
}

@test "resume refuses training data that changed since the run started, unless allowed" {
  corpus
  cp "$TMP/all.tok" "$TMP/data.tok"
  args=("${MICRO[@]}" --steps 6 --batch 2 --seq 16 --threads 1 -q)
  lm-train "${args[@]}" "$TMP/data.tok" -o "$TMP/run" --stop-after 3
  # the same content under another name and compressed is the same data
  zstd -q "$TMP/data.tok" -o "$TMP/data.tok.zst"
  cp -r "$TMP/run" "$TMP/copy"
  run lm-train --resume "$TMP/copy" "$TMP/data.tok.zst" --threads 1 -q
  assert_success
  lm-train "${args[@]}" "$TMP/all.tok" -o "$TMP/full"
  cmp "$TMP/full/model.safetensors" "$TMP/copy/model.safetensors"
  # one byte changed, the size the same
  printf 'Z' | dd of="$TMP/data.tok" bs=1 seek=9000 conv=notrunc status=none
  run lm-train --resume "$TMP/run"
  assert_failure 1
  [ "${#lines[@]}" -eq 1 ]
  assert_output --partial "lm-train: error: the training data changed since the run started: '$TMP/data.tok' (same size, other content); "
  assert_output --partial "--allow-data-change"
  grep -c . "$TMP/run/log.jsonl" | grep -qx 3
  run lm-train --resume "$TMP/run" --allow-data-change --threads 1
  assert_success
  assert_line --index 0 "lm-train: warning: the training data changed since the run started: '$TMP/data.tok' (same size, other content); continuing (--allow-data-change)"
  assert_output --partial "done at step 6/6"
  grep -q '^{"step":3,"note":"the training data changed since the run started' "$TMP/run/log.jsonl"
  [ "$(grep -c '"loss"' "$TMP/run/log.jsonl")" -eq 6 ]
}

@test "token streams are read in bounded memory: a small zstd file of 160 MB of tokens" {
  corpus
  # 4096 copies of the corpus' records behind one header: 82M u16 tokens, a few kB compressed
  python3 - "$TMP/all.tok" "$TMP/big.tok" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as out:
    out.write(data[:64])
    body = data[64:] * 64
    for _ in range(64):
        out.write(body)
PY
  zstd -q --rm "$TMP/big.tok" -o "$TMP/big.tok.zst"
  [ "$(stat -c %s "$TMP/big.tok.zst")" -lt 1000000 ]
  # peak resident memory of lm-train in kB (getrusage of the child)
  peak() {
    python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)' "$@"
  }
  base=$(peak lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 2 --batch 2 --seq 16 -o "$TMP/small" -q --threads 1)
  kb=$(peak lm-train "${MICRO[@]}" "$TMP/big.tok.zst" --steps 2 --batch 2 --seq 16 -o "$TMP/run" -q --threads 1)
  [ "$base" -gt 0 ] && [ "$kb" -gt 0 ] || fail "lm-train failed"
  # the tokens are 160 MB decompressed (320 MB as 32-bit ids): a copy would show; the
  # mapping's pages are handed back as they are read
  echo "# peak RSS: $base kB with 40 kB of tokens, $kb kB with 160 MB" >&3
  [ $((kb - base)) -lt 50000 ] || fail "peak RSS $kb kB for 160 MB of tokens, $base kB for 40 kB"
  # and the run saw all of them: the same batches as from the plain file
  zstd -q -d "$TMP/big.tok.zst" -o "$TMP/big.tok"
  lm-train "${MICRO[@]}" "$TMP/big.tok" --steps 2 --batch 2 --seq 16 -o "$TMP/plain" -q --threads 1
  cmp "$TMP/run/model.safetensors" "$TMP/plain/model.safetensors"
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
  assert_output --partial "started as one of 2 processes (OMPI_COMM_WORLD_SIZE), but this build of lmkit has no MPI"
  [ ! -e "$TMP/x" ]
  run lm-train tiny --steps 0 -o "$TMP/x" -q  # one process is fine
  assert_success
}

@test "--dtype bf16 trains close to f32, keeps f32 checkpoints, and --resume keeps the dtype" {
  corpus
  args=("${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 2 --steps 30 --batch 4 --seq 32 --lr 3e-3
        --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/f32"
  lm-train "${args[@]}" --dtype f32 -o "$TMP/f32b"
  cmp "$TMP/f32/model.safetensors" "$TMP/f32b/model.safetensors"  # f32 is the default
  lm-train "${args[@]}" --dtype bf16 -o "$TMP/bf16"
  # bf16 products change every loss a little (so bf16 did run), and the curve not much
  python3 - "$TMP/f32/log.jsonl" "$TMP/bf16/log.jsonl" <<'PY'
import json, sys
f32, bf16 = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert len(f32) == len(bf16) == 30
assert all(a["loss"] != b["loss"] for a, b in zip(f32[1:], bf16[1:])), "bf16 gave f32's losses"
assert f32[-1]["loss"] < f32[0]["loss"] - 1.0, (f32[0], f32[-1])  # it learned
for a, b in zip(f32, bf16):
    assert abs(b["loss"] - a["loss"]) < 0.02 * a["loss"], (a, b)
assert abs(bf16[-1]["val_loss"] - f32[-1]["val_loss"]) < 0.01 * f32[-1]["val_loss"], (f32[-1], bf16[-1])
PY
  # the run's settings record the dtype; the weights are saved as f32
  python3 - "$TMP/bf16/checkpoint.safetensors" "$TMP/bf16/model.safetensors" "$TMP/f32/checkpoint.safetensors" <<'PY'
import json, struct, sys
def header(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
h = header(sys.argv[1])
assert json.loads(h["__metadata__"]["lmkit.train"])["settings"]["dtype"] == "bf16"
assert "dtype" not in json.loads(header(sys.argv[3])["__metadata__"]["lmkit.train"])["settings"]
for p in sys.argv[1:3]:
    assert {v["dtype"] for k, v in header(p).items() if k != "__metadata__"} == {"F32"}, p
PY
  # stopped and resumed without --dtype: the same bf16 run bit for bit
  lm-train "${args[@]}" --dtype bf16 -o "$TMP/part" --stop-after 12
  lm-train --resume "$TMP/part" --threads 1 -q
  diff <(losses "$TMP/bf16/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/bf16/model.safetensors" "$TMP/part/model.safetensors"
  run lm-train --resume "$TMP/part" --dtype f32 --steps 40
  assert_failure 2
  assert_output --partial "lm-train: error: --dtype cannot be given with --resume (the run keeps its settings)"
  run lm-train "${args[@]}" --dtype f16 -o "$TMP/x"
  assert_failure 2
  assert_output --partial "--dtype"
}
