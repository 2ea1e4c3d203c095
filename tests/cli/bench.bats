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
