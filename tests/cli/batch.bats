#!/usr/bin/env bats
# lm-generate --batch N (continuous batching): the same completions as --batch 1 in every
# output format, greedy and seeded, with stop strings and EOS, on the soma fixture (text),
# a Llama 4 style mixture-of-experts model, a materium model with conditions and block-wise
# positions, and q8_0, bf16 and f16 weights, on panels and (--no-panels) on the rows;
# --logprobs in the JSON records; the sampling penalties and min-p; and the errors.

load helpers  # corpus

FIX="$LMKIT_SOURCE_DIR/tests/fixtures"
SOMA="$FIX/soma_v1/model.safetensors"  # byte-v1 tokenizer, max_seq_len 64
G="lm-generate --threads 2"

prompts() {  # lines of different lengths (1 to 30 bytes)
  printf 'To be\nQ\nThe quick brown fox jumps over\nab\nOnce upon a time\nx\nWhether tis nobler\nHe\n' > "$TMP/p.txt"
}

# The JSON records without their timings.
untimed() {
  python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    for k in ("time_to_first_token_s", "seconds", "tokens_per_second", "decode_tokens_per_second"): r.pop(k)
    print(json.dumps(r, sort_keys=True))'
}

# Runs lm-generate with "$@" at --batch 1, 3 and 16 and requires the same output.
same_at_batches() {
  one=$($G "$@" --batch 1) || return 1
  [ -n "$one" ] || { echo "no output"; return 1; }
  for b in 3 16; do
    out=$($G "$@" --batch "$b") || return 1
    [ "$out" = "$one" ] || { echo "--batch $b differs from --batch 1 for: $*"; diff <(echo "$one") <(echo "$out"); return 1; }
  done
}

@test "lm-generate --batch 3 and 16 give --batch 1's text, ids, token streams and JSON, greedy and sampled" {
  prompts
  for s in "--temperature 0 --seed 1" "--seed 7" "--seed 7 --top-k 20 --top-p 0.9" "--seed 3 --temperature 1.5 --min-p 0.05"; do
    same_at_batches -m "$SOMA" -i "$TMP/p.txt" -n 24 $s
    same_at_batches -m "$SOMA" -i "$TMP/p.txt" -n 24 $s --echo
    same_at_batches -m "$SOMA" -i "$TMP/p.txt" -n 24 $s --format ids
    $G -m "$SOMA" -i "$TMP/p.txt" -n 24 $s --format tokens -o "$TMP/one.tok" --batch 1
    $G -m "$SOMA" -i "$TMP/p.txt" -n 24 $s --format tokens -o "$TMP/many.tok" --batch 16
    cmp "$TMP/one.tok" "$TMP/many.tok"
    a=$($G -m "$SOMA" -i "$TMP/p.txt" -n 24 $s --json --batch 1 | untimed)
    b=$($G -m "$SOMA" -i "$TMP/p.txt" -n 24 $s --json --batch 3 | untimed)
    assert_equal "$b" "$a"
  done
  # -p prompts too, and the JSON records come in input order.
  same_at_batches -m "$SOMA" -p "To be" -p "a" -p "The king said" -n 12 --seed 2
  run bash -c "$G -m '$SOMA' -i '$TMP/p.txt' -n 5 --json --batch 16 | python3 -c 'import json,sys; print([json.loads(l)[\"prompt\"] for l in sys.stdin])'"
  assert_output "[0, 1, 2, 3, 4, 5, 6, 7]"
}

@test "lm-generate --batch: stop strings and EOS end sequences at different steps, the output as --batch 1's" {
  prompts
  # Stop strings met by some completions, not others (the first completion's bytes).
  first=$($G -m "$SOMA" -p "To be" -n 20 --temperature 0)
  stop=${first:4:2}
  run bash -c "$G -m '$SOMA' -i '$TMP/p.txt' -n 20 --temperature 0 --stop '$stop' --json | python3 -c 'import json,sys; print(sorted({json.loads(l)[\"stop_reason\"] for l in sys.stdin}))'"
  assert_output --partial "'length'"
  assert_output --partial "'stop'"
  same_at_batches -m "$SOMA" -i "$TMP/p.txt" -n 20 --temperature 0 --stop "$stop" --stop "zz"
  a=$($G -m "$SOMA" -i "$TMP/p.txt" -n 20 --seed 4 --stop "$stop" --json --batch 1 | untimed)
  b=$($G -m "$SOMA" -i "$TMP/p.txt" -n 20 --seed 4 --stop "$stop" --json --batch 3 | untimed)
  assert_equal "$b" "$a"
  # EOS: sampled hot, some completions meet the byte vocabulary's EOS before 60 tokens.
  run bash -c "$G -m '$SOMA' -i '$TMP/p.txt' -n 60 --seed 1 --temperature 4 --json | python3 -c 'import json,sys; print(sorted({json.loads(l)[\"stop_reason\"] for l in sys.stdin}))'"
  assert_output --partial "'eos'"
  a=$($G -m "$SOMA" -i "$TMP/p.txt" -n 60 --seed 1 --temperature 4 --json --batch 1 | untimed)
  b=$($G -m "$SOMA" -i "$TMP/p.txt" -n 60 --seed 1 --temperature 4 --json --batch 16 | untimed)
  assert_equal "$b" "$a"
}

@test "lm-generate --batch on a Llama 4 style mixture-of-experts model (NoPE, chunked attention): --batch 1's tokens" {
  corpus
  lm-train llama4-tiny --set dim=32 --set n_heads=2 --set n_kv_heads=1 --set n_layers=2 --set moe.n_experts=4 \
    --set moe.hidden_dim=32 --set moe.top_k=2 --set moe.interleave_step=2 --set hidden_dim=48 \
    --set nope_layer_interval=2 --set attn_chunk_size=8 --set attn_temperature_tuning=true \
    "$TMP/all.tok" -o "$TMP/run" --steps 10 --batch 4 --seq 24 --threads 2 -q
  M="$TMP/run/model.safetensors"
  prompts
  same_at_batches -m "$M" -i "$TMP/p.txt" -n 30 --temperature 0 --ignore-eos --format ids
  same_at_batches -m "$M" -i "$TMP/p.txt" -n 30 --seed 11 --format ids
  same_at_batches -m "$M" -i "$TMP/p.txt" -n 30 --seed 11 --repeat-penalty 1.3 --presence-penalty 0.5 --frequency-penalty 0.2
}

@test "lm-generate --batch with conditions and block-wise positions (materium): --batch 1's tokens" {
  export LMKIT_SOURCE_DIR
  python3 - "$TMP" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["LMKIT_SOURCE_DIR"] + "/bench")
import materium_tasks as m
d = sys.argv[1]
m.write_stream(d + "/p.tok", [[1, 4], [1, 4, 10], [1, 4, 14], [1, 4, 10, 11, 12], [1, 4, 18, 19]], vocab=40)
vals = [{"space_group": 3, "band_gap": [1.5, -2], "formula": [[8, 2], [5, 1]]},
        {"space_group": 11, "band_gap": None, "formula": [[39, 6]]},
        {"space_group": None, "band_gap": [0, 0.25], "formula": None}]
open(d + "/p.jsonl", "w").write("".join(json.dumps(vals[i % 3]) + "\n" for i in range(5)))
PY
  same_at_batches -m "$FIX/materium/mat_all/model.safetensors" -i "$TMP/p.tok" --input-format tokens \
    --conditions "$TMP/p.jsonl" --format ids -n 10 --temperature 0 --ignore-eos
  same_at_batches -m "$FIX/materium/mat_all/model.safetensors" -i "$TMP/p.tok" --input-format tokens \
    --conditions "$TMP/p.jsonl" --format ids -n 10 --seed 5
  same_at_batches -m "$FIX/materium/mat_blockwise/model.safetensors" -i "$TMP/p.tok" --input-format tokens \
    --format ids -n 10 --seed 5
}

@test "lm-generate --batch on q8_0, bf16 and f16 weights (their tiled kernels): --batch 1's tokens" {
  prompts
  for type in q8_0 bf16 f16; do
    lm-convert-checkpoint -q --cast "$type" "$SOMA" "$TMP/$type.safetensors"
    same_at_batches -m "$TMP/$type.safetensors" -i "$TMP/p.txt" -n 20 --temperature 0 --format ids
    same_at_batches -m "$TMP/$type.safetensors" -i "$TMP/p.txt" -n 20 --seed 9
  done
}

@test "lm-generate --kv-dtype: bf16 and f16 caches give --batch 1's tokens; auto follows the weights" {
  prompts
  for kv in bf16 f16; do
    same_at_batches -m "$SOMA" -i "$TMP/p.txt" -n 20 --temperature 0 --format ids --kv-dtype "$kv"
    same_at_batches -m "$SOMA" -i "$TMP/p.txt" -n 20 --seed 9 --kv-dtype "$kv"
  done
  # The log-probabilities show the cache's rounding: auto is f32 on f32 weights, bf16 on bf16 ones.
  lp() { $G -i "$TMP/p.txt" -n 12 --temperature 0 --seed 1 --json --logprobs 1 "$@" | untimed; }
  lm-convert-checkpoint -q --cast bf16 "$SOMA" "$TMP/bf16.safetensors"
  [ "$(lp -m "$SOMA")" = "$(lp -m "$SOMA" --kv-dtype f32)" ]
  [ "$(lp -m "$SOMA")" != "$(lp -m "$SOMA" --kv-dtype bf16)" ]
  [ "$(lp -m "$TMP/bf16.safetensors")" = "$(lp -m "$TMP/bf16.safetensors" --kv-dtype bf16)" ]
  [ "$(lp -m "$TMP/bf16.safetensors")" != "$(lp -m "$TMP/bf16.safetensors" --kv-dtype f32)" ]
  [ "$(lp -m "$SOMA" --kv-dtype f16)" != "$(lp -m "$SOMA" --kv-dtype bf16)" ]
  run $G -m "$SOMA" -p "a" -n 2 --kv-dtype q8_0
  assert_failure 2
  assert_output --partial "lm-generate: error: --kv-dtype"
}

@test "lm-generate --logprobs K: each kept token's log-probability and the K most likely, in the JSON" {
  prompts
  run bash -c "$G -m '$SOMA' -i '$TMP/p.txt' -n 6 --temperature 0 --json --logprobs 3 --ignore-eos"
  assert_success
  echo "$output" | python3 -c '
import json, math, sys
for l in sys.stdin:
    r = json.loads(l)
    lp = r["logprobs"]
    assert len(lp) == len(r["token_ids"]) == 6, r
    for t, s in zip(r["token_ids"], lp):
        assert s["id"] == t and s["logprob"] <= 0 and len(s["top"]) == 3, s
        # greedy: the chosen token is the most likely one (ids the tokenizer cannot give are never chosen)
        assert s["top"][0]["logprob"] >= s["logprob"] - 1e-12
        assert all(a["logprob"] >= b["logprob"] for a, b in zip(s["top"], s["top"][1:]))
        assert all("text" in a for a in s["top"]) and "text" in s
        assert sum(math.exp(a["logprob"]) for a in s["top"]) <= 1 + 1e-9
'
  # The same records at --batch 16; a stop string cuts the logprobs with the tokens.
  a=$($G -m "$SOMA" -i "$TMP/p.txt" -n 6 --seed 2 --json --logprobs 2 | untimed)
  b=$($G -m "$SOMA" -i "$TMP/p.txt" -n 6 --seed 2 --json --logprobs 2 --batch 16 | untimed)
  assert_equal "$b" "$a"
  first=$($G -m "$SOMA" -p "To be" -n 20 --temperature 0)
  run bash -c "$G -m '$SOMA' -p 'To be' -n 20 --temperature 0 --stop '${first:5:2}' --json --logprobs 0"
  echo "$output" | python3 -c 'import json,sys; r = json.loads(sys.stdin.read()); assert r["stop_reason"] == "stop" and len(r["logprobs"]) == len(r["token_ids"]) < 20 and r["logprobs"][0]["top"] == [], r'
}

@test "lm-generate sampling penalties: a strong repeat penalty stops greedy repetition; min-p 1 is greedy" {
  g=$($G -m "$SOMA" -p "aaaa" -n 30 --temperature 0 --format ids)
  p=$($G -m "$SOMA" -p "aaaa" -n 30 --temperature 0 --format ids --repeat-penalty 1000 --repeat-last-n -1)
  # The penalised logits push seen ids down: more distinct ids than plain greedy, fewer repeats.
  python3 -c 'import sys
g, p = sys.argv[1].split(), sys.argv[2].split()
assert len(set(p)) > len(set(g)), (g, p)
assert len(p) - len(set(p)) <= 2, p' "$g" "$p"
  same=$($G -m "$SOMA" -p "aaaa" -n 30 --temperature 0 --format ids --repeat-penalty 1000 --repeat-last-n 0)
  assert_equal "$same" "$g"
  m=$($G -m "$SOMA" -p "Once" -n 30 --seed 5 --temperature 2 --min-p 1 --format ids)
  assert_equal "$m" "$($G -m "$SOMA" -p "Once" -n 30 --temperature 0 --format ids)"
}

@test "lm-generate --batch, --logprobs and the penalties refuse bad values" {
  for bad in "--batch 0" "--batch -1" "--logprobs -2" "--min-p 1.5" "--min-p -0.1" "--repeat-penalty 0" \
             "--presence-penalty nan" "--frequency-penalty inf" "--repeat-last-n -2"; do
    run $G -m "$SOMA" -p "a" -n 2 --json $bad
    assert_failure 2
    assert_output --partial "lm-generate: error:"
  done
  run $G -m "$SOMA" -p "a" -n 2 --logprobs 2
  assert_failure 2
  assert_output "lm-generate: error: --logprobs goes with --json (the JSON records carry them)"
  run $G -m "$SOMA" -p "a" -p "b" -n 2 --batch 2 --dtype bf16
  assert_failure 2
  assert_output --partial "lm-generate: error: --batch above 1 needs --dtype f32"
}

@test "lm-generate --no-panels: the row kernels (and the GEMM) at every batch size give --batch 1's tokens" {
  prompts
  for type in f32 q8_0 q4_0 bf16; do
    if [ "$type" = f32 ]; then m="$SOMA"; else m="$TMP/$type.safetensors"; lm-convert-checkpoint -q --cast "$type" "$SOMA" "$m"; fi
    same_at_batches -m "$m" -i "$TMP/p.txt" -n 20 --temperature 0 --format ids --no-panels
    same_at_batches -m "$m" -i "$TMP/p.txt" -n 20 --seed 9 --no-panels
  done
  # The option takes effect: the rows sum in another order than the panels, so the
  # log-probabilities differ in their last digits.
  panels=$($G -m "$TMP/q8_0.safetensors" -i "$TMP/p.txt" -n 8 --temperature 0 --json --logprobs 2 | untimed)
  rows=$($G -m "$TMP/q8_0.safetensors" -i "$TMP/p.txt" -n 8 --temperature 0 --json --logprobs 2 --no-panels | untimed)
  [ -n "$panels" ] && [ "$panels" != "$rows" ]
}
