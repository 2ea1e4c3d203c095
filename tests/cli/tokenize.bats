#!/usr/bin/env bats
# lm-tokenize: round trips, formats, the soma V1 contract as seen from the command
# line, headerless token files, terminal refusal, and every error path with its
# exit code and message.

load helpers

setup_file() {
  export SHAKESPEARE="$SHARED_DATA/tinyshakespeare/input.txt"
}

# A soma-V1 reference written from the data contract, independent of lmkit's code.
soma_reference() {
  python3 -c '
import json, sys
data, seq = open(sys.argv[1], "rb").read(), int(sys.argv[2])
PAD, EOS = 256, 257
n = -(-len(data) // seq)
for c in range(n):
    start = c * seq
    d = min(len(data) - start, seq)
    eos = c == n - 1 and d < seq
    tok = [data[start + i] if i < d else (EOS if eos and i == d else PAD) for i in range(seq)]
    pos = [start + i if i < d else start + d for i in range(seq)]
    print(json.dumps({"token_ids": tok, "targets": tok[1:] + [PAD], "pos_ids": pos}, separators=(",", ":")))
' "$@"
}

@test "stdin round trip on tinyshakespeare, nothing on stderr" {
  [ -f "$SHAKESPEARE" ] || skip "no $SHAKESPEARE"
  lm-tokenize < "$SHAKESPEARE" > "$TMP/s.tok" 2> "$TMP/err"
  [ ! -s "$TMP/err" ]
  lm-tokenize --decode < "$TMP/s.tok" | cmp - "$SHAKESPEARE"
  # 1115394 bytes in 1090 records of 1024 (soma V1's tokenize default): header + records + tokens (+ EOS) + padding
  n=$(stat -c %s "$SHAKESPEARE")
  records=$(( (n + 1023) / 1024 ))
  tokens=$(( n + 1 ))
  expected=$(( 64 + 16 * records + 2 * tokens ))
  expected=$(( expected + (8 - expected % 8) % 8 ))
  assert_equal "$(stat -c %s "$TMP/s.tok")" "$expected"
}

@test "several files and stdin decode to their concatenation" {
  printf 'first document\n' > "$TMP/a"
  : > "$TMP/empty"
  head -c 20000 /dev/urandom > "$TMP/bin"
  printf 'from stdin' | lm-tokenize "$TMP/a" "$TMP/empty" - "$TMP/bin" --max-seq-len 100 > "$TMP/x.tok"
  lm-tokenize --decode "$TMP/x.tok" > "$TMP/out"
  printf 'from stdin' | cat "$TMP/a" "$TMP/empty" - "$TMP/bin" | cmp - "$TMP/out"
  # decoding several streams writes them one after the other
  lm-tokenize "$TMP/a" > "$TMP/a.tok"
  lm-tokenize --decode "$TMP/a.tok" "$TMP/x.tok" "$TMP/a.tok" > "$TMP/out2"
  cat "$TMP/a" "$TMP/out" "$TMP/a" | cmp - "$TMP/out2"
}

@test "concatenated streams decode as one: cat a.tok b.tok | lm-tokenize --decode" {
  printf 'alpha' > "$TMP/a"
  printf 'beta' > "$TMP/b"
  lm-tokenize "$TMP/a" > "$TMP/a.tok"
  lm-tokenize "$TMP/b" --zstd > "$TMP/b.tok.zst"
  lm-tokenize --zstd "$TMP/a" > "$TMP/a.tok.zst"
  run bash -c "cat '$TMP/a.tok' '$TMP/a.tok' | lm-tokenize --decode"
  assert_success
  assert_output "alphaalpha"
  run bash -c "cat '$TMP/a.tok.zst' '$TMP/b.tok.zst' | lm-tokenize --decode"
  assert_success
  assert_output "alphabeta"
}

@test "--zstd writes real zstd that round-trips, at the default and a given level" {
  [ -f "$SHAKESPEARE" ] || skip "no $SHAKESPEARE"
  lm-tokenize "$SHAKESPEARE" > "$TMP/plain.tok"
  lm-tokenize --zstd "$SHAKESPEARE" -o "$TMP/s.tok.zst"
  lm-tokenize --zstd=19 "$SHAKESPEARE" -o "$TMP/s19.tok.zst"
  zstd -q -t "$TMP/s.tok.zst"
  zstd -q -t "$TMP/s19.tok.zst"
  zstd -q -dc "$TMP/s.tok.zst" | cmp - "$TMP/plain.tok"
  [ "$(stat -c %s "$TMP/s.tok.zst")" -lt "$(stat -c %s "$TMP/plain.tok")" ]
  lm-tokenize --decode "$TMP/s19.tok.zst" | cmp - "$SHAKESPEARE"
  # a stream compressed by the zstd program is read too
  zstd -q -c "$TMP/plain.tok" | lm-tokenize -d | cmp - "$SHAKESPEARE"
  run lm-tokenize --zstd=0 "$TMP/plain.tok"
  assert_failure 2
  assert_output --partial "lm-tokenize: error: --zstd"
}

@test "--format text: one record per line" {
  run bash -c "printf 'hello' | lm-tokenize --format text"
  assert_success
  assert_output "104 101 108 108 111 257"
  run bash -c "printf 'hello' | lm-tokenize --format text --max-seq-len 2"
  assert_success
  assert_output "$(printf '104 101\n108 108\n111 257')"
  # an exact multiple of --max-seq-len gets no EOS (soma), unless --eos always
  run bash -c "printf 'abcd' | lm-tokenize --format text --max-seq-len 2"
  assert_output "$(printf '97 98\n99 100')"
  run bash -c "printf 'abcd' | lm-tokenize --format text --max-seq-len 2 --eos always"
  assert_output "$(printf '97 98\n99 100\n257')"
}

@test "--no-eos and --eos never write bytes only" {
  run bash -c "printf 'hello' | lm-tokenize --format text --no-eos"
  assert_success
  assert_output "104 101 108 108 111"
  run bash -c "printf 'hello' | lm-tokenize --format text --eos never"
  assert_output "104 101 108 108 111"
  run bash -c "printf 'hello' | lm-tokenize --no-eos | lm-tokenize --decode"
  assert_output "hello"
  run lm-tokenize --no-eos --eos soma
  assert_failure 2
  assert_output --partial "excludes"
}

@test "--format jsonl: soma V1 sequences with token_ids, targets, pos_ids" {
  printf 'Hello, soma!\n' > "$TMP/doc"
  for seq in 1 4 5 13 14 64; do
    lm-tokenize --format jsonl --max-seq-len $seq "$TMP/doc" > "$TMP/got.jsonl"
    soma_reference "$TMP/doc" $seq > "$TMP/want.jsonl"
    cmp "$TMP/got.jsonl" "$TMP/want.jsonl" || fail "jsonl differs from the soma reference at --max-seq-len $seq"
  done
  run python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 1 and set(rows[0]) == {"token_ids", "targets", "pos_ids"}, rows
assert all(len(v) == 64 for v in rows[0].values())
print(rows[0]["token_ids"][12:15], rows[0]["pos_ids"][12:15])
' "$TMP/got.jsonl"
  assert_success
  assert_output "[10, 257, 256] [12, 13, 13]"
}

@test "positions restart at 0 for each document" {
  printf 'abcde' > "$TMP/a"
  printf 'xyz' > "$TMP/b"
  run bash -c "lm-tokenize --format jsonl --max-seq-len 4 '$TMP/a' '$TMP/b' | python3 -c '
import json, sys
for l in sys.stdin: print(json.loads(l)[\"pos_ids\"])'"
  assert_success
  assert_output "$(printf '[0, 1, 2, 3]\n[4, 5, 5, 5]\n[0, 1, 2, 3]')"
}

make_llmc() {  # make_llmc FILE MAGIC VERSION WIDTH TEXT [EXTRA_TOKEN]
  python3 -c '
import struct, sys
path, magic, version, width, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].encode()
toks = list(text) + [int(t) for t in sys.argv[6:]]
header = [magic, version, len(toks)] + [0] * 253
with open(path, "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%d%s" % (len(toks), "H" if width == 2 else "I"), *toks))
' "$@"
}

@test "--decode reads llm.c .bin token files (u16 and u32)" {
  make_llmc "$TMP/gpt2.bin" 20240520 1 2 "hello llm.c" 257
  make_llmc "$TMP/llama3.bin" 20240801 7 4 "and llama 3"
  run lm-tokenize --decode "$TMP/gpt2.bin" "$TMP/llama3.bin"
  assert_success
  assert_output "hello llm.cand llama 3"
  # exact size: one byte too many or too few is an error
  cp "$TMP/gpt2.bin" "$TMP/long.bin"
  printf 'x' >> "$TMP/long.bin"
  run lm-tokenize --decode "$TMP/long.bin"
  assert_failure 1
  assert_output --partial "lm-tokenize: error: '$TMP/long.bin': trailing bytes after the 12 tokens the llm.c header declares"
  head -c -1 "$TMP/gpt2.bin" > "$TMP/short.bin"
  run lm-tokenize --decode "$TMP/short.bin"
  assert_failure 1
  assert_output --partial "truncated llm.c token file: the header declares 12 tokens (a file of 1048 bytes)"
  make_llmc "$TMP/v2.bin" 20240520 2 2 "x"
  run lm-tokenize --decode "$TMP/v2.bin"
  assert_failure 1
  assert_output --partial "unsupported llm.c token file version 2 for magic 20240520"
}

@test "--decode --input-format u16|u32 reads headerless nanoGPT tokens; never guessed" {
  python3 -c 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<5H", *b"nano!"))' "$TMP/train.bin"
  run lm-tokenize --decode --input-format u16 "$TMP/train.bin"
  assert_success
  assert_output "nano!"
  run lm-tokenize --decode "$TMP/train.bin"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/train.bin': not a token stream (bad magic); headerless token files (nanoGPT .bin) need --input-format u16 or u32"
  run lm-tokenize --decode --input-format u32 "$TMP/train.bin"
  assert_failure 1
  assert_output --partial "the input ends inside a token"
  python3 -c 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<2I", 104, 9999))' "$TMP/big.bin"
  run lm-tokenize --decode --input-format u32 "$TMP/big.bin"
  assert_failure 1
  assert_output --partial "cannot decode record 0 at position 1: token 9999 is outside the byte-v1 vocabulary of 264 tokens"
}

@test "binary output to a terminal is refused without --force" {
  command -v script >/dev/null || skip "no script(1) to give the program a terminal"
  printf 'hello' > "$TMP/doc"
  run script -qec "lm-tokenize '$TMP/doc'" /dev/null
  assert_failure 2
  assert_output --partial "lm-tokenize: error: refusing to write binary data to a terminal"
  run script -qec "lm-tokenize --zstd --format text '$TMP/doc'" /dev/null
  assert_failure 2
  run script -qec "lm-tokenize --format text '$TMP/doc'" /dev/null
  assert_success
  assert_output --partial "104 101 108 108 111 257"
  run script -qec "lm-tokenize --force '$TMP/doc' | od -c | head -1" /dev/null
  assert_success
  assert_output --partial "L   M   K   T   O   K   S"
  # to a file is fine from a terminal
  run script -qec "lm-tokenize '$TMP/doc' -o '$TMP/doc.tok'" /dev/null
  assert_success
  [ -s "$TMP/doc.tok" ]
}

@test "error: missing input file, exit 1, nothing written" {
  printf 'hello' > "$TMP/doc"
  run lm-tokenize "$TMP/doc" "$TMP/missing" -o "$TMP/out.tok"
  assert_failure 1
  assert_output "lm-tokenize: error: cannot open '$TMP/missing': No such file or directory"
  [ ! -e "$TMP/out.tok" ]
  run lm-tokenize "$TMP"
  assert_failure 1
  assert_output "lm-tokenize: error: cannot read '$TMP': is a directory"
}

@test "error: decoding something that is not a token stream" {
  printf 'just some text' > "$TMP/text"
  run lm-tokenize --decode "$TMP/text"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/text': not a token stream (bad magic); headerless token files (nanoGPT .bin) need --input-format u16 or u32"
  run bash -c "printf '' | lm-tokenize --decode"
  assert_failure 1
  assert_output "lm-tokenize: error: '<stdin>': empty input, not a token stream"
}

@test "error: truncated and corrupt records name the stream and the byte offset" {
  printf 'hello world' > "$TMP/doc"
  lm-tokenize "$TMP/doc" > "$TMP/doc.tok"       # 64 header + 16 + 24 tokens
  head -c 100 "$TMP/doc.tok" > "$TMP/trunc.tok"
  run lm-tokenize --decode "$TMP/trunc.tok"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/trunc.tok': truncated record 0 (at byte 64): the input ends after 20 of its 24 token bytes"
  head -c 70 "$TMP/doc.tok" > "$TMP/trunc2.tok"
  run lm-tokenize --decode "$TMP/trunc2.tok"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/trunc2.tok': truncated record header at byte 64: got 6 of 16 bytes"
  { cat "$TMP/doc.tok"; printf 'garbage!'; } > "$TMP/tail.tok"
  run lm-tokenize --decode "$TMP/tail.tok"
  assert_failure 1
  assert_output --partial "bad record tag 0x67617262 at byte 104"
  # a reserved special inside a record
  python3 -c '
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[80:82] = (260).to_bytes(2, "little")
open(sys.argv[2], "wb").write(b)' "$TMP/doc.tok" "$TMP/special.tok"
  run lm-tokenize --decode "$TMP/special.tok"
  assert_failure 1
  assert_output "lm-tokenize: error: '$TMP/special.tok': cannot decode record 0 at position 0: token 260 is a reserved byte-v1 special and has no bytes"
}

@test "a failed run leaves no output file (and no temporary file) behind" {
  printf 'hello' > "$TMP/doc"
  lm-tokenize "$TMP/doc" > "$TMP/good.tok"
  head -c 90 "$TMP/good.tok" > "$TMP/bad.tok"
  mkdir "$TMP/out"
  run lm-tokenize --decode "$TMP/good.tok" "$TMP/bad.tok" -o "$TMP/out/text"
  assert_failure 1
  assert_output --partial "truncated record"
  [ -z "$(ls -A "$TMP/out")" ] || fail "left behind: $(ls -A "$TMP/out")"
  # an existing output file is left untouched
  printf 'keep me' > "$TMP/out/text"
  run lm-tokenize --decode "$TMP/good.tok" "$TMP/bad.tok" -o "$TMP/out/text"
  assert_failure 1
  assert_equal "$(cat "$TMP/out/text")" "keep me"
  assert_equal "$(ls -A "$TMP/out")" "text"
  # and a successful run replaces it atomically
  run lm-tokenize --decode "$TMP/good.tok" -o "$TMP/out/text"
  assert_success
  assert_equal "$(cat "$TMP/out/text")" "hello"
}

@test "error: bad option values are usage errors (exit 2)" {
  run lm-tokenize --max-seq-len 0
  assert_failure 2
  assert_output "lm-tokenize: error: --max-seq-len: Value 0 not in range 1 to 2147483647; run 'lm-tokenize --help' for usage"
  run lm-tokenize --max-seq-len 2147483648
  assert_failure 2
  run lm-tokenize --max-seq-len abc
  assert_failure 2
  assert_output --partial "lm-tokenize: error: --max-seq-len"
  run lm-tokenize --format xml
  assert_failure 2
  assert_output --partial "lm-tokenize: error: --format: xml not in {stream,text,jsonl}"
  run lm-tokenize --eos sometimes
  assert_failure 2
  run lm-tokenize --input-format u16
  assert_failure 2
  assert_output --partial "--input-format requires --decode"
  run lm-tokenize --decode --format text
  assert_failure 2
  run lm-tokenize --decode --input-format u8
  assert_failure 2
  run lm-tokenize --no-such-option
  assert_failure 2
}

@test "lm-tokenize big | head ends quietly" {
  [ -f "$SHAKESPEARE" ] || skip "no $SHAKESPEARE"
  run bash -c "lm-tokenize '$SHAKESPEARE' '$SHAKESPEARE' '$SHAKESPEARE' 2>'$TMP/err' | head -c 10 | wc -c"
  assert_success
  assert_output "10"
  [ ! -s "$TMP/err" ] || fail "stderr: $(cat "$TMP/err")"
  run bash -c "lm-tokenize '$SHAKESPEARE' | lm-tokenize --decode 2>'$TMP/err2' | head -c 5"
  assert_output "First"
  [ ! -s "$TMP/err2" ]
}

@test "writing to /dev/null leaves the device alone" {
  printf 'hello' > "$TMP/doc"
  run lm-tokenize "$TMP/doc" -o /dev/null
  assert_success
  [ -c /dev/null ] || fail "/dev/null is no longer a character device"
}

@test "--help goes to stdout with exit 0; --version; every option is documented" {
  run lm-tokenize --help
  assert_success
  assert_output --partial "Usage: lm-tokenize"
  lm-tokenize --help 2>/dev/null | grep -q -- "--max-seq-len"
  run lm-tokenize --version
  assert_success
  assert_output --regexp "^lm-tokenize \(lmkit\) [0-9]"
  page=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$LMKIT_SOURCE_DIR/man/lm-tokenize.1")
  for o in $(lm-tokenize --lmkit-options | cut -f1 | tr ' ' '\n' | grep -- '^-'); do
    grep -qF -- "$o" <<<"$page" || fail "option $o is missing from man/lm-tokenize.1"
  done
}
