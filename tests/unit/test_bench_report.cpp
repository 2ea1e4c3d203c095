// lm-bench's report (lib/bench/report.h) from a BenchReport made by hand: each figure is
// printed as measured, in both formats, and the derived ones (fractions of the peak and of
// the bandwidth bound) are computed from the same numbers. No timing is tested here.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "bench/report.h"
#include "core/blas.h"
#include "core/error.h"

namespace lm {
namespace {

TimingStats timing(double median) { return TimingStats{3, median, median * 0.9, median * 1.2, median, 0.01}; }

BenchReport sample_report() {
  BenchReport r;
  r.cpu = CpuInfo{"Test CPU", 2, {"avx2", "fma"}};
  r.threads = 2;
  r.blas = "OpenBLAS test";
  r.gemm = "oneDNN test avx512_core";
  r.fma_peaks = {{"avx512", 250}, {"avx2", 125}};
  r.sgemm.push_back(SgemmBench{64, 64, 64, false, timing(0.001), 50});
  r.sgemm.push_back(SgemmBench{128, 128, 128, false, timing(0.002), 200});
  r.sgemm_peak_gflops = 200;
  r.bandwidth = BandwidthBench{size_t{8} << 20, timing(0.0005), 16.5};
  r.model = BenchReport::Model{"tiny", {"dim=32"}, 123456};
  r.forward = ForwardBench{2, 16, timing(0.01), 3200, 1e9, 100};
  r.prompt = PromptBench{128, timing(0.02), 6400, 2e9, 150};
  r.train = TrainBench{2, 16, true, timing(0.05), 640, 3e9, 60, 4096, 5.5};
  DecodeBench d;
  d.tokens = 8;
  d.time = timing(0.02);
  d.tokens_per_s = 400;
  d.bytes_per_token = 1e6;
  d.gbytes_per_s = 0.4;
  d.rounds = {{10, 0.4, 0.04}, {8, 0.4, 0.05}};
  d.bandwidth_gbytes_per_s = 9;
  d.fraction_of_bound = 0.045;
  r.decode = d;
  return r;
}

TEST(BenchReport, JsonHoldsEveryFigureOnce) {
  const nlohmann::json j = nlohmann::json::parse(bench_report_json(sample_report()));
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["cpu"]["model"], "Test CPU");
  EXPECT_EQ(j["cpu"]["simd"][1], "fma");
  EXPECT_EQ(j["blas"], "OpenBLAS test");
  ASSERT_EQ(j["sgemm"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["sgemm"][0]["fraction_of_peak"].get<double>(), 0.25);
  EXPECT_EQ(j["sgemm"][1]["time"]["repeats"], 3);
  EXPECT_DOUBLE_EQ(j["sgemm"][1]["time"]["median_s"].get<double>(), 0.002);
  EXPECT_DOUBLE_EQ(j["sgemm_peak_gflops"].get<double>(), 200);
  EXPECT_EQ(j["bandwidth"]["bytes"], 8 << 20);
  EXPECT_EQ(j["model"]["overrides"][0], "dim=32");
  EXPECT_EQ(j["model"]["params"], 123456);
  EXPECT_DOUBLE_EQ(j["forward"]["fraction_of_sgemm_peak"].get<double>(), 0.5);
  EXPECT_EQ(j["gemm"], "oneDNN test avx512_core");
  EXPECT_DOUBLE_EQ(j["fma_peak"]["avx512"].get<double>(), 250);
  EXPECT_DOUBLE_EQ(j["fma_peak"]["avx2"].get<double>(), 125);
  EXPECT_DOUBLE_EQ(j["fma_peak_gflops"].get<double>(), 250);
  EXPECT_EQ(j["fma_peak_isa"], "avx512");
  EXPECT_DOUBLE_EQ(j["sgemm"][1]["fraction_of_fma_peak"].get<double>(), 200.0 / 250);
  // MFU: against the best FMA peak, not the sgemm peak
  EXPECT_DOUBLE_EQ(j["forward"]["mfu"].get<double>(), 100.0 / 250);
  EXPECT_DOUBLE_EQ(j["prompt"]["mfu"].get<double>(), 150.0 / 250);
  EXPECT_DOUBLE_EQ(j["prompt"]["fraction_of_sgemm_peak"].get<double>(), 0.75);
  EXPECT_EQ(j["prompt"]["tokens"], 128);
  EXPECT_EQ(j["prompt"]["logits"], "last");
  EXPECT_DOUBLE_EQ(j["train"]["mfu"].get<double>(), 60.0 / 250);
  EXPECT_DOUBLE_EQ(j["train"]["fraction_of_sgemm_peak"].get<double>(), 0.3);
  EXPECT_EQ(j["train"]["checkpointing"], true);
  EXPECT_EQ(j["train"]["activation_bytes"], 4096);
  EXPECT_DOUBLE_EQ(j["decode"]["bandwidth_bound_tokens_per_s"].get<double>(), 9e9 / 1e6);
  EXPECT_EQ(j["decode"]["rounds"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["decode"]["rounds"][1]["fraction"].get<double>(), 0.05);
  EXPECT_EQ(j["forward"]["dtype"], "f32");
  EXPECT_EQ(j["train"]["dtype"], "f32");
  EXPECT_FALSE(j.contains("bf16_gemm"));
  EXPECT_TRUE(j.contains("version"));
}

TEST(BenchReport, Bf16ComputeIsNamedWithItsGemmPath) {
  BenchReport r = sample_report();
  r.train->dtype = DType::BF16;
  const nlohmann::json j = nlohmann::json::parse(bench_report_json(r));
  EXPECT_EQ(j["forward"]["dtype"], "f32");
  EXPECT_EQ(j["train"]["dtype"], "bf16");
  EXPECT_EQ(j["bf16_gemm"], gemm_bf16_path_name(gemm_bf16_path()));
  EXPECT_EQ(bench_report_text(r, BenchPart::Forward).find("bf16"), std::string::npos);
  EXPECT_NE(bench_report_text(r, BenchPart::Train)
                .find(cat("train 2 x 16 (checkpointing) (bf16 compute, ", gemm_bf16_path_name(gemm_bf16_path()), "):")),
            std::string::npos);
}

TEST(BenchReport, JsonLeavesOutWhatWasNotMeasured) {
  BenchReport r = sample_report();
  r.sgemm.clear();
  r.model.reset();
  r.forward.reset();
  r.train.reset();
  r.decode.reset();
  r.prompt.reset();
  r.fma_peaks.clear();
  const nlohmann::json j = nlohmann::json::parse(bench_report_json(r));
  for (const char* key : {"sgemm", "sgemm_peak_gflops", "model", "forward", "prompt", "train", "decode", "fma_peak",
                          "fma_peak_gflops", "fma_peak_isa"})
    EXPECT_FALSE(j.contains(key)) << key;
  EXPECT_TRUE(j.contains("bandwidth"));
}

TEST(BenchReport, TextPartByPart) {
  const BenchReport r = sample_report();
  EXPECT_NE(bench_report_text(r, BenchPart::Header).find("Test CPU, 2 threads\nBLAS: OpenBLAS test\nGEMM: oneDNN test"),
            std::string::npos);
  const std::string sgemm = bench_report_text(r, BenchPart::Sgemm);
  EXPECT_NE(sgemm.find("FMA peak (register-only loop, 2 threads): avx512 250.0 GFLOP/s avx2 125.0 GFLOP/s"),
            std::string::npos) << sgemm;
  EXPECT_NE(sgemm.find("64 x 64 x 64                 50.0      0.900      1.200      25%      20%"), std::string::npos)
      << sgemm;
  EXPECT_NE(sgemm.find("sgemm peak (best of the sizes above): 200.0 GFLOP/s"), std::string::npos);
  EXPECT_EQ(bench_report_text(r, BenchPart::Bandwidth),
            "\nmemory read bandwidth (8 MiB buffer): 16.5 GB/s (min 0.45 ms, max 0.60 ms)\n");
  EXPECT_EQ(bench_report_text(r, BenchPart::Model), "\nmodel tiny (123456 parameters)\n");
  const std::string forward = bench_report_text(r, BenchPart::Forward);
  EXPECT_NE(forward.find("forward 2 x 16 (logits at every position): 3200 tokens/s, 100.0 GFLOP/s = 50% of sgemm peak, "
                         "40% MFU of the avx512 FMA peak"),
            std::string::npos) << forward;
  EXPECT_NE(forward.find("prompt 128 tokens (batch 1, last logits only, as llama-bench -p): 6400 tokens/s, 150.0 GFLOP/s "
                         "= 75% of sgemm peak, 60% MFU of the avx512 FMA peak"),
            std::string::npos) << forward;
  EXPECT_NE(bench_report_text(r, BenchPart::Train).find("train 2 x 16 (checkpointing): 640 tokens/s, 60.0 GFLOP/s = 24% MFU "
                                                        "of the avx512 FMA peak, 30% of sgemm peak"),
            std::string::npos);
  EXPECT_NE(bench_report_text(r, BenchPart::Decode).find("decode (batch 1, 8 tokens, f32 KV cache): 400.0 tokens/s, 0.4 GB/s = 4% of the "
                                                         "bandwidth bound (9000.0 tokens/s at 1.0 MB per token and 9.0 "
                                                         "GB/s; median of 3 runs"),
            std::string::npos);
  BenchReport empty;
  EXPECT_EQ(bench_report_text(empty, BenchPart::Decode), "");
  EXPECT_EQ(bench_report_text(empty, BenchPart::Sgemm), "");
}

}  // namespace
}  // namespace lm
