#!/usr/bin/env bats
# Llama 4 style attention in the programs (docs/llama4.md §1-§4): NoPE layers, chunked local
# attention and temperature tuning need nothing beside the tokens, so lm-train, lm-eval-loss,
# lm-generate and lm-bench run them; a model with image features (vision_dim > 0) is refused,
# one line, exit 1, until the programs read them (--vision, §8).

load helpers  # MICRO, corpus

FIX="$LMKIT_SOURCE_DIR/tests/fixtures/llama4"
L4=(--set n_layers=4 --set nope_layer_interval=2 --set attn_chunk_size=8 --set attn_temperature_tuning=true
    --set attn_floor_scale=4 --set qk_norm=true --set qk_norm_weight=false)

@test "lm-train, lm-eval-loss and lm-generate run NoPE layers, chunked attention and temperature tuning" {
  corpus
  run lm-train "${MICRO[@]}" "${L4[@]}" "$TMP/all.tok" -o "$TMP/run" --steps 3 --batch 2 --seq 24 --json -q
  assert_success
  assert_line --index 2 --regexp '^\{"step":3,"loss":[0-9.e-]+,'
  lm-inspect-config "$TMP/run/model.safetensors" --json > "$TMP/r.json"
  python3 -c 'import json,sys; c = json.load(open(sys.argv[1]))["config"]
assert c["nope_layer_interval"] == 2 and c["attn_chunk_size"] == 8 and c["attn_temperature_tuning"], c' "$TMP/r.json"
  run lm-eval-loss -m "$TMP/run/model.safetensors" --seq 24 --max-windows 4 --json "$TMP/all.tok"
  assert_success
  echo "$output" | python3 -c 'import json,math,sys; r = json.load(sys.stdin); assert 0 < r["loss"] < 10 and math.isfinite(r["loss"]), r'
  # Greedy decode with the KV cache across chunk boundaries (20 tokens, chunk 8).
  run lm-generate -m "$TMP/run/model.safetensors" -p "To be" -n 20 --temperature 0 --ignore-eos --format ids
  assert_success
  [ "$(echo "$output" | wc -w)" -eq 20 ]
}

@test "lm-bench measures a Llama 4 style attention model" {
  run lm-bench forward train decode --model tiny "${L4[@]}" --set dim=64 --set n_heads=4 --set max_seq_len=64 \
    --batch 2 --seq 32 --decode-tokens 24 --repeats 1 --warmup 0 --sizes 64 --bandwidth-mib 1 --json
  assert_success
  echo "$output" | python3 -c 'import json,sys; r = json.load(sys.stdin)
assert r["forward"]["tokens_per_s"] > 0 and r["train"]["tokens_per_s"] > 0 and r["decode"]["tokens_per_s"] > 0, r'
}

@test "the programs refuse a model with image features until they read them" {
  V="$FIX/l4_vision/model.safetensors"
  run lm-eval-loss -m "$V" /dev/null
  assert_failure 1
  assert_output "lm-eval-loss: error: lm-eval-loss does not support vision embeddings (vision_dim = 12) yet"
  run lm-generate -m "$V" -p x --format ids
  assert_failure 1
  assert_output "lm-generate: error: lm-generate does not support vision embeddings (vision_dim = 12) yet"
  run lm-bench forward --model "$V" --batch 1 --seq 4
  assert_failure 1
  assert_output "lm-bench: error: lm-bench does not support vision embeddings (vision_dim = 12) yet"
  run lm-train "$V" -o "$TMP/run" --steps 1
  assert_failure 1
  assert_output "lm-train: error: lm-train does not support vision embeddings (vision_dim = 12) yet"
  [ ! -e "$TMP/run/checkpoint.safetensors" ]
}
