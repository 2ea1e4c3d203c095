#!/usr/bin/env bats
# Llama 4 style models in the programs (docs/llama4.md): NoPE layers, chunked local attention,
# temperature tuning and the mixture of experts need nothing beside the tokens, so lm-train,
# lm-eval-loss, lm-generate and lm-bench run them; a model with image features (vision_dim > 0)
# is refused, one line, exit 1, until the programs read them (--vision, §8).

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

# llama4-tiny micro-sized: 4 experts of 32, top 2, sigmoid routing, the balance loss, a shared
# expert, MoE on every 2nd layer (layer 0 keeps the dense FFN), NoPE layer 1, chunk 8.
MOE=(llama4-tiny --set dim=32 --set n_heads=2 --set n_kv_heads=1 --set n_layers=2 --set moe.n_experts=4
     --set moe.hidden_dim=32 --set moe.top_k=2 --set moe.aux_loss_coef=0.1 --set moe.interleave_step=2
     --set hidden_dim=48 --set nope_layer_interval=2 --set attn_chunk_size=8)

@test "a mixture-of-experts model trains (loss falls), logs its balance loss, resumes exactly and evaluates" {
  corpus
  args=("${MOE[@]}" "$TMP/all.tok" --steps 30 --batch 4 --seq 24 --lr 3e-3 --threads 1 -q)
  lm-train "${args[@]}" -o "$TMP/full"
  python3 -c 'import json,sys
log = [json.loads(line) for line in open(sys.argv[1])]
assert all(0.5 < r["moe_aux"] < 2.5 for r in log), log
first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
assert last < first - 0.3, (first, last)' "$TMP/full/log.jsonl"
  lm-train "${args[@]}" -o "$TMP/part" --stop-after 12
  lm-train --resume "$TMP/part" --threads 1 -q
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
  run lm-inspect-config "$TMP/full/model.safetensors"
  assert_line --regexp '^  moe +4 experts of 32, top 2 \+ shared, sigmoid routing, balance loss 0.1, layers 1 of 2 \(1\)$'
  assert_line --regexp '^  read per decoded token +[0-9,]+  \(the selected experts; the others stay unread\)$'
  run lm-eval-loss -m "$TMP/full/model.safetensors" "$TMP/all.tok" --max-windows 4 --seq 24 --json
  assert_success
  echo "$output" | python3 -c 'import json,math,sys; r = json.load(sys.stdin); assert 0 < r["loss"] < math.log(264) - 1, r  # below uniform by a nat'
}

@test "lm-generate decodes a mixture-of-experts model with the KV cache exactly as full re-forwards" {
  corpus
  lm-train "${MOE[@]}" "$TMP/all.tok" -o "$TMP/run" --steps 10 --batch 4 --seq 24 --threads 1 -q
  M="$TMP/run/model.safetensors"
  # 20 greedy tokens with the cache (across chunk boundaries: prompt 5, chunk 8) ...
  cached=$(lm-generate -m "$M" -p "To be" -n 20 --temperature 0 --ignore-eos --format ids)
  [ "$(echo "$cached" | wc -w)" -eq 20 ]
  # ... and each one again from a fresh forward over the prompt and the tokens before it.
  prefix="84 111 32 98 101"  # "To be" in the byte vocabulary
  for t in $cached; do
    python3 -c 'import struct,sys
ids = [int(x) for x in sys.argv[2:]]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, len(ids), *[0] * 253))
    f.write(struct.pack("<%dH" % len(ids), *ids))' "$TMP/p.bin" $prefix
    next=$(lm-generate -m "$M" -i "$TMP/p.bin" -n 1 --temperature 0 --ignore-eos --format ids)
    [ "$next" = "$t" ] || { echo "after '$prefix': $next, the cache gave $t"; false; }
    prefix="$prefix $t"
  done
}

@test "lm-bench measures a mixture-of-experts model against the bytes one decoded token reads" {
  run lm-bench forward train decode --model "${MOE[@]}" --set max_seq_len=64 --batch 2 --seq 32 \
    --decode-tokens 24 --repeats 1 --warmup 0 --sizes 64 --bandwidth-mib 1 --json
  assert_success
  echo "$output" > "$TMP/b.json"
  lm-inspect-config "${MOE[@]}" --set max_seq_len=64 --json > "$TMP/i.json"
  python3 -c 'import json,sys
r, i = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
p = i["params"]
assert r["model"]["params"] == p["total"] and r["model"]["active_params"] == p["active"] < p["total"], (r["model"], p)
d = r["decode"]
kv = i["memory"]["kv_cache"]["per_token_f32"]
assert abs(d["bytes_per_token"] - (4 * p["decode_per_token"] + kv * 12)) < 1, (d, p, kv)
assert r["forward"]["tokens_per_s"] > 0 and r["train"]["tokens_per_s"] > 0 and d["tokens_per_s"] > 0
assert 0 < d["fraction_of_bound"], d' "$TMP/b.json" "$TMP/i.json"
}
