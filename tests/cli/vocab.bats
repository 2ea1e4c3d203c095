#!/usr/bin/env bats
# Vocabularies travel with the weights (docs/tokenizers.md, "GGUF"): lm-convert-checkpoint
# --to gguf writes the tokenizer's vocabulary, lmkit reads it back (lm-tokenize -t FILE.gguf,
# lm-generate -m FILE.gguf -p TEXT with no other file), and an lmkit checkpoint made from the
# GGUF file carries it on (lmkit.vocab). The tokenizers are the small ones of
# tests/fixtures/gguf_vocab (make_fixture.sh), whose GGUF ids llama.cpp's are checked in the
# unit tests.
load helpers

FIX="$LMKIT_SOURCE_DIR/tests/fixtures/gguf_vocab"
TEXT="hello world, the quick brown fox. naïve café 12345"

setup() {
  make_tmp
  export LMKIT_TOKENIZER_CACHE="$TMP/store"
  lm-train "${MICRO[@]}" --set vocab_size=384 --steps 0 --seed 1 -o "$TMP/m" -q
}

keys() {  # the vocabulary keys a GGUF file holds, in order
  grep -a -o 'tokenizer\.ggml\.[a-z_]*' "$1" | tr '\n' ' '
}

@test "GGUF out: SentencePiece vocabulary, read back with the same ids" {
  run lm-convert-checkpoint -q --to gguf --tokenizer "$FIX/tokenizer.model" "$TMP/m/model.safetensors" "$TMP/spm.gguf"
  assert_success
  run keys "$TMP/spm.gguf"
  assert_output "tokenizer.ggml.model tokenizer.ggml.bos_token_id tokenizer.ggml.eos_token_id tokenizer.ggml.tokens tokenizer.ggml.scores tokenizer.ggml.token_type tokenizer.ggml.add_space_prefix tokenizer.ggml.remove_extra_whitespaces tokenizer.ggml.unknown_token_id tokenizer.ggml.add_bos_token tokenizer.ggml.add_eos_token "
  grep -a -q '\[PAD383\]' "$TMP/spm.gguf"  # padded to the model's 384 tokens
  printf '%s' "$TEXT" | lm-tokenize -t "$FIX/tokenizer.model" --format text > "$TMP/want"
  printf '%s' "$TEXT" | lm-tokenize -t "$TMP/spm.gguf" --format text > "$TMP/got"
  run cat "$TMP/got"
  assert_output "$(cat "$TMP/want")"
  [ -s "$TMP/got" ]
}

@test "GGUF out: tokenizer.json BPE vocabulary with merges and llama.cpp's pre-tokenizer name" {
  run lm-convert-checkpoint -q --to gguf --tokenizer "$FIX/tokenizer.json" "$TMP/m/model.safetensors" "$TMP/bpe.gguf"
  assert_success
  run keys "$TMP/bpe.gguf"
  assert_output --partial "tokenizer.ggml.model tokenizer.ggml.bos_token_id tokenizer.ggml.eos_token_id tokenizer.ggml.pre tokenizer.ggml.tokens tokenizer.ggml.token_type tokenizer.ggml.merges"
  grep -a -q 'llama-bpe' "$TMP/bpe.gguf"
  printf '%s' "$TEXT" | lm-tokenize -t "$FIX/tokenizer.json" --format text > "$TMP/want"
  printf '%s' "$TEXT" | lm-tokenize -t "$TMP/bpe.gguf" --format text > "$TMP/got"
  run cat "$TMP/got"
  assert_output "$(cat "$TMP/want")"
}

@test "GGUF in: lm-generate reads text with the file's vocabulary alone, and an lmkit checkpoint carries it" {
  lm-convert-checkpoint -q --to gguf --tokenizer "$FIX/tokenizer.model" "$TMP/m/model.safetensors" "$TMP/spm.gguf"
  export LMKIT_TOKENIZER_CACHE=""  # nothing but the file
  run lm-generate -m "$TMP/spm.gguf" -p "$TEXT" --temperature 0 -n 8 --format ids
  assert_success
  [ "$(echo "$output" | wc -w)" -eq 8 ]
  gguf_ids=$output
  run lm-generate -m "$TMP/spm.gguf" -p "$TEXT" --temperature 0 -n 8
  assert_success
  # to an lmkit checkpoint and on: the same completion, with no tokenizer file
  run lm-convert-checkpoint -q "$TMP/spm.gguf" "$TMP/back.safetensors"
  assert_success
  run lm-generate -m "$TMP/back.safetensors" -p "$TEXT" --temperature 0 -n 8 --format ids
  assert_success
  assert_output "$gguf_ids"
  # and back to GGUF from there, without --tokenizer
  run lm-convert-checkpoint -q --to gguf "$TMP/back.safetensors" "$TMP/again.gguf"
  assert_success
  run lm-generate -m "$TMP/again.gguf" -p "$TEXT" --temperature 0 -n 8 --format ids
  assert_output "$gguf_ids"
}

@test "--tokenizer on lm-generate: for a checkpoint without one; a different tokenizer is refused" {
  export LMKIT_TOKENIZER_CACHE=""
  lm-convert-checkpoint -q --to gguf --tokenizer "$FIX/tokenizer.model" "$TMP/m/model.safetensors" "$TMP/spm.gguf"
  run lm-generate -m "$TMP/m/model.safetensors" -p "$TEXT" -n 4
  assert_failure
  run lm-generate -m "$TMP/m/model.safetensors" --tokenizer "$FIX/tokenizer.model" -p "$TEXT" --temperature 0 -n 8 --format ids
  assert_success
  want=$output
  run lm-generate -m "$TMP/spm.gguf" -p "$TEXT" --temperature 0 -n 8 --format ids
  assert_output "$want"
  run lm-generate -m "$TMP/spm.gguf" --tokenizer "$FIX/tokenizer.json" -p "$TEXT" -n 4
  assert_failure 1
  assert_output --partial "tokenizer mismatch"
}

@test "GGUF out refuses what llama.cpp cannot read, and names a tokenizer it cannot find" {
  # a checkpoint naming a SentencePiece tokenizer that is nowhere at hand
  lm-convert-checkpoint -q --to lmkit --tokenizer "$FIX/tokenizer.model" "$TMP/m/model.safetensors" "$TMP/named.safetensors"
  run lm-convert-checkpoint -q --to gguf "$TMP/named.safetensors" "$TMP/x.gguf"
  assert_success  # it carries the vocabulary (lmkit.vocab)
  # a tokenizer larger than the model
  lm-train "${MICRO[@]}" --set vocab_size=260 --steps 0 --seed 1 -o "$TMP/small" -q
  run lm-convert-checkpoint -q --to gguf --tokenizer "$FIX/tokenizer.json" "$TMP/small/model.safetensors" "$TMP/y.gguf"
  assert_failure 1
  assert_output --partial "vocab mismatch"
  [ ! -e "$TMP/y.gguf" ]
}
