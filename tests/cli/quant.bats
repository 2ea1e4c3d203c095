#!/usr/bin/env bats
# Quantized weights for inference: lm-convert-checkpoint --cast q8_0|q4_0|q4_K|q6_K|f16 writes
# checkpoints the programs run as stored; GGUF files open directly. The eval loss of each
# type stays near f32's (a broken kernel moves it far), and training refuses them.

load helpers

FIX="$LMKIT_SOURCE_DIR/tests/fixtures"
SOMA="$FIX/soma_v1/model.safetensors"  # byte-v1 tokenizer, dim 32, ffn 256, max_seq_len 64
LLAMA2="$FIX/llama2/model.safetensors"  # llama-shaped (GGUF-writable), no tokenizer, vocab 256

json_get() { python3 -c "import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

loss_of() { lm-eval-loss --threads 2 -m "$1" --json "$TMP/in.tok" | json_get 'r["loss"]'; }

@test "q8_0, q4_0, f16 and bf16 checkpoints evaluate near f32, and q8_0 nearest" {
  head -c 6000 "$LMKIT_SOURCE_DIR/tests/data/tinyshakespeare.txt" | lm-tokenize --max-seq-len 64 > "$TMP/in.tok"
  for t in q8_0 q4_0 f16 bf16; do
    run lm-convert-checkpoint -q --cast "$t" "$SOMA" "$TMP/$t.safetensors"
    [ "$status" -eq 0 ] || fail "cast $t: $output"
  done
  python3 - "$TMP/q8_0.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
types = json.loads(h["__metadata__"]["lmkit.weight_types"])
assert types["layers.0.attention.wq.weight"] == "q8_0", types
assert h["layers.0.attention.wq.weight"]["dtype"] == "U8" and h["layers.0.attention.wq.weight"]["shape"] == [32, 34], h["layers.0.attention.wq.weight"]
assert "layers.0.attention_norm.weight" not in types
PY
  f32=$(loss_of "$SOMA")
  q8=$(loss_of "$TMP/q8_0.safetensors")
  q4=$(loss_of "$TMP/q4_0.safetensors")
  f16=$(loss_of "$TMP/f16.safetensors")
  bf16=$(loss_of "$TMP/bf16.safetensors")
  echo "f32 $f32 q8_0 $q8 q4_0 $q4 f16 $f16 bf16 $bf16"
  python3 - "$f32" "$q8" "$q4" "$f16" "$bf16" <<'PY'
import sys
f32, q8, q4, f16, bf16 = map(float, sys.argv[1:])
rel = lambda x: abs(x - f32) / f32
assert rel(q8) < 0.005, ("q8_0", rel(q8))
assert rel(q4) < 0.05, ("q4_0", rel(q4))
assert rel(f16) < 0.001, ("f16", rel(f16))
assert rel(bf16) < 0.005, ("bf16", rel(bf16))
assert q8 != f32 and q4 != q8  # the stored types were used
PY
}

@test "a q8_0 GGUF file opens directly and gives the q8_0 checkpoint's loss" {
  python3 - "$TMP/in.bin" 2000 <<'PY'
import struct, sys
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *([20240520, 1, n] + [0] * 253)))
    f.write(struct.pack("<%dH" % n, *[(i * 7 + 3) % 256 for i in range(n)]))
PY
  lm-convert-checkpoint -q --to gguf --cast q8_0 "$LLAMA2" "$TMP/m.gguf"
  lm-convert-checkpoint -q --cast q8_0 "$LLAMA2" "$TMP/m.safetensors"
  a=$(lm-eval-loss --threads 2 -m "$TMP/m.gguf" --json "$TMP/in.bin" | json_get 'r["loss"]')
  b=$(lm-eval-loss --threads 2 -m "$TMP/m.safetensors" --json "$TMP/in.bin" | json_get 'r["loss"]')
  f=$(lm-eval-loss --threads 2 -m "$LLAMA2" --json "$TMP/in.bin" | json_get 'r["loss"]')
  echo "gguf $a checkpoint $b f32 $f"
  [ "$a" = "$b" ] || fail "gguf $a, checkpoint $b"
  [ "$a" != "$f" ] || fail "the q8_0 GGUF gave f32's loss $f"
  run lm-bench decode --model "$TMP/m.gguf" --decode-tokens 8 --repeats 1 --warmup 0 --threads 1
  [ "$status" -eq 0 ] || fail "$output"
}

@test "training refuses quantized weights with a clear error" {
  lm-convert-checkpoint -q --cast q4_0 "$SOMA" "$TMP/q4.safetensors"
  run lm-bench train --model "$TMP/q4.safetensors" --batch 1 --seq 8 --repeats 1 --warmup 0 --threads 1
  [ "$status" -eq 1 ] || fail "status $status: $output"
  [[ "$output" == *"training needs f32 weights"* ]] || fail "$output"
  run lm-convert-checkpoint --to llama2c --cast q4_0 "$LLAMA2" "$TMP/q4.bin"
  [ "$status" -eq 2 ] || fail "status $status: $output"
}

@test "q4_K and q6_K: GGUF and checkpoint casts give the same loss, near f32; rows off 256 are refused" {
  # Rows of 256 and 768 (the k-quants' super-blocks of 256), random weights, vocab 256.
  lm-train stories15m --set dim=256 --set n_layers=1 --set n_heads=4 --set hidden_dim=768 --set vocab_size=256 \
    --set pad_id=-1 --set eos_id=-1 --set bos_id=-1 --steps 0 --seed 3 -o "$TMP/run" -q
  M="$TMP/run/model.safetensors"
  python3 - "$TMP/in.bin" 600 <<'PY'
import struct, sys
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *([20240520, 1, n] + [0] * 253)))
    f.write(struct.pack("<%dH" % n, *[(i * 7 + 3) % 256 for i in range(n)]))
PY
  python3 - "$TMP/p.bin" 5 <<'PY'
import struct, sys
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *([20240520, 1, n] + [0] * 253)))
    f.write(struct.pack("<%dH" % n, *[(i * 11 + 5) % 256 for i in range(n)]))
PY
  f=$(lm-eval-loss --threads 2 -m "$M" --seq 64 --json "$TMP/in.bin" | json_get 'r["loss"]')
  for t in q4_K q6_K; do
    lm-convert-checkpoint -q --to gguf --cast "$t" "$M" "$TMP/$t.gguf"
    lm-convert-checkpoint -q --cast "$t" "$M" "$TMP/$t.safetensors"
    a=$(lm-eval-loss --threads 2 -m "$TMP/$t.gguf" --seq 64 --json "$TMP/in.bin" | json_get 'r["loss"]')
    b=$(lm-eval-loss --threads 2 -m "$TMP/$t.safetensors" --seq 64 --json "$TMP/in.bin" | json_get 'r["loss"]')
    echo "$t gguf $a checkpoint $b f32 $f"
    [ "$a" = "$b" ] || fail "$t: gguf $a, checkpoint $b"
    [ "$a" != "$f" ] || fail "$t: the GGUF gave f32's loss $f"
    python3 -c 'import sys; a, f = map(float, sys.argv[1:]); assert abs(a - f) / f < 0.01, (a, f)' "$a" "$f"
    run lm-generate --threads 2 -m "$TMP/$t.gguf" --input-format tokens --temperature 0 -n 4 --format ids -i "$TMP/p.bin"
    [ "$status" -eq 0 ] || fail "$t generate: $output"
    [ "$(echo "$output" | wc -w)" -eq 4 ] || fail "$t generate: $output"
  done
  run lm-convert-checkpoint --cast q4_K "$LLAMA2" "$TMP/bad.safetensors"
  [ "$status" -eq 1 ] || fail "status $status: $output"
  [[ "$output" == *"multiple of 256"* ]] || fail "$output"
}
