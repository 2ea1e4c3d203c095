#!/usr/bin/env bats
# materium's conditioned Llama (docs/materium.md) in the programs: lm-inspect-config accounts
# for it; lm-train, lm-eval-loss and lm-generate read the condition values beside the tokens
# (--conditions, JSON Lines) and run conditions and block-wise positions; lm-bench runs such a
# model unconditionally; every seed's config file opens in the programs (--config-format).

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

# materium-style data for the fixture models (vocab 40, PAD 0, BOS 1, EOS 2, [LATTICE] 3,
# [ATOMS] 4): $TMP/s.tok with 6 records and $TMP/c.jsonl with their values for mat_all
# (space_group: embedding 12, band_gap: linear 2, formula: 6 counts, 3 slots).
mat_data() {
  export LMKIT_SOURCE_DIR
  python3 - "$TMP" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
d = sys.argv[1]
recs = [[1, 4, 10, 11, 12, 13, 20, 21, 22, 23, 3, 2], [1, 4, 14, 15, 16, 17, 3, 30, 2], [1, 4, 18, 19, 3, 2],
        [1, 4, 10, 12, 14, 16, 3, 31, 32, 2], [1, 5, 6, 7, 2], [1, 4, 25, 26, 27, 28, 29, 3, 2]]
m.write_stream(d + "/s.tok", recs, vocab=40)
vals = [{"space_group": 3, "band_gap": [1.5, -2], "formula": [[8, 2], [5, 1]]},
        {"space_group": 11, "band_gap": None, "formula": [[39, 6]]},
        {"space_group": None, "band_gap": [0, 0.25], "formula": None},
        {"space_group": 0, "band_gap": [1, 1], "formula": [[7, 1], [8, 1], [9, 1]]},
        {"space_group": 5, "band_gap": [3, 0], "formula": [[10, 3]]},
        {"space_group": 7, "band_gap": None, "formula": [[11, 2]]}]
with open(d + "/c.jsonl", "w") as f:
    for v in vals:
        f.write(json.dumps(v) + "\n")
m.write_stream(d + "/p.tok", [[1, 4], [1, 4, 10]], vocab=40)
with open(d + "/p.jsonl", "w") as f:
    for v in vals[:2]:
        f.write(json.dumps(v) + "\n")
PY
}

MAT=(--sample sequential --seq 12 --batch 2 --lr 1e-3 --warmup 0)
MATNS=(--sample sequential --batch 2 --lr 1e-3 --warmup 0)  # without --seq

@test "lm-train trains a materium model with conditions from a file; resume, checkpointing and condition dropout are exact" {
  mat_data
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 4 -o "$TMP/a" -q
  assert_success
  [ "$(wc -l < "$TMP/a/log.jsonl")" -eq 4 ]
  # Activation checkpointing: the same losses bit for bit.
  lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 4 -o "$TMP/b" -q --checkpointing
  assert_equal "$(losses "$TMP/b/log.jsonl")" "$(losses "$TMP/a/log.jsonl")"
  # Condition dropout: drawn per step from the seed, so an interrupted run resumes exactly.
  lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 6 -o "$TMP/d" -q --condition-dropout 0.5
  lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 6 -o "$TMP/e" -q --condition-dropout 0.5 --stop-after 3
  lm-train --resume "$TMP/e" -q
  assert_equal "$(losses "$TMP/e/log.jsonl")" "$(losses "$TMP/d/log.jsonl")"
  [ "$(losses "$TMP/d/log.jsonl")" != "$(sed -n 1,6p <(losses "$TMP/a/log.jsonl"))" ]
  # Validation streams take their own conditions.
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --val "$TMP/s.tok" \
    --val-conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 1 -o "$TMP/v" -q --json
  assert_success
  assert_output --partial '"val_loss"'
  # Without --seq a row is max_seq_len (32) less the 5 condition positions, as in lm-eval-loss.
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MATNS[@]}" --steps 1 -o "$TMP/n" -q
  assert_success
  python3 -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
t = json.loads(json.loads(b[8:8 + n])["__metadata__"]["lmkit.train"])
assert t["settings"]["seq"] == 27, t["settings"]' "$TMP/n/checkpoint.safetensors"
}

@test "lm-train's materium mistakes are one line each" {
  mat_data
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" "${MAT[@]}" --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: the model has conditions (space_group, band_gap, formula): give their values with --conditions FILE; one JSON Lines file per training stream (docs/materium.md)"
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --seq 12 --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: a model with conditions or block-wise positions trains on whole records; use --sample sequential (a random window has no record and may start inside one)"
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MATNS[@]}" --seq 8 --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: record 0 has 12 tokens, more than --seq 8: a materium row is one whole record"
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MATNS[@]}" --seq 30 --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: --seq 30 plus the 5 condition positions exceeds the model's max_seq_len (32)"
  head -5 "$TMP/c.jsonl" > "$TMP/short.jsonl"
  sed -i '3s/"space_group": null/"space_group": 12/' "$TMP/c.jsonl"
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: $TMP/c.jsonl: line 3 (record 2): 'space_group': expected an integer class in 0..11, got 12"
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/short.jsonl" "${MAT[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: $TMP/short.jsonl: 5 lines for 6 records; the conditions file has one line per record of its token stream"
  run lm-train "$FIX/mat_blockwise/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: --conditions: the model has no conditions"
  run lm-train "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" "${MAT[@]}" --steps 1 -o "$TMP/r" --condition-dropout 1.5
  assert_failure 2
  assert_output "lm-train: error: --condition-dropout must be a probability in [0, 1], got 1.5"
  [ ! -e "$TMP/r/checkpoint.safetensors" ]
}

@test "lm-eval-loss evaluates with conditions and writes the hidden states per token" {
  mat_data
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --seq 12 --json --hidden-out "$TMP/h.safetensors"
  assert_success
  python3 - "$TMP/h.safetensors" "$output" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["hidden_states"]["shape"] == [6, 12, 48] and h["hidden_states"]["dtype"] == "F32", h
assert h["tokens"]["shape"] == [6, 12] and h["lengths"]["shape"] == [6], h
s, e = h["lengths"]["data_offsets"]
assert list(struct.unpack("<6i", b[8 + n + s:8 + n + e])) == [12, 9, 6, 10, 5, 9]
r = json.loads(sys.argv[2])
assert r["records"] == 6 and r["tokens"] == 45 and r["windows"] == 6, r
PY
  # Conditions change the loss: a null for every value is another input.
  python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.dumps({k: None for k in json.loads(l)}))' "$TMP/c.jsonl" > "$TMP/null.jsonl"
  a=$(lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --seq 12 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
  b=$(lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/null.jsonl" --seq 12 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
  [ "$a" != "$b" ]
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --seq 12
  assert_failure 2
  assert_output "lm-eval-loss: error: the model has conditions (space_group, band_gap, formula): give their values with --conditions FILE; one JSON Lines line per record (docs/materium.md)"
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --seq 8 --hidden-out "$TMP/x.safetensors"
  assert_failure 1
  assert_output "lm-eval-loss: error: record 0 has 12 tokens, more than --seq 8: a materium row is one whole record"
  [ ! -e "$TMP/x.safetensors" ]
  # Without --seq a row is max_seq_len less the condition positions; the count is the whole record's.
  python3 - "$TMP" <<'PY'
import os, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
m.write_stream(sys.argv[1] + "/long.tok", [[1, 4, 10, 11, 12, 13, 3, 2], [1, 4] + [10, 11, 12, 13] * 7 + [3, 2]], vocab=40)
PY
  head -n 2 "$TMP/c.jsonl" > "$TMP/c2.jsonl"
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/long.tok" --conditions "$TMP/c2.jsonl"
  assert_failure 1
  assert_output "lm-eval-loss: error: record 1 has 32 tokens, more than the 27 a row holds (max_seq_len 32 less 5 condition positions): a materium row is one whole record"
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/long.tok" --conditions "$TMP/c2.jsonl" --seq 30
  assert_failure 2
  assert_output "lm-eval-loss: error: --seq 30 plus the 5 condition positions exceeds the model's max_seq_len (32)"
  head -n 1 "$TMP/c.jsonl" > "$TMP/c1.jsonl"
  python3 -c 'import sys; sys.path.insert(0, sys.argv[2]); import materium_tasks as m; m.write_stream(sys.argv[1], [[1, 4] + [10, 11, 12, 13] * 6 + [3]], vocab=40)' \
    "$TMP/fits.tok" "$LMKIT_SOURCE_DIR/bench"
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/fits.tok" --conditions "$TMP/c1.jsonl" --json
  assert_success
  assert_output --partial '"seq": 27'
  [ ! -e "$TMP/x.safetensors" ]
  # A block-wise model without conditions needs no file.
  run lm-eval-loss -m "$FIX/mat_blockwise/model.safetensors" "$TMP/s.tok" --seq 12
  assert_success
}

@test "lm-generate with conditions: incremental decode equals full re-forwards of each prefix" {
  mat_data
  run lm-generate -m "$FIX/mat_all/model.safetensors" -i "$TMP/p.tok" --input-format tokens --conditions "$TMP/p.jsonl" \
    --format ids -n 8 --temperature 0 --ignore-eos
  assert_success
  [ "${#lines[@]}" -eq 2 ]
  # Greedy continuation one token at a time, each from a fresh prefill of the whole prefix
  # (a full forward with the condition positions first), gives the same tokens.
  for row in 0 1; do
    want=${lines[$row]}
    python3 - "$TMP" "$row" <<'PY'
import os, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
d, row = sys.argv[1], int(sys.argv[2])
m.write_stream(d + "/prefix.tok", [[[1, 4], [1, 4, 10]][row]], vocab=40)
open(d + "/one.jsonl", "w").write(open(d + "/p.jsonl").read().splitlines()[row] + "\n")
PY
    got=""
    for i in 1 2 3 4 5 6 7 8; do
      t=$(lm-generate -m "$FIX/mat_all/model.safetensors" -i "$TMP/prefix.tok" --input-format tokens \
            --conditions "$TMP/one.jsonl" --format ids -n 1 --temperature 0 --ignore-eos)
      got="$got${got:+ }$t"
      python3 - "$TMP/prefix.tok" "$t" <<'PY'
import os, struct, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<I", b[68:72])[0]
toks = list(struct.unpack("<%dH" % n, b[80:80 + 2 * n]))
m.write_stream(sys.argv[1], [toks + [int(sys.argv[2])]], vocab=40)
PY
    done
    assert_equal "$got" "$want"
  done
  # Without --conditions: unconditional (every condition dropped), another continuation.
  run lm-generate -m "$FIX/mat_all/model.safetensors" -i "$TMP/p.tok" --input-format tokens --format ids -n 8 --temperature 0 --ignore-eos
  assert_success
  head -1 "$TMP/p.jsonl" > "$TMP/one.jsonl"
  run lm-generate -m "$FIX/mat_all/model.safetensors" -i "$TMP/p.tok" --input-format tokens --conditions "$TMP/one.jsonl" --format ids -n 2
  assert_failure 1
  assert_output "lm-generate: error: $TMP/one.jsonl: 1 line for more prompts; the conditions file has one line per prompt"
  run lm-generate -m "$FIX/mat_blockwise/model.safetensors" -i "$TMP/p.tok" --input-format tokens --conditions "$TMP/p.jsonl" --format ids -n 2
  assert_failure 2
  assert_output "lm-generate: error: --conditions: the model has no conditions"
}

@test "lm-bench runs materium models (unconditionally, random tokens without [LATTICE])" {
  run lm-bench forward train decode --model "$FIX/mat_all/model.safetensors" --batch 1 --seq 8 --decode-tokens 8 --sizes 64 --bandwidth-mib 1 --warmup 0 --repeats 1 --json
  assert_success
}

@test "every seed's config file opens in the programs and is written back in its format" {
  S="$LMKIT_SOURCE_DIR/tests/seed-configs"
  for f in materium_model_args:materium xlstm_llama:xlstm-jax mobilellm_140m_asdict:mobilellm soma_v1:soma; do
    name=${f%%:*}; fmt=${f##*:}
    lm-inspect-config "$S/$name.json" --write-format "$fmt" --config > "$TMP/back.json"
    python3 -c 'import json,sys; a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2])); assert a == b, (a, b)' \
      "$TMP/back.json" "$S/$name.back.json"
    assert_equal "$(lm-inspect-config "$S/$name.json" --config)" "$(lm-inspect-config "$S/$name.lmkit.json" --config)"
    # --config-format names the format read, as in the other programs.
    assert_equal "$(lm-inspect-config "$S/$name.json" --config-format "$fmt" --config)" "$(lm-inspect-config "$S/$name.lmkit.json" --config)"
  done
  # Named instead of detected; a wrong name is the named format's error.
  run lm-train "$S/materium_standard.json" --config-format materium --steps 0 -o "$TMP/r" -q
  assert_success
  [ -f "$TMP/r/model.safetensors" ]
  run lm-convert-checkpoint "$TMP/r/model.safetensors" "$TMP/conv.safetensors" --to lmkit --config "$S/materium_standard.json" --config-format materium
  assert_success
  run lm-convert-checkpoint "$TMP/r/model.safetensors" "$TMP/conv2.safetensors" --to lmkit --config "$S/materium_standard.json" --config-format soma
  assert_failure 1
  [ ! -e "$TMP/conv2.safetensors" ]
  run lm-train "$S/materium_standard.json" --config-format soma --steps 0 -o "$TMP/r2"
  assert_failure 1
  run lm-train tiny --config-format soma --steps 0 -o "$TMP/r3"
  assert_failure 2
  assert_output "lm-train: error: --config-format soma is for a config JSON file, not the preset 'tiny'"
  run lm-inspect-config tiny --config-format soma
  assert_failure 2
  assert_output "lm-inspect-config: error: --config-format soma is for a config JSON file, not the preset 'tiny'"
  run lm-inspect-config "$S/materium_standard.json" --config-format soma --config
  assert_failure 1
  run lm-inspect-config "$S/materium_standard.json" --config-format lmkit
  assert_failure 1
  run lm-inspect-config tiny --write-format soma
  assert_failure 2
  assert_output "lm-inspect-config: error: --write-format goes with --config"
  run lm-bench forward --model "$S/xlstm_llama.json" --config-format xlstm-jax --set n_layers=1 --set vocab_size=64 --batch 1 --seq 4 --sizes 64 --warmup 0 --repeats 1 --json
  assert_success
}

# Issue 14's "every seed's config file opens in every program": each config file of
# tests/seed-configs/ (shrunk with --set where the seed's size would make the test slow: the
# mapping is the file's, the sizes are the overrides') makes a model with lm-train, is
# benchmarked by lm-bench, names the config of lm-convert-checkpoint (whose output evaluates to
# the same loss), and the model it made evaluates (lm-eval-loss) and generates (lm-generate).
@test "each seed's config file in lm-train, lm-bench, lm-convert-checkpoint, lm-eval-loss and lm-generate" {
  S="$LMKIT_SOURCE_DIR/tests/seed-configs"
  small_v=(--set vocab_size=64 --set bos_id=1 --set eos_id=2)
  for spec in \
      "materium_model_args:materium:--set n_layers=1" \
      "materium_standard:materium:" \
      "xlstm_llama:xlstm-jax:--set n_layers=1 --set vocab_size=64" \
      "xlstm_llama_docmask:xlstm-jax:--set n_layers=1 --set vocab_size=64 --set dim=128 --set head_dim=64 --set n_heads=2" \
      "mobilellm_950m:mobilellm:--set n_layers=1 ${small_v[*]} --set max_seq_len=64 --set hidden_dim=128 --set dim=96" \
      "mobilellm_140m_asdict:mobilellm:--set n_layers=1 ${small_v[*]} --set max_seq_len=64" \
      "soma_v1:soma:--set n_layers=1 --set dim=128 --set hidden_dim=256" \
      "soma_v1_minimal:soma:--set n_layers=1 --set dim=128 --set hidden_dim=256"; do
    IFS=: read -r name fmt sets <<< "$spec"
    read -r -a set_args <<< "$sets"
    # lm-train: the file as the model (detected), the initial checkpoint.
    run lm-train "$S/$name.json" "${set_args[@]}" --steps 0 -o "$TMP/$name" -q
    assert_success
    ckpt="$TMP/$name/model.safetensors"
    [ -f "$ckpt" ]
    assert_equal "$(lm-inspect-config "$ckpt" --config)" \
      "$(lm-inspect-config "$S/$name.json" --config-format "$fmt" "${set_args[@]}" --config)"
    # lm-bench: the file (named format) as the model.
    run lm-bench forward --model "$S/$name.json" --config-format "$fmt" "${set_args[@]}" --batch 1 --seq 4 --sizes 64 \
      --warmup 0 --repeats 1 --json
    assert_success
    # Data in the model's vocabulary: a materium-style record (the block-wise models need
    # [ATOMS] 4 before [LATTICE] 3), and each condition's value for materium_model_args.
    V=$(lm-inspect-config "$ckpt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["vocab_size"])')
    python3 - "$TMP" "$V" <<'PY'
import os, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
d, V = sys.argv[1], int(sys.argv[2])
m.write_stream(d + "/data.tok", [[1, 4, 10, 11, 12, 13, 20, 21, 22, 23, 3, 30, 31, 2], [1, 4, 14, 15, 16, 17, 3, 2]], vocab=V)
m.write_stream(d + "/prompt.tok", [[1, 4, 10]], vocab=V)
PY
    if [ "${name#soma}" != "$name" ]; then  # soma reads byte-v1 streams: two documents, a prompt
      printf 'a crystal of iron' > "$TMP/d1"; printf 'and oxygen' > "$TMP/d2"
      lm-tokenize "$TMP/d1" "$TMP/d2" --max-seq-len 16 -o "$TMP/data.tok"
      printf 'Fe' | lm-tokenize --max-seq-len 16 --no-eos -o "$TMP/prompt.tok"
    fi
    cond=()
    if [ "$name" = materium_model_args ]; then
      printf '%s\n' '{"space_group": 225, "reduced_formula": [[29, 1], [8, 2]], "density": [4.1], "band_gap": null, "bulk_modulus": [120], "hhi": [0.5], "mag_density": [0]}' \
        '{"space_group": 12, "reduced_formula": null, "density": [2.5], "band_gap": [1.1], "bulk_modulus": null, "hhi": [0.2], "mag_density": [0.1]}' > "$TMP/c.jsonl"
      head -1 "$TMP/c.jsonl" > "$TMP/p.jsonl"
      cond=(--conditions "$TMP/c.jsonl")
    fi
    run lm-eval-loss -m "$ckpt" "$TMP/data.tok" "${cond[@]}" --seq 16 --json
    assert_success
    loss=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["loss"])' "$output")
    # lm-convert-checkpoint: the seed file names the config of the checkpoint it converts.
    run lm-convert-checkpoint "$ckpt" "$TMP/$name.conv.safetensors" --to lmkit --config "$S/$name.json" \
      --config-format "$fmt" "${set_args[@]}"
    assert_success
    run lm-eval-loss -m "$TMP/$name.conv.safetensors" "$TMP/data.tok" "${cond[@]}" --seq 16 --json
    assert_success
    assert_equal "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["loss"])' "$output")" "$loss"
    gen_cond=()
    [ "$name" = materium_model_args ] && gen_cond=(--conditions "$TMP/p.jsonl")
    run lm-generate -m "$ckpt" -i "$TMP/prompt.tok" --input-format tokens "${gen_cond[@]}" --format ids -n 3 --temperature 0 --ignore-eos
    assert_success
    [ "$(wc -w <<< "$output")" -eq 3 ]
    rm -rf "$TMP/$name" "$TMP/$name.conv.safetensors"
  done
}

# materium's own state_dict (docs/materium.md, "Checkpoint tensors"): mask embeddings [1, 1, C],
# the formula's atom_embedder and the tied output.weight as copies of tok_embeddings.weight.
materium_state_dict() {  # $1 fixture model, $2 output, $3 1 to make the atom_embedder differ
  python3 - "$1" "$2" "${3:-0}" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); data = b[8 + n:]
out, blobs, off = {}, [], 0
def add(name, dtype, shape, raw):
    global off
    out[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
    blobs.append(raw); off += len(raw)
for k, v in h.items():
    if k == "__metadata__": continue
    s, e = v["data_offsets"]; raw = data[s:e]
    add(k, v["dtype"], [1, 1] + v["shape"] if k.startswith("condition_mask_embeddings.") else v["shape"], raw)
    if k == "tok_embeddings.weight":
        add("cond_proj_layers.formula.atom_embedder.weight", v["dtype"], v["shape"],
            raw if sys.argv[3] == "0" else raw[:-4] + b"\0\0\0\0")
        add("output.weight", v["dtype"], v["shape"], raw)
hj = json.dumps(out).encode(); hj += b" " * ((8 - len(hj) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
PY
}

@test "lm-convert-checkpoint reads materium's state_dict and writes a model with conditions --to lmkit only" {
  mat_data
  lm-inspect-config "$FIX/mat_all/model.safetensors" --config > "$TMP/mat_all.json"
  materium_state_dict "$FIX/mat_all/model.safetensors" "$TMP/sd.safetensors"
  run lm-convert-checkpoint "$TMP/sd.safetensors" "$TMP/conv.safetensors" --to lmkit --config "$TMP/mat_all.json"
  assert_success
  assert_line "lm-convert-checkpoint: note: viewed 3 materium mask embeddings [1, 1, 48] as [48]"
  assert_line "lm-convert-checkpoint: note: dropped 2 copies of tok_embeddings.weight (materium's atom_embedder and tied output tables, checked equal)"
  want=$(lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --seq 12 --json)
  got=$(lm-eval-loss -m "$TMP/conv.safetensors" "$TMP/s.tok" --conditions "$TMP/c.jsonl" --seq 12 --json)
  assert_equal "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["loss"])' "$got")" \
    "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["loss"])' "$want")"
  # An lmkit checkpoint with conditions converts to itself.
  run lm-convert-checkpoint "$FIX/mat_all/model.safetensors" "$TMP/same.safetensors" --to lmkit
  assert_success
  # An atom_embedder that is not the token embedding is another model.
  materium_state_dict "$FIX/mat_all/model.safetensors" "$TMP/bad.safetensors" 1
  run lm-convert-checkpoint "$TMP/bad.safetensors" "$TMP/x.safetensors" --to lmkit --config "$TMP/mat_all.json"
  assert_failure 1
  assert_output "lm-convert-checkpoint: error: tensor 'cond_proj_layers.formula.atom_embedder.weight' [40, 48] differs from tok_embeddings.weight [40, 48]: materium's formula condition embeds elements with the token embedding"
  [ ! -e "$TMP/x.safetensors" ]
  # Other layouts have no condition tensors: refused, never written without them.
  run lm-convert-checkpoint "$FIX/mat_all/model.safetensors" "$TMP/hf" --to hf
  assert_failure 1
  assert_output "lm-convert-checkpoint: error: layout 'hf' has no place for condition embeddings (3 conditions); convert a materium model --to lmkit (docs/materium.md)"
  [ ! -e "$TMP/hf" ]
}

@test "lm-eval-loss --hidden-out writes PyTorch's final hidden states per token (fixture mat_all)" {
  # The fixture's two rows as two records, their condition values as a conditions file.
  python3 - "$FIX/mat_all/case.safetensors" "$TMP" <<'PY'
import json, os, struct, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
def get(k):
    v = h[k]; s, e = v["data_offsets"]; raw = b[8 + n + s:8 + n + e]
    return list(struct.unpack("<%d%s" % (len(raw) // (8 if v["dtype"] == "I64" else 4), "q" if v["dtype"] == "I64" else "f"), raw))
tok = get("tokens"); T = h["tokens"]["shape"][1]
m.write_stream(sys.argv[2] + "/case.tok", [tok[:T], tok[T:]], vocab=40)
with open(sys.argv[2] + "/case.jsonl", "w") as f:
    for r in range(2):
        v = {}
        v["space_group"] = None if get("cond.space_group_mask")[r] else get("cond.space_group")[r]
        v["band_gap"] = None if get("cond.band_gap_mask")[r] else get("cond.band_gap")[2 * r:2 * r + 2]
        fs = get("cond.formula")[6 * r:6 * r + 6]
        v["formula"] = None if get("cond.formula_mask")[r] else [[fs[2 * j], fs[2 * j + 1]] for j in range(3) if fs[2 * j] >= 0]
        f.write(json.dumps(v) + "\n")
json.dump(get("hidden"), open(sys.argv[2] + "/want.json", "w"))
PY
  run lm-eval-loss -m "$FIX/mat_all/model.safetensors" "$TMP/case.tok" --conditions "$TMP/case.jsonl" --seq 24 --hidden-out "$TMP/h.safetensors"
  assert_success
  python3 - "$TMP/h.safetensors" "$TMP/want.json" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["hidden_states"]["shape"] == [2, 24, 48], h
s, e = h["hidden_states"]["data_offsets"]
got = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
want = json.load(open(sys.argv[2]))
err = max(abs(g - w) for g, w in zip(got, want)) / max(abs(w) for w in want)
assert len(got) == len(want) and err <= 1e-4, err
PY
}

@test "bench/materium_tasks.py runs both synthetic tasks through the programs (a short run)" {
  run python3 "$LMKIT_SOURCE_DIR/bench/materium_tasks.py" --bin "$LMKIT_BIN" --steps 20 --block-records 64 --out "$TMP/tasks" --json
  assert_success
  python3 -c '
import json, math, sys
r = json.loads(sys.argv[1])
c, b = r["condition"], r["blockwise"]
assert math.isfinite(c["val_loss"]) and c["prompts"] == 400, c
assert all(0 <= x <= 1 for x in c["accuracy_per_token_embedding_linear_formula"] + [c["accuracy_with_conditions"], c["accuracy_unconditional"]]), c
assert 0 < b["floor"] < b["floor_without_exclusion"] < math.log(32), b
for mode in ("blockwise", "standard"):
    assert math.isfinite(b[mode]["val_loss"]) and b[mode]["samples"] == 200, b
    assert all(0 <= b[mode][k] <= 1 for k in ("well_formed", "whole_blocks", "repeated_in_slot")), b
' "$output"
}
