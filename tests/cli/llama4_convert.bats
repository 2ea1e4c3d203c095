#!/usr/bin/env bats
# Llama 4 checkpoints through the programs, end to end (docs/llama4.md §12): Meta's released and
# state_dict forms, Hugging Face's Llama4ForCausalLM and Llama4ForConditionalGeneration, and
# GGUF (llama.cpp's llama4 and Mixtral-style llama) each convert with one command, and
# lm-eval-loss and lm-generate then give PyTorch's loss and greedy tokens
# (tests/fixtures/make_llama4_meta.py wrote them to expected.safetensors).

load helpers

L4M="$LMKIT_SOURCE_DIR/tests/fixtures/llama4_meta"
L4H="$LMKIT_SOURCE_DIR/tests/fixtures/llama4_hf"
FIX="$LMKIT_SOURCE_DIR/tests/fixtures/llama4"
# What llama.cpp's llama4 hard-codes (a GGUF it would run differently is refused).
LLAMACPP=(--set attn_chunk_size=8192 --set nope_layer_interval=4 --set attn_temperature_tuning=true
          --set attn_floor_scale=8192 --set attn_scale=0.1 --set qk_norm=true --set qk_norm_weight=false)

# $TMP/text.bin (the expected text record: tokens and the last target), $TMP/prompt.bin, and
# $TMP/want_loss, $TMP/want_greedy from an expected.safetensors.
reference_inputs() {
  python3 - "$1" "$TMP" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
def get(k):
    v = h[k]; s, e = v["data_offsets"]; raw = b[8 + n + s:8 + n + e]
    fmt = {"I64": "q", "F32": "f"}[v["dtype"]]
    return list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))
def llmc(path, tokens):
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *([20240520, 1, len(tokens)] + [0] * 253)))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))
tokens, targets = get("tokens"), get("targets")
assert tokens[1:] == targets[:-1], "targets are not the tokens shifted"
llmc(sys.argv[2] + "/text.bin", tokens + targets[-1:])
llmc(sys.argv[2] + "/prompt.bin", get("prompt"))
open(sys.argv[2] + "/want_loss", "w").write("%.9f" % get("loss")[0])
open(sys.argv[2] + "/want_greedy", "w").write(" ".join(map(str, get("greedy"))))
open(sys.argv[2] + "/seq", "w").write(str(len(tokens)))
PY
}

# The model $1 gives the reference's loss (1e-4 relative) and greedy tokens.
expect_reference() {
  run lm-eval-loss -m "$1" --seq "$(cat "$TMP/seq")" --json "$TMP/text.bin"
  assert_success
  echo "$output" | python3 -c 'import json,sys; r = json.load(sys.stdin); want = float(open(sys.argv[1]).read())
assert abs(r["loss"] - want) < 1e-4 * want, (r["loss"], want)' "$TMP/want_loss"
  run lm-generate -m "$1" -i "$TMP/prompt.bin" --input-format tokens -n "$(wc -w < "$TMP/want_greedy")" \
    --temperature 0 --ignore-eos --format ids
  assert_success
  assert_output "$(cat "$TMP/want_greedy")"
}

@test "Meta's released and state_dict Llama 4 checkpoints convert with one command and give PyTorch's loss and greedy tokens" {
  reference_inputs "$L4M/expected.safetensors"
  for form in released state_dict; do
    run lm-convert-checkpoint "$L4M/$form" "$TMP/$form.safetensors"
    assert_success
    expect_reference "$TMP/$form.safetensors"
  done
  # The released form says what it dropped: the vision encoder.
  run lm-convert-checkpoint "$L4M/released" "$TMP/again.safetensors"
  assert_output --partial "note: dropped the vision encoder (2 tensors vision_embeddings.*)"
}

@test "Hugging Face's Llama4ForCausalLM and Llama4ForConditionalGeneration convert and give PyTorch's loss and greedy tokens" {
  reference_inputs "$L4H/expected.safetensors"
  run lm-convert-checkpoint "$L4H/checkpoint" "$TMP/hf.safetensors"
  assert_success
  expect_reference "$TMP/hf.safetensors"
  run lm-convert-checkpoint "$L4H/conditional" "$TMP/cond.safetensors"
  assert_success
  assert_output --partial "note: dropped the vision encoder (2 tensors vision_model.*)"
  expect_reference "$TMP/cond.safetensors"
  same_tensors "$L4M/lmkit.safetensors" "$TMP/cond.safetensors"
  # And back out: --to hf-llama4 writes the MoE layers' fused experts and router as HF holds them.
  run lm-convert-checkpoint "$TMP/hf.safetensors" "$TMP/hf_out/" --to hf-llama4
  assert_success
  same_tensors "$L4H/checkpoint/model.safetensors" "$TMP/hf_out/model.safetensors"
  run lm-convert-checkpoint "$TMP/hf_out" "$TMP/hf_back.safetensors"
  assert_success
  same_tensors "$TMP/hf.safetensors" "$TMP/hf_back.safetensors"
}

@test "GGUF llama4: written as llama.cpp runs it, read back bit for bit, and the GGUF itself evaluates as the checkpoint does" {
  # The fixture with llama.cpp's hard-coded attention: on these 16 tokens chunks of 8192 and
  # temperature tuning from 8192 do nothing, but the NoPE layer and QK-norm do.
  run lm-convert-checkpoint "${LLAMACPP[@]}" "$L4H/lmkit.safetensors" "$TMP/ref.safetensors"
  assert_success
  run lm-convert-checkpoint --to gguf "$TMP/ref.safetensors" "$TMP/m.gguf"
  assert_success
  # An independent reader (tests/convert/gguf_reader.py): llama.cpp's keys and dims, the bytes.
  run python3 "$LMKIT_SOURCE_DIR/tests/convert/gguf_reader.py" check "$TMP/m.gguf" "$TMP/ref.safetensors"
  assert_success
  run python3 "$LMKIT_SOURCE_DIR/tests/convert/gguf_reader.py" dump "$TMP/m.gguf"
  assert_line --partial 'kv general.architecture 8 "llama4"'
  assert_line --partial "tensor blk.1.ffn_gate_exps.weight [24, 48, 4] F32"
  assert_line --partial "tensor blk.1.ffn_down_shexp.weight [48, 24] F32"
  assert_line --partial "tensor rope_freqs.weight [3] F32"
  run lm-convert-checkpoint "$TMP/m.gguf" "$TMP/back.safetensors"
  assert_success
  same_tensors "$TMP/ref.safetensors" "$TMP/back.safetensors"
  reference_inputs "$L4H/expected.safetensors"
  a=$(lm-eval-loss -m "$TMP/ref.safetensors" --seq 16 --json "$TMP/text.bin")
  b=$(lm-eval-loss -m "$TMP/m.gguf" --seq 16 --json "$TMP/text.bin")
  python3 -c 'import json,sys; a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["loss"] == b["loss"], (a["loss"], b["loss"])' "$a" "$b"
  [ "$(lm-generate -m "$TMP/m.gguf" -i "$TMP/prompt.bin" --input-format tokens -n 8 --temperature 0 --ignore-eos --format ids)" = \
    "$(lm-generate -m "$TMP/ref.safetensors" -i "$TMP/prompt.bin" --input-format tokens -n 8 --temperature 0 --ignore-eos --format ids)" ]
  # The fixture's own attention (chunks of 4): llama.cpp would run it differently, so no file.
  run lm-convert-checkpoint --to gguf "$L4H/lmkit.safetensors" "$TMP/x.gguf"
  assert_failure 1
  assert_output --partial "lm-convert-checkpoint: error: GGUF (llama4, as llama.cpp runs it) cannot hold attn_chunk_size 4 (llama.cpp's llama4 runs chunks of 8192)"
  [ ! -e "$TMP/x.gguf" ]
}

@test "GGUF Mixtral-style MoE (llama with expert_count): softmax top-2 routing round-trips and evaluates alike" {
  M="$FIX/l4_moe_softmax_top2/model.safetensors"
  run lm-convert-checkpoint --to gguf "$M" "$TMP/mx.gguf"
  assert_success
  run python3 "$LMKIT_SOURCE_DIR/tests/convert/gguf_reader.py" check "$TMP/mx.gguf" "$M"
  assert_success
  run python3 "$LMKIT_SOURCE_DIR/tests/convert/gguf_reader.py" dump "$TMP/mx.gguf"
  assert_line --partial 'kv general.architecture 8 "llama"'
  assert_line --partial "kv llama.expert_count 4 4"
  assert_line --partial "tensor blk.0.ffn_gate_exps.weight [32, 32, 4] F32"
  run lm-convert-checkpoint "$TMP/mx.gguf" "$TMP/mx.safetensors"
  assert_success
  same_tensors "$M" "$TMP/mx.safetensors"
  python3 -c 'import struct,sys; t = [(7 * i * i + 3 * i) % 96 for i in range(65)]
open(sys.argv[1], "wb").write(struct.pack("<256i", *([20240520, 1, len(t)] + [0] * 253)) + struct.pack("<%dH" % len(t), *t))' "$TMP/c.tok"
  a=$(lm-eval-loss -m "$M" --seq 16 --max-windows 2 --json "$TMP/c.tok")
  b=$(lm-eval-loss -m "$TMP/mx.gguf" --seq 16 --max-windows 2 --json "$TMP/c.tok")
  python3 -c 'import json,sys; a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["loss"] == b["loss"], (a["loss"], b["loss"])' "$a" "$b"
}
