#!/usr/bin/env bats
# lm-convert-checkpoint on PyTorch checkpoints (torch.save's zip format) and on Meta's
# model-parallel directories (consolidated.00 .. NN + params.json): one command each, the same
# lmkit checkpoint as the single-file fixtures, and the reference's loss through lm-eval-loss.
# The inputs are tests/fixtures/make_meta_pth.py's.

load helpers
bats_require_minimum_version 1.5.0

FIX="$LMKIT_SOURCE_DIR/tests/fixtures"

# $TMP/row.tok (llm.c tokens: row $3 of a fixture's tokens plus its last target) and $TMP/want
# (that row's mean cross-entropy from the stored reference logits)
reference_row() {
  python3 - "$1" "$2" "$3" "$TMP" <<'PY'
import json, math, struct, sys
path, logits_key, row, tmp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
def get(k):
    v = h[k]; s, e = v["data_offsets"]; raw = b[8 + n + s:8 + n + e]; f = {"I64": "q", "F32": "f"}[v["dtype"]]
    return v["shape"], struct.unpack("<%d%s" % (len(raw) // struct.calcsize(f), f), raw)
(B, T), tok = get("tokens"); _, tgt = get("targets"); shape, lg = get(logits_key); V = shape[-1]
tok, tgt = list(tok[row * T:(row + 1) * T]), list(tgt[row * T:(row + 1) * T])
assert tok[1:] == tgt[:-1]
ce = 0.0
for t in range(T):
    r = lg[(row * T + t) * V:(row * T + t + 1) * V]; m = max(r)
    ce += math.log(sum(math.exp(x - m) for x in r)) + m - r[tgt[t]]
rec = tok + [tgt[-1]]
with open(tmp + "/row.tok", "wb") as f:
    f.write(struct.pack("<256i", *([20240520, 1, len(rec)] + [0] * 253))); f.write(struct.pack("<%dH" % len(rec), *rec))
open(tmp + "/want", "w").write("%.9f" % (ce / T))
PY
}

loss_matches() {  # $1: model; the loss of $TMP/row.tok within 1e-4 of $TMP/want
  run lm-eval-loss -m "$1" --seq 16 --json "$TMP/row.tok"
  assert_success
  echo "$output" | python3 -c 'import json,sys; r = json.load(sys.stdin); want = float(open(sys.argv[1]).read())
assert r["tokens"] == 16 and abs(r["loss"] - want) < 1e-4 * want, (r["loss"], want)' "$TMP/want"
}

@test "Meta's Llama 4 checkpoint as two torch.save shards converts in one command to the single-shard model, with the reference loss" {
  run lm-convert-checkpoint "$FIX/llama4_meta/pth_2" "$TMP/m2.safetensors"
  assert_success
  same_tensors "$FIX/llama4_meta/lmkit.safetensors" "$TMP/m2.safetensors"
  lm-convert-checkpoint -q "$FIX/llama4_meta/released" "$TMP/m1.safetensors"
  cmp "$TMP/m1.safetensors" "$TMP/m2.safetensors"  # the whole file: config and tokenizer too
  lm-convert-checkpoint -q "$FIX/llama4_meta/pth_1/consolidated.00.pth" "$TMP/p1.safetensors"
  cmp "$TMP/m1.safetensors" "$TMP/p1.safetensors"
  reference_row "$FIX/llama4_meta/expected.safetensors" logits 0
  loss_matches "$TMP/m2.safetensors"
  run lm-convert-checkpoint --dry-run "$FIX/llama4_meta/pth_2" "$TMP/x.safetensors"
  assert_success
  assert_output --partial "(PyTorch (torch.save), Meta's 2 model-parallel shards, layout meta)"
  assert_output --partial "note: dropped the vision encoder (2 tensors vision_embeddings.*)"
  assert_output --partial "merged from 2 shards: q, k, v rows"
  [ ! -e "$TMP/x.safetensors" ]
}

@test "Meta's Llama 2 checkpoint as two torch.save shards: tok_embeddings on dim 1, the reference loss" {
  run lm-convert-checkpoint "$FIX/llama2_meta_pth" "$TMP/m.safetensors"
  assert_success
  same_tensors "$FIX/llama2/model.safetensors" "$TMP/m.safetensors"
  reference_row "$FIX/llama2/case.safetensors" logits 0
  loss_matches "$TMP/m.safetensors"
  run lm-convert-checkpoint --list "$FIX/llama2_meta_pth"
  assert_success
  assert_line --index 0 --regexp "PyTorch \(torch.save\), Meta's 2 model-parallel shards, layout meta, 21 tensors"
  assert_output --regexp "tok_embeddings.weight +F32  \[256, 32\]"
}

@test "a .pth file anywhere a safetensors file is read: HF names, a sharded index over .bin files" {
  # The llama2 fixture through the HF layout, then saved by torch: a pytorch_model.bin.
  lm-convert-checkpoint -q --to hf "$FIX/llama2/model.safetensors" "$TMP/hf/"
  /usr/bin/python3 -c 'import torch' 2>/dev/null || skip "no torch to write .bin files"
  /usr/bin/python3 - "$TMP/hf" <<'PY'
import json, os, struct, sys, torch
d = sys.argv[1]; b = open(d + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
sd = {k: torch.frombuffer(bytearray(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]), dtype=torch.float32).reshape(v["shape"])
      for k, v in h.items() if k != "__metadata__"}
os.remove(d + "/model.safetensors")
torch.save(sd, d + "/pytorch_model.bin")
names = sorted(sd); half = len(names) // 2
os.makedirs(d + "2"); json.dump(json.load(open(d + "/config.json")), open(d + "2/config.json", "w"))
wm = {}
for i, part in enumerate((names[:half], names[half:])):
    f = "pytorch_model-%05d-of-00002.bin" % (i + 1); torch.save({k: sd[k] for k in part}, d + "2/" + f); wm.update({k: f for k in part})
json.dump({"metadata": {}, "weight_map": wm}, open(d + "2/pytorch_model.bin.index.json", "w"))
PY
  run lm-convert-checkpoint "$TMP/hf" "$TMP/a.safetensors"
  assert_success
  same_tensors "$FIX/llama2/model.safetensors" "$TMP/a.safetensors"
  run lm-convert-checkpoint "$TMP/hf2" "$TMP/b.safetensors"
  assert_success
  same_tensors "$FIX/llama2/model.safetensors" "$TMP/b.safetensors"
}

@test "errors: a pickle that runs code, the legacy format, a compressed archive, a missing shard (one line, exit 1)" {
  run -1 lm-convert-checkpoint "$FIX/torch_pth/code.pth" "$TMP/o.safetensors"
  assert_output "lm-convert-checkpoint: error: '$FIX/torch_pth/code.pth': code/data.pkl: byte 169: refers to posix.system, which a state dict does not use: refused (lmkit runs no pickled code)"
  run -1 lm-convert-checkpoint "$FIX/torch_pth/legacy.pth" "$TMP/o.safetensors"
  assert_output "lm-convert-checkpoint: error: '$FIX/torch_pth/legacy.pth': a PyTorch checkpoint in the legacy format (before torch 1.6) is not read; load and save it again with torch >= 1.6: torch.save(torch.load(f), f)"
  run -1 lm-convert-checkpoint "$FIX/torch_pth/deflated.pth" "$TMP/o.safetensors"
  assert_output --partial "zip entry 'dtypes/data.pkl' is compressed (method 8)"
  mkdir "$TMP/d" && cp "$FIX/llama2_meta_pth/params.json" "$FIX/llama2_meta_pth/consolidated.00.pth" "$TMP/d/"
  cp "$FIX/llama2_meta_pth/consolidated.01.pth" "$TMP/d/consolidated.02.pth"
  run -1 lm-convert-checkpoint "$TMP/d" "$TMP/o.safetensors"
  assert_output --partial "no consolidated.01 (a shard is missing)"
  [ ! -e "$TMP/o.safetensors" ]
  # Where an lmkit checkpoint is needed, a .pth file is named with the command that converts it.
  run -1 lm-inspect-config "$FIX/torch_pth/dtypes.pth"
  assert_output --partial "a PyTorch checkpoint, not an lmkit one (safetensors): convert it with 'lm-convert-checkpoint $FIX/torch_pth/dtypes.pth $FIX/torch_pth/dtypes.safetensors'"
}
