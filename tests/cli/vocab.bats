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

# A Hugging Face directory: config.json, the weights and a tokenizer file beside them.
hf_dir() {  # $1 lmkit checkpoint, $2 tokenizer file, $3 directory
  rm -rf "$3"
  lm-convert-checkpoint -q --to hf "$1" "$3/"
  cp "$2" "$3/"
}

# What a completion depends on (the prompt's ids, the greedy ids and their log-probabilities),
# without the timings.
completion() { python3 -c 'import json,sys
for l in sys.stdin:
    j = json.loads(l)
    print(json.dumps({k: j[k] for k in ("prompt_tokens", "token_ids", "logprobs")}, sort_keys=True))'; }

@test "Hugging Face in: tokenizer.model or tokenizer.json beside config.json travels, and text prompts need no other file" {
  export LMKIT_TOKENIZER_CACHE=""  # nothing but the checkpoint
  lm-train "${MICRO[@]}" --set vocab_size=32000 --steps 0 --seed 1 -o "$TMP/m32k" -q
  for case in "$TMP/m/model.safetensors $FIX/tokenizer.model" "$TMP/m/model.safetensors $FIX/tokenizer.json" \
              "$TMP/m32k/model.safetensors $SHARED_DATA/llama2-tokenizer/tokenizer.model"; do
    set -- $case
    if [ ! -f "$2" ]; then echo "# no $2: that case is skipped" >&3; continue; fi
    hf_dir "$1" "$2" "$TMP/hf"
    run lm-convert-checkpoint "$TMP/hf" "$TMP/carried.safetensors"
    assert_success
    assert_output --partial "note: tokenizer: $TMP/hf/$(basename "$2")"
    # The text prompt's ids are lm-tokenize's (with the BOS lm-generate puts in front): the same
    # completion, log-probabilities included, as from those ids given as tokens.
    lm-generate -m "$TMP/carried.safetensors" -p "$TEXT" --temperature 0 -n 6 --json --logprobs 3 | completion > "$TMP/from_text"
    printf '%s' "$TEXT" | lm-tokenize -t "$2" --add-bos --no-eos > "$TMP/prompt.tok"
    lm-generate -m "$TMP/carried.safetensors" -i "$TMP/prompt.tok" --input-format tokens --temperature 0 -n 6 --json --logprobs 3 |
      completion > "$TMP/from_ids"
    run cat "$TMP/from_text"
    assert_output "$(cat "$TMP/from_ids")"
    want=$(( $(printf '%s' "$TEXT" | lm-tokenize -t "$2" --add-bos --no-eos --format text | wc -w) ))
    assert_output --partial "\"prompt_tokens\": $want,"
  done
}

@test "Hugging Face in: generation_config.json's eos ids end generation, and HF and GGUF out keep them" {
  export LMKIT_TOKENIZER_CACHE=""
  hf_dir "$TMP/m/model.safetensors" "$FIX/tokenizer.model" "$TMP/hf"
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/plain.safetensors"
  eos=$(lm-inspect-config "$TMP/plain.safetensors" | sed -n 's/.*special tokens *bos [-0-9]*, eos \([0-9]*\),.*/\1/p')
  [ -n "$eos" ]
  greedy=$(lm-generate -m "$TMP/plain.safetensors" -p "$TEXT" --temperature 0 -n 12 --format ids --ignore-eos)
  # The stop id: the first greedy token after the second that has not come before (and is not eos).
  read -r k stop < <(python3 -c 'import sys
ids, eos = sys.argv[1].split(), sys.argv[2]
for i in range(2, len(ids)):
    if ids[i] not in ids[:i] and ids[i] != eos:
        print(i, ids[i]); break' "$greedy" "$eos")
  [ -n "$stop" ]
  want=$(echo "$greedy" | cut -d' ' -f1-"$k")
  printf '{"eos_token_id": [%s, %s], "do_sample": true, "temperature": 0.6, "transformers_version": "4.45.0"}\n' \
    "$eos" "$stop" > "$TMP/hf/generation_config.json"
  run lm-convert-checkpoint "$TMP/hf" "$TMP/out.safetensors"
  assert_success
  assert_output --partial "generation_config.json: not carried (sampling is lm-generate's options): do_sample, temperature"
  run lm-inspect-config "$TMP/out.safetensors"
  assert_output --partial "eos $eos (also $stop)"
  # Greedy generation stops at the second id (not emitted), one at a time and batched.
  run lm-generate -m "$TMP/out.safetensors" -p "$TEXT" --temperature 0 -n 12 --format ids
  assert_output "$want"
  run lm-generate -m "$TMP/out.safetensors" -p "$TEXT" --temperature 0 -n 12 --json
  assert_output --partial '"stop_reason":"eos"'
  run lm-generate -m "$TMP/out.safetensors" -p "$TEXT" -p "$TEXT" --temperature 0 -n 12 --format ids --batch 2
  assert_output "$(printf '%s\n%s' "$want" "$want")"
  run lm-generate -m "$TMP/out.safetensors" -p "$TEXT" --temperature 0 -n 12 --format ids --ignore-eos
  assert_output "$greedy"
  # Hugging Face out: config.json's eos_token_id is the list, and generation_config.json's (what
  # transformers' generate() stops at) with the bos and pad ids; read back, the same config.
  lm-convert-checkpoint -q --to hf "$TMP/out.safetensors" "$TMP/hf2/"
  python3 -c 'import json,sys; j = json.load(open(sys.argv[1])); assert j["eos_token_id"] == [int(sys.argv[2]), int(sys.argv[3])], j' \
    "$TMP/hf2/config.json" "$eos" "$stop"
  python3 -c 'import json,sys
c, g = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert g["eos_token_id"] == [int(sys.argv[3]), int(sys.argv[4])], g
assert set(g) == {k for k in ("bos_token_id", "eos_token_id", "pad_token_id") if c.get(k) is not None}, (g, c)
assert all(g[k] == c[k] for k in g), (g, c)
assert open(sys.argv[2]).read() == json.dumps(g, indent=2, sort_keys=True) + "\n"  # as transformers writes it' \
    "$TMP/hf2/config.json" "$TMP/hf2/generation_config.json" "$eos" "$stop"
  cp "$FIX/tokenizer.model" "$TMP/hf2/"
  lm-convert-checkpoint -q "$TMP/hf2" "$TMP/back.safetensors"
  run lm-inspect-config "$TMP/back.safetensors"
  assert_output --partial "eos $eos (also $stop)"
  # GGUF out: the extra id is llama.cpp's eot_token_id; lm-generate on the file stops there too.
  lm-convert-checkpoint -q --to gguf "$TMP/out.safetensors" "$TMP/out.gguf"
  grep -a -q 'tokenizer\.ggml\.eot_token_id' "$TMP/out.gguf"
  run lm-generate -m "$TMP/out.gguf" -p "$TEXT" --temperature 0 -n 12 --format ids
  assert_output "$want"
  # A bos_token_id that differs from config.json's cannot be honoured: refused, nothing written.
  lm-train "${MICRO[@]}" --set vocab_size=384 --set bos_id=1 --steps 0 --seed 1 -o "$TMP/mbos" -q
  hf_dir "$TMP/mbos/model.safetensors" "$FIX/tokenizer.model" "$TMP/hf3"
  printf '{"bos_token_id": 5}\n' > "$TMP/hf3/generation_config.json"
  run lm-convert-checkpoint -q "$TMP/hf3" "$TMP/bad.safetensors"
  assert_failure 1
  assert_output --partial "generation_config.json': bos_token_id 5 differs from config.json's 1"
  [ ! -e "$TMP/bad.safetensors" ]
}

@test "generation_config.json beside a --config config.json is honoured; --generation-config FILE|none; a malformed one is one line" {
  hf_dir "$TMP/m/model.safetensors" "$FIX/tokenizer.model" "$TMP/hf"
  eos=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eos_token_id"])' "$TMP/hf/config.json")
  [ -n "$eos" ]
  mkdir "$TMP/cfg"
  cp "$TMP/hf/config.json" "$TMP/cfg/"
  printf '{"eos_token_id": [%s, 7], "temperature": 0.6}\n' "$eos" > "$TMP/cfg/generation_config.json"
  printf '{"eos_token_id": [%s, 9]}\n' "$eos" > "$TMP/other.json"
  eos_of() { lm-inspect-config "$1" | grep -o 'eos [0-9]*[^,]*'; }
  # The file beside --config's config.json, given by a path or from its own directory.
  run lm-convert-checkpoint --config "$TMP/cfg/config.json" "$TMP/m/model.safetensors" "$TMP/a.safetensors"
  assert_success
  assert_output --partial "note: $TMP/cfg/generation_config.json: not carried (sampling is lm-generate's options): temperature"
  assert_equal "$(eos_of "$TMP/a.safetensors")" "eos $eos (also 7)"
  (cd "$TMP/cfg" && lm-convert-checkpoint -q --config config.json "$TMP/m/model.safetensors" "$TMP/b.safetensors")
  assert_equal "$(eos_of "$TMP/b.safetensors")" "eos $eos (also 7)"
  # --generation-config none: not read; FILE: that one instead.
  lm-convert-checkpoint -q --config "$TMP/cfg/config.json" --generation-config none "$TMP/m/model.safetensors" "$TMP/c.safetensors"
  assert_equal "$(eos_of "$TMP/c.safetensors")" "eos $eos"
  lm-convert-checkpoint -q --config "$TMP/cfg/config.json" --generation-config "$TMP/other.json" "$TMP/m/model.safetensors" "$TMP/d.safetensors"
  assert_equal "$(eos_of "$TMP/d.safetensors")" "eos $eos (also 9)"
  # The same for a Hugging Face directory as the input, and for a config from the weights.
  cp "$TMP/cfg/generation_config.json" "$TMP/hf/"
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/e.safetensors"
  assert_equal "$(eos_of "$TMP/e.safetensors")" "eos $eos (also 7)"
  lm-convert-checkpoint -q --generation-config none "$TMP/hf" "$TMP/f.safetensors"
  assert_equal "$(eos_of "$TMP/f.safetensors")" "eos $eos"
  lm-convert-checkpoint -q --generation-config "$TMP/other.json" "$TMP/m/model.safetensors" "$TMP/g.safetensors"
  assert_equal "$(eos_of "$TMP/g.safetensors")" "eos $eos (also 9)"
  # A config file of another convention has no generation_config.json beside it.
  lm-inspect-config --config "$TMP/m/model.safetensors" > "$TMP/cfg/lmkit.json"
  lm-convert-checkpoint -q --config "$TMP/cfg/lmkit.json" "$TMP/m/model.safetensors" "$TMP/h.safetensors"
  assert_equal "$(eos_of "$TMP/h.safetensors")" "eos $eos"
  # A malformed or missing file: one line naming it, exit 1, nothing written.
  printf '{"eos_token_id": [%s, 7' "$eos" > "$TMP/cfg/generation_config.json"
  for args in "--config $TMP/cfg/config.json $TMP/m/model.safetensors" "--generation-config $TMP/cfg/generation_config.json $TMP/hf"; do
    # shellcheck disable=SC2086
    run lm-convert-checkpoint $args "$TMP/bad.safetensors"
    assert_failure 1
    [ "${#lines[@]}" -eq 1 ]
    assert_output --regexp "^lm-convert-checkpoint: error: '$TMP/cfg/generation_config.json': "
    [ ! -e "$TMP/bad.safetensors" ]
  done
  printf '{"eos_token_id": "</s>"}\n' > "$TMP/hf/generation_config.json"
  run lm-convert-checkpoint "$TMP/hf" "$TMP/bad.safetensors"
  assert_failure 1
  assert_output "lm-convert-checkpoint: error: '$TMP/hf/generation_config.json': 'eos_token_id': expected a token id or a list of them, got \"</s>\""
  run lm-convert-checkpoint --generation-config "$TMP/nothing.json" "$TMP/m/model.safetensors" "$TMP/bad.safetensors"
  assert_failure 1
  [ "${#lines[@]}" -eq 1 ]
  assert_output --partial "$TMP/nothing.json"
  [ ! -e "$TMP/bad.safetensors" ]
  # raw -> raw keeps the input's metadata as it is: a file it would not honour is refused.
  run lm-convert-checkpoint --from raw --to raw --generation-config "$TMP/other.json" "$TMP/m/model.safetensors" "$TMP/bad.safetensors"
  assert_failure 2
  [ "${#lines[@]}" -eq 1 ]
  assert_output --regexp "^lm-convert-checkpoint: error: --generation-config: a conversion from raw to raw keeps the input's config as it is"
  [ ! -e "$TMP/bad.safetensors" ]
}

@test "quantized outputs keep the vocabulary: GGUF to a q8_0 lmkit checkpoint, an lmkit checkpoint to q4_K GGUF" {
  export LMKIT_TOKENIZER_CACHE=""
  # q4_K needs rows of 256
  lm-train tiny --set dim=256 --set n_heads=2 --set n_layers=1 --set hidden_dim=256 --set vocab_size=384 --steps 0 --seed 1 \
    -o "$TMP/m256" -q
  lm-convert-checkpoint -q --to gguf --tokenizer "$FIX/tokenizer.model" "$TMP/m256/model.safetensors" "$TMP/spm.gguf"
  printf '%s' "$TEXT" | lm-tokenize -t "$FIX/tokenizer.model" --format text > "$TMP/want"
  for cast in q8_0 q4_K; do
    # GGUF with a vocabulary -> a quantized lmkit checkpoint: still generates from text.
    run lm-convert-checkpoint -q --cast "$cast" "$TMP/spm.gguf" "$TMP/$cast.safetensors"
    assert_success
    run lm-generate -m "$TMP/$cast.safetensors" -p "$TEXT" --temperature 0 -n 4 --format ids
    assert_success
    [ "$(echo "$output" | wc -w)" -eq 4 ]
    lm-generate -m "$TMP/$cast.safetensors" -p "$TEXT" --temperature 0 -n 4 --json --logprobs 2 | completion > "$TMP/from_text"
    printf '%s' "$TEXT" | lm-tokenize -t "$FIX/tokenizer.model" --add-bos --no-eos > "$TMP/prompt.tok"
    lm-generate -m "$TMP/$cast.safetensors" -i "$TMP/prompt.tok" --input-format tokens --temperature 0 -n 4 --json --logprobs 2 |
      completion > "$TMP/from_ids"
    cmp "$TMP/from_text" "$TMP/from_ids"
    # an lmkit checkpoint carrying it -> quantized GGUF: the vocabulary is there.
    lm-convert-checkpoint -q "$TMP/spm.gguf" "$TMP/carried.safetensors"
    run lm-convert-checkpoint -q --cast "$cast" --to gguf "$TMP/carried.safetensors" "$TMP/$cast.gguf"
    assert_success
    run keys "$TMP/$cast.gguf"
    assert_output --partial "tokenizer.ggml.model tokenizer.ggml.bos_token_id tokenizer.ggml.eos_token_id tokenizer.ggml.tokens tokenizer.ggml.scores"
    printf '%s' "$TEXT" | lm-tokenize -t "$TMP/$cast.gguf" --format text > "$TMP/got"
    cmp "$TMP/got" "$TMP/want"
    run lm-generate -m "$TMP/$cast.gguf" -p "$TEXT" --temperature 0 -n 4 --format ids
    assert_success
  done
}
