#!/usr/bin/env python3
"""An independent GGUF reader (standard library only), written from ggml's docs/gguf.md, to check
what lm-convert-checkpoint writes. It shares no code or tables with lmkit.

    gguf_reader.py dump FILE              header, key/values and tensor infos
    gguf_reader.py check FILE REF         FILE is a llama (Mixtral-style MoE included) or llama4 GGUF
                                          with the keys and dims llama.cpp's loader wants, and every tensor
                                          equals the lmkit-named tensor of REF (a safetensors checkpoint):
                                          F32 bytes exactly, F16 to f16 rounding, Q8_0 within half a step
Exit 0 when fine, 1 with a message otherwise.
"""

import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

# value types (gguf.md "gguf_metadata_value_type")
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q",
          F64: "<d"}
# ggml_type: name, block size, bytes per block
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}


class GGUFError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise GGUFError("truncated at byte %d (need %d more)" % (self.p, n))
        out = self.d[self.p:self.p + n]
        self.p += n
        return out

    def scalar(self, t):
        fmt = SCALAR[t]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.scalar(U64)
        return self.take(n).decode("utf-8")

    def value(self, t):
        if t == STRING:
            return self.string()
        if t == ARRAY:
            et = self.scalar(U32)
            n = self.scalar(U64)
            if et == ARRAY:
                raise GGUFError("array of arrays")
            return [self.value(et) for _ in range(n)]
        if t not in SCALAR:
            raise GGUFError("unknown value type %d" % t)
        return self.scalar(t)


def parse(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise GGUFError("no GGUF magic")
    version = r.scalar(U32)
    if version not in (2, 3):
        raise GGUFError("version %d" % version)
    n_tensors, n_kv = r.scalar(U64), r.scalar(U64)
    kv, types = {}, {}
    for _ in range(n_kv):
        key = r.string()
        if key in kv:
            raise GGUFError("duplicate key " + key)
        t = r.scalar(U32)
        kv[key], types[key] = r.value(t), t
    align = kv.get("general.alignment", 32)
    if "general.alignment" in kv and types["general.alignment"] != U32:
        raise GGUFError("general.alignment is not u32")
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar(U32)
        if not 1 <= n_dims <= 4:
            raise GGUFError("%s: %d dims" % (name, n_dims))
        dims = [r.scalar(U64) for _ in range(n_dims)]
        gtype = r.scalar(U32)
        offset = r.scalar(U64)
        if gtype not in GGML:
            raise GGUFError("%s: ggml type %d" % (name, gtype))
        if len(name.encode()) >= 64:
            raise GGUFError("%s: name too long for ggml" % name)
        tensors.append({"name": name, "dims": dims, "type": gtype, "offset": offset})
    start = r.p + (align - r.p % align) % align
    expect = 0
    for t in tensors:
        tname, block, bsize = GGML[t["type"]]
        n = math.prod(t["dims"])
        if t["dims"][0] % block:
            raise GGUFError("%s: ne0 %d not a multiple of %d" % (t["name"], t["dims"][0], block))
        t["nbytes"] = n // block * bsize
        if t["offset"] != expect:
            raise GGUFError("%s: offset %d, expected %d" % (t["name"], t["offset"], expect))
        if t["offset"] % align:
            raise GGUFError("%s: offset %d not aligned to %d" % (t["name"], t["offset"], align))
        expect = t["offset"] + t["nbytes"]
        expect += (align - expect % align) % align
        t["data"] = data[start + t["offset"]:start + t["offset"] + t["nbytes"]]
        if len(t["data"]) != t["nbytes"]:
            raise GGUFError("%s: data truncated" % t["name"])
    if len(set(t["name"] for t in tensors)) != len(tensors):
        raise GGUFError("duplicate tensor names")
    if start + max([0] + [t["offset"] + t["nbytes"] for t in tensors]) > len(data):
        raise GGUFError("data section truncated")
    return {"version": version, "kv": kv, "types": types, "alignment": align, "tensors": tensors, "data_start": start}


def f16_values(data):
    return list(struct.unpack("<%de" % (len(data) // 2), data))


def q8_values(data):
    out = []
    for b in range(0, len(data), 34):
        (d,) = struct.unpack("<e", data[b:b + 2])
        out += [d * q for q in struct.unpack("<32b", data[b + 2:b + 34])]
    return out


def lmkit_name(gguf_name):
    """llama.cpp's names (llama-arch.cpp, arch llama) to lmkit's Meta names, written here independently."""
    fixed = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight", "output.weight": "output.weight"}
    if gguf_name in fixed:
        return fixed[gguf_name]
    parts = gguf_name.split(".")
    if parts[0] != "blk":
        return None
    layer, rest = parts[1], ".".join(parts[2:])
    per_layer = {"attn_norm.weight": "attention_norm.weight", "attn_q.weight": "attention.wq.weight",
                 "attn_k.weight": "attention.wk.weight", "attn_v.weight": "attention.wv.weight",
                 "attn_output.weight": "attention.wo.weight", "attn_q.bias": "attention.wq.bias",
                 "attn_k.bias": "attention.wk.bias", "attn_v.bias": "attention.wv.bias",
                 "attn_output.bias": "attention.wo.bias", "ffn_norm.weight": "ffn_norm.weight",
                 "ffn_gate.weight": "feed_forward.w1.weight", "ffn_down.weight": "feed_forward.w2.weight",
                 "ffn_up.weight": "feed_forward.w3.weight",
                 # mixture of experts (llama-arch.cpp: FFN_GATE_INP, FFN_*_EXPS, FFN_*_SHEXP)
                 "ffn_gate_inp.weight": "feed_forward.router.weight",
                 "ffn_gate_exps.weight": "feed_forward.experts.w1.weight",
                 "ffn_up_exps.weight": "feed_forward.experts.w3.weight",
                 "ffn_down_exps.weight": "feed_forward.experts.w2.weight",
                 "ffn_gate_shexp.weight": "feed_forward.shared_expert.w1.weight",
                 "ffn_up_shexp.weight": "feed_forward.shared_expert.w3.weight",
                 "ffn_down_shexp.weight": "feed_forward.shared_expert.w2.weight"}
    return "layers.%s.%s" % (layer, per_layer[rest]) if rest in per_layer else None


def check(path, ref_path):
    g = parse(path)
    kv, types = g["kv"], g["types"]
    problems = []

    def need(key, t):
        if key not in kv:
            problems.append("missing key " + key)
        elif types[key] != t:
            problems.append("key %s has type %d, llama.cpp wants %d" % (key, types[key], t))

    need("general.architecture", STRING)
    arch = kv.get("general.architecture")
    if arch not in ("llama", "llama4"):
        problems.append("general.architecture is %r" % arch)
        raise GGUFError("; ".join(problems))
    A = arch + "."
    for k in ("context_length", "embedding_length", "block_count", "feed_forward_length",
              "attention.head_count", "attention.head_count_kv", "rope.dimension_count"):
        need(A + k, U32)
    for k in ("attention.layer_norm_rms_epsilon", "rope.freq_base"):
        need(A + k, F32)
    E = kv.get(A + "expert_count", 0)
    if arch == "llama4" or E:
        need(A + "expert_count", U32)
        need(A + "expert_used_count", U32)
    if arch == "llama4":  # llama-model.cpp / models/llama4.cpp read these without a default
        need(A + "expert_feed_forward_length", U32)
        need(A + "interleave_moe_layer_step", U32)
    need("tokenizer.ggml.model", STRING)
    if any(t["type"] == 8 for t in g["tensors"]):
        need("general.quantization_version", U32)
    if problems:
        raise GGUFError("; ".join(problems))

    ref, _ = st.read(ref_path)
    C, L = kv[A + "embedding_length"], kv[A + "block_count"]
    NH, NKV, F = kv[A + "attention.head_count"], kv[A + "attention.head_count_kv"], kv[A + "feed_forward_length"]
    HS = kv.get(A + "attention.key_length", C // NH)
    Fe = kv.get(A + "expert_feed_forward_length", F)  # Mixtral: feed_forward_length is the experts' width
    step = kv.get(A + "interleave_moe_layer_step", 1)
    V = ref["tok_embeddings.weight"][1][0]
    want_dims = {"token_embd.weight": [C, V], "output_norm.weight": [C], "output.weight": [C, V], "rope_freqs.weight": [HS // 2]}
    for i in range(L):
        b = "blk.%d." % i
        want_dims.update({b + "attn_norm.weight": [C], b + "attn_q.weight": [C, NH * HS], b + "attn_k.weight": [C, NKV * HS],
                          b + "attn_v.weight": [C, NKV * HS], b + "attn_output.weight": [NH * HS, C], b + "ffn_norm.weight": [C]})
        moe = E > 0 and (i + 1) % step == 0
        if moe:
            want_dims.update({b + "ffn_gate_inp.weight": [C, E], b + "ffn_gate_exps.weight": [C, Fe, E],
                              b + "ffn_up_exps.weight": [C, Fe, E], b + "ffn_down_exps.weight": [Fe, C, E]})
            if arch == "llama4":  # the shared expert has the experts' width
                want_dims.update({b + "ffn_gate_shexp.weight": [C, Fe], b + "ffn_up_shexp.weight": [C, Fe],
                                  b + "ffn_down_shexp.weight": [Fe, C]})
        else:
            want_dims.update({b + "ffn_gate.weight": [C, F], b + "ffn_up.weight": [C, F], b + "ffn_down.weight": [F, C]})
    for t in g["tensors"]:
        if t["name"] not in want_dims and not t["name"].endswith(".bias"):
            raise GGUFError("tensor %s is not one llama.cpp's %s loader asks for" % (t["name"], arch))
    for name, dims in want_dims.items():
        if name not in ("output.weight", "rope_freqs.weight") and not any(t["name"] == name for t in g["tensors"]):
            raise GGUFError("llama.cpp's %s loader needs %s, which the file lacks" % (arch, name))
    seen = set()
    for t in g["tensors"]:
        if t["name"] == "rope_freqs.weight":  # llama3 scaling, checked by dims only
            if t["dims"] != want_dims["rope_freqs.weight"]:
                raise GGUFError("rope_freqs.weight: dims %s, llama.cpp expects %s" % (t["dims"], want_dims["rope_freqs.weight"]))
            continue
        name = lmkit_name(t["name"])
        if name is None or name not in ref:
            raise GGUFError("tensor %s has no counterpart in %s" % (t["name"], ref_path))
        seen.add(name)
        if t["name"] in want_dims and t["dims"] != want_dims[t["name"]]:
            raise GGUFError("%s: dims %s, llama.cpp expects %s" % (t["name"], t["dims"], want_dims[t["name"]]))
        rdtype, rshape, rdata = ref[name]
        if list(reversed(t["dims"])) != rshape:
            raise GGUFError("%s: dims %s are not %s reversed" % (t["name"], t["dims"], rshape))
        tname = GGML[t["type"]][0]
        if tname == rdtype:
            if t["data"] != rdata:
                raise GGUFError("%s: bytes differ from %s" % (t["name"], name))
            continue
        want = st.values(rdtype, rdata)
        if tname == "F16":
            got = f16_values(t["data"])
            exp = list(struct.unpack("<%de" % len(want), struct.pack("<%de" % len(want), *want)))
            if got != exp:
                raise GGUFError("%s: F16 values are not the rounded reference" % t["name"])
        elif tname == "BF16":
            got = st.values("BF16", t["data"])
            exp = []
            for x in want:  # round to nearest even on the top 16 bits
                (u,) = struct.unpack("<I", struct.pack("<f", x))
                u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
                exp.append(struct.unpack("<f", struct.pack("<I", u & 0xFFFFFFFF))[0])
            if got != exp:
                raise GGUFError("%s: BF16 values are not the rounded reference" % t["name"])
        elif tname == "Q8_0":
            got = q8_values(t["data"])
            for b0 in range(0, len(want), 32):
                blk = want[b0:b0 + 32]
                step = max(abs(x) for x in blk) / 127.0
                for x, y in zip(blk, got[b0:b0 + 32]):
                    if abs(x - y) > step * 0.5001 + 1e-3 * step + 1e-12 and abs(x - y) > 1e-3 * abs(x) + step * 0.51:
                        raise GGUFError("%s: Q8_0 value %g vs reference %g (step %g)" % (t["name"], y, x, step))
        else:
            raise GGUFError("%s: %s vs reference %s not compared" % (t["name"], tname, rdtype))
    missing = sorted(set(ref) - seen - ({"output.weight"} if "output.weight" not in seen else set()))
    if missing:
        raise GGUFError("reference tensors not in the GGUF file: " + ", ".join(missing[:6]))
    return g


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "dump":
            g = parse(argv[2])
            print("version", g["version"], "alignment", g["alignment"], "data at", g["data_start"])
            for k, v in g["kv"].items():
                print("kv", k, g["types"][k], json.dumps(v)[:120])
            for t in g["tensors"]:
                print("tensor", t["name"], t["dims"], GGML[t["type"]][0], t["offset"])
            return 0
        if len(argv) == 4 and argv[1] == "check":
            g = check(argv[2], argv[3])
            print("ok: %d tensors, %d keys" % (len(g["tensors"]), len(g["kv"])))
            return 0
    except GGUFError as e:
        print("gguf_reader: %s: %s" % (argv[2], e), file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
