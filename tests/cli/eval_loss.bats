#!/usr/bin/env bats
# lm-eval-loss: reports, windowing options, bits per byte, SIGReg, the CI exit code, and
# every error class (missing checkpoint, checkpoint without config, tokenizer/vocab
# mismatch, bad option values). Models are the committed PyTorch fixtures.

load helpers
load nonfinite

FIX="$LMKIT_SOURCE_DIR/tests/fixtures"
SOMA="$FIX/soma_v1/model.safetensors"     # byte-v1 tokenizer, max_seq_len 64, PAD 256
RAW="$FIX/llama2/model.safetensors"       # no tokenizer, vocab 256, max_seq_len 32

json_get() { python3 -c "import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

text_tokens() {  # head -c N of the corpus as a byte-v1 stream with records of 64
  head -c "$1" "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" | lm-tokenize --max-seq-len 64 > "$TMP/in.tok"
}

llmc_tokens() {  # an llm.c v1 file (u16) of N tokens below 256
  python3 - "$TMP/in.bin" "$1" <<'PY'
import struct, sys
n = int(sys.argv[2])
hdr = [20240520, 1, n] + [0] * 253
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *hdr))
    f.write(struct.pack("<%dH" % n, *[(i * 7 + 3) % 256 for i in range(n)]))
PY
}

@test "lm-eval-loss reports loss, perplexity, bits per token and byte as text and JSON" {
  text_tokens 2000
  run lm-eval-loss --threads 1 -m "$SOMA" "$TMP/in.tok"
  assert_success
  assert_output --partial "loss "
  assert_output --partial "perplexity"
  assert_output --partial "bits/byte"
  run lm-eval-loss --threads 1 -m "$SOMA" --json < "$TMP/in.tok"
  assert_success
  echo "$output" | python3 -c '
import json, math, sys
r = json.load(sys.stdin)
# 2000 bytes in 32 records of <= 64 tokens (31 full, the last 16 bytes + EOS): every token but
# each record first is a target; EOS counts as a token, not a byte.
assert r["records"] == 32 and r["windows"] == 32, r
assert r["tokens"] == 2000 + 1 - 32, r["tokens"]
assert r["bytes"] == r["tokens"] - 1, r["bytes"]
assert abs(r["perplexity"] - math.exp(r["loss"])) < 1e-6 * r["perplexity"]
assert abs(r["bits_per_token"] - r["loss"] / math.log(2)) < 1e-9
assert abs(r["bits_per_byte"] - r["loss"] * r["tokens"] / math.log(2) / r["bytes"]) < 1e-9
assert r["sigreg"] is None and r["seq"] == 64 and r["batch"] == 8 and r["batches"] == 4
assert r["version"] and r["model"].endswith("model.safetensors")
'
}

@test "lm-eval-loss: --batch, --seq and --max-windows change the windowing, not the loss per window" {
  text_tokens 2000
  a=$(lm-eval-loss --threads 1 -m "$SOMA" --json "$TMP/in.tok" | json_get 'r["loss"]')
  b=$(lm-eval-loss --threads 1 -m "$SOMA" --json --batch 3 "$TMP/in.tok" | json_get 'r["loss"]')
  python3 -c "assert abs($a - $b) < 1e-5, ($a, $b)"
  run lm-eval-loss --threads 1 -m "$SOMA" --json --seq 16 --max-windows 5 -b 2 "$TMP/in.tok"
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
# the first record (64 tokens) gives 4 windows of 16 targets but the last (15), then one more
assert r["seq"] == 16 and r["windows"] == 5 and r["batches"] == 3 and r["tokens"] == 63 + 16, r
'
}

@test "lm-eval-loss reads stdin, zstd, several files, and llm.c input with --bytes" {
  text_tokens 500
  lm-tokenize --max-seq-len 64 --zstd < <(head -c 500 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt") > "$TMP/in.tok.zst"
  one=$(lm-eval-loss --threads 1 -m "$SOMA" --json < "$TMP/in.tok" | json_get 'r["tokens"]')
  two=$(lm-eval-loss --threads 1 -m "$SOMA" --json "$TMP/in.tok" "$TMP/in.tok.zst" | json_get 'r["tokens"]')
  [ "$two" -eq $((2 * one)) ]
  llmc_tokens 100
  run lm-eval-loss --threads 1 -m "$RAW" --json "$TMP/in.bin"
  assert_success
  echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["tokens"] == 99 and r["bits_per_byte"] is None and r["bytes"] is None, r'
  run lm-eval-loss --threads 1 -m "$RAW" --json --bytes 400 "$TMP/in.bin"
  echo "$output" | python3 -c '
import json, math, sys
r = json.load(sys.stdin)
assert r["bytes"] == 400 and abs(r["bits_per_byte"] - r["loss"] * 99 / math.log(2) / 400) < 1e-9, r'
  python3 -c "import struct, sys; sys.stdout.buffer.write(struct.pack('<60H', *range(60)))" > "$TMP/raw.u16"
  run lm-eval-loss --threads 1 -m "$RAW" --input-format u16 "$TMP/raw.u16"
  assert_success
  assert_output --partial "tokens      59"
}

@test "lm-eval-loss --fail-above exits 1 above the threshold and 0 below" {
  text_tokens 300
  run lm-eval-loss --threads 1 -m "$SOMA" --fail-above 1000 "$TMP/in.tok"
  assert_success
  run lm-eval-loss --threads 1 -m "$SOMA" --fail-above 0.5 "$TMP/in.tok"
  assert_failure 1
  assert_output --partial "lm-eval-loss: error: loss of '$SOMA' on '$TMP/in.tok': "
  assert_output --regexp "[0-9]\.[0-9]{6} is above --fail-above 0\.5"
  assert_output --partial "perplexity"
}

@test "lm-eval-loss --fail-above fails a loss that is not a number; non-finite weights are an error" {
  text_tokens 300
  # finite weights of 1e30: the loss overflows to NaN
  lm-train tiny --set dim=32 --set n_heads=2 --set n_layers=1 --set hidden_dim=64 "$TMP/in.tok" --steps 1 \
    --batch 2 --seq 16 --lr 1e30 --grad-clip 0 -o "$TMP/huge" -q --threads 1
  run lm-eval-loss --threads 1 -m "$TMP/huge/model.safetensors" --fail-above 1000 "$TMP/in.tok" --json
  assert_failure 1
  assert_output --partial '"loss": null'
  assert_output --partial "lm-eval-loss: error: loss of '$TMP/huge/model.safetensors' on '$TMP/in.tok': nan is not a finite number (fails --fail-above 1000)"
  run lm-eval-loss --threads 1 -m "$TMP/huge/model.safetensors" "$TMP/in.tok" -q
  assert_success  # without a threshold it is a report
  cp "$SOMA" "$TMP/bad.safetensors"
  poison "$TMP/bad.safetensors"
  run lm-eval-loss --threads 1 -m "$TMP/bad.safetensors" "$TMP/in.tok"
  assert_failure 1
  assert_output --regexp "^lm-eval-loss: error: '$TMP/bad.safetensors': tensor '[a-z_.0-9]+' holds nan at element 0$"
}

@test "lm-eval-loss reports SIGReg and writes the mean embedding as safetensors" {
  python3 - "$SOMA" "$TMP/sig.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
c = json.loads(h["__metadata__"]["lmkit.config"])
c["sigreg"]["enabled"] = True
c["sigreg"]["slices"] = 32
h["__metadata__"]["lmkit.config"] = json.dumps(c)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
  text_tokens 300
  run lm-eval-loss --threads 1 -m "$TMP/sig.safetensors" --json --sigreg-seed 3 --embedding-out "$TMP/emb.safetensors" "$TMP/in.tok"
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
s = r["sigreg"]
assert s["value"] > 0 and s["coefficient"] == 0.02
assert abs(s["term"] - 0.02 * s["value"]) < 1e-12 and abs(s["total_loss"] - r["loss"] - s["term"]) < 1e-9
'
  python3 - "$TMP/emb.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["embedding"]["dtype"] == "F32" and h["embedding"]["shape"] == [32], h
PY
  run lm-eval-loss --threads 1 -m "$TMP/sig.safetensors" "$TMP/in.tok"
  assert_output --partial "sigreg"
}

@test "lm-eval-loss refuses a missing checkpoint and one without a config" {
  text_tokens 100
  run lm-eval-loss -m "$TMP/nope.safetensors" "$TMP/in.tok"
  assert_failure 1
  assert_output --partial "lm-eval-loss: error:"
  assert_output --partial "nope.safetensors"
  python3 - "$TMP/noconf.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 8)
PY
  run lm-eval-loss -m "$TMP/noconf.safetensors" "$TMP/in.tok"
  assert_failure 1
  assert_output --partial "config"
}

@test "lm-eval-loss refuses token streams of another tokenizer or vocab" {
  text_tokens 100
  run lm-eval-loss -m "$RAW" "$TMP/in.tok"   # byte-v1 (264) into a raw 256-token model
  assert_failure 1
  assert_output --partial "vocab mismatch"
  run lm-eval-loss -m "$FIX/gelu_tanh_gqa_tied/model.safetensors" "$TMP/in.tok"
  assert_failure 1
  assert_output --partial "vocab mismatch"
  llmc_tokens 10
  run lm-eval-loss -m "$SOMA" --input-format stream "$TMP/in.bin"
  assert_failure 1
  run lm-eval-loss -m "$SOMA" < /dev/null
  assert_failure 1
}

@test "lm-eval-loss rejects bad option values with exit 2" {
  text_tokens 100
  for args in "--batch 0" "--seq 0" "--seq x" "--max-windows -1" "--input-format nope" "--bytes 0" "--fail-above abc"; do
    run lm-eval-loss -m "$SOMA" $args "$TMP/in.tok"
    assert_failure 2
    assert_output --partial "lm-eval-loss: error:"
  done
  run lm-eval-loss "$TMP/in.tok"
  assert_failure 2
  run lm-eval-loss -m "$SOMA" --seq 65 "$TMP/in.tok"
  assert_failure 2
  assert_output --partial "max_seq_len"
}

@test "lm-eval-loss --dtype bf16: the loss close to f32's, the dtype in the JSON" {
  text_tokens 3000
  run lm-eval-loss --threads 1 -m "$SOMA" --json "$TMP/in.tok"
  assert_success
  f32=$output
  run lm-eval-loss --threads 1 -m "$SOMA" --json --dtype bf16 "$TMP/in.tok"
  assert_success
  python3 -c '
import json, sys
f32, bf16 = (json.loads(s) for s in sys.argv[1:])
assert f32["dtype"] == "f32" and bf16["dtype"] == "bf16"
assert bf16["tokens"] == f32["tokens"] and bf16["windows"] == f32["windows"]
assert bf16["loss"] != f32["loss"], "bf16 gave the f32 loss"
assert abs(bf16["loss"] - f32["loss"]) < 1e-3 * f32["loss"], (f32["loss"], bf16["loss"])
' "$f32" "$output"
  run lm-eval-loss -m "$SOMA" --dtype f16 "$TMP/in.tok"
  assert_failure 2
  assert_output --partial "lm-eval-loss: error: --dtype"
}
