#!/usr/bin/env bats
# lm-inspect-config: presets, config files, checkpoints (with and without config metadata,
# and every class of corrupt safetensors file), --set, --json, exit codes.

load helpers
bats_require_minimum_version 1.5.0

# Writes safetensors test files with the Python standard library only:
#   st.py CASE PATH
st() {
  python3 - "$@" <<'EOF'
import json, struct, sys

case, path = sys.argv[1], sys.argv[2]

def f32(n):
    return b"\0" * (4 * n)

def write(tensors, metadata=None, header_text=None, header_len=None, data=None, cut=0):
    """tensors: list of (name, dtype, shape, nbytes); laid out back to back."""
    header, blob, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        blob += b"\0" * nbytes
        off += nbytes
    text = header_text if header_text is not None else json.dumps(header)
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    out = struct.pack("<Q", header_len if header_len is not None else len(raw)) + raw + (data if data is not None else blob)
    if cut:
        out = out[:-cut]
    open(path, "wb").write(out)

def meta_model(C=32, L=2, Q=32, KV=16, F=48, V=40, qk_norm=False, tied=True):
    t = [("tok_embeddings.weight", "F32", [V, C], 4 * V * C)]
    for l in range(L):
        p = "layers.%d." % l
        t += [(p + "attention.wq.weight", "F32", [Q, C], 4 * Q * C),
              (p + "attention.wk.weight", "F32", [KV, C], 4 * KV * C),
              (p + "attention.wv.weight", "F32", [KV, C], 4 * KV * C),
              (p + "attention.wo.weight", "F32", [C, Q], 4 * Q * C),
              (p + "attention_norm.weight", "F32", [C], 4 * C),
              (p + "ffn_norm.weight", "F32", [C], 4 * C),
              (p + "feed_forward.w1.weight", "F32", [F, C], 4 * F * C),
              (p + "feed_forward.w2.weight", "F32", [C, F], 4 * F * C),
              (p + "feed_forward.w3.weight", "F32", [F, C], 4 * F * C)]
        if qk_norm:
            t += [(p + "attention.q_norm.weight", "F32", [8], 32), (p + "attention.k_norm.weight", "F32", [8], 32)]
    t.append(("norm.weight", "F32", [C], 4 * C))
    if not tied:
        t.append(("output.weight", "F32", [V, C], 4 * V * C))
    return t

two = [("a", "F32", [2], 8), ("b", "F32", [3], 12)]
if case == "inferred":
    write(meta_model())
elif case == "inferred_qk":
    write(meta_model(qk_norm=True, tied=False))
elif case == "metadata":
    write([("x", "F32", [1], 4)], metadata={"format": "pt", "lmkit.config": json.dumps({"dim": 64, "n_layers": 2, "n_heads": 4, "vocab_size": 300, "name": "from-meta"})})
elif case == "bad_metadata":
    write([("x", "F32", [1], 4)], metadata={"lmkit.config": '{"dim": 64, "dim": 65}'})
elif case == "truncated":
    write(two, cut=5)
elif case == "header_too_long":
    write(two, header_len=10**6)
elif case == "overlap":
    write([], header_text=json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}), data=b"\0" * 12)
elif case == "gap":
    write([], header_text=json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}), data=b"\0" * 20)
elif case == "dtype":
    write([("a", "Q4", [2], 8)])
elif case == "duplicate":
    write([], header_text='{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', data=b"\0" * 4)
elif case == "not_object":
    write([], header_text='[{"a": 1}]', data=b"")
elif case == "tiny_file":
    open(path, "wb").write(b"\x10\0\0")
else:
    sys.exit("unknown case " + case)
EOF
}

# A field of the --json report: json_field 'params.total' < file
json_field() {
  python3 -c 'import json,sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "$1"
}

@test "llama2-7b has 6,738,415,616 parameters" {
  run lm-inspect-config llama2-7b
  assert_success
  assert_line --regexp '^  total +6,738,415,616$'
  assert_line --regexp '^  embedding +131,072,000$'
  assert_output --partial "n_kv_heads (NKV)          32 (MHA)"
  assert_output --partial "kv cache per token        1.00 MiB f32, 512.00 KiB bf16"
  run lm inspect-config stories15m
  assert_success
  assert_line --regexp '^  total +15,191,712$'
}

@test "--json is one object with the resolved config and the accounting" {
  lm-inspect-config llama3-8b --json --context 1024 --batch 2 --seq 128 > "$TMP/r.json"
  [ "$(json_field version < "$TMP/r.json")" = 1 ]
  [ -n "$(json_field lmkit_version < "$TMP/r.json")" ]
  [ "$(json_field source.kind < "$TMP/r.json")" = preset ]
  [ "$(json_field config.n_kv_heads < "$TMP/r.json")" = 8 ]
  [ "$(json_field config.rope_scaling.type < "$TMP/r.json")" = none ]
  [ "$(json_field config.sigreg.enabled < "$TMP/r.json")" = false ]
  [ "$(json_field derived.ffn_hidden < "$TMP/r.json")" = 14336 ]
  [ "$(json_field params.total < "$TMP/r.json")" = 8030261248 ]
  [ "$(json_field flops.context < "$TMP/r.json")" = 1024 ]
  [ "$(json_field memory.training.batch < "$TMP/r.json")" = 2 ]
  [ "$(json_field memory.training.seq < "$TMP/r.json")" = 128 ]
  [ "$(json_field memory.kv_cache.per_token_bf16 < "$TMP/r.json")" = 131072 ]  # 2 x 32 x 8 x 128 x 2
  # every config key is present: 65 fields, those of rope_scaling, sigreg and moe nested
  python3 -c 'import json,sys
c = json.load(open(sys.argv[1]))["config"]
flat = [k for k, v in c.items() if not isinstance(v, dict)] + [g + "." + k for g, v in c.items() if isinstance(v, dict) for k in v]
assert len(flat) == 65 and "extra_eos_ids" in flat and "moe.top_k" in flat and "moe.routing" in flat and "image_token_id" in flat and "conditions" in flat and "rope_mode" in flat, flat
assert "block_pos_ids" not in flat, "the legacy key is read, never written"' "$TMP/r.json"
}

@test "--config prints the resolved config, which reads back as the same model" {
  lm-inspect-config soma-v1 --config > "$TMP/soma.json"
  run lm-inspect-config "$TMP/soma.json"
  assert_success
  assert_line --regexp '^  total +1,209,684,232$'
  run lm-inspect-config "$TMP/soma.json" --json
  [ "$(json_field source.kind <<<"$output")" = json ]
  [ "$(json_field config.norm_type <<<"$output")" = layernorm ]
}

@test "--set overrides fields, nested fields and strings" {
  run lm-inspect-config tiny --set n_kv_heads=2 --set rope_scaling.type=llama3 --set sigreg.enabled=true \
    --set norm_type=layernorm --set 'moe={"n_experts": 4, "top_k": 2}' --json
  assert_success
  [ "$(json_field config.n_kv_heads <<<"$output")" = 2 ]
  [ "$(json_field config.rope_scaling.type <<<"$output")" = llama3 ]
  [ "$(json_field config.sigreg.enabled <<<"$output")" = true ]
  [ "$(json_field config.norm_type <<<"$output")" = layernorm ]
  [ "$(json_field config.moe.top_k <<<"$output")" = 2 ]
  [ "$(json_field derived.features.0 <<<"$output")" = "mixture of experts (moe.n_experts = 4)" ]
  [ "$(json_field source.overrides.0 <<<"$output")" = n_kv_heads=2 ]
  run lm-inspect-config tiny --set n_head=2
  assert_failure 2
  assert_output "lm-inspect-config: error: --set 'n_head=2': unknown key 'n_head'; did you mean 'n_heads'?"
  run lm-inspect-config tiny --set n_heads=four
  assert_failure 2
  assert_output --partial "'n_heads': expected an integer, got \"four\""
}

@test "--list-presets lists every preset, and each one inspects" {
  run lm-inspect-config --list-presets
  assert_success
  for p in tiny stories15m stories42m stories110m llama2-7b llama3-8b soma-v1 llama4-tiny llama4-scout \
           llama4-maverick mobilellm-140m mobilellm-360m mobilellm-950m mobilellm-7b mobilellm-70b mobilellm-671b \
           mobilellm-r1-140m mobilellm-r1-360m mobilellm-r1-950m; do
    assert_line --regexp "^$p "
    lm-inspect-config "$p" > /dev/null || fail "preset $p does not inspect"
  done
  [ "${#lines[@]}" -eq 19 ]
  run lm-inspect-config mobilellm-671b
  assert_line --regexp '^  total +695,423,962,800$'
  assert_line --regexp '^  active per token +29,183,938,224$'
  # Meta's 109B counts Scout's vision encoder, which lmkit does not hold
  run lm-inspect-config llama4-scout
  assert_line --regexp '^  total +107,790,832,640$'
  assert_line --regexp '^  published total +108,641,793,536  \(\+ 850,960,896 vision encoder, not in lmkit\)$'
  run lm-inspect-config llama4-scout --json
  [ "$(json_field params.outside_config <<<"$output")" = 850960896 ]
}

@test "a config JSON file" {
  printf '{"name": "mine", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 100,\n "hidden_dim": 128, "tie_embeddings": true}\n' > "$TMP/c.json"
  run lm-inspect-config "$TMP/c.json"
  assert_success
  assert_line --index 0 "mine (json '$TMP/c.json')"
  # 6,400 embedding + 2 x (12,288 attention + 24,576 ffn) + 5 x 64 norms
  assert_line --regexp '^  total +80,448$'
  # without a .json suffix the content decides, and '-' reads stdin
  cp "$TMP/c.json" "$TMP/config"
  run lm-inspect-config "$TMP/config"
  assert_success
  assert_line --regexp '^  total +80,448$'
  run lm-inspect-config - < "$TMP/c.json"
  assert_success
  assert_line --regexp '^  total +80,448$'
}

@test "bad config files: exit 1 with a message naming the file" {
  printf '{"dim": 64,,}' > "$TMP/bad.json"
  run lm-inspect-config "$TMP/bad.json"
  assert_failure 1
  assert_output --partial "lm-inspect-config: error: '$TMP/bad.json': not valid JSON: "
  printf '{"dim": 64, "dim": 128}' > "$TMP/dup.json"
  run lm-inspect-config "$TMP/dup.json"
  assert_failure 1
  assert_output "lm-inspect-config: error: '$TMP/dup.json': duplicate key 'dim'"
  printf '{"n_heads": "six"}' > "$TMP/type.json"
  run lm-inspect-config "$TMP/type.json"
  assert_failure 1
  assert_output "lm-inspect-config: error: '$TMP/type.json': 'n_heads': expected an integer, got \"six\""
  printf '{"n_layer": 2}' > "$TMP/key.json"
  run lm-inspect-config "$TMP/key.json"
  assert_failure 1
  assert_output "lm-inspect-config: error: '$TMP/key.json': unknown key 'n_layer'; did you mean 'n_layers'?"
  run lm-inspect-config "$TMP/nonexistent.json"
  assert_failure 1
  assert_output --partial "cannot open '$TMP/nonexistent.json'"
}

@test "invalid configs: exit 1 with the validation message (exit 2 when --set made it invalid)" {
  printf '{"dim": 48, "n_heads": 6, "n_kv_heads": 4}' > "$TMP/gqa.json"
  run lm-inspect-config "$TMP/gqa.json"
  assert_failure 1
  assert_output "lm-inspect-config: error: '$TMP/gqa.json': n_heads (6) is not a multiple of n_kv_heads (4)"
  run lm-inspect-config tiny --set dropout=1.5 --set norm_eps=0
  assert_failure 2
  assert_output "lm-inspect-config: error: 'tiny': norm_eps must be > 0, got 0; also: dropout must be in [0, 1), got 1.5"
  run lm-inspect-config tiny --set moe.n_experts=2 --set moe.top_k=3
  assert_failure 2
  assert_output --partial "moe.top_k (3) exceeds moe.n_experts (2)"
}

@test "unknown preset: exit 2 with the list" {
  run lm-inspect-config llama9
  assert_failure 2
  assert_output --partial "lm-inspect-config: error: unknown preset 'llama9'; presets: tiny, stories15m, "
  [ "${#lines[@]}" -eq 1 ]
  run lm-inspect-config
  assert_failure 2
  assert_output --partial "--list-presets"
}

@test "a checkpoint without config metadata: shapes are inferred" {
  st inferred "$TMP/m.safetensors"
  run lm-inspect-config "$TMP/m.safetensors"
  assert_failure 1
  assert_output --partial "cannot infer n_heads from '$TMP/m.safetensors': wq has 32 rows"
  assert_output --partial "; give it: --set n_heads=N (or --set head_dim=N)"
  run lm-inspect-config "$TMP/m.safetensors" --set n_heads=4 --json
  assert_success
  [ "$(json_field source.kind <<<"$output")" = checkpoint ]
  [ "$(json_field source.from_metadata <<<"$output")" = false ]
  [ "$(json_field config.dim <<<"$output")" = 32 ]
  [ "$(json_field config.n_kv_heads <<<"$output")" = 2 ]
  [ "$(json_field config.hidden_dim <<<"$output")" = 48 ]
  [ "$(json_field config.tie_embeddings <<<"$output")" = true ]
  # 1,280 embedding + 2 x (3,072 attention + 4,608 ffn + 64 norms) + 32 final norm
  [ "$(json_field params.total <<<"$output")" = 16800 ]
  python3 -c 'import json,sys; s=json.load(sys.stdin)["source"]; assert "rope_theta" in s["assumed"] and "vocab_size" in s["inferred"], s' <<<"$output"
  run lm-inspect-config "$TMP/m.safetensors" --set n_heads=4
  assert_success
  assert_output --partial "inferred from tensors"
  assert_output --partial "assumed (defaults)"
  # a q_norm weight gives the head size; no suffix needed to recognise safetensors
  st inferred_qk "$TMP/model.bin"
  run lm-inspect-config "$TMP/model.bin" --json
  assert_success
  [ "$(json_field config.n_heads <<<"$output")" = 4 ]
  [ "$(json_field config.qk_norm <<<"$output")" = true ]
  [ "$(json_field config.tie_embeddings <<<"$output")" = false ]
}

@test "a checkpoint with config metadata" {
  st metadata "$TMP/meta.safetensors"
  run lm-inspect-config "$TMP/meta.safetensors" --json --set max_seq_len=64
  assert_success
  [ "$(json_field source.from_metadata <<<"$output")" = true ]
  [ "$(json_field config.name <<<"$output")" = from-meta ]
  [ "$(json_field config.vocab_size <<<"$output")" = 300 ]
  [ "$(json_field config.max_seq_len <<<"$output")" = 64 ]
  st bad_metadata "$TMP/badmeta.safetensors"
  run lm-inspect-config "$TMP/badmeta.safetensors"
  assert_failure 1
  assert_output "lm-inspect-config: error: '$TMP/badmeta.safetensors (metadata lmkit.config)': duplicate key 'dim'"
}

@test "corrupt safetensors files: exit 1 with a message naming the file" {
  check() {  # case, expected message part
    st "$1" "$TMP/$1.safetensors"
    run lm-inspect-config "$TMP/$1.safetensors"
    assert_failure 1
    assert_output --partial "lm-inspect-config: error: '$TMP/$1.safetensors': $2"
  }
  check truncated "truncated: tensors need 20 data bytes, the file has 15"
  check header_too_long "header length 1000000 is larger than the file"
  check overlap "tensor 'b' overlaps the previous tensor"
  check gap "gap in the data area before tensor 'b'"
  check dtype "tensor 'a': unknown dtype 'Q4'"
  check duplicate "duplicate key 'a' in header"
  check not_object "header does not start with '{'"
  check tiny_file "not a safetensors file: 3 bytes"
}

@test "--help goes to stdout with exit 0; a bad option exits 2" {
  run --separate-stderr lm-inspect-config --help
  assert_success
  assert_output --partial "Usage: lm-inspect-config [OPTIONS] [input]"
  assert_output --partial "--list-presets"
  [ -z "$stderr" ]
  run lm-inspect-config --frobnicate tiny
  assert_failure 2
  assert_output --partial "lm-inspect-config: error:"
  run lm-inspect-config tiny --context 0
  assert_failure 2
  run lm-inspect-config tiny --json --config
  assert_failure 2
  assert_output --partial "--json and --config are exclusive"
}

@test "the man page lists every option and every preset" {
  page=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$LMKIT_SOURCE_DIR/man/lm-inspect-config.1")
  for o in $(lm-inspect-config --lmkit-options | cut -f1 | tr ' ' '\n' | grep -- '^-'); do
    grep -qF -- "$o" <<<"$page" || fail "option $o is missing from man/lm-inspect-config.1"
  done
  for p in $(lm-inspect-config --list-presets | cut -d' ' -f1); do
    grep -qF -- "$p" <<<"$page" || fail "preset $p is missing from man/lm-inspect-config.1"
  done
}
