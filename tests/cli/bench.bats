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
bound = r["bandwidth"]["gbytes_per_s"] * 1e9 / d["bytes_per_token"]
assert abs(d["bandwidth_bound_tokens_per_s"] - bound) < 1e-6 * bound
assert abs(d["fraction_of_bound"] - d["tokens_per_s"] / bound) < 1e-9
assert d["time"]["repeats"] == 2 and r["model"]["name"] == "tiny" and r["model"]["params"] > 0
'
}

@test "lm-bench runs forward and decode on a checkpoint, as text" {
  run lm-bench forward decode --model "$LMKIT_SOURCE_DIR/tests/fixtures/llama2/model.safetensors" --batch 1 --seq 8 \
      --decode-tokens 4 --sizes 32 --bandwidth-mib 4 --repeats 1 --warmup 0 --threads 1
  assert_success
  assert_output --partial "forward 1 x 8:"
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
