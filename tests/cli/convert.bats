#!/usr/bin/env bats
# lm-convert-checkpoint: every layout to every other with bit-exact round trips, the outputs
# PyTorch checked (tests/fixtures/check_convert.py), GGUF through an independent reader,
# llama2.c v0 byte layout, sharded and piped I/O, each generic rule, and every error path
# with its exit code and message.

load helpers
bats_require_minimum_version 1.5.0

setup_file() {
  export FX="$LMKIT_SOURCE_DIR/tests/fixtures"
  export EXP="$LMKIT_SOURCE_DIR/tests/convert/expected"
  export CONV="$LMKIT_SOURCE_DIR/tests/convert"
  # The fixtures as lmkit writes them (the fixture files come from Python's writer).
  export REF="$BATS_FILE_TMPDIR"
  for fx in llama2 mobilellm soma_v1 gelu_tanh_gqa_tied xlstm; do
    lm-convert-checkpoint -q "$FX/$fx/model.safetensors" "$REF/$fx.safetensors"
  done
}

st() { python3 "$CONV/st.py" "$@"; }

# Runs python with the stdlib safetensors helpers importable as `st`.
py() { python3 -c "import sys; sys.path.insert(0, '$CONV'); import st; $1" "${@:2}"; }

layouts_for() {
  case $1 in
    llama2|mobilellm) echo lmkit meta hf flax gguf llama2c ;;
    soma_v1|gelu_tanh_gqa_tied) echo lmkit meta hf flax soma soma-torch ;;
    xlstm) echo lmkit meta hf flax ;;
  esac
}

@test "every layout round-trips bit-exactly: lmkit -> X -> lmkit and X -> lmkit -> X" {
  for fx in llama2 mobilellm soma_v1 gelu_tanh_gqa_tied xlstm; do
    for to in $(layouts_for $fx); do
      lm-convert-checkpoint --to "$to" "$REF/$fx.safetensors" "$TMP/x"
      lm-convert-checkpoint "$TMP/x" "$TMP/back.safetensors"
      if [ "$to" = llama2c ]; then  # the v0 header cannot hold the whole config: compare tensors
        st same "$TMP/back.safetensors" "$REF/$fx.safetensors" --ignore-metadata || fail "$fx via $to"
      else
        cmp "$TMP/back.safetensors" "$REF/$fx.safetensors" || fail "$fx via $to"
      fi
      lm-convert-checkpoint --to "$to" "$TMP/back.safetensors" "$TMP/again"
      cmp "$TMP/x" "$TMP/again" || fail "$fx: $to -> lmkit -> $to"
    done
  done
}

@test "every layout converts to every other" {
  for fx in llama2 gelu_tanh_gqa_tied; do
    for a in $(layouts_for $fx); do
      lm-convert-checkpoint -q --to "$a" "$REF/$fx.safetensors" "$TMP/$a.in"
    done
    for a in $(layouts_for $fx); do
      for b in $(layouts_for $fx); do
        lm-convert-checkpoint -q --from "$a" --to "$b" "$TMP/$a.in" "$TMP/ab" || fail "$fx: $a -> $b"
        lm-convert-checkpoint -q --from "$b" "$TMP/ab" "$TMP/$fx.$a.$b.lmkit"
      done
    done
  done
  # one interpreter compares them all with the reference
  py 'import glob, os, sys
bad = []
for f in sorted(glob.glob(sys.argv[1] + "/*.lmkit")):
    fx = os.path.basename(f).split(".")[0]
    if st.read(f)[0] != st.read(sys.argv[2] + "/" + fx + ".safetensors")[0]:
        bad.append(os.path.basename(f))
assert len(glob.glob(sys.argv[1] + "/*.lmkit")) == 72, "expected 72 conversions"
assert not bad, "changed tensors: " + ", ".join(bad)' "$TMP" "$REF"
}

@test "HF, Flax and soma outputs equal the ones PyTorch ran to the fixture logits" {
  for f in "$EXP"/*.safetensors; do
    name=$(basename "$f" .safetensors)
    fx=${name%%.*}
    layout=${name#*.}
    [ "$layout" = lmkit ] && continue
    lm-convert-checkpoint --to "$layout" "$EXP/$fx.lmkit.safetensors" "$TMP/out"
    st same "$TMP/out" "$f" || fail "$fx -> $layout differs from the checked output"
    lm-convert-checkpoint --from "$layout" "$f" "$TMP/back"
    st same "$TMP/back" "$EXP/$fx.lmkit.safetensors" --ignore-metadata || fail "$layout -> lmkit"
  done
}

@test "GGUF output parses with an independent reader: F32, F16, BF16, Q8_0, tied and GQA" {
  for fx in llama2 mobilellm; do
    for cast in "" f16 bf16 q8_0; do
      lm-convert-checkpoint --to gguf ${cast:+--cast $cast} "$REF/$fx.safetensors" "$TMP/m.gguf"
      run python3 "$CONV/gguf_reader.py" check "$TMP/m.gguf" "$REF/$fx.safetensors"
      assert_success
      assert_output --partial "ok:"
    done
  done
  run python3 "$CONV/gguf_reader.py" dump "$TMP/m.gguf"
  assert_line --partial 'kv general.architecture 8 "llama"'
  assert_line --partial "kv general.file_type 4 7"
  assert_line --partial "tensor blk.0.attn_q.weight [32, 32] Q8_0"
  assert_line --partial "tensor blk.0.attn_norm.weight [32] F32"
  # reading Q8_0 back dequantizes
  run lm-convert-checkpoint --list "$TMP/m.gguf"
  assert_line --partial "GGUF v3, layout gguf"
  assert_line --regexp '^blk\.0\.attn_q\.weight +F32 \(from Q8_0\)  \[32, 32\]$'
}

@test "llama2.c v0 files follow formats.md byte for byte (shared and untied classifier)" {
  for fx in llama2 mobilellm; do
    lm-convert-checkpoint --to llama2c "$REF/$fx.safetensors" "$TMP/m.bin"
    run python3 "$CONV/check_llama2c.py" "$TMP/m.bin" "$REF/$fx.safetensors"
    assert_success
  done
  assert_output --partial "vocab 128 (shared)"
  run lm-convert-checkpoint --list "$TMP/m.bin"
  assert_line --partial "llama2.c v0, layout llama2c, 56 tensors"
}

@test "sharded safetensors: --shard-size writes shards, index and config.json; the directory reads back" {
  run lm-convert-checkpoint --to hf --shard-size 40KB "$REF/llama2.safetensors" "$TMP/hf"
  assert_success
  ls "$TMP/hf" > "$TMP/ls"
  grep -q '^model-00001-of-0000[0-9].safetensors$' "$TMP/ls"
  grep -q '^model.safetensors.index.json$' "$TMP/ls"
  grep -q '^config.json$' "$TMP/ls"
  py 'import json,os,sys
d=sys.argv[1]; idx=json.load(open(d+"/model.safetensors.index.json"))
files=sorted(set(idx["weight_map"].values())); assert len(files) > 2, files
total=0
for f in files:
    t,_=st.read(d+"/"+f); total+=sum(len(v[2]) for v in t.values())
    assert all(idx["weight_map"][k]==f for k in t)
    assert os.path.getsize(d+"/"+f) < 40000 + 4096 or len(t) == 1
assert total == idx["metadata"]["total_size"], (total, idx["metadata"])
c=json.load(open(d+"/config.json")); assert c["hidden_size"]==32 and c["num_attention_heads"]==4 and c["model_type"]=="llama"' "$TMP/hf"
  lm-convert-checkpoint "$TMP/hf" "$TMP/back.safetensors"  # a directory: its index
  cmp "$TMP/back.safetensors" "$REF/llama2.safetensors"
  lm-convert-checkpoint "$TMP/hf/model.safetensors.index.json" "$TMP/back2.safetensors"
  cmp "$TMP/back2.safetensors" "$REF/llama2.safetensors"
  # a directory output without --shard-size: one file plus the config
  mkdir "$TMP/meta"
  lm-convert-checkpoint --to meta "$REF/llama2.safetensors" "$TMP/meta"
  [ -f "$TMP/meta/consolidated.safetensors" ] && [ -f "$TMP/meta/params.json" ]
  py 'import json,sys; p=json.load(open(sys.argv[1])); assert p["dim"]==32 and p["multiple_of"]==32, p' "$TMP/meta/params.json"
}

@test "a checkpoint written into a directory replaces the one there: no old index, shard or weight file survives to win" {
  # A sharded Hugging Face directory with a tokenizer beside it.
  lm-convert-checkpoint -q --to hf --shard-size 40KB "$REF/llama2.safetensors" "$TMP/hf"
  echo '{}' > "$TMP/hf/tokenizer.json"
  # One file into it: the old index and its shards go (they would win on read-back), the tokenizer stays.
  lm-convert-checkpoint -q --to hf "$REF/mobilellm.safetensors" "$TMP/hf"
  assert_equal "$(cd "$TMP/hf" && ls -A | tr '\n' ' ')" "config.json generation_config.json model.safetensors tokenizer.json "
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/back.safetensors"
  cmp "$TMP/back.safetensors" "$REF/mobilellm.safetensors"
  # Sharded again: model.safetensors goes too (transformers prefers it to an index).
  lm-convert-checkpoint -q --to hf --shard-size 40KB "$REF/llama2.safetensors" "$TMP/hf/"
  [ ! -e "$TMP/hf/model.safetensors" ]
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/back.safetensors"
  cmp "$TMP/back.safetensors" "$REF/llama2.safetensors"
  # Meta's layout: the index and shards go; config.json and generation_config.json, another layout's files, stay.
  lm-convert-checkpoint -q --to meta "$REF/mobilellm.safetensors" "$TMP/hf"
  assert_equal "$(cd "$TMP/hf" && ls -A | tr '\n' ' ')" "config.json consolidated.safetensors generation_config.json params.json tokenizer.json "
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/back.safetensors"
  cmp "$TMP/back.safetensors" "$REF/mobilellm.safetensors"
  # lmkit's layout: consolidated.safetensors goes.
  lm-convert-checkpoint -q "$REF/llama2.safetensors" "$TMP/hf"
  assert_equal "$(cd "$TMP/hf" && ls -A | tr '\n' ' ')" "config.json generation_config.json model.safetensors params.json tokenizer.json "
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/back.safetensors"
  cmp "$TMP/back.safetensors" "$REF/llama2.safetensors"
  # Into a new directory: made whole, with the usual permissions.
  lm-convert-checkpoint -q --shard-size 40KB "$REF/llama2.safetensors" "$TMP/new/"
  assert_equal "$(stat -c %a "$TMP/new")" "$(mkdir "$TMP/probe" && stat -c %a "$TMP/probe")"
  assert_equal "$(ls -A "$TMP" | grep -c lmkit)" 0
}

@test "a config field a format has no key for is refused by its writer, nothing written; params.json and llama4_text carry Llama 4's attention" {
  local S=(--set nope_layer_interval=2 --set attn_chunk_size=8)
  run -1 lm-convert-checkpoint -q "${S[@]}" --to gguf "$REF/llama2.safetensors" "$TMP/m.gguf"
  # a Llama 4 config goes to llama.cpp's llama4, which would run it differently (docs/llama4.md §12)
  assert_output --partial "error: GGUF (llama4, as llama.cpp runs it) cannot hold a model without experts"
  assert_output --partial "nope_layer_interval 2 (llama.cpp's llama4 runs a NoPE layer every 4th)"
  run -1 lm-convert-checkpoint -q "${S[@]}" --to llama2c "$REF/llama2.safetensors" "$TMP/m.bin"
  assert_output --partial "error: a llama2.c v0 checkpoint cannot hold NoPE layers (nope_layer_interval)"
  assert_equal "$(ls -A "$TMP")" ""
  # Hugging Face carries them as a Llama 4 text model (llama4_text, q/k not permuted).
  lm-convert-checkpoint -q "${S[@]}" --to hf "$REF/llama2.safetensors" "$TMP/hf/"
  py 'import json,sys; c=json.load(open(sys.argv[1])); assert c["model_type"] == "llama4_text" and c["attention_chunk_size"] == 8 and c["no_rope_layers"][1] == 0, c' \
    "$TMP/hf/config.json"
  lm-convert-checkpoint -q "$TMP/hf" "$TMP/hfback.safetensors"
  lm-convert-checkpoint -q "${S[@]}" --to meta "$REF/llama2.safetensors" "$TMP/meta/"
  lm-convert-checkpoint -q "${S[@]}" "$REF/llama2.safetensors" "$TMP/want.safetensors"
  lm-convert-checkpoint -q "$TMP/meta" "$TMP/back.safetensors"
  st same "$TMP/back.safetensors" "$TMP/want.safetensors" --ignore-metadata
  st same "$TMP/hfback.safetensors" "$TMP/want.safetensors" --ignore-metadata
  py 'import json,sys; c=json.loads(sys.argv[1]); assert (c["nope_layer_interval"], c["attn_chunk_size"]) == (2, 8), c' \
    "$(st meta "$TMP/back.safetensors" lmkit.config)"
}

@test "a GGUF or llama2.c file given where an lmkit checkpoint is needed says what it is and how to convert it" {
  lm-convert-checkpoint -q --to gguf "$REF/llama2.safetensors" "$TMP/m.gguf"
  lm-convert-checkpoint -q --to llama2c "$REF/llama2.safetensors" "$TMP/m.bin"
  printf 'hello' | lm-tokenize - -o "$TMP/t.tok"
  for f in m.gguf m.bin; do
    local kind=GGUF
    [ $f = m.bin ] && kind=llama2.c
    local want="error: '$TMP/$f': a $kind checkpoint, not an lmkit one (safetensors): convert it with 'lm-convert-checkpoint $TMP/$f $TMP/m.safetensors'"
    run -1 lm-inspect-config "$TMP/$f"
    assert_output --partial "$want"
    if [ $f = m.bin ]; then  # GGUF files are read directly for inference (tests/cli/quant.bats)
      run -1 lm-eval-loss -m "$TMP/$f" "$TMP/t.tok"
      assert_output --partial "$want"
      run -1 lm-generate -m "$TMP/$f" -p hi
      assert_output --partial "$want"
    fi
    run -1 lm-train "$TMP/$f" "$TMP/t.tok" --steps 1 -o "$TMP/run"
    assert_output --partial "$want"
  done
  run -1 lm-inspect-config - < "$TMP/m.gguf"
  assert_output --partial "error: '<stdin>': a GGUF checkpoint, not an lmkit one (safetensors): convert it with 'lm-convert-checkpoint - out.safetensors'"
  # and the command it gives works
  lm-convert-checkpoint -q "$TMP/m.gguf" "$TMP/m.safetensors"
  lm-inspect-config "$TMP/m.safetensors" > /dev/null
}

@test "the config comes from config.json or params.json beside the input, else --set" {
  # Files without lmkit.config metadata, as other tools write them.
  lm-convert-checkpoint -q --to hf "$REF/llama2.safetensors" "$TMP/hf/"
  py 'import sys; t,m=st.read(sys.argv[1]); st.write(sys.argv[2], t, {"format": "pt"})' "$TMP/hf/model.safetensors" "$TMP/bare.safetensors"
  mkdir "$TMP/hfdir" && cp "$TMP/bare.safetensors" "$TMP/hfdir/model.safetensors" && cp "$TMP/hf/config.json" "$TMP/hfdir/"
  lm-convert-checkpoint --dry-run "$TMP/hfdir" | head -1 | grep -q "config: $TMP/hfdir/config.json"
  lm-convert-checkpoint "$TMP/hfdir" "$TMP/a.safetensors"
  st same "$TMP/a.safetensors" "$REF/llama2.safetensors" --ignore-metadata
  # alone, the shapes do not tell the head count
  run -1 lm-convert-checkpoint "$TMP/bare.safetensors" "$TMP/b.safetensors"
  assert_output --partial "cannot infer n_heads"
  assert_output --partial "; give it: --set n_heads=N"
  lm-convert-checkpoint --set n_heads=4 "$TMP/bare.safetensors" "$TMP/b.safetensors"
  st same "$TMP/b.safetensors" "$REF/llama2.safetensors" --ignore-metadata
  # a wrong head count permutes q/k wrongly: the tensors differ
  lm-convert-checkpoint --set n_heads=2 "$TMP/bare.safetensors" "$TMP/c.safetensors"
  run ! st same "$TMP/c.safetensors" "$REF/llama2.safetensors" --ignore-metadata
  # Meta: params.json with vocab_size -1 (the embedding tells)
  mkdir "$TMP/metadir"
  lm-convert-checkpoint -q --to meta "$REF/llama2.safetensors" "$TMP/metadir/"
  py 'import json,sys; t,m=st.read(sys.argv[1]+"/consolidated.safetensors"); st.write(sys.argv[1]+"/consolidated.safetensors", t)
p=json.load(open(sys.argv[1]+"/params.json")); p["vocab_size"]=-1; json.dump(p, open(sys.argv[1]+"/params.json","w"))' "$TMP/metadir"
  lm-convert-checkpoint --from meta "$TMP/metadir" "$TMP/d.safetensors"
  st same "$TMP/d.safetensors" "$REF/llama2.safetensors" --ignore-metadata
  # --config takes an HF config.json too
  lm-convert-checkpoint --config "$TMP/hf/config.json" "$TMP/bare.safetensors" "$TMP/e.safetensors"
  st same "$TMP/e.safetensors" "$REF/llama2.safetensors" --ignore-metadata
}

@test "stdin and stdout: --from hf --to lmkit - - < a > b, and GGUF through a pipe" {
  lm-convert-checkpoint -q --to hf "$REF/llama2.safetensors" "$TMP/a.safetensors"
  lm-convert-checkpoint --from hf --to lmkit - - < "$TMP/a.safetensors" > "$TMP/b.safetensors"
  cmp "$TMP/b.safetensors" "$REF/llama2.safetensors"
  cat "$TMP/a.safetensors" | lm-convert-checkpoint --to gguf - - | lm-convert-checkpoint - - > "$TMP/c.safetensors"
  cmp "$TMP/c.safetensors" "$REF/llama2.safetensors"
}

@test "--dry-run prints the mapping and writes nothing; --json is one object" {
  run lm-convert-checkpoint --dry-run --to hf "$REF/llama2.safetensors" "$TMP/never"
  assert_success
  assert_line --index 0 --partial "(safetensors, layout lmkit) -> layout hf; config: metadata lmkit.config"
  assert_line "layers.0.attention.wq.weight [32, 32] F32 -> model.layers.0.self_attn.q_proj.weight [32, 32] F32 (rope q to half-split)"
  assert_line "tok_embeddings.weight [256, 32] F32 -> model.embed_tokens.weight [256, 32] F32"
  [ ! -e "$TMP/never" ]
  run lm-convert-checkpoint --dry-run --to soma --cast f16 "$REF/soma_v1.safetensors"
  assert_line "layers.1.feed_forward.w2.weight [32, 128] F32 -> encoder.layers.1.pwff.linear_outer.weight [128, 32] F16 (transpose, cast f16)"
  lm-convert-checkpoint --dry-run --json --to flax "$REF/llama2.safetensors" > "$TMP/plan.json"
  py 'import json,sys; j=json.load(open(sys.argv[1])); assert j["from"]=="lmkit" and j["to"]=="flax" and len(j["tensors"])==21
t=[x for x in j["tensors"] if x["name"]=="lm_head.kernel"][0]; assert t["shape"]==[32,256] and t["ops"]==["transpose"], t
assert j["config"]["dim"]==32 and "lmkit_version" in j' "$TMP/plan.json"
  # drops are listed too
  run lm-convert-checkpoint --dry-run --drop 'layers.1.*' --allow-unmapped "$REF/llama2.safetensors"
  assert_line "layers.1.feed_forward.w3.weight [96, 32] F32 -> (dropped)"
}

@test "--list prints a checkpoint's tensors, as text or JSON" {
  run lm-convert-checkpoint --list "$REF/soma_v1.safetensors"
  assert_success
  assert_line --index 0 --regexp "^# .*soma_v1.safetensors: safetensors, layout lmkit, 37 tensors, [0-9.]+ KB$"
  assert_line --regexp '^output.bias +F32  \[264\]$'
  lm-convert-checkpoint -q --to soma "$REF/soma_v1.safetensors" "$TMP/s.safetensors"
  run lm-convert-checkpoint --list --json "$TMP/s.safetensors"
  assert_output --partial '"layout": "soma"'
  assert_output --partial '"name": "encoder.layers.0.norm_1.gamma"'
}

@test "rules: rename, drop, transpose, split, fuse, RoPE permutation and cast, in command-line order" {
  R="$REF/llama2.safetensors"
  lm-convert-checkpoint -q --from raw --to raw --rename '^layers\.(\d+)\.=blk\1.' --drop '*.w3.weight' --rename '^blk1\.=last.' "$R" "$TMP/r"
  run st names "$TMP/r"
  assert_line "blk0.attention.wq.weight"
  assert_line "last.attention.wq.weight"
  refute_line --partial "w3.weight"
  [ "$(st meta "$TMP/r" lmkit.config)" = "$(st meta "$R" lmkit.config)" ]  # raw -> raw keeps the metadata
  # transpose twice is the identity; once, it swaps the axes
  lm-convert-checkpoint -q --from raw --to raw --transpose 'output.weight' "$R" "$TMP/t"
  py 'import sys; a=st.read(sys.argv[1])[0]["output.weight"]; b=st.read(sys.argv[2])[0]["output.weight"]
assert b[1]==[32,256]; va=st.values("F32",a[2]); vb=st.values("F32",b[2]); assert vb[1]==va[32] and vb[256]==va[1]' "$R" "$TMP/t"
  lm-convert-checkpoint -q --from raw --to raw --transpose 'output.weight' "$TMP/t" "$TMP/tt"
  st same "$TMP/tt" "$R"
  # split then fuse is the identity, along rows and columns
  lm-convert-checkpoint -q --from raw --to raw --split 'output\.weight=out.a,out.b:56,out.c@0' --fuse 'out\.a,out.b,out.c=output.weight' \
    --split '(.*)\.w1\.weight=$1.x,$1.y@1' --fuse '(.*)\.x,\1.y=\1.w1.weight@1' "$R" "$TMP/sf"
  st same "$TMP/sf" "$R"
  lm-convert-checkpoint --dry-run --from raw --to raw --split 'output\.weight=out.a,out.b:56,out.c' "$R" | grep -q "output.weight \[256, 32\] F32 -> out.b \[56, 32\] F32 (split 2/3 dim 0)"
  # the RoPE permutation by hand equals what the hf layout does
  lm-convert-checkpoint -q --from raw --to raw --rope-to-half '*.wq.weight=q' --rope-to-half '*.wk.weight=4' "$R" "$TMP/p"
  lm-convert-checkpoint -q --to hf "$R" "$TMP/hf"
  py 'import sys; a=st.read(sys.argv[1])[0]; b=st.read(sys.argv[2])[0]
assert a["layers.1.attention.wq.weight"]==b["model.layers.1.self_attn.q_proj.weight"]
assert a["layers.1.attention.wk.weight"]==b["model.layers.1.self_attn.k_proj.weight"]' "$TMP/p" "$TMP/hf"
  lm-convert-checkpoint -q --from raw --to raw --rope-to-interleaved '*.w[qk].weight=q' "$TMP/p" "$TMP/pp"
  st same "$TMP/pp" "$R"
  # cast rounds to nearest even; F16 and BF16 come back as F32 exactly
  lm-convert-checkpoint -q --cast bf16 "$R" "$TMP/bf"
  py 'import sys,struct; a=st.read(sys.argv[1])[0]["norm.weight"]; b=st.read(sys.argv[2])[0]["norm.weight"]
assert b[0]=="BF16"
for x,y in zip(st.values("F32",a[2]), st.values("BF16",b[2])):
    u=struct.unpack("<I",struct.pack("<f",x))[0]; u=((u+0x7FFF+((u>>16)&1))>>16)<<16
    assert struct.unpack("<f",struct.pack("<I",u))[0]==y' "$R" "$TMP/bf"
  lm-convert-checkpoint -q --cast f16 "$R" "$TMP/h"
  lm-convert-checkpoint -q --cast f32 "$TMP/h" "$TMP/h32"
  lm-convert-checkpoint -q --cast f16 "$TMP/h32" "$TMP/h16"
  cmp "$TMP/h" "$TMP/h16"
}

@test "a rules file holds the same rules; --show-rules prints a named layout as one" {
  printf '[{"rename": "^layers\\\\.(\\\\d+)\\\\.=blk\\\\1."}, {"drop": "*.w3.weight"}]\n' > "$TMP/rules.json"
  lm-convert-checkpoint -q --from raw --to raw --rules "$TMP/rules.json" "$REF/llama2.safetensors" "$TMP/a"
  lm-convert-checkpoint -q --from raw --to raw --rename '^layers\.(\d+)\.=blk\1.' --drop '*.w3.weight' "$REF/llama2.safetensors" "$TMP/b"
  cmp "$TMP/a" "$TMP/b"
  # the hf layout is its rules: running them as a user's rules file gives the same tensors
  for to in hf flax soma; do
    fx=llama2; [ $to = soma ] && fx=soma_v1
    lm-convert-checkpoint --show-rules --from lmkit --to $to > "$TMP/$to.json"
    grep -q '"rename"' "$TMP/$to.json"
    lm-convert-checkpoint -q --from raw --to raw --rules "$TMP/$to.json" "$REF/$fx.safetensors" "$TMP/by-rules"
    lm-convert-checkpoint -q --to $to "$REF/$fx.safetensors" "$TMP/by-layout"
    st same "$TMP/by-rules" "$TMP/by-layout" --ignore-metadata || fail "$to"
  done
  run lm-convert-checkpoint --show-rules --from hf --to lmkit
  assert_line --partial '{"drop":"model.layers.*.self_attn.rotary_emb.inv_freq"}'
  assert_line --partial '{"rope-to-interleaved":"layers.*.attention.wq.weight=q"}'
}

@test "meta load hooks: fused wqkv, fc1/fc2, w_gate/w_value/w_out, layer_norm_weight, rope.freqs, _extra_state" {
  py 'import sys, struct
t, m = st.read(sys.argv[1])
out = {}
for name, v in t.items():
    if ".attention.wq." in name:
        l = name.split(".")[1]; p = "layers.%s.attention." % l
        q, k, vv = t[p + "wq.weight"], t[p + "wk.weight"], t[p + "wv.weight"]
        out[p + "wqkv.weight"] = ("F32", [q[1][0] + k[1][0] + vv[1][0], q[1][1]], q[2] + k[2] + vv[2])
        out[p + "wqkv.layer_norm_weight"] = t["layers.%s.attention_norm.weight" % l]
        out[p + "wq._extra_state"] = ("U8", [3], b"abc")
    elif ".w1." in name and name.startswith("layers.0."):
        w1, w3 = t["layers.0.feed_forward.w1.weight"], t["layers.0.feed_forward.w3.weight"]
        out["layers.0.feed_forward.mlp.fc1_weight"] = ("F32", [2 * w1[1][0], w1[1][1]], w1[2] + w3[2])
        out["layers.0.feed_forward.mlp.fc2_weight"] = t["layers.0.feed_forward.w2.weight"]
        out["layers.0.feed_forward.mlp.layer_norm_weight"] = t["layers.0.ffn_norm.weight"]
    elif name.startswith("layers.1.feed_forward.w"):
        new = {"w1": "w_gate", "w2": "w_out", "w3": "w_value"}[name.split(".")[3]]
        out["layers.1.feed_forward.%s.weight" % new] = v
    elif any(s in name for s in (".wk.", ".wv.", "attention_norm", "layers.0.feed_forward", "layers.0.ffn_norm")):
        continue
    else:
        out[name] = v
out["rope.freqs"] = ("F32", [4], b"\0" * 16)
st.write(sys.argv[2], out)' "$REF/mobilellm.safetensors" "$TMP/meta.safetensors"
  run lm-convert-checkpoint --list "$TMP/meta.safetensors"
  assert_output --partial "layers.0.attention.wqkv.weight"
  st meta "$REF/mobilellm.safetensors" lmkit.config > "$TMP/config.json"
  lm-convert-checkpoint --from meta --config "$TMP/config.json" "$TMP/meta.safetensors" "$TMP/out.safetensors"
  st same "$TMP/out.safetensors" "$REF/mobilellm.safetensors" --ignore-metadata
  lm-convert-checkpoint --from meta --config "$FX/mobilellm/model.safetensors" "$TMP/meta.safetensors" "$TMP/out.safetensors"
  st same "$TMP/out.safetensors" "$REF/mobilellm.safetensors" --ignore-metadata
}

@test "flax trees flattened with '/' under 'params', and HF's norm 'weight', read as flax" {
  lm-convert-checkpoint -q --to flax "$REF/llama2.safetensors" "$TMP/f.safetensors"
  py 'import sys; t,m=st.read(sys.argv[1])
out={"params/" + k.replace(".", "/").replace("/scale", "/weight") if k.endswith("norm.scale") else "params/" + k.replace(".", "/"): v for k,v in t.items()}
st.write(sys.argv[2], out, m)' "$TMP/f.safetensors" "$TMP/slash.safetensors"
  run lm-convert-checkpoint --list "$TMP/slash.safetensors"
  assert_line --index 0 --partial "layout flax"
  assert_output --partial "params/model/layers/0/self_attn/q_proj/kernel"
  lm-convert-checkpoint "$TMP/slash.safetensors" "$TMP/back.safetensors"
  cmp "$TMP/back.safetensors" "$REF/llama2.safetensors"
}

@test "--allow-unmapped drops unknown tensors and allows missing ones, with a note" {
  py 'import sys; t,m=st.read(sys.argv[1]); t["extra.inv_freq"]=("F32",[2],b"\0"*8); st.write(sys.argv[2],t,m)' "$REF/llama2.safetensors" "$TMP/x.safetensors"
  run -1 lm-convert-checkpoint "$TMP/x.safetensors" "$TMP/out"
  assert_output --partial "lm-convert-checkpoint: error: 1 unmapped tensor (not one of the config's tensors after layout 'lmkit' and the rules): 'extra.inv_freq'"
  assert_output --partial "'extra.inv_freq'; map them with --rename, remove them with --drop GLOB, or pass --allow-unmapped"
  [ ! -e "$TMP/out" ]
  run lm-convert-checkpoint --allow-unmapped "$TMP/x.safetensors" "$TMP/out"
  assert_success
  assert_output "lm-convert-checkpoint: note: dropped 1 unmapped tensor: 'extra.inv_freq'"
  cmp "$TMP/out" "$REF/llama2.safetensors"
  run lm-convert-checkpoint -q --allow-unmapped "$TMP/x.safetensors" "$TMP/out"
  assert_output ""
  run lm-convert-checkpoint --drop 'extra.*' "$TMP/x.safetensors" "$TMP/out2"
  assert_success
}

@test "error: unknown layout (exit 2)" {
  run -2 lm-convert-checkpoint --to gguf2 "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "lm-convert-checkpoint: error: unknown layout 'gguf2'"
  assert_output --partial "'gguf2'; layouts are lmkit, meta, hf, hf-llama4, flax, soma, soma-torch, gguf, llama2c, raw"
  run -2 lm-convert-checkpoint --from pytorch "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "unknown layout 'pytorch'"
  # names no layout knows: --from is needed
  py 'import sys; st.write(sys.argv[1], {"transformer.h.0.attn.c_attn.weight": ("F32", [2], b"\0" * 8)})' "$TMP/gpt.safetensors"
  run -2 lm-convert-checkpoint "$TMP/gpt.safetensors" "$TMP/o"
  assert_output --partial "error: cannot tell the layout of '$TMP/gpt.safetensors': no tensor name is one a known layout uses"
  run -1 lm-convert-checkpoint --from gguf "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: '$REF/llama2.safetensors': not a GGUF file (no 'GGUF' magic)"
  lm-convert-checkpoint -q --to gguf "$REF/llama2.safetensors" "$TMP/m.gguf"
  run -2 lm-convert-checkpoint --from hf "$TMP/m.gguf" "$TMP/o"
  assert_output --partial "error: '$TMP/m.gguf' is a GGUF v3 file: its layout is gguf, not hf"
  [ ! -e "$TMP/o" ]
}

@test "error: unmapped and missing tensors are named, with their name in the source layout" {
  lm-convert-checkpoint -q --to hf "$REF/llama2.safetensors" "$TMP/hf.safetensors"
  run -1 lm-convert-checkpoint --drop 'layers.1.attention.wq.weight' "$TMP/hf.safetensors" "$TMP/o"
  assert_output --partial "error: 1 missing tensor: 'layers.1.attention.wq.weight' ('model.layers.1.self_attn.q_proj.weight')"
  run -1 lm-convert-checkpoint --to hf --drop 'layers.*.feed_forward.*' "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: 6 missing tensors: 'layers.0.feed_forward.w1.weight', 'layers.0.feed_forward.w2.weight', 'layers.0.feed_forward.w3.weight', 'layers.1.feed_forward.w1.weight' and 2 more"
  run -1 lm-convert-checkpoint --from raw --to lmkit --rename '^norm\.=final_norm.' "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "1 unmapped tensor (not one of the config's tensors after layout 'raw' and the rules): 'norm.weight' (as 'final_norm.weight')"
  [ ! -e "$TMP/o" ]
}

@test "error: shape mismatch on split, on fuse and against the config (exit 1; 2 when --set caused it)" {
  R="$REF/llama2.safetensors"
  run -1 lm-convert-checkpoint --from raw --to raw --split 'tok_embeddings\.weight=a,b,c' "$R" "$TMP/o"
  assert_output --partial "error: --split 'tok_embeddings\\.weight=a,b,c': cannot split 'tok_embeddings.weight' [256, 32] along dimension 0 into 3 parts: 256 is not a multiple of 3"
  run -1 lm-convert-checkpoint --from raw --to raw --split 'tok_embeddings\.weight=a:100,b:100' "$R" "$TMP/o"
  assert_output --partial "shape mismatch: 'tok_embeddings.weight' has 256 along dimension 0 (shape [256, 32]), the parts need 200 ('a' 100, 'b' 100)"
  run -1 lm-convert-checkpoint --from raw --to raw --fuse 'norm\.weight,tok_embeddings.weight=x' "$R" "$TMP/o"
  assert_output --partial "shape mismatch: 'norm.weight' [32] and 'tok_embeddings.weight' [256, 32] differ outside dimension 0"
  run -2 lm-convert-checkpoint --set multiple_of=64 "$R" "$TMP/o"  # the override broke it: a usage error
  assert_output --partial "error: shape mismatch: tensor 'layers.0.feed_forward.w1.weight': got [96, 32], expected [128, 32] for the config"
  run -1 lm-convert-checkpoint --to hf --config stories15m "$R" "$TMP/o"
  assert_output --partial "shape mismatch: tensor 'layers.0.attention.wk.weight': got [32, 32], expected [288, 288] for the config"
  [ ! -e "$TMP/o" ]
}

@test "error: wrong dtype (exit 1)" {
  py 'import sys; t,m=st.read(sys.argv[1]); d,s,b=t["norm.weight"]; t["norm.weight"]=("I32",s,b); st.write(sys.argv[2],t,m)' "$REF/llama2.safetensors" "$TMP/i.safetensors"
  run -1 lm-convert-checkpoint --to hf "$TMP/i.safetensors" "$TMP/o"
  assert_output --partial "error: wrong dtype: tensor 'norm.weight': got I32, expected F32, F16 or BF16"
  run -1 lm-convert-checkpoint --from raw --to raw --cast f16 "$TMP/i.safetensors" "$TMP/o"
  assert_output --partial "error: wrong dtype: cannot cast tensor 'norm.weight' (I32) to F16"
  [ ! -e "$TMP/o" ]
}

@test "error: truncated input in each container (exit 1)" {
  head -c 9000 "$REF/llama2.safetensors" > "$TMP/cut.safetensors"
  run -1 lm-convert-checkpoint "$TMP/cut.safetensors" "$TMP/o"
  assert_output --regexp "error: '.*cut.safetensors': truncated: tensors need [0-9]+ data bytes, the file has [0-9]+"
  head -c 100 "$REF/llama2.safetensors" > "$TMP/cut2.safetensors"
  run -1 lm-convert-checkpoint "$TMP/cut2.safetensors" "$TMP/o"
  assert_output --partial "is larger than the file (100 bytes): truncated or not a safetensors file"
  lm-convert-checkpoint -q --to gguf "$REF/llama2.safetensors" "$TMP/m.gguf"
  head -c 5000 "$TMP/m.gguf" > "$TMP/cut.gguf"
  run -1 lm-convert-checkpoint "$TMP/cut.gguf" "$TMP/o"
  assert_output --regexp "error: '.*cut.gguf': truncated"
  lm-convert-checkpoint -q --to llama2c "$REF/llama2.safetensors" "$TMP/m.bin"
  head -c 170000 "$TMP/m.bin" > "$TMP/cut.bin"
  run -1 lm-convert-checkpoint "$TMP/cut.bin" "$TMP/o"
  assert_output --partial "truncated llama2.c v0 checkpoint: the header implies at least 173724 bytes (to the end of wcls), the file has 170000"
  head -c 4 "$TMP/m.bin" > "$TMP/tiny.bin"
  run -1 lm-convert-checkpoint --from llama2c "$TMP/tiny.bin" "$TMP/o"
  assert_output --partial "too short for the 28-byte header"
  head -c 3000 /dev/urandom > "$TMP/junk"
  printf 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' > "$TMP/junk"
  run -1 lm-convert-checkpoint "$TMP/junk" "$TMP/o"
  assert_output --partial "not a checkpoint lmkit reads (40 bytes; not safetensors, PyTorch, GGUF or llama2.c)"
  [ ! -e "$TMP/o" ]
  # a shard that disagrees with its index
  lm-convert-checkpoint -q --shard-size 40KB "$REF/llama2.safetensors" "$TMP/sh"
  py 'import json,sys; p=sys.argv[1]+"/model.safetensors.index.json"; j=json.load(open(p)); j["weight_map"]["ghost.weight"]=sorted(j["weight_map"].values())[0]; json.dump(j,open(p,"w"))' "$TMP/sh"
  run -1 lm-convert-checkpoint "$TMP/sh" "$TMP/o"
  assert_output --regexp "tensor 'ghost.weight' is listed in shard 'model-00001-of-0000[0-9].safetensors' but not in it"
}

@test "error: output directory not writable (exit 1), and no file is left behind" {
  run -1 lm-convert-checkpoint "$REF/llama2.safetensors" "$TMP/no/such/dir/o.safetensors"
  assert_output --partial "error: cannot create a temporary file for '$TMP/no/such/dir/o.safetensors': No such file or directory"
  run -1 lm-convert-checkpoint --to gguf "$REF/llama2.safetensors" /proc/lmkit-test.gguf
  assert_output --partial "error: cannot create a temporary file for '/proc/lmkit-test.gguf'"
  run -1 lm-convert-checkpoint --shard-size 1MB "$REF/llama2.safetensors" "$TMP/no/such/dir/"
  assert_output --partial "error: cannot create directory '$TMP/no/such/dir'"
  if [ "$(id -u)" != 0 ]; then  # root writes anywhere
    mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
    run -1 lm-convert-checkpoint "$REF/llama2.safetensors" "$TMP/ro/o.safetensors"
    assert_output --partial "Permission denied"
  fi
  # a directory as a file output
  mkdir "$TMP/d"
  run -1 lm-convert-checkpoint --to gguf "$REF/llama2.safetensors" "$TMP/d"
  assert_output --partial "is a directory"
  [ -z "$(ls -A "$TMP/d")" ]
}

@test "error: layouts that cannot hold the model, and usage errors (exit 2)" {
  run -1 lm-convert-checkpoint --to soma "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: layout 'soma' has no name for tensor 'layers.0.feed_forward.w3.weight'"
  run -1 lm-convert-checkpoint --to gguf "$REF/soma_v1.safetensors" "$TMP/o"
  assert_output --partial "error: GGUF (llama) cannot hold norm_type 'layernorm' (llama has RMSNorm)"
  run -1 lm-convert-checkpoint --to llama2c "$REF/xlstm.safetensors" "$TMP/o"
  assert_output --partial "error: a llama2.c v0 checkpoint cannot hold attention biases (attn_bias)"
  run -1 lm-convert-checkpoint --to hf "$REF/soma_v1.safetensors" "$TMP/hfdir/"
  assert_output --partial "error: config.json: a Hugging Face Llama has no norm_type 'layernorm'"
  [ ! -e "$TMP/o" ] && [ ! -e "$TMP/hfdir" ]
  run -2 lm-convert-checkpoint "$REF/llama2.safetensors"
  assert_output --partial "error: no output: give OUTPUT"
  run -2 lm-convert-checkpoint --rename 'nothing' "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: bad --rename 'nothing': expected REGEX=REPLACEMENT"
  run -2 lm-convert-checkpoint --split 'a=b' "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "a split needs at least two parts"
  run -2 lm-convert-checkpoint --cast f64 "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: bad --cast 'f64'"
  run -2 lm-convert-checkpoint --to hf --cast q8_0 "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "--cast q8_0 writes GGUF (--to gguf) or an lmkit checkpoint (--to lmkit)"
  run -2 lm-convert-checkpoint --to flax --cast q4_K "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "--cast q4_K writes GGUF (--to gguf) or an lmkit checkpoint (--to lmkit)"
  run -2 lm-convert-checkpoint --shard-size lots "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: bad size 'lots'"
  run -2 lm-convert-checkpoint --json "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "--json goes with --list or --dry-run"
  printf '[{"rename": 3}]' > "$TMP/bad.json"
  run -1 lm-convert-checkpoint --rules "$TMP/bad.json" "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "error: '$TMP/bad.json': rule 1: expected one key with a string value"
  run -1 lm-convert-checkpoint --rules "$TMP/none.json" "$REF/llama2.safetensors" "$TMP/o"
  assert_output --partial "cannot open '$TMP/none.json'"
  [ ! -e "$TMP/o" ]
}

@test "the man page documents every layout with an example, and every option" {
  page=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$LMKIT_SOURCE_DIR/man/lm-convert-checkpoint.1")
  for layout in lmkit meta hf flax soma soma-torch gguf llama2c raw; do
    grep -q "^\.B $layout\$" <<<"$(sed 's/\\-/-/g' "$LMKIT_SOURCE_DIR/man/lm-convert-checkpoint.1")" || fail "no entry for layout $layout"
    lm-convert-checkpoint --help | grep -q "  $layout: " || fail "--help lacks layout $layout"
  done
  for layout in lmkit meta hf flax soma soma-torch gguf llama2c; do
    awk -v l="$layout" 'found && /^\.TP/ {exit} $0 == ".B " l && prev ~ /^\.TP/ {found=1} found && /^\.EX/ {print "ok"; exit} {prev=$0}' \
      <(sed 's/\\-/-/g' "$LMKIT_SOURCE_DIR/man/lm-convert-checkpoint.1") | grep -q ok || fail "layout $layout has no example"
  done
  for o in $(lm-convert-checkpoint --lmkit-options | cut -f1 | tr ' ' '\n' | grep -- '^-'); do
    grep -qF -- "$o" <<<"$page" || fail "option $o is missing from the man page"
  done
}
