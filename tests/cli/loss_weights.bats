#!/usr/bin/env bats
# Per-token-id loss weights (materium): lm-train --loss-weights, the weights in the
# checkpoints (model, training, resume), lm-eval-loss's weighted loss, and bad weight files.

load helpers  # MICRO, corpus, losses

# The tensor loss_weights of a safetensors file as "dtype shape w[0] w[101] w[81] w[32]".
weights_of() {
  python3 - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = h["loss_weights"]
s, e = t["data_offsets"]
data = b[8 + n + s:8 + n + e]
w = struct.unpack("<%df" % (len(data) // 4), data)
print(t["dtype"], t["shape"], w[0], w[101], w[81], w[32])
PY
}

@test "lm-train --loss-weights trains the weighted loss and both checkpoints carry the weights" {
  corpus
  echo '{"101": 0, "81": 0, "32": 2.5}' > "$TMP/w.json"   # 'e' and 'Q' weigh 0, ' ' 2.5
  args=("${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 2 --steps 3 --batch 2 --seq 16 --threads 1 -q)
  run lm-train "${args[@]}" -o "$TMP/w" --loss-weights "$TMP/w.json"
  assert_success
  lm-train "${args[@]}" -o "$TMP/plain"
  # the same data and initialisation, a different (weighted) loss from the first step on
  [ "$(losses "$TMP/w/log.jsonl" | head -1)" != "$(losses "$TMP/plain/log.jsonl" | head -1)" ]
  for f in model checkpoint; do
    run weights_of "$TMP/w/$f.safetensors"
    assert_output "F32 [264] 1.0 0.0 0.0 2.5"
  done
  run lm-inspect-config "$TMP/w/model.safetensors" --json
  assert_output --partial '"loss_weights": true'
  run lm-inspect-config "$TMP/plain/model.safetensors" --json
  assert_output --partial '"loss_weights": false'
  run lm-eval-loss -m "$TMP/w/model.safetensors" "$TMP/all.tok" --seq 16 --max-windows 8 --json
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
lw = r["loss_weights"]
assert lw["weighted"] is True and lw["zero_ids"] == 2 and lw["non_unit_ids"] == 3, lw
assert abs(r["loss"] - lw["unweighted_loss"]) > 1e-4, r'
  run lm-eval-loss -m "$TMP/w/model.safetensors" "$TMP/all.tok" --seq 16 --max-windows 8
  assert_output --partial "loss-weighted (3 ids weigh other than 1, 2 weigh 0)"
  run lm-eval-loss -m "$TMP/plain/model.safetensors" "$TMP/all.tok" --seq 16 --max-windows 8 --json
  assert_output --partial '"loss_weights": null'
}

@test "weights of 1 train exactly as no weights; a safetensors weight file works too" {
  corpus
  echo '{"101": 1}' > "$TMP/ones.json"
  args=("${MICRO[@]}" "$TMP/all.tok" --steps 2 --batch 2 --seq 16 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/ones" --loss-weights "$TMP/ones.json"
  lm-train "${args[@]}" -o "$TMP/plain"
  diff <(losses "$TMP/ones/log.jsonl") <(losses "$TMP/plain/log.jsonl")
  python3 - "$TMP/w.safetensors" <<'PY'
import json, struct, sys
w = [1.0] * 264
w[101] = 0.0
w[32] = 3.0
data = struct.pack("<264f", *w)
h = json.dumps({"w": {"dtype": "F32", "shape": [264], "data_offsets": [0, len(data)]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
  run lm-train "${args[@]}" -o "$TMP/st" --loss-weights "$TMP/w.safetensors"
  assert_success
  run weights_of "$TMP/st/model.safetensors"
  assert_output "F32 [264] 1.0 0.0 1.0 3.0"
}

@test "a resumed run keeps its loss weights and equals an uninterrupted one" {
  corpus
  echo '{"101": 0, "32": 3}' > "$TMP/w.json"
  args=("${MICRO[@]}" "$TMP/all.tok" --val "$TMP/all.tok" --val-batches 1 --val-every 2 --steps 4 --batch 2
        --seq 16 --threads 1 -q --loss-weights "$TMP/w.json")
  lm-train "${args[@]}" -o "$TMP/full"
  lm-train "${args[@]}" -o "$TMP/part" --stop-after 2
  run lm-train --resume "$TMP/part" --threads 1 -q
  assert_success
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
  run weights_of "$TMP/part/checkpoint.safetensors"
  assert_output "F32 [264] 1.0 0.0 1.0 3.0"
  run lm-train --resume "$TMP/part" --loss-weights "$TMP/w.json" --steps 6
  assert_failure 2
  assert_output --partial "--loss-weights cannot be given with --resume"
  # fine-tuning from the trained model keeps its weights
  run lm-train "$TMP/full/model.safetensors" "$TMP/all.tok" -o "$TMP/ft" --steps 1 --batch 2 --seq 16 -q
  assert_success
  run weights_of "$TMP/ft/model.safetensors"
  assert_output "F32 [264] 1.0 0.0 1.0 3.0"
}

@test "bad weight files fail with exit 1 and one line naming the file" {
  check() {  # JSON, expected message after the file name
    printf '%s' "$1" > "$TMP/bad.json"
    run lm-train "${MICRO[@]}" --steps 0 -o "$TMP/run" -q --loss-weights "$TMP/bad.json"
    assert_failure 1
    [ "${#lines[@]}" -eq 1 ] || fail "not one line: $output"
    assert_output --partial "lm-train: error: '$TMP/bad.json': $2"
    [ ! -e "$TMP/run/checkpoint.safetensors" ]
  }
  check '{"264": 1}' "token id 264 is out of range (vocab_size 264)"
  check '{"7": -1}' "loss weight of token 7 is negative (-1)"
  check '{"7": 1,' "not valid JSON: parse error at line 1, column 9: syntax error while parsing object key"
  check '{"7": 1e999}' "not valid JSON: number overflow parsing '1e999'"
  check '{"7": 1, "7": 2}' "duplicate key '7'"
  check '[7, 1]' 'expected a JSON object {"token_id": weight, ...}'
  check '{"a": 1}' "'a' is not a token id (a decimal integer)"
  run lm-train "${MICRO[@]}" --steps 0 -o "$TMP/run" -q --loss-weights "$TMP/missing.json"
  assert_failure 1
  assert_output --partial "lm-train: error: cannot open '$TMP/missing.json'"
  # usage errors: a config asking for loss weights without them, no file name
  run lm-train "${MICRO[@]}" --set loss_weights=true --steps 0 -o "$TMP/run" -q
  assert_failure 2
  assert_output --partial "loss_weights = true: give the weights with --loss-weights FILE"
  run lm-train "${MICRO[@]}" --steps 0 -o "$TMP/run" -q --loss-weights
  assert_failure 2
}

@test "a target whose weight is 0 does not change the evaluated loss" {
  corpus
  echo '{"101": 0, "81": 0}' > "$TMP/w.json"   # 'e' and 'Q'
  lm-train "${MICRO[@]}" "$TMP/all.tok" --steps 20 --batch 4 --seq 32 --lr 1e-2 --threads 1 -q -o "$TMP/run" \
    --loss-weights "$TMP/w.json"
  # Two records that differ only in their last byte: a target and never an input that counts.
  base=$(head -c 200 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" | tr -d '\n')
  printf '%se' "$base" > "$TMP/e.txt"
  printf '%sQ' "$base" > "$TMP/q.txt"
  printf '%s' "$base" > "$TMP/none.txt"
  for x in e q none; do
    lm-tokenize --no-eos "$TMP/$x.txt" -o "$TMP/$x.tok"
    lm-eval-loss -m "$TMP/run/model.safetensors" "$TMP/$x.tok" --seq 32 --json > "$TMP/$x.json"
  done
  python3 - "$TMP" <<'PY'
import json, sys
r = {x: json.load(open(f"{sys.argv[1]}/{x}.json")) for x in ("e", "q", "none")}
assert r["e"]["tokens"] == r["q"]["tokens"] == r["none"]["tokens"] + 1, r
# weighted: the last target weighs 0, so all three agree
assert abs(r["e"]["loss"] - r["q"]["loss"]) < 1e-9, (r["e"]["loss"], r["q"]["loss"])
assert abs(r["e"]["loss"] - r["none"]["loss"]) < 1e-9, (r["e"]["loss"], r["none"]["loss"])
# unweighted, the same records give different losses: the check above can fail
ue, uq = r["e"]["loss_weights"]["unweighted_loss"], r["q"]["loss_weights"]["unweighted_loss"]
assert abs(ue - uq) > 1e-5, (ue, uq)
PY
}

@test "lm-convert-checkpoint keeps the weights in an lmkit checkpoint and drops them, noted, elsewhere" {
  corpus
  echo '{"101": 0, "81": 0, "32": 2.5}' > "$TMP/w.json"
  lm-train "${MICRO[@]}" --steps 0 --threads 1 -q -o "$TMP/run" --loss-weights "$TMP/w.json"
  run lm-convert-checkpoint "$TMP/run/model.safetensors" "$TMP/copy.safetensors"
  assert_success
  [ "$(weights_of "$TMP/copy.safetensors")" = "$(weights_of "$TMP/run/model.safetensors")" ]
  lm-eval-loss -m "$TMP/run/model.safetensors" "$TMP/all.tok" --seq 32 --json > "$TMP/a.json"
  lm-eval-loss -m "$TMP/copy.safetensors" "$TMP/all.tok" --seq 32 --json > "$TMP/b.json"
  cmp <(grep -v '"seconds\|tokens_per_s\|"model"' "$TMP/a.json") <(grep -v '"seconds\|tokens_per_s\|"model"' "$TMP/b.json")
  run lm-convert-checkpoint "$TMP/run/model.safetensors" "$TMP/hf.safetensors" --to hf
  assert_success
  assert_output --partial "dropped 'loss_weights': layout hf has no place for per-token loss weights"
  # Back to lmkit: a plain model whose evaluated loss is the unweighted one.
  lm-convert-checkpoint "$TMP/hf.safetensors" "$TMP/back.safetensors" --to lmkit -q
  lm-eval-loss -m "$TMP/back.safetensors" "$TMP/all.tok" --seq 32 --json > "$TMP/c.json"
  python3 - "$TMP" <<'PY'
import json, sys
a, c = (json.load(open(f"{sys.argv[1]}/{x}.json")) for x in ("a", "c"))
assert c["loss_weights"] is None, c
assert abs(c["loss"] - a["loss_weights"]["unweighted_loss"]) < 1e-6, (c["loss"], a["loss_weights"])
assert abs(c["loss"] - a["loss"]) > 1e-4  # the weights did change the loss
PY
}

@test "--set loss_weights=false fine-tunes a weighted checkpoint without its weights" {
  corpus
  echo '{"101": 0, "32": 2.5}' > "$TMP/w.json"
  lm-train "${MICRO[@]}" --steps 0 --threads 1 -q -o "$TMP/run" --loss-weights "$TMP/w.json"
  args=("$TMP/all.tok" --steps 2 --batch 2 --seq 16 --threads 1 -q)
  run lm-train "$TMP/run/model.safetensors" "${args[@]}" --set loss_weights=false -o "$TMP/off"
  assert_success
  # The same as fine-tuning the unweighted copy of the model.
  lm-convert-checkpoint "$TMP/run/model.safetensors" "$TMP/plain.safetensors" --to hf -q
  lm-convert-checkpoint "$TMP/plain.safetensors" "$TMP/plain2.safetensors" --to lmkit -q
  lm-train "$TMP/plain2.safetensors" "${args[@]}" -o "$TMP/plain"
  [ "$(losses "$TMP/off/log.jsonl")" = "$(losses "$TMP/plain/log.jsonl")" ]
  run weights_of "$TMP/off/model.safetensors"
  assert_failure  # no loss_weights tensor
}
