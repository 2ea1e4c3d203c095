#!/usr/bin/env bats
# Every program's error output, as the README promises it: a failure is exactly one line on
# stderr, "<program>: error: <what>: <why>" (a hint joined on the same line after "; "),
# and the exit code says whose mistake it was: 2 for what the user typed (options, preset
# names, --set overrides that make a config invalid), 1 for bad data, I/O and resources
# (an invalid config file, a full disk, memory). Each case runs a bad invocation and checks
# the code, the one line and its text.

load helpers
bats_require_minimum_version 1.5.0

FIX="$LMKIT_SOURCE_DIR/tests/fixtures"
SOMA="$FIX/soma_v1/model.safetensors"      # byte-v1 tokenizer, max_seq_len 64
LLAMA="$FIX/llama2/model.safetensors"      # a valid lmkit checkpoint: dim 32, 4 heads

# fails CODE REGEX COMMAND: the shell command COMMAND (stdin from /dev/null unless it says
# otherwise) exits with CODE and writes exactly one line to stderr, which starts with
# "lm-<program>: error: " (or "lm: error: ") and matches the extended regex REGEX.
fails() {
  local code=$1 regex=$2 cmd=$3 status=0
  bash -c "$cmd" < /dev/null > "$TMP/stdout" 2> "$TMP/stderr" || status=$?
  local err
  err=$(cat "$TMP/stderr")
  [ "$status" -eq "$code" ] || fail "$cmd: exit $status, expected $code; stderr: $err"
  [ "$(wc -l < "$TMP/stderr")" -eq 1 ] && [ -z "$(tail -c 1 "$TMP/stderr" | tr -d '\n')" ] ||
    fail "$cmd: stderr is not one line: $err"
  grep -qE '^lm(-[a-z-]+)?: error: ' "$TMP/stderr" || fail "$cmd: not a '<program>: error: ' line: $err"
  grep -qE -- "$regex" "$TMP/stderr" || fail "$cmd: stderr does not match /$regex/: $err"
}

programs() {
  local p
  for p in "$LMKIT_SOURCE_DIR"/tools/lm-*.cpp; do basename "$p" .cpp; done
}

ENOSPC="cannot write '<stdout>': No space left on device$"

@test "every program: an unknown option is one line with the way to help, exit 2" {
  for p in $(programs); do
    required=""
    case $p in lm-eval-loss|lm-generate) required="-m x" ;; esac  # else "--model is required" comes first
    fails 2 "^$p: error: the following argument was not expected: --no-such-option; run '$p --help' for usage$" \
      "$p --no-such-option $required"
  done
  fails 2 "^lm: error: unknown option '--no-such-option'; run 'lm --help' for usage$" "lm --no-such-option"
  fails 2 "^lm: error: no command; run 'lm --help' for the list$" "lm"
  fails 2 "^lm: error: 'nothing' is not an lm command \(no lm-nothing found\); run 'lm --help' for the list$" "lm nothing"
}

@test "every program: help or version output that cannot be written is an error, exit 1" {
  [ -w /dev/full ] || skip "no /dev/full"
  for p in lm $(programs); do
    fails 1 "^$p: error: $ENOSPC" "$p --help > /dev/full"
    fails 1 "^$p: error: $ENOSPC" "$p --version > /dev/full"
  done
}

@test "a report that cannot be written names the real errno (ENOSPC), exit 1" {
  [ -w /dev/full ] || skip "no /dev/full"
  corpus
  fails 1 "$ENOSPC" "lm-inspect-config tiny --json > /dev/full"
  fails 1 "$ENOSPC" "lm-bench sgemm --sizes 32 --repeats 1 --warmup 0 --json > /dev/full"
  fails 1 "$ENOSPC" "lm-eval-loss --threads 1 -m '$SOMA' '$TMP/all.tok' --max-windows 2 --json > /dev/full"
  fails 1 "$ENOSPC" "lm-generate --threads 1 -m '$SOMA' -p hi -n 2 --json > /dev/full"
  fails 1 "$ENOSPC" "lm-convert-checkpoint --dry-run --json '$LLAMA' > /dev/full"
  fails 1 "$ENOSPC" "lm-tokenize --format text '$TMP/text.txt' > /dev/full"
  # lm-train writes its log line by line: the first failed write sets the errno reported
  fails 1 "$ENOSPC" "lm-train ${MICRO[*]} '$TMP/all.tok' -o '$TMP/run' --steps 3 --batch 2 --seq 16 --threads 1 --json -q > /dev/full"
}

@test "out of memory is '<what>: <why>', exit 1" {
  # Under make test-asan: AddressSanitizer lets the allocation fail instead of aborting, and
  # writes its own warning about it to a file, not to the program's stderr.
  fails 1 "^lm-bench: error: cannot allocate [0-9]+ bytes for a \[10000000, 10000000\] F32 tensor: out of memory$" \
    "ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}allocator_may_return_null=1:log_path='$TMP/asan' lm-bench sgemm --sizes 10000000 --repeats 1 --warmup 0"
}

@test "lm-eval-loss --fail-above: a loss above it, or not a number, is one error line naming the model and the input, exit 1" {
  corpus
  fails 1 "^lm-eval-loss: error: loss of '$SOMA' on '$TMP/all.tok': [0-9]+\.[0-9]{6} is above --fail-above 0\.5$" \
    "lm-eval-loss --threads 1 -m '$SOMA' '$TMP/all.tok' --max-windows 2 --fail-above 0.5"
  grep -q perplexity "$TMP/stdout"  # the report comes first, on stdout
  fails 1 "^lm-eval-loss: error: loss of '<stdin>' on '$TMP/all.tok': [0-9]+\.[0-9]{6} is above --fail-above 0\.5$" \
    "lm-eval-loss --threads 1 -m - '$TMP/all.tok' --max-windows 2 --fail-above 0.5 --json < '$SOMA'"
  # finite weights of 1e30: the loss overflows to NaN
  lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 1 --batch 2 --seq 16 --lr 1e30 --grad-clip 0 -o "$TMP/huge" -q --threads 1
  fails 1 "^lm-eval-loss: error: loss of '$TMP/huge/model.safetensors' on '$TMP/all.tok', '$TMP/all.tok': nan is not a finite number \(fails --fail-above 1000\)$" \
    "lm-eval-loss --threads 1 -m '$TMP/huge/model.safetensors' '$TMP/all.tok' '$TMP/all.tok' --max-windows 2 --fail-above 1000"
}

@test "a config made invalid by --set is a usage error (exit 2); an invalid config file a data error (exit 1)" {
  lm-inspect-config tiny --config > "$TMP/tiny.json"
  sed 's/"dim": 128/"dim": -1/' "$TMP/tiny.json" > "$TMP/bad.json"
  grep -q '"dim": -1' "$TMP/bad.json"
  # the user's words: a --set that breaks a preset, a valid file or a checkpoint; an unknown key; no such preset
  fails 2 "^lm-inspect-config: error: 'tiny': dim must be positive, got -1$" "lm-inspect-config tiny --set dim=-1"
  fails 2 "'$TMP/tiny.json': dim must be positive, got -1$" "lm-inspect-config '$TMP/tiny.json' --set dim=-1"
  fails 2 "dim \(32\) is not divisible by n_heads \(3\)" "lm-inspect-config '$LLAMA' --set n_heads=3"
  fails 2 "^lm-inspect-config: error: --set 'nope=1': unknown key 'nope'; did you mean 'name'\?$" "lm-inspect-config tiny --set nope=1"
  fails 2 "^lm-inspect-config: error: unknown preset 'llama9'; presets: tiny, " "lm-inspect-config llama9"
  fails 2 "^lm-bench: error: 'tiny': dim must be positive, got -1$" "lm-bench forward --model tiny --set dim=-1"
  fails 2 "^lm-bench: error: --set 'nope=1': unknown key 'nope'" "lm-bench forward --model tiny --set nope=1"
  fails 2 "^lm-train: error: 'tiny': dim must be positive, got -1$" "lm-train tiny --set dim=-1 -o '$TMP/run'"
  fails 2 "^lm-train: error: --set 'nope=1': unknown key 'nope'" "lm-train tiny --set nope=1 -o '$TMP/run'"
  [ ! -e "$TMP/run" ]
  fails 2 "^lm-convert-checkpoint: error: .*dim must be positive, got -1$" \
    "lm-convert-checkpoint --set dim=-1 '$LLAMA' '$TMP/out.safetensors'"
  fails 2 "^lm-convert-checkpoint: error: --set 'nope=1': unknown key 'nope'" \
    "lm-convert-checkpoint --set nope=1 '$LLAMA' '$TMP/out.safetensors'"
  [ ! -e "$TMP/out.safetensors" ]
  # the file's own fault, with or without a (harmless) override
  fails 1 "^lm-inspect-config: error: '$TMP/bad.json': dim must be positive, got -1$" "lm-inspect-config '$TMP/bad.json'"
  fails 1 "^lm-inspect-config: error: '$TMP/bad.json': dim must be positive, got -1$" \
    "lm-inspect-config '$TMP/bad.json' --set n_layers=1"
  fails 1 "^lm-bench: error: '$TMP/bad.json': dim must be positive" "lm-bench forward --model '$TMP/bad.json'"
  fails 1 "^lm-train: error: '$TMP/bad.json': dim must be positive" "lm-train '$TMP/bad.json' -o '$TMP/run'"
  # a checkpoint whose stored config is invalid stays a data error, with or without an override
  python3 - "$LLAMA" "$TMP/badcfg.safetensors" "$LMKIT_SOURCE_DIR/tests/convert" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[3])
import st
t, m = st.read(sys.argv[1])
cfg = json.loads(m["lmkit.config"])
cfg["dropout"] = 2
m["lmkit.config"] = json.dumps(cfg)
st.write(sys.argv[2], t, m)
PY
  fails 1 "'$TMP/badcfg.safetensors'.*dropout must be in \[0, 1\), got 2$" "lm-inspect-config '$TMP/badcfg.safetensors'"
  fails 1 "'$TMP/badcfg.safetensors'.*dropout must be in \[0, 1\), got 2$" \
    "lm-inspect-config '$TMP/badcfg.safetensors' --set norm_eps=0.001"
  fails 1 "dropout must be in \[0, 1\), got 2$" \
    "lm-convert-checkpoint --set norm_eps=0.001 '$TMP/badcfg.safetensors' '$TMP/out.safetensors'"
}

@test "a tokenizer file named *.json is read as tokenizer.json, whatever its first byte" {
  printf '[1, 2]' > "$TMP/tok.json"
  fails 1 "^lm-tokenize: error: '$TMP/tok.json': .*JSON" "lm-tokenize -t '$TMP/tok.json' '$SOMA'"
  : > "$TMP/empty.json"
  fails 1 "^lm-tokenize: error: '$TMP/empty.json': .*JSON" "lm-tokenize -t '$TMP/empty.json' '$SOMA'"
  # a checkpoint given as the tokenizer says what it is
  fails 1 "^lm-tokenize: error: '$LLAMA': a safetensors checkpoint, not a tokenizer file \(a SentencePiece tokenizer.model or a tokenizer.json\)$" \
    "lm-tokenize -t '$LLAMA' '$SOMA'"
  lm-convert-checkpoint -q --to gguf "$LLAMA" "$TMP/l.gguf"
  # a GGUF file is read for its vocabulary (llama.cpp's tokenizer.ggml.*); this one has none
  fails 1 "^lm-tokenize: error: '$TMP/l.gguf': the GGUF file has no vocabulary \\(tokenizer.ggml.model\\)" "lm-tokenize -t '$TMP/l.gguf' '$SOMA'"
  # content still decides for other names: '{' is tokenizer.json, anything else SentencePiece
  printf '[1, 2]' > "$TMP/tok.model"
  fails 1 "^lm-tokenize: error: '$TMP/tok.model': .*protobuf" "lm-tokenize -t '$TMP/tok.model' '$SOMA'"
}

@test "bad data and I/O: one line, exit 1" {
  fails 1 "^lm-tokenize: error: cannot open '$TMP/none.txt': No such file or directory$" "lm-tokenize '$TMP/none.txt'"
  fails 1 "^lm-inspect-config: error: cannot open '$TMP/none.json': No such file or directory$" \
    "lm-inspect-config '$TMP/none.json'"
  fails 1 "^lm-eval-loss: error: cannot open '$TMP/none.safetensors'" "lm-eval-loss -m '$TMP/none.safetensors'"
  fails 1 "^lm-generate: error: cannot open '$TMP/none.safetensors'" "lm-generate -m '$TMP/none.safetensors' -p hi"
  fails 1 "^lm-convert-checkpoint: error: cannot open '$TMP/none.safetensors'" \
    "lm-convert-checkpoint '$TMP/none.safetensors' '$TMP/out.safetensors'"
  fails 1 "^lm-train: error: cannot open '$TMP/none.tok'" "lm-train tiny '$TMP/none.tok' -o '$TMP/run'"
  printf 'not a token stream, not llm.c' > "$TMP/junk.tok"
  fails 1 "^lm-tokenize: error: '$TMP/junk.tok': not a token stream \(bad magic\); headerless token files" \
    "lm-tokenize --decode '$TMP/junk.tok'"
}

@test "bad option values and combinations: one line, exit 2" {
  fails 2 "^lm-tokenize: error: --max-seq-len: Value 0 not in range 1 to 2147483647; run 'lm-tokenize --help' for usage$" \
    "lm-tokenize --max-seq-len 0"
  fails 2 "^lm-tokenize: error: --add-bos excludes --decode" "lm-tokenize --decode --add-bos"
  fails 2 "^lm-bench: error: --repeats: " "lm-bench --repeats 0"
  fails 2 "^lm-inspect-config: error: --json and --config are exclusive$" "lm-inspect-config tiny --json --config"
  fails 2 "^lm-train: error: no run directory: give -o DIR$" "lm-train tiny"
  fails 2 "^lm-eval-loss: error: --model is required; " "lm-eval-loss"
  fails 2 "^lm-convert-checkpoint: error: unknown layout 'gguf2'; layouts are " "lm-convert-checkpoint --to gguf2 '$LLAMA' '$TMP/o'"
  fails 2 "^lm-eval-loss: error: --fail-above must be a finite number, got nan$" "lm-eval-loss -m '$SOMA' --fail-above nan"
  fails 2 "^lm-train: error: cannot resume from '$LLAMA': not a run directory; --resume takes the -o DIR of an lm-train run; to fine-tune a checkpoint, give it as CONFIG$" \
    "lm-train --resume '$LLAMA'"
}

@test "a control character in a name cannot make a second line" {
  fails 1 "^lm-inspect-config: error: cannot open 'a\\\\nb.json': No such file or directory$" "lm-inspect-config \$'a\\nb.json'"
  fails 2 "^lm: error: 'x\\\\ny' is not an lm command" "lm \$'x\\ny'"
  # a warning too: lm-train's about training data changed since the run started
  corpus
  local odd="$TMP/a"$'\n'"b.tok"
  cp "$TMP/all.tok" "$odd"
  lm-train "${MICRO[@]}" "$odd" --steps 4 --batch 2 --seq 16 --threads 1 -q -o "$TMP/run" --stop-after 2
  printf 'Z' | dd of="$odd" bs=1 seek=9000 conv=notrunc status=none
  run --separate-stderr lm-train --resume "$TMP/run" --allow-data-change --threads 1
  assert_success
  # the warning is the first line; the run's summary follows on stderr
  assert_equal "${stderr_lines[0]}" "lm-train: warning: the training data changed since the run started: '$TMP/a\\nb.tok' (same size, other content); continuing (--allow-data-change)"
  [[ "${stderr_lines[1]}" == "done at step 4/4"* ]] || fail "the second line is not the summary: $stderr"
}

@test "lm-inspect-config warns in one line about a checkpoint with non-finite weights, and exits 0" {
  python3 - "$LLAMA" "$TMP/nan.safetensors" "$TMP/inf.safetensors" "$LMKIT_SOURCE_DIR/tests/convert" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[4])
import st
t, m = st.read(sys.argv[1])
name = "layers.1.feed_forward.w2.weight"
dtype, shape, data = t[name]
assert dtype == "F32"
for path, value in ((sys.argv[2], float("nan")), (sys.argv[3], float("-inf"))):
    u = dict(t)
    u[name] = (dtype, shape, data[:4 * 5] + struct.pack("<f", value) + data[4 * 6:])
    st.write(path, u, m)
PY
  run --separate-stderr lm-inspect-config "$TMP/nan.safetensors"
  assert_success
  [ "${#stderr_lines[@]}" -eq 1 ]
  assert_equal "$stderr" "lm-inspect-config: warning: '$TMP/nan.safetensors': non-finite weights: tensor 'layers.1.feed_forward.w2.weight' holds nan at element 5"
  assert_output --partial "total"
  run --separate-stderr lm-inspect-config "$TMP/inf.safetensors" --json
  assert_success
  assert_equal "$stderr" "lm-inspect-config: warning: '$TMP/inf.safetensors': non-finite weights: tensor 'layers.1.feed_forward.w2.weight' holds -inf at element 5"
  echo "$output" | python3 -c 'import json, sys; json.load(sys.stdin)'
  # A checkpoint on stdin is checked too: the one read of it serves both the config and the check.
  run --separate-stderr lm-inspect-config - < "$TMP/nan.safetensors"
  assert_success
  [ "${#stderr_lines[@]}" -eq 1 ]
  assert_equal "$stderr" "lm-inspect-config: warning: '<stdin>': non-finite weights: tensor 'layers.1.feed_forward.w2.weight' holds nan at element 5"
  run --separate-stderr lm-inspect-config "$LLAMA"
  assert_success
  assert_equal "$stderr" ""
}
