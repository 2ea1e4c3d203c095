#!/usr/bin/env bats
# materium's conditioned Llama (docs/materium.md) in the programs: lm-inspect-config accounts
# for it; the programs that run a model refuse conditions and block-wise positions (one line,
# exit 1) until they read condition values beside the tokens (issue 14, phase 2).

load helpers

FIX="$LMKIT_SOURCE_DIR/tests/fixtures/materium"

@test "lm-inspect-config shows the conditions, the block-wise positions and their parameters" {
  run lm-inspect-config "$FIX/mat_all/model.safetensors"
  assert_success
  assert_line --regexp '^  conditions +space_group \(embedding 12\), band_gap \(linear 2\), formula \(formula 6, 3 positions\); up to 5 positions before the tokens$'
  assert_line --regexp '^  positions +block-wise \(4\) between \[ATOMS\] 4 and \[LATTICE\] 3$'
  assert_line --regexp '^  conditions +10,704$'
  assert_line --regexp '^  total +63,552$'
  assert_line --regexp '^  training, batch 8 x 27 '
  lm-inspect-config "$FIX/mat_all/model.safetensors" --json > "$TMP/r.json"
  python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))
assert r["params"]["conditions"] == 10704 and r["config"]["rope_mode"] == "blockwise", r' "$TMP/r.json"
}

@test "the written config reads back as the same model; the legacy block_pos_ids key is read, not written" {
  lm-inspect-config "$FIX/mat_dropped/model.safetensors" --config > "$TMP/c.json"
  ! grep -q block_pos_ids "$TMP/c.json"
  run lm-inspect-config "$TMP/c.json"
  assert_success
  assert_line --regexp '^  positions +block-wise \(3\) between'
  python3 -c 'import json,sys; c = json.load(open(sys.argv[1])); c["block_pos_ids"] = True; c["rope_mode"] = "standard"; json.dump(c, open(sys.argv[2], "w"))' \
    "$TMP/c.json" "$TMP/bad.json"
  cd "$TMP"
  run lm-inspect-config bad.json
  assert_failure 1
  assert_output "lm-inspect-config: error: 'bad.json': block_pos_ids (true) contradicts rope_mode 'standard'"
}

@test "a bad condition is a config error naming it" {
  printf '{"dim": 64, "n_layers": 2, "n_heads": 4, "vocab_size": 40, "conditions": [{"name": "gap_mask", "proj_layer_type": "linear", "input_dim": 1}]}' > "$TMP/c.json"
  cd "$TMP"
  run lm-inspect-config c.json
  assert_failure 1
  assert_output "lm-inspect-config: error: 'c.json': conditions[0].name 'gap_mask' must not end in '_mask'"
}

@test "the programs refuse conditions and block-wise positions until they read condition values" {
  run lm-eval-loss --model "$FIX/mat_all/model.safetensors" /dev/null
  assert_failure 1
  assert_output "lm-eval-loss: error: lm-eval-loss does not support condition embeddings (3 conditions) yet; also not supported yet: block-wise positions (rope_mode blockwise)"
  run lm-generate -m "$FIX/mat_blockwise/model.safetensors" -p x --format ids
  assert_failure 1
  assert_output "lm-generate: error: lm-generate does not support block-wise positions (rope_mode blockwise) yet"
  run lm-bench forward --model "$FIX/mat_linear/model.safetensors" --batch 1 --seq 4
  assert_failure 1
  assert_output "lm-bench: error: lm-bench does not support condition embeddings (2 conditions) yet"
  run lm-train "$FIX/mat_blockwise/model.safetensors" -o "$TMP/run" --steps 1
  assert_failure 1
  assert_output "lm-train: error: lm-train does not support block-wise positions (rope_mode blockwise) yet"
  [ ! -e "$TMP/run/checkpoint.safetensors" ]
}
