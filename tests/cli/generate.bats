#!/usr/bin/env bats
# lm-generate: prompts as text, lines and token streams; sampling options and seeds; stop
# strings and EOS; output formats and --json stats; every error class. Models are the
# committed PyTorch fixtures (random weights, so the text is noise but deterministic).

load helpers
load nonfinite

FIX="$LMKIT_SOURCE_DIR/tests/fixtures"
SOMA="$FIX/soma_v1/model.safetensors"     # byte-v1 tokenizer, max_seq_len 64
RAW="$FIX/llama2/model.safetensors"       # no tokenizer, vocab 256, max_seq_len 32
G="lm-generate --threads 1"

@test "lm-generate -p greedy: deterministic text, streamed to stdout" {
  run $G -m "$SOMA" -p "To be" -n 20 --temperature 0
  assert_success
  first=$output
  run $G -m "$SOMA" -p "To be" -n 20 --temperature 0 --seed 99
  assert_equal "$output" "$first"
  run $G -m "$SOMA" -p "To be" -n 20 --temperature 0 --echo
  assert_equal "$output" "To be$first"
}

@test "lm-generate --no-mmap: weights copied into memory, the same output" {
  a=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --format ids)
  b=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --format ids --no-mmap)
  assert_equal "$a" "$b"
  run $G -m "$SOMA" -p "To be" -n 20 --temperature 0 --no-mmap
  assert_success
  assert_equal "$output" "$($G -m "$SOMA" -p "To be" -n 20 --temperature 0)"
}

@test "lm-generate: the same seed gives the same output, another seed another one" {
  a=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --format ids)
  b=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --format ids)
  c=$($G -m "$SOMA" -p "Once" -n 30 --seed 6 --format ids)
  assert_equal "$a" "$b"
  [ "$a" != "$c" ]
  k=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --top-k 1 --temperature 3 --format ids)
  g=$($G -m "$SOMA" -p "Once" -n 30 --temperature 0 --format ids)
  assert_equal "$k" "$g"
  p=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --top-p 0.000001 --format ids)
  assert_equal "$p" "$g"
}

@test "lm-generate: one completion per stdin line, in order, with --json stats" {
  run bash -c "printf 'To be\nor not\nto be\n' | $G -m '$SOMA' -n 8 --seed 1 --json --ignore-eos"
  assert_success
  echo "$output" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert [r["prompt"] for r in rows] == [0, 1, 2], rows
assert [r["prompt_tokens"] for r in rows] == [5, 6, 5]
for r in rows:
    assert r["tokens"] == 8 and r["generated"] == 8 and r["stop_reason"] == "length", r
    assert 0 < r["time_to_first_token_s"] <= r["seconds"] and r["tokens_per_second"] > 0
    assert len(r["token_ids"]) == 8 and "text" in r
assert [r["seed"] for r in rows] == [1, 2, 3]
'
  # each line alone gives the same completion as in the batch (seed + index)
  one=$(printf 'or not\n' | $G -m "$SOMA" -n 8 --seed 2 --format ids --ignore-eos)
  two=$(printf 'To be\nor not\n' | $G -m "$SOMA" -n 8 --seed 1 --format ids --ignore-eos | sed -n 2p)
  assert_equal "$one" "$two"
  run bash -c "printf 'a\nb' | $G -m '$SOMA' -n 3 --format ids --ignore-eos | wc -l"
  assert_output "2"
}

@test "lm-generate: --input-format text takes the whole input as one prompt; -i reads a file" {
  printf 'line one\nline two\n' > "$TMP/p.txt"
  run $G -m "$SOMA" -i "$TMP/p.txt" --input-format text -n 4 --json --temperature 0 --ignore-eos
  assert_success
  [ "$(echo "$output" | wc -l)" -eq 1 ]
  echo "$output" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); assert r["prompt_tokens"] == 18, r'
  run $G -m "$SOMA" -i "$TMP/p.txt" -n 4 --format ids --seed 3 --ignore-eos  # no empty completion
  assert_success
  [ "$(echo "$output" | wc -l)" -eq 2 ]
}

@test "lm-generate: token stream prompts in and --format tokens out, decodable by lm-tokenize" {
  printf 'To be' | lm-tokenize --eos never > "$TMP/p.tok"
  text=$($G -m "$SOMA" -p "To be" -n 12 --temperature 0 --ignore-eos --format ids)
  run $G -m "$SOMA" -i "$TMP/p.tok" -n 12 --temperature 0 --ignore-eos --format ids
  assert_equal "$output" "$text"
  $G -m "$SOMA" -p "To be" -p "or not" -n 12 --temperature 0 --ignore-eos --format tokens -o "$TMP/out.tok"
  python3 - "$TMP/out.tok" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"LMKTOKS\0"
count, start = struct.unpack("<IQ", b[68:80])
assert b[64:68] == b"LMKR" and count == 12 and start == 5, (count, start)
PY
  run $G -m "$SOMA" -p "x" -n 2 --format tokens
  [ "$status" -eq 0 ] || [ "$status" -eq 2 ]   # refused only on a terminal
}

@test "lm-generate: a checkpoint without a tokenizer takes token input and writes ids" {
  python3 - "$TMP/in.bin" <<'PY'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, 4, *[0] * 253))
    f.write(struct.pack("<4H", 1, 10, 20, 30))
PY
  run $G -m "$RAW" -i "$TMP/in.bin" -n 5 --temperature 0 --format ids --ignore-eos
  assert_success
  [ "$(echo "$output" | wc -w)" -eq 5 ]
  run $G -m "$RAW" -p "text" -n 5 --format ids
  assert_failure 1
  assert_output --partial "no tokenizer"
  run $G -m "$RAW" -i "$TMP/in.bin" -n 5
  assert_failure 1
  assert_output --partial "no tokenizer"
}

@test "lm-generate: stop strings end the completion and are not printed" {
  $G -m "$SOMA" -p "To be" -n 40 --temperature 0 --ignore-eos -o "$TMP/full"
  python3 - "$TMP/full" "$TMP/stop" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()[:-1]
i = next(i for i in range(3, len(b) - 2) if all(c not in (0, 10) for c in b[i:i + 2]))
open(sys.argv[2], "wb").write(b[i:i + 2])
PY
  $G -m "$SOMA" -p "To be" -n 40 --temperature 0 --ignore-eos --stop "$(cat "$TMP/stop")" --stop "never" -o "$TMP/cut"
  python3 - "$TMP/full" "$TMP/stop" "$TMP/cut" <<'PY'
import sys
full, stop, cut = (open(f, "rb").read() for f in sys.argv[1:])
assert cut == full[:full.find(stop)] + b"\n", (full, stop, cut)
PY
  run $G -m "$SOMA" -p "To be" -n 40 --temperature 0 --ignore-eos --stop "$(cat "$TMP/stop")" --json
  echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["stop_reason"] == "stop" and r["tokens"] < 40, r'
}

@test "lm-generate: the context limit ends generation; -n 0 generates nothing" {
  run $G -m "$SOMA" -p "$(head -c 60 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" | tr '\n' ' ')" -n 100 --json --ignore-eos
  assert_success
  echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["stop_reason"] == "max_seq_len" and r["generated"] == 5, r'
  run $G -m "$SOMA" -p "abc" -n 0 --format ids
  assert_success
  assert_output ""
}

@test "lm-generate refuses a prompt longer than max_seq_len" {
  run $G -m "$SOMA" -p "$(head -c 65 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" | tr '\n' ' ')"
  assert_failure 1
  assert_output --partial "prompt 1 has 65 tokens, more than the model's max_seq_len (64)"
}

@test "lm-generate refuses a missing checkpoint, one without a config, and mismatched tokens" {
  run $G -m "$TMP/nope.safetensors" -p "x"
  assert_failure 1
  assert_output --partial "nope.safetensors"
  python3 - "$TMP/noconf.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 8)
PY
  run $G -m "$TMP/noconf.safetensors" -p "x"
  assert_failure 1
  assert_output --partial "config"
  printf 'To be' | lm-tokenize > "$TMP/p.tok"
  run $G -m "$RAW" -i "$TMP/p.tok" --format ids
  assert_failure 1
  assert_output --partial "vocab mismatch"
}

@test "lm-generate rejects bad option values with exit 2" {
  for args in "--temperature -1" "--temperature nan" "--temperature inf" "--top-p 0" "--top-p 1.5" "--top-p nan" \
              "--top-k -3" "-n -1" "--format nope" "--input-format nope" "--seed x" "--json --format ids"; do
    run $G -m "$SOMA" -p "x" $args
    assert_failure 2
    assert_output --partial "lm-generate: error:"
    [ "${#lines[@]}" -eq 1 ] || fail "$args: $output"
  done
  # the limits as a person would write them (no 300-digit range from a double's maximum)
  run $G -m "$SOMA" -p "x" --temperature -1
  assert_output "lm-generate: error: --temperature must be a finite number >= 0, got -1"
  run $G -m "$SOMA" -p "x" --top-p 1.5
  assert_output "lm-generate: error: --top-p must be in (0, 1], got 1.5"
  run $G -p "x"
  assert_failure 2
  run $G -m "$SOMA" -p "x" -i "$TMP/p.txt"
  assert_failure 2
  run $G -m "$SOMA" -p "x" --stop ""
  assert_failure 2
}

@test "lm-generate never gives reserved ids (PAD, undecodable, past the tokenizer) and refuses non-finite weights" {
  # greedy from this prompt: the fixture's argmax is a reserved id (258..263) at some steps
  run $G -m "$SOMA" -p "To be" -n 40 --temperature 0 --ignore-eos --format ids
  assert_success
  for id in $output; do
    [ "$id" -lt 256 ] || [ "$id" -eq 257 ] || fail "reserved id $id in: $output"
  done
  run $G -m "$SOMA" -p "To be" -n 200 --seed 3 --temperature 2 --ignore-eos --format ids
  assert_success
  for id in $output; do
    [ "$id" -lt 256 ] || [ "$id" -eq 257 ] || fail "reserved id $id in: $output"
  done
  cp "$SOMA" "$TMP/bad.safetensors"
  poison "$TMP/bad.safetensors"
  for mmap in "" --no-mmap; do
    run $G -m "$TMP/bad.safetensors" -p "x" $mmap
    assert_failure 1
    assert_output --regexp "^lm-generate: error: '$TMP/bad.safetensors': tensor '[a-z_.0-9]+' holds nan at element 0$"
  done
}

@test "lm-generate --dtype bf16: a trained model's greedy completion starts as f32's; decode equals the prompt pass" {
  head -c 20000 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" | lm-tokenize -o "$TMP/all.tok"
  lm-train tiny --set dim=32 --set n_heads=2 --set n_layers=1 --set hidden_dim=64 "$TMP/all.tok" --steps 60 \
    --batch 8 --seq 32 --lr 1e-2 --threads 1 -q -o "$TMP/run"
  M="$TMP/run/model.safetensors"
  f32=$($G -m "$M" -p "And the" -n 12 --temperature 0 --ignore-eos --format ids)
  bf16=$($G -m "$M" -p "And the" -n 12 --temperature 0 --ignore-eos --format ids --dtype bf16)
  [ "$(echo "$bf16" | wc -w)" -eq 12 ]
  assert_equal "$(echo "$bf16" | cut -d' ' -f1-4)" "$(echo "$f32" | cut -d' ' -f1-4)"
  # tokens decoded one at a time with the KV cache continue as a prompt holding them does
  head6=$($G -m "$M" -p "And the" -n 6 --temperature 0 --ignore-eos --dtype bf16)
  tail6=$($G -m "$M" -p "And the$head6" -n 6 --temperature 0 --ignore-eos --dtype bf16)
  all12=$($G -m "$M" -p "And the" -n 12 --temperature 0 --ignore-eos --dtype bf16)
  assert_equal "$head6$tail6" "$all12"
  run $G -m "$M" -p "x" --dtype int8
  assert_failure 2
}
