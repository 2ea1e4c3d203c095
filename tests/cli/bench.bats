#!/usr/bin/env bats
# lm-bench: reports are well-formed and options are validated. (Figures are not
# asserted: speed is measured, never tested by timing.)

load helpers

@test "lm-bench --json reports sgemm and bandwidth with spread" {
  run lm-bench --json --sizes 64,128 --bandwidth-mib 8 --repeats 3 --warmup 0 --threads 1
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["threads"] == 1, r["threads"]
assert [s["m"] for s in r["sgemm"]] == [64, 128]
assert all(s["gflops"] > 0 and s["time"]["repeats"] == 3 for s in r["sgemm"])
assert max(s["fraction_of_peak"] for s in r["sgemm"]) == 1.0
assert r["sgemm_peak_gflops"] == max(s["gflops"] for s in r["sgemm"])
assert r["bandwidth"]["bytes"] == 8 << 20 and r["bandwidth"]["gbytes_per_s"] > 0
t = r["bandwidth"]["time"]
assert t["min_s"] <= t["median_s"] <= t["max_s"]
assert "OpenBLAS" in r["blas"] and "USE_OPENMP" in r["blas"], r["blas"]
'
}

@test "lm-bench runs only the requested benchmark" {
  run lm-bench sgemm --sizes 32 --repeats 1 --json
  assert_success
  echo "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert "sgemm" in r and "bandwidth" not in r'
  run lm-bench bandwidth --bandwidth-mib 4 --repeats 1
  assert_success
  assert_output --partial "memory read bandwidth (4 MiB buffer)"
  refute_output --partial "sgemm peak"
}

@test "lm-bench rejects bad values with exit 2" {
  run lm-bench --repeats 0
  assert_failure 2
  assert_output --partial "lm-bench: error:"
  run lm-bench --sizes 0
  assert_failure 2
  run lm-bench nonsense
  assert_failure 2
}

@test "lm-bench forward and decode report tokens/s against the sgemm peak and the bandwidth bound" {
  run lm-bench forward decode --model tiny --batch 2 --seq 16 --decode-tokens 8 --sizes 64 --bandwidth-mib 4 \
      --repeats 2 --warmup 0 --threads 1 --json
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert "sgemm" in r and "bandwidth" in r  # the limits each figure is compared with
f, d = r["forward"], r["decode"]
assert f["batch"] == 2 and f["seq"] == 16 and f["tokens_per_s"] > 0 and f["gflops"] > 0
assert abs(f["fraction_of_sgemm_peak"] - f["gflops"] / r["sgemm_peak_gflops"]) < 1e-9
assert d["batch"] == 1 and d["tokens"] == 8 and d["tokens_per_s"] > 0
# Decode is held to the bandwidth read just before each run: the median of the rounds.
rounds = d["rounds"]
assert len(rounds) == 2
for x in rounds:
    assert x["bandwidth_gbytes_per_s"] > 0 and x["gbytes_per_s"] > 0
    assert abs(x["fraction"] - x["gbytes_per_s"] / x["bandwidth_gbytes_per_s"]) < 1e-9
median = lambda v: sum(sorted(v)[len(v) // 2 - 1 : len(v) // 2 + 1]) / 2  # two rounds: their mean
assert abs(d["fraction_of_bound"] - median([x["fraction"] for x in rounds])) < 1e-9
assert abs(d["bandwidth_gbytes_per_s"] - median([x["bandwidth_gbytes_per_s"] for x in rounds])) < 1e-9
bound = d["bandwidth_gbytes_per_s"] * 1e9 / d["bytes_per_token"]
assert abs(d["bandwidth_bound_tokens_per_s"] - bound) < 1e-6 * bound
assert abs(d["gbytes_per_s"] - d["tokens_per_s"] * d["bytes_per_token"] * 1e-9) < 1e-6 * d["gbytes_per_s"]
assert d["time"]["repeats"] == 2 and r["model"]["name"] == "tiny" and r["model"]["params"] > 0
'
}

@test "lm-bench decode --kv-dtype: the cache's type, and its bytes in the bound" {
  for kv in f32 bf16 f16; do
    lm-bench decode --model tiny --decode-tokens 8 --bandwidth-mib 4 --repeats 1 --warmup 0 --threads 1 --json \
      --kv-dtype "$kv" > "$TMP/$kv.json"
  done
  python3 - "$TMP" <<'PY'
import json, sys
d = {kv: json.load(open(f"{sys.argv[1]}/{kv}.json"))["decode"] for kv in ("f32", "bf16", "f16")}
assert [d[k]["kv_dtype"] for k in d] == ["f32", "bf16", "f16"], d
# the weights the same, the cache at 2 bytes a value instead of 4
assert d["f32"]["bytes_per_token"] > d["bf16"]["bytes_per_token"] and d["bf16"]["bytes_per_token"] == d["f16"]["bytes_per_token"], d
PY
  run lm-bench decode --model tiny --decode-tokens 4 --repeats 1 --warmup 0 --threads 1
  assert_success
  assert_output --partial "f32 KV cache"
  run lm-bench decode --model tiny --kv-dtype i8
  assert_failure 2
}

@test "lm-bench --no-panels: forward and decode on the rows as stored" {
  run lm-bench forward decode --model tiny --decode-tokens 4 --prompt-tokens 8 --batch 1 --seq 16 --sizes 64 \
    --bandwidth-mib 4 --repeats 1 --warmup 0 --threads 1 --no-panels
  assert_success
  assert_output --partial "decode (batch 1"
  assert_output --partial "prompt 8 tokens"
}

@test "lm-bench runs forward and decode on a checkpoint, as text" {
  run lm-bench forward decode --model "$LMKIT_SOURCE_DIR/tests/fixtures/llama2/model.safetensors" --batch 1 --seq 8 \
      --prompt-tokens 8 --decode-tokens 4 --sizes 32 --bandwidth-mib 4 --repeats 1 --warmup 0 --threads 1
  assert_success
  assert_output --partial "forward 1 x 8 (logits at every position):"
  assert_output --partial "prompt 8 tokens (batch 1, last logits only"
  assert_output --partial "of sgemm peak"
  assert_output --partial "of the bandwidth bound"
  run lm-bench forward --model no-such-model --repeats 1
  assert_failure 2
  assert_output --partial "unknown preset"
  run lm-bench forward --model tiny --seq 100000 --sizes 32 --repeats 1
  assert_failure 2
  assert_output --partial "max_seq_len"
  run lm-bench decode --decode-tokens 0
  assert_failure 2
}

@test "lm-bench train reports tokens/s, model FLOPs and MFU of a training step" {
  run lm-bench train --model tiny --batch 2 --seq 16 --sizes 64 --repeats 1 --warmup 0 --threads 1 --json
  assert_success
  echo "$output" | python3 -c '
import json, math, sys
r = json.load(sys.stdin)
assert "sgemm" in r and "bandwidth" not in r and "forward" not in r  # train brings its limit only
t = r["train"]
assert t["batch"] == 2 and t["seq"] == 16 and t["checkpointing"] is False
assert t["tokens_per_s"] > 0 and t["flops"] > 0 and t["gflops"] > 0 and t["activation_bytes"] > 0
assert abs(t["tokens_per_s"] - 32 / t["time"]["median_s"]) < 1e-6 * t["tokens_per_s"]
assert abs(t["gflops"] - t["flops"] / t["time"]["median_s"] * 1e-9) < 1e-6 * t["gflops"]
assert abs(t["mfu"] - t["gflops"] / r["fma_peak_gflops"]) < 1e-9
assert abs(t["fraction_of_sgemm_peak"] - t["gflops"] / r["sgemm_peak_gflops"]) < 1e-9
assert t["time"]["repeats"] == 1
assert abs(t["loss"] - math.log(264)) < 1.0, t["loss"]  # random weights and tokens: about ln V
'
}

@test "lm-bench train: FLOPs are 3x the forward, checkpointing shrinks the activations, --set reshapes" {
  run lm-bench forward train --model tiny --batch 2 --seq 16 --sizes 32 --repeats 1 --warmup 0 --threads 1 --json
  assert_success
  plain=$output
  run lm-bench train --model tiny --checkpointing --batch 2 --seq 16 --sizes 32 --repeats 1 --warmup 0 --threads 1 --json
  assert_success
  ckpt=$output
  run lm-bench train --model tiny --set vocab_size=256 --set pad_id=-1 --set eos_id=-1 --set n_layers=2 \
      --batch 3 --seq 8 --sizes 32 --repeats 1 --warmup 0 --threads 1 --json
  assert_success
  python3 -c '
import json, sys
plain, ckpt, baby = (json.loads(s) for s in sys.argv[1:])
assert abs(plain["train"]["flops"] - 3 * plain["forward"]["flops"]) < 1e-6 * plain["train"]["flops"]
assert ckpt["train"]["checkpointing"] is True and ckpt["train"]["flops"] == plain["train"]["flops"]
assert ckpt["train"]["activation_bytes"] < plain["train"]["activation_bytes"]
assert baby["model"]["overrides"] == ["vocab_size=256", "pad_id=-1", "eos_id=-1", "n_layers=2"]
assert baby["model"]["params"] < plain["model"]["params"]
assert baby["train"]["batch"] == 3 and baby["train"]["seq"] == 8 and baby["train"]["tokens_per_s"] > 0
' "$plain" "$ckpt" "$output"
}

@test "lm-bench train runs on a checkpoint, as text, and rejects bad values with exit 2" {
  run lm-bench train --model "$LMKIT_SOURCE_DIR/tests/fixtures/llama2/model.safetensors" --batch 1 --seq 8 \
      --sizes 32 --repeats 1 --warmup 0 --threads 1
  assert_success
  assert_output --partial "train 1 x 8:"
  assert_output --partial "MFU of the avx"
  assert_output --partial "of sgemm peak"
  run lm-bench train --model tiny --seq 100000 --sizes 32 --repeats 1
  assert_failure 2
  assert_output --partial "max_seq_len"
  run lm-bench train --model tiny --batch 0
  assert_failure 2
  run lm-bench train --model tiny --repeats 0
  assert_failure 2
  run lm-bench train --model tiny --set no_such_field=1
  assert_failure 2
  assert_output --partial "lm-bench: error:"
  run lm-bench train --model tiny --set dim=-5
  assert_failure 2
}

@test "lm-bench reports the FMA peak per ISA, the GEMM it runs, and MFU against the best peak" {
  run lm-bench forward train --model tiny --batch 1 --seq 12 --prompt-tokens 12 --sizes 32,64 --repeats 2 \
      --warmup 0 --threads 1 --json
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
flags = set(open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split())
want = [isa for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2")) if flag in flags]
assert sorted(r["fma_peak"]) == sorted(want), (r["fma_peak"], want)
assert all(g > 0 for g in r["fma_peak"].values())
assert r["fma_peak_gflops"] == max(r["fma_peak"].values())
assert r["fma_peak"][r["fma_peak_isa"]] == r["fma_peak_gflops"]
assert r["gemm"] and ("oneDNN" in r["gemm"] or "OpenBLAS" in r["gemm"]), r["gemm"]
if "avx512" in want:  # oneDNN picks its AVX-512 kernels from cpuid, whatever OPENBLAS_CORETYPE says
    assert "oneDNN" in r["gemm"] and "avx512" in r["gemm"], r["gemm"]
peak = r["fma_peak_gflops"]
for s in r["sgemm"]:
    # every timed run is a batch of calls lasting 50 ms or more; its time is per call
    assert s["calls"] >= 1 and s["min_batch_s"] >= 0.05, s
    assert s["calls"] * s["time"]["min_s"] <= s["min_batch_s"] * 1.5 or s["calls"] == 1, s
    assert abs(s["fraction_of_fma_peak"] - s["gflops"] / peak) < 1e-9
for part in ("forward", "prompt", "train"):
    x = r[part]
    assert abs(x["mfu"] - x["gflops"] / peak) < 1e-9, part
    assert abs(x["fraction_of_sgemm_peak"] - x["gflops"] / r["sgemm_peak_gflops"]) < 1e-9, part
p, f = r["prompt"], r["forward"]
assert p["batch"] == 1 and p["tokens"] == 12 and p["logits"] == "last" and f["logits"] == "all"
assert abs(p["tokens_per_s"] - 12 / p["time"]["median_s"]) < 1e-6 * p["tokens_per_s"]
# the same tokens as the forward, but the classifier (dim 128 x vocab 264) runs on the last position only
assert abs(p["flops"] - (f["flops"] - 2 * 128 * 264 * 11)) < 1e-9 * f["flops"], (p["flops"], f["flops"])
'
  run lm-bench forward --model tiny --batch 1 --seq 8 --prompt-tokens 8 --sizes 32 --repeats 1 --warmup 0 --threads 1
  assert_success
  assert_output --partial "GEMM: "
  assert_output --partial "FMA peak (register-only loop, 1 threads):"
  assert_output --partial "of FMA"
  assert_output --partial "% MFU of the avx"
}

@test "lm-bench --dtype bf16: forward and train in bf16 compute, named in the JSON and the text" {
  run lm-bench forward train --model tiny --batch 2 --seq 16 --sizes 32 --repeats 1 --warmup 0 --threads 1 --json \
      --dtype bf16
  assert_success
  echo "$output" | python3 -c '
import json, math, sys
r = json.load(sys.stdin)
assert r["forward"]["dtype"] == "bf16" and r["train"]["dtype"] == "bf16", r
assert r["bf16_gemm"] in ("onednn_bf16", "widen_sgemm"), r
avx512_bf16 = " avx512_bf16 " in " " + open("/proc/cpuinfo").read().replace("\n", " ") + " "
assert avx512_bf16 or r["bf16_gemm"] == "widen_sgemm", r  # no AVX512_BF16: the widened fallback
assert r["train"]["tokens_per_s"] > 0 and abs(r["train"]["loss"] - math.log(264)) < 1.0, r["train"]
'
  run lm-bench forward --model tiny --batch 2 --seq 16 --sizes 32 --repeats 1 --warmup 0 --threads 1 --json
  assert_success
  echo "$output" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["forward"]["dtype"] == "f32" and "bf16_gemm" not in r, r
'
  run lm-bench train --model tiny --batch 2 --seq 16 --sizes 32 --repeats 1 --warmup 0 --threads 1 --dtype bf16
  assert_success
  assert_output --regexp "train 2 x 16 \(bf16 compute, (onednn_bf16|widen_sgemm)\): "
  run lm-bench decode --model tiny --dtype bf16 --repeats 1
  assert_failure 2
  assert_output --partial "lm-bench: error: --dtype bf16 applies to the forward and train benchmarks, not to decode"
  run lm-bench sgemm --dtype bf16
  assert_failure 2
  assert_output --partial "name one of them"
  run lm-bench forward --dtype f16
  assert_failure 2
}
