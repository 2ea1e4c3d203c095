// lm-bench: the machine's limits (FMA peak per ISA, sgemm GFLOP/s, memory read bandwidth) and
// the model's speed against them (forward, prompt and training tokens/s as MFU of the FMA peak
// and as a fraction of the sgemm peak, decode tokens/s vs bandwidth / bytes per token), measured as the median of repeated runs after a warm-up, as
// text or JSON. The runs and the report are lib/bench/report.h.
#include <iostream>

#include "bench/report.h"
#include "cli.h"

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-bench", "Measure the machine's limits for lmkit (sgemm throughput, memory bandwidth) and a "
                                 "model's forward, training and decode speed against them");
  auto& app = tool.app();
  lm::BenchOptions o;
  bool json_out = false;
  app.add_option("benchmarks", o.what, "What to measure: sgemm, bandwidth, forward, train, decode (default: sgemm and "
                                       "bandwidth; forward and train add sgemm, decode adds bandwidth)")
      ->check(CLI::IsMember({"sgemm", "bandwidth", "forward", "train", "decode"}));
  app.add_option("--model", o.model, "Model for forward/train/decode: a preset or config JSON (random weights) or a "
                                     "checkpoint file")
      ->type_name("NAME|FILE");
  app.add_option("--set", o.sets, "Override a model config field: KEY=VALUE (see lm-inspect-config)")
      ->type_name("KEY=VALUE")->allow_extra_args(false);
  app.add_option("--config-format", o.config_format, "Format of a config JSON --model: auto, lmkit, materium, xlstm-jax, "
                                                     "mobilellm, soma")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "lmkit", "materium", "xlstm-jax", "mobilellm", "soma"}));
  app.add_option("--batch", o.batch, "Forward and train benchmark batch size B")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--seq", o.seq, "Forward and train benchmark sequence length T (<= max_seq_len)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--checkpointing", o.checkpointing, "Train benchmark: gradient checkpointing (recompute each layer in "
                                                   "the backward pass)");
  tool.add_dtype_option(o.dtype, "Forward and train benchmarks: the matmuls' operands, f32 or bf16 (bfloat16 "
                                 "operands, f32 accumulation)");
  tool.add_kv_dtype_option(o.kv_dtype, "Decode benchmark: the KV cache's elements");
  bool no_panels = false;
  app.add_flag("--no-panels", no_panels, "Forward and decode benchmarks: multiply the matrices as stored instead of "
                                         "from panels (lm-generate --no-panels)");
  app.add_option("--decode-tokens", o.decode_tokens, "Decode benchmark: tokens per timed run, from an empty cache")
      ->check(CLI::PositiveNumber);
  app.add_option("--prompt-tokens", o.prompt_tokens, "Forward benchmark: prompt length of the prompt-processing run "
                                                     "(batch 1, last logits only, as llama-bench -p; capped at "
                                                     "max_seq_len)")
      ->check(CLI::PositiveNumber);
  app.add_option("--sizes", o.sizes, "Square sgemm sizes N (N x N x N)")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--bandwidth-mib", o.bandwidth_mib, "Buffer size for the bandwidth test in MiB")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--warmup", o.warmup, "Untimed runs before measuring")->check(CLI::NonNegativeNumber);
  app.add_option("--repeats", o.repeats, "Timed runs; the median is reported")->check(CLI::PositiveNumber);
  app.add_flag("--json", json_out, "Print one JSON object instead of a table");
  tool.add_threads_option();

  return tool.run(argc, argv, [&] {
    o.panels = !no_panels;
    const lm::BenchReport r = lm::run_bench(o, [&](const lm::BenchReport& so_far, lm::BenchPart part) {
      if (!json_out) std::cout << lm::bench_report_text(so_far, part) << std::flush;
    });
    if (json_out) std::cout << lm::bench_report_json(r) << '\n';
    return 0;
  });
}
