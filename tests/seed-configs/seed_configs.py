"""The seeds' own config serialisations mapped onto lmkit's config: the executable form of
docs/seed-configs.md, and the writer of the expected files beside each seed config here.

    python3 tests/seed-configs/seed_configs.py          # rewrite *.lmkit.json and manifest.json
    python3 tests/seed-configs/seed_configs.py --check  # only check that they are up to date

For every seed file X.json listed in CASES it writes X.lmkit.json: the lmkit config the
mapping gives, as a partial lmkit config JSON (every field the mapping decides, explicit or
implicit; a field it does not decide keeps lmkit's default); and X.back.json: that config
written back in the seed's format (every field of the seed's dataclass, as
`lm-inspect-config --write-format FORMAT --config` writes it), which must map to the same config. A C++ test parses the seed file
(format detected, `--config-format auto`) and X.lmkit.json (lmkit's own format) and compares
the two ModelConfigs; each error case lists the words its message must contain. No torch
needed; the standard library only.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class MappingError(Exception):
    """A field lmkit cannot honour, a missing required field, a bad value."""


def _take(doc, key, default, fmt):
    """doc[key] when present, else the seed's default; a required field (default ...) must be there."""
    if key in doc:
        return doc[key]
    if default is ...:
        raise MappingError(f"{fmt}: '{key}' is required (the seed gives it no default)")
    return default


def _check_keys(doc, known, fmt):
    for key in doc:
        if key not in known:
            raise MappingError(f"{fmt}: unknown key '{key}'")


# ---- materium ModelArgs.to_dict() ----

MATERIUM_DEFAULTS = {  # ModelArgs' dataclass defaults (seed 000)
    "dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": None, "vocab_size": 32000, "hidden_dim": None,
    "multiple_of": 256, "norm_eps": 1e-5, "max_seq_len": 2048, "dropout": 0.1, "pad_id": -1,
    "condition_config": None, "rope_mode": "STANDARD", "atoms_token_id": None, "lattice_token_id": None,
    "atom_block_size": 4,
}
ROPE_MODES = {"STANDARD": "standard", "standard": "standard", "BLOCKWISE": "blockwise", "blockwise": "blockwise"}


def from_materium(doc):
    fmt = "materium ModelArgs"
    _check_keys(doc, MATERIUM_DEFAULTS, fmt)
    g = {k: _take(doc, k, v, fmt) for k, v in MATERIUM_DEFAULTS.items()}
    if g["rope_mode"] not in ROPE_MODES:
        raise MappingError(f"{fmt}: 'rope_mode' {g['rope_mode']!r} is not a RopeMode (STANDARD, BLOCKWISE)")
    conditions = []
    for name, cc in (g["condition_config"] or {}).items():
        if not isinstance(cc, dict):
            raise MappingError(f"{fmt}: condition_config.{name}: expected a ConditionConfig object")
        _check_keys(cc, ("proj_layer_type", "input_dim", "out_dim"), f"{fmt}: condition_config.{name}")
        for key in ("proj_layer_type", "input_dim", "out_dim"):
            _take(cc, key, ..., f"{fmt}: condition_config.{name}")
        if cc["proj_layer_type"] not in ("linear", "embedding", "formula"):
            raise MappingError(f"{fmt}: condition_config.{name}: unknown proj_layer_type {cc['proj_layer_type']!r}")
        if cc["out_dim"] != g["dim"]:
            raise MappingError(f"{fmt}: condition_config.{name}: out_dim {cc['out_dim']} is not dim {g['dim']} "
                               "(materium projects every condition to dim)")
        conditions.append({"name": name, "proj_layer_type": cc["proj_layer_type"], "input_dim": cc["input_dim"],
                           "out_dim": cc["out_dim"], "max_elements": 0})
    return {
        "dim": g["dim"], "n_layers": g["n_layers"], "n_heads": g["n_heads"],
        "n_kv_heads": g["n_kv_heads"] or 0, "vocab_size": g["vocab_size"], "hidden_dim": g["hidden_dim"] or 0,
        "multiple_of": g["multiple_of"], "ffn_dim_multiplier": 0.0, "head_dim": 0,
        "max_seq_len": g["max_seq_len"], "norm_type": "rmsnorm", "norm_eps": g["norm_eps"], "norm_bias": False,
        "ffn_type": "swiglu", "attn_bias": False, "ffn_bias": False, "qk_norm": False,
        "tie_embeddings": True, "output_bias": False, "causal": True, "doc_mask": False, "logits_soft_cap": 0.0,
        "rope_theta": 10000.0, "rope_scale_factor": 1.0,
        "dropout": g["dropout"], "attn_dropout": g["dropout"], "emb_dropout": g["dropout"],
        "pad_id": -1 if g["pad_id"] is None else g["pad_id"],
        "conditions": conditions, "rope_mode": ROPE_MODES[g["rope_mode"]],
        "atoms_token_id": -1 if g["atoms_token_id"] is None else g["atoms_token_id"],
        "lattice_token_id": -1 if g["lattice_token_id"] is None else g["lattice_token_id"],
        "atom_block_size": g["atom_block_size"], "loss_weights": False,
    }


# ---- xlstm-jax LlamaConfig.to_dict() ----

XLSTM_DEFAULTS = {  # LlamaConfig (seed 001); vocab_size, embedding_dim, num_blocks are required
    "vocab_size": ..., "embedding_dim": ..., "num_blocks": ..., "head_dim": 128, "qk_norm": False, "causal": True,
    "theta": 1e4, "ffn_multiple_of": 64, "ffn_dim_multiplier": 1.0, "use_bias": False, "scan_blocks": True,
    "attention_backend": "xla", "mask_across_document_boundaries": False, "dtype": "float32",
    "dropout_rate": 0.0, "add_embedding_dropout": False, "logits_soft_cap": None, "parallel": None,
}


XLSTM_PARALLEL_DEFAULTS = {  # xlstm_jax.models.configs.ParallelConfig's fields (no math: sharding)
    "data_axis_size": -1, "fsdp_axis_size": 1, "pipeline_axis_size": 1, "model_axis_size": 1,
    "data_axis_name": "dp", "fsdp_axis_name": "fsdp", "pipeline_axis_name": "pipe", "model_axis_name": "tp",
    "remat": [], "fsdp_modules": [], "fsdp_min_weight_size": 2 ** 18, "fsdp_gather_dtype": None,
    "fsdp_grad_scatter_dtype": None, "tp_async_dense": True,
}


def from_xlstm(doc):
    fmt = "xlstm-jax LlamaConfig"
    _check_keys(doc, XLSTM_DEFAULTS, fmt)
    g = {k: _take(doc, k, v, fmt) for k, v in XLSTM_DEFAULTS.items()}
    if g["embedding_dim"] % g["head_dim"]:
        raise MappingError(f"{fmt}: embedding_dim {g['embedding_dim']} is not a multiple of head_dim {g['head_dim']} "
                           "(the number of heads is embedding_dim // head_dim)")
    if g["attention_backend"] not in ("xla", "pallas_triton", "cudnn"):
        raise MappingError(f"{fmt}: unknown attention_backend {g['attention_backend']!r}")
    if g["dtype"] not in ("float32", "bfloat16", "float16"):
        raise MappingError(f"{fmt}: unknown dtype {g['dtype']!r}")
    if g["parallel"] is not None and not isinstance(g["parallel"], dict):
        raise MappingError(f"{fmt}: 'parallel': expected a ParallelConfig object")
    out = {
        "vocab_size": g["vocab_size"], "dim": g["embedding_dim"], "n_layers": g["num_blocks"],
        "n_heads": g["embedding_dim"] // g["head_dim"], "n_kv_heads": 0, "head_dim": g["head_dim"],
        "hidden_dim": 0, "multiple_of": g["ffn_multiple_of"], "ffn_dim_multiplier": g["ffn_dim_multiplier"],
        "norm_type": "rmsnorm", "norm_eps": 1e-6, "norm_bias": False, "ffn_type": "swiglu",
        "attn_bias": g["use_bias"], "ffn_bias": g["use_bias"], "qk_norm": g["qk_norm"], "qk_norm_weight": True,
        "tie_embeddings": False, "output_bias": False, "causal": g["causal"],
        "doc_mask": g["mask_across_document_boundaries"],
        "logits_soft_cap": 0.0 if g["logits_soft_cap"] is None else g["logits_soft_cap"],
        "rope_theta": g["theta"], "rope_scale_factor": 1.0,
        "dropout": g["dropout_rate"], "attn_dropout": 0.0,
        "emb_dropout": g["dropout_rate"] if g["add_embedding_dropout"] else 0.0,
    }
    if g["mask_across_document_boundaries"]:
        out["doc_mask_boundary"] = "start"  # proposed field: docs/seed-configs.md, "Document masks"
    return out


# ---- MobileLLM (cheapertraining) MobileLLMConfig ----

MOBILELLM_DEFAULTS = {  # the seed's table (003); the fields after norm_eps are its code version's
    "vocab_size": 128256, "num_layers": ..., "num_heads": ..., "num_kv_heads": ..., "embed_dim": ...,
    "hidden_dim": ..., "max_seq_len": 32768, "rope_base": 500000.0, "use_qk_norm": True,
    "tie_word_embeddings": True, "dropout": 0.0, "norm_eps": 1e-5,
    "use_weight_sharing": None, "rope_scaling": None, "attention_dropout": 0.0, "use_moe": False,
    "num_experts": 1, "num_experts_per_tok": 1, "moe_intermediate_size": None, "initializer_range": 0.02,
    "use_gradient_checkpointing": False, "gradient_checkpointing_mode": "quantized",
}


def from_mobilellm(doc):
    fmt = "MobileLLMConfig"
    _check_keys(doc, MOBILELLM_DEFAULTS, fmt)
    g = {k: _take(doc, k, v, fmt) for k, v in MOBILELLM_DEFAULTS.items()}
    tie = g["tie_word_embeddings"]
    if g["use_weight_sharing"] is not None:
        if "tie_word_embeddings" in doc and doc["tie_word_embeddings"] != g["use_weight_sharing"]:
            raise MappingError(f"{fmt}: tie_word_embeddings and use_weight_sharing disagree")
        tie = g["use_weight_sharing"]
    if g["embed_dim"] % g["num_heads"] or g["num_heads"] % g["num_kv_heads"]:
        raise MappingError(f"{fmt}: embed_dim must be a multiple of num_heads, num_heads of num_kv_heads")
    if g["rope_scaling"] is not None:
        raise MappingError(f"{fmt}: rope_scaling {g['rope_scaling']!r}: the seed does not define its form")
    if g["use_moe"]:
        raise MappingError(f"{fmt}: use_moe: the seed does not define MobileLLM's expert routing")
    if g["use_gradient_checkpointing"] and g["gradient_checkpointing_mode"] != "standard":
        raise MappingError(f"{fmt}: gradient_checkpointing_mode {g['gradient_checkpointing_mode']!r} stores "
                           "quantized activations, which changes the gradients (lm-train --checkpointing is exact)")
    if g["gradient_checkpointing_mode"] not in ("standard", "quantized"):
        raise MappingError(f"{fmt}: unknown gradient_checkpointing_mode {g['gradient_checkpointing_mode']!r}")
    out = {
        "vocab_size": g["vocab_size"], "dim": g["embed_dim"], "n_layers": g["num_layers"],
        "n_heads": g["num_heads"], "n_kv_heads": g["num_kv_heads"], "head_dim": 0, "hidden_dim": g["hidden_dim"],
        "max_seq_len": g["max_seq_len"], "norm_type": "rmsnorm", "norm_eps": g["norm_eps"], "norm_bias": False,
        "ffn_type": "swiglu", "attn_bias": False, "ffn_bias": False,
        "qk_norm": g["use_qk_norm"], "qk_norm_weight": True, "tie_embeddings": tie, "output_bias": False,
        "causal": True, "doc_mask": False, "logits_soft_cap": 0.0,
        "rope_theta": float(g["rope_base"]), "rope_scale_factor": 1.0, "rope_scaling": {"type": "none"},
        "dropout": g["dropout"], "attn_dropout": g["attention_dropout"],
    }
    if g["vocab_size"] == 128256:  # the Llama 3 tokenizer's specials, as the mobilellm presets set them
        out.update(bos_id=128000, eos_id=128001)
    return out


# ---- soma-models V1 ModelConfig (+ SIGRegConfig under "sig_reg") ----

SOMA_DEFAULTS = {  # ModelConfig (seed 002); dropout_rate has no default
    "dropout_rate": ..., "embedding_dim": 2048, "pwff_hidden_dim": 8192, "num_layers": 24, "num_heads": 8,
    "vocab_size": 264, "max_wavelength": 10000.0, "scale_factor": 1.0, "sig_reg": None,
}
SIGREG_DEFAULTS = {"t_max": 3.0, "points": 17, "slices": 256, "coefficient": 0.02}


def from_soma(doc):
    fmt = "soma ModelConfig"
    _check_keys(doc, SOMA_DEFAULTS, fmt)
    g = {k: _take(doc, k, v, fmt) for k, v in SOMA_DEFAULTS.items()}
    sr = g["sig_reg"] or {}
    _check_keys(sr, SIGREG_DEFAULTS, "soma SIGRegConfig")
    s = {k: _take(sr, k, v, "soma SIGRegConfig") for k, v in SIGREG_DEFAULTS.items()}
    if g["vocab_size"] < 258:
        raise MappingError(f"{fmt}: vocab_size {g['vocab_size']} leaves no room for PAD 256 and EOS 257")
    return {
        "dim": g["embedding_dim"], "hidden_dim": g["pwff_hidden_dim"], "n_layers": g["num_layers"],
        "n_heads": g["num_heads"], "n_kv_heads": 0, "head_dim": 0, "vocab_size": g["vocab_size"],
        "max_seq_len": 1024, "norm_type": "layernorm", "norm_bias": True, "norm_eps": 1e-5,
        "ffn_type": "gelu", "gelu_approximate": "none", "attn_bias": True, "ffn_bias": True,
        "qk_norm": False, "tie_embeddings": False, "output_bias": True, "causal": True, "doc_mask": False,
        "rope_theta": g["max_wavelength"], "rope_scale_factor": g["scale_factor"],
        "dropout": g["dropout_rate"], "attn_dropout": g["dropout_rate"], "emb_dropout": 0.0,
        "sigreg": {"enabled": True, "t_max": s["t_max"], "points": s["points"], "slices": s["slices"],
                   "coefficient": s["coefficient"]},
        "bos_id": -1, "eos_id": 257, "pad_id": 256,
    }


# ---- write-back (lm-inspect-config --write-format X): lmkit config -> the seed's serialisation ----
#
# Every field of the seed's dataclass, in its order, as its to_dict()/asdict() writes them. A
# write-back exists exactly when reading it back gives the same lmkit config; otherwise it is an
# error naming the first lmkit field that differs (check_round_trip). Fields without math
# (xlstm's scan_blocks, attention_backend, dtype, parallel; MobileLLM's initializer_range) are
# written with the seed's defaults: lmkit keeps no value for them.

def to_materium(cfg):
    conds = {c["name"]: {"proj_layer_type": c["proj_layer_type"], "input_dim": c["input_dim"],
                         "out_dim": c["out_dim"] or cfg["dim"]} for c in cfg.get("conditions", [])}
    return {
        "dim": cfg["dim"], "n_layers": cfg["n_layers"], "n_heads": cfg["n_heads"],
        "n_kv_heads": cfg["n_kv_heads"] or None, "vocab_size": cfg["vocab_size"], "hidden_dim": cfg["hidden_dim"] or None,
        "multiple_of": cfg["multiple_of"], "norm_eps": cfg["norm_eps"], "max_seq_len": cfg["max_seq_len"],
        "dropout": cfg["dropout"], "pad_id": cfg["pad_id"], "condition_config": conds or None,
        "rope_mode": cfg.get("rope_mode", "standard").upper(),  # the enum's name, as to_dict() writes it
        "atoms_token_id": None if cfg.get("atoms_token_id", -1) < 0 else cfg["atoms_token_id"],
        "lattice_token_id": None if cfg.get("lattice_token_id", -1) < 0 else cfg["lattice_token_id"],
        "atom_block_size": cfg.get("atom_block_size", 4),
    }


def to_xlstm(cfg):
    return {
        "vocab_size": cfg["vocab_size"], "embedding_dim": cfg["dim"], "num_blocks": cfg["n_layers"],
        "head_dim": cfg["head_dim"] or cfg["dim"] // cfg["n_heads"], "qk_norm": cfg["qk_norm"], "causal": cfg["causal"],
        "theta": cfg["rope_theta"], "ffn_multiple_of": cfg["multiple_of"], "ffn_dim_multiplier": cfg["ffn_dim_multiplier"] or 1.0,
        "use_bias": cfg["attn_bias"], "scan_blocks": True, "attention_backend": "xla",
        "mask_across_document_boundaries": cfg["doc_mask"], "dtype": "float32", "dropout_rate": cfg["dropout"],
        "add_embedding_dropout": cfg["emb_dropout"] > 0, "logits_soft_cap": cfg["logits_soft_cap"] or None,
        "parallel": dict(XLSTM_PARALLEL_DEFAULTS),
    }


def to_mobilellm(cfg):
    return {
        "vocab_size": cfg["vocab_size"], "num_layers": cfg["n_layers"], "num_heads": cfg["n_heads"],
        "num_kv_heads": cfg["n_kv_heads"] or cfg["n_heads"], "embed_dim": cfg["dim"], "hidden_dim": cfg["hidden_dim"],
        "max_seq_len": cfg["max_seq_len"], "rope_base": cfg["rope_theta"], "use_qk_norm": cfg["qk_norm"],
        "tie_word_embeddings": cfg["tie_embeddings"], "dropout": cfg["dropout"], "norm_eps": cfg["norm_eps"],
        "attention_dropout": cfg["attn_dropout"],
    }


def to_soma(cfg):
    sr = cfg["sigreg"]
    return {
        "dropout_rate": cfg["dropout"], "embedding_dim": cfg["dim"], "pwff_hidden_dim": cfg["hidden_dim"],
        "num_layers": cfg["n_layers"], "num_heads": cfg["n_heads"], "vocab_size": cfg["vocab_size"],
        "max_wavelength": cfg["rope_theta"], "scale_factor": cfg["rope_scale_factor"],
        "sig_reg": {k: sr[k] for k in SIGREG_DEFAULTS},
    }


WRITE_BACK = {"materium": to_materium, "xlstm-jax": to_xlstm, "mobilellm": to_mobilellm, "soma": to_soma}


def check_round_trip(fmt, cfg):
    """The write-back of cfg in fmt, which must read back as cfg (else MappingError naming the field)."""
    doc = WRITE_BACK[fmt](cfg)
    back = FORMATS[fmt](doc)
    for key in sorted(set(cfg) | set(back)):
        if cfg.get(key) != back.get(key):
            raise MappingError(f"{key} = {json.dumps(cfg.get(key))} has no {fmt} equivalent")
    return doc


FORMATS = {"materium": from_materium, "xlstm-jax": from_xlstm, "mobilellm": from_mobilellm, "soma": from_soma}


def detect(doc):
    """The format of a config document by its marker keys (docs/seed-configs.md, "Detection")."""
    found = []
    if "condition_config" in doc:
        found.append("materium")
    if "embedding_dim" in doc and "num_blocks" in doc:
        found.append("xlstm-jax")
    if "embed_dim" in doc:
        found.append("mobilellm")
    if "num_blocks" not in doc and ({"dropout_rate", "pwff_hidden_dim", "max_wavelength"} & set(doc)):
        found.append("soma")
    if len(found) > 1:
        raise MappingError(f"the config looks like {' and '.join(found)}: name its format with --config-format")
    return found[0] if found else "lmkit"


# ---- the files ----

CASES = [  # (seed file, expected format, error words or None)
    ("materium_model_args.json", "materium", None),
    ("materium_standard.json", "materium", None),
    ("xlstm_llama.json", "xlstm-jax", None),
    ("xlstm_llama_docmask.json", "xlstm-jax", None),
    ("mobilellm_950m.json", "mobilellm", None),
    ("mobilellm_140m_asdict.json", "mobilellm", None),
    ("soma_v1.json", "soma", None),
    ("soma_v1_minimal.json", "soma", None),
    ("errors/materium_rope_mode.json", "materium", ["rope_mode", "ROTARY"]),
    ("errors/materium_out_dim.json", "materium", ["out_dim", "dim"]),
    ("errors/xlstm_head_dim.json", "xlstm-jax", ["embedding_dim", "head_dim"]),
    ("errors/mobilellm_quantized_checkpointing.json", "mobilellm", ["gradient_checkpointing_mode", "quantized"]),
    ("errors/mobilellm_moe.json", "mobilellm", ["use_moe"]),
    ("errors/soma_no_dropout.json", "soma", ["dropout_rate", "required"]),
    ("errors/ambiguous.json", None, ["--config-format"]),
]


def expected_name(seed_file):
    return seed_file[:-len(".json")] + ".lmkit.json"


def build():
    """{relative path: text} of every file this script writes."""
    out, manifest = {}, []
    for rel, fmt, error in CASES:
        with open(os.path.join(HERE, rel)) as f:
            doc = json.load(f)
        entry = {"file": rel, "format": fmt}
        try:
            got_fmt = detect(doc)
            assert got_fmt == fmt, (rel, got_fmt)
            cfg = FORMATS[got_fmt](doc)
        except MappingError as e:
            assert error is not None, f"{rel}: {e}"
            assert all(w in str(e) for w in error), (rel, str(e), error)
            entry["error"] = error
            entry["message"] = str(e)
        else:
            assert error is None, f"{rel}: expected an error with {error}"
            entry["expect"] = expected_name(rel)
            out[entry["expect"]] = json.dumps(cfg, indent=2) + "\n"
            entry["write_back"] = rel[:-len(".json")] + ".back.json"
            out[entry["write_back"]] = json.dumps(check_round_trip(fmt, cfg), indent=2) + "\n"
        manifest.append(entry)
    out["manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    return out


def main(argv):
    files = build()
    stale = []
    for rel, text in files.items():
        path = os.path.join(HERE, rel)
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(rel)
            if "--check" not in argv:
                with open(path, "w") as f:
                    f.write(text)
    if "--check" in argv and stale:
        sys.exit(f"out of date: {', '.join(stale)} (run seed_configs.py)")
    print(f"{len(files)} files, {len(stale)} {'stale' if '--check' in argv else 'written'}")


if __name__ == "__main__":
    main(sys.argv[1:])
