#!/usr/bin/env bats
# Llama 4 style models in the programs (docs/llama4.md): NoPE layers, chunked local attention,
# temperature tuning and the mixture of experts need nothing beside the tokens, so lm-train,
# lm-eval-loss, lm-generate and lm-bench run them. Vision models (vision_dim > 0, §8):
# lm-eval-loss and lm-generate read image features with --vision and run text only without it;
# lm-bench runs them on text;
# lm-train trains them with --vision (features per record of each stream).

load helpers  # MICRO, corpus, same_tensors

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

# $TMP/st.py: a safetensors reader and writer without torch; the l4_vision case as numbers.
vision_helpers() {
  cat > "$TMP/st.py" <<'PY'
import json, math, struct
def load(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; raw = b[8 + n + s:8 + n + e]
        fmt = {"I64": "q", "F32": "f"}[v["dtype"]]
        out[k] = (v["shape"], list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)))
    return out
def save(path, tensors):  # name -> (dtype, shape, values)
    h, data = {}, b""
    for k, (dt, shape, vals) in tensors.items():
        raw = struct.pack("<%d%s" % (len(vals), {"I64": "q", "F32": "f"}[dt]), *vals)
        h[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}; data += raw
    hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
def llmc(path, tokens):
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *([20240520, 1, len(tokens)] + [0] * 253)))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))
def case(fix):
    c = load(fix + "/case.safetensors")
    T = c["tokens"][0][1]; V = c["logits"][0][2]
    rows = []
    m = 0
    for b in range(c["tokens"][0][0]):
        tok = c["tokens"][1][b * T:(b + 1) * T]; tgt = c["targets"][1][b * T:(b + 1) * T]
        places = [t for t in range(T) if c["vision_mask"][1][b * T + t]]
        feats = c["vision_features"][1][m * 12:(m + len(places)) * 12]; m += len(places)
        logits = c["logits"][1][b * T * V:(b + 1) * T * V]
        ce = 0.0
        for t in range(T):
            row = logits[t * V:(t + 1) * V]; mx = max(row)
            ce += math.log(sum(math.exp(x - mx) for x in row)) + mx - row[tgt[t]]
        last = logits[(T - 1) * V:T * V]
        rows.append(dict(tokens=tok, record=tok + [tgt[-1]], places=places, features=feats, loss=ce / T,
                         argmax=last.index(max(last))))
    return rows
PY
}

@test "lm-eval-loss --vision gives the reference loss of l4_vision's row; text only differs" {
  vision_helpers
  V="$FIX/l4_vision/model.safetensors"
  python3 - "$TMP" "$FIX/l4_vision" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import st
r = st.case(sys.argv[2])[0]
st.llmc(sys.argv[1] + "/row0.bin", r["record"])
st.save(sys.argv[1] + "/v.safetensors", {"record.0": ("F32", [len(r["places"]), 12], r["features"]),
                                         "record.0.places": ("I64", [len(r["places"])], r["places"])})
# a place on the record's last token (12: only a target)
st.save(sys.argv[1] + "/last.safetensors", {"record.0": ("F32", [2, 12], r["features"][:24]),
                                            "record.0.places": ("I64", [2], [2, 12])})
st.save(sys.argv[1] + "/two.safetensors", {"record.1": ("F32", [1, 12], r["features"][:12]),
                                           "record.1.places": ("I64", [1], [0])})
open(sys.argv[1] + "/want", "w").write("%.9f" % r["loss"])
PY
  run lm-eval-loss -m "$V" --seq 12 --vision "$TMP/v.safetensors" --json "$TMP/row0.bin"
  assert_success
  echo "$output" | python3 -c 'import json,sys; r = json.load(sys.stdin); want = float(open(sys.argv[1]).read())
assert r["tokens"] == 12 and abs(r["loss"] - want) < 1e-4 * want, (r["loss"], want)' "$TMP/want"
  # Text only: the model runs, and the image places' features are missing from the loss.
  run lm-eval-loss -m "$V" --seq 12 --json "$TMP/row0.bin"
  assert_success
  echo "$output" | python3 -c 'import json,sys; r = json.load(sys.stdin); want = float(open(sys.argv[1]).read())
assert abs(r["loss"] - want) > 1e-3, (r["loss"], want)' "$TMP/want"
  # Windows of 5 tokens: the features follow their places into the windows.
  run lm-eval-loss -m "$V" --seq 5 --vision "$TMP/v.safetensors" --json "$TMP/row0.bin"
  assert_success
  run lm-eval-loss -m "$V" --seq 12 --vision "$TMP/last.safetensors" "$TMP/row0.bin"
  assert_failure 1
  assert_output "lm-eval-loss: error: record 0: 2 image features, but only 1 of them fall on input tokens of the record; an image place must be a token of the record other than its last (which is only a target)"
  run lm-eval-loss -m "$V" --seq 12 --vision "$TMP/two.safetensors" "$TMP/row0.bin"
  assert_failure 1
  assert_output "lm-eval-loss: error: '$TMP/two.safetensors': image features for record 1, but the input has 1 record"
  run lm-eval-loss -m "$LMKIT_SOURCE_DIR/tests/fixtures/llama3/model.safetensors" --vision "$TMP/v.safetensors" "$TMP/row0.bin"
  assert_failure 1
  assert_output --partial "image features for a model without vision inputs (vision_dim = 0)"
}

@test "lm-generate --vision prefills the prompt's features: the reference's next token" {
  vision_helpers
  V="$FIX/l4_vision/model.safetensors"
  python3 - "$TMP" "$FIX/l4_vision" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import st
r = st.case(sys.argv[2])[0]
st.llmc(sys.argv[1] + "/prompt.bin", r["tokens"])
st.save(sys.argv[1] + "/v.safetensors", {"record.0": ("F32", [len(r["places"]), 12], r["features"]),
                                         "record.0.places": ("I64", [len(r["places"])], r["places"])})
st.save(sys.argv[1] + "/past.safetensors", {"record.0": ("F32", [1, 12], r["features"][:12]),
                                            "record.0.places": ("I64", [1], [12])})
st.save(sys.argv[1] + "/two.safetensors", {"record.1": ("F32", [1, 12], r["features"][:12]),
                                           "record.1.places": ("I64", [1], [0])})
open(sys.argv[1] + "/want", "w").write(str(r["argmax"]))
PY
  run lm-generate -m "$V" -i "$TMP/prompt.bin" --input-format tokens --vision "$TMP/v.safetensors" -n 1 \
    --temperature 0 --ignore-eos --format ids
  assert_success
  assert_output "$(cat "$TMP/want")"
  # Text only runs too; decoding past the prompt with the features keeps going.
  run lm-generate -m "$V" -i "$TMP/prompt.bin" --input-format tokens -n 4 --temperature 0 --ignore-eos --format ids
  assert_success
  run lm-generate -m "$V" -i "$TMP/prompt.bin" --input-format tokens --vision "$TMP/v.safetensors" -n 6 \
    --temperature 0 --ignore-eos --format ids
  assert_success
  [ "$(echo "$output" | wc -w)" -eq 6 ]
  run lm-generate -m "$V" -i "$TMP/prompt.bin" --input-format tokens --vision "$TMP/past.safetensors" -n 1 --format ids
  assert_failure 1
  assert_output "lm-generate: error: prompt 1: image place 12 lies past its 12 tokens"
  run lm-generate -m "$V" -i "$TMP/prompt.bin" --input-format tokens --vision "$TMP/two.safetensors" -n 1 --format ids
  assert_failure 1
  assert_output --partial "lm-generate: error: '$TMP/two.safetensors': image features for record 1 (prompt 2), but the input has 1 prompt"
}

@test "lm-bench runs a vision model on text" {
  V="$FIX/l4_vision/model.safetensors"
  run lm-bench forward --model "$V" --batch 1 --seq 4 --repeats 1 --warmup 0 --json
  assert_success
}

# $TMP/lines.tok: 12 records (one per line, 13 to 30 bytes, some longer than --seq 16 so they
# are cut into windows) holding 0 to 3 image tokens '#' (35); $TMP/v.safetensors their features
# [k, 8] (record.i only for the records with image tokens), $TMP/w.safetensors other features.
vision_train_data() {
  vision_helpers
  python3 - "$TMP" <<'PY'
import random, sys; sys.path.insert(0, sys.argv[1]); import st
rng = random.Random(7)
lines = []
for i in range(12):
    k = [0, 1, 2, 3][i % 4]
    s = [rng.choice("abcdefgh") for _ in range(rng.randint(12, 27))]
    for _ in range(k): s.insert(rng.randrange(len(s)), "#")
    lines.append("".join(s))
open(sys.argv[1] + "/lines.txt", "w").write("\n".join(lines) + "\n")
def feats(seed):
    r = random.Random(seed)
    return {f"record.{i}": ("F32", [l.count("#"), 8], [r.gauss(0, 1) for _ in range(8 * l.count("#"))])
            for i, l in enumerate(lines) if "#" in l}
st.save(sys.argv[1] + "/v.safetensors", feats(1))
st.save(sys.argv[1] + "/w.safetensors", feats(2))
f = feats(1); del f["record.3"]; st.save(sys.argv[1] + "/missing.safetensors", f)            # record 3 has 3 '#'
f = feats(1); f["record.12"] = ("F32", [1, 8], [0.0] * 8); st.save(sys.argv[1] + "/extra.safetensors", f)
f = feats(1); f["record.2"] = ("F32", [2, 7], [0.0] * 14); st.save(sys.argv[1] + "/narrow.safetensors", f)
f = feats(1); f["record.1"] = ("F32", [2, 8], [0.0] * 16); st.save(sys.argv[1] + "/count.safetensors", f)
# places mode (no image_token_id): record 0's features on places 0 and 5; then one past its end
st.save(sys.argv[1] + "/places.safetensors", {"record.0": ("F32", [2, 8], [0.5] * 16), "record.0.places": ("I64", [2], [0, 5])})
n = len(lines[0])
st.save(sys.argv[1] + "/past.safetensors", {"record.0": ("F32", [1, 8], [0.5] * 8), "record.0.places": ("I64", [1], [n])})
open(sys.argv[1] + "/len0", "w").write(str(n))
PY
  lm-tokenize --lines --no-eos "$TMP/lines.txt" -o "$TMP/lines.tok"
}

VIS=("${MICRO[@]}" --set vision_dim=8 --set image_token_id=35)
VARGS=(--sample sequential --batch 2 --seq 16 --lr 3e-3 --threads 1 -q)

@test "lm-train --vision trains a vision model from a file (windows take their places' features) and resumes exactly" {
  vision_train_data
  lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" "${VARGS[@]}" --steps 8 -o "$TMP/full"
  [ "$(wc -l < "$TMP/full/log.jsonl")" -eq 8 ]
  # The features are read: other features give other losses from the same start.
  lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/w.safetensors" "${VARGS[@]}" --steps 8 -o "$TMP/other"
  [ "$(losses "$TMP/full/log.jsonl")" != "$(losses "$TMP/other/log.jsonl")" ]
  # vision_projection is trained: it moved from its initial values.
  lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" "${VARGS[@]}" --steps 0 -o "$TMP/init"
  python3 - "$TMP" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import st
a = st.load(sys.argv[1] + "/init/model.safetensors")["vision_projection.weight"]
b = st.load(sys.argv[1] + "/full/model.safetensors")["vision_projection.weight"]
assert a[0] == b[0] == [32, 8] and max(abs(x - y) for x, y in zip(a[1], b[1])) > 1e-4
PY
  # Stopped and resumed (the --vision file comes from the checkpoint): the same run bit for bit.
  lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" "${VARGS[@]}" --steps 8 -o "$TMP/part" --stop-after 3
  lm-train --resume "$TMP/part" --threads 1 -q
  diff <(losses "$TMP/full/log.jsonl") <(losses "$TMP/part/log.jsonl")
  cmp "$TMP/full/model.safetensors" "$TMP/part/model.safetensors"
  # Validation streams take their own features; the model evaluates with them.
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" --val "$TMP/lines.tok" \
    --val-vision "$TMP/v.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/val" --json
  assert_success
  assert_output --partial '"val_loss"'
  # Places given by the file (no image_token_id).
  run lm-train "${MICRO[@]}" --set vision_dim=8 "$TMP/lines.tok" --vision "$TMP/places.safetensors" "${VARGS[@]}" \
    --steps 2 -o "$TMP/places"
  assert_success
}

@test "lm-train refuses a missing, extra or mis-shaped record of the --vision file in one line" {
  vision_train_data
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/missing.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: '$TMP/missing.safetensors': record 3 has 3 image tokens (image_token_id 35) but 0 image features (record.3)"
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/count.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: '$TMP/count.safetensors': record 1 has 1 image tokens (image_token_id 35) but 2 image features (record.1)"
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/extra.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: '$TMP/extra.safetensors': image features for record 12, but its stream '$TMP/lines.tok' has 12 records"
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/narrow.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: '$TMP/narrow.safetensors': tensor 'record.2': got shape [2, 7], expected [N, 8] (vision_dim 8)"
  run lm-train "${MICRO[@]}" --set vision_dim=8 "$TMP/lines.tok" --vision "$TMP/past.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 1
  assert_output "lm-train: error: '$TMP/past.safetensors': record 0: image place $(cat "$TMP/len0") is past its $(cat "$TMP/len0") tokens (record.0.places)"
  run lm-train "${VIS[@]}" "$TMP/lines.tok" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: the model takes image features (vision_dim = 8): give them with --vision FILE; one safetensors file per training stream (docs/llama4.md)"
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" --batch 2 --seq 16 --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: a vision model trains on records (image features are per record); use --sample sequential (a random window has no record and may start inside one)"
  run lm-train "${MICRO[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: --vision: the model has no vision_dim (image features)"
  run lm-train "${VIS[@]}" "$TMP/lines.tok" --vision "$TMP/v.safetensors" --vision "$TMP/v.safetensors" "${VARGS[@]}" --steps 1 -o "$TMP/r"
  assert_failure 2
  assert_output "lm-train: error: 2 --vision files for 1 training streams: give one per stream, in the same order"
  [ ! -e "$TMP/r/checkpoint.safetensors" ]
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

@test "lm-convert-checkpoint: Meta's and Hugging Face's Llama 4 checkpoints (experts included), and no GGUF for Llama 4 configs" {
  # Meta's released layout with its params.json and HF's llama4_text directory import tensor
  # for tensor as the fixtures' lmkit checkpoints, and the result runs.
  run lm-convert-checkpoint "$LMKIT_SOURCE_DIR/tests/fixtures/llama4_meta/released/consolidated.00.safetensors" "$TMP/m.safetensors"
  assert_success
  same_tensors "$LMKIT_SOURCE_DIR/tests/fixtures/llama4_meta/lmkit.safetensors" "$TMP/m.safetensors"
  run lm-convert-checkpoint "$LMKIT_SOURCE_DIR/tests/fixtures/llama4_hf/checkpoint" "$TMP/h.safetensors"
  assert_success
  same_tensors "$LMKIT_SOURCE_DIR/tests/fixtures/llama4_hf/lmkit.safetensors" "$TMP/h.safetensors"
  run lm-inspect-config "$TMP/m.safetensors"
  assert_success
  assert_output --partial "experts"
  # A dense Llama 4 style model (NoPE layers, weightless QK-norm) round-trips through Meta's
  # layout with a Llama 4 params.json, tensor for tensor; GGUF refuses it in one line (llama.cpp
  # would run it differently).
  run lm-convert-checkpoint "$FIX/l4_qknorm/model.safetensors" --to meta "$TMP/meta/"
  assert_success
  grep -q '"nope_layer_interval": 3' "$TMP/meta/params.json" || fail "no nope_layer_interval in params.json"
  grep -q '"use_qk_norm": true' "$TMP/meta/params.json" || fail "no use_qk_norm in params.json"
  run lm-convert-checkpoint --from meta "$TMP/meta" "$TMP/back.safetensors"
  assert_success
  same_tensors "$FIX/l4_qknorm/model.safetensors" "$TMP/back.safetensors"
  run lm-convert-checkpoint --to gguf "$FIX/l4_temp/model.safetensors" "$TMP/x.gguf"
  assert_failure 1
  assert_output --regexp "^lm-convert-checkpoint: error: GGUF \(llama4, as llama.cpp runs it\) cannot hold a model without experts"
  [ ! -e "$TMP/x.gguf" ]
}
