#include <algorithm>
#include <memory>

#include "bench/report.h"
#include "convert/inference_weights.h"
#include "core/blas.h"
#include "core/cpu_features.h"
#include "core/fma_peak.h"
#include "core/error.h"
#include "core/threads.h"
#include "io/safetensors.h"
#include "model/accounting.h"
#include "model/params.h"
#include "model/transformer.h"
#include "model/user_config.h"

namespace lm {

namespace {

// A preset or config JSON with random weights, or a checkpoint, with --set overrides.
ModelWeights bench_weights(const std::string& name, const std::vector<std::string>& sets, const std::string& format) {
  if (convert::is_gguf_file(name)) return convert::load_inference_weights(name, sets);
  const ConfigInput in = load_user_config(name, sets, format);
  if (in.kind == ConfigInput::Kind::Checkpoint)  // matrices as stored (f16, q8_0, ...)
    return ModelWeights::from_checkpoint(*in.file, in.config, true);
  return ModelWeights::random(in.config, 0);
}

}  // namespace

BenchReport run_bench(const BenchOptions& opts, const std::function<void(const BenchReport&, BenchPart)>& on_part) {
  auto wants = [&](const char* w) { return std::find(opts.what.begin(), opts.what.end(), w) != opts.what.end(); };
  const bool model_wanted = wants("forward") || wants("train") || wants("decode");
  auto done = [&](const BenchReport& r, BenchPart part) {
    if (on_part) on_part(r, part);
  };
  if (opts.dtype != DType::F32) {
    // decode's bound counts f32 weight bytes; bf16 decode weights are the quantized-inference work's (issue 15)
    if (wants("decode")) fail_usage("--dtype bf16 applies to the forward and train benchmarks, not to decode");
    if (!wants("forward") && !wants("train"))
      fail_usage("--dtype bf16 applies to the forward and train benchmarks: name one of them");
  }
  BenchReport r;
  std::unique_ptr<Transformer> model;
  if (model_wanted) {
    ModelWeights weights = bench_weights(opts.model, opts.sets, opts.config_format);
    // Decode and prompts on panels as lm-generate runs them; training writes the weights
    // (it would drop them), so a run with train measures everything on the rows.
    if (opts.panels && !wants("train")) weights.add_panels();
    model = std::make_unique<Transformer>(std::move(weights));
  }
  if (model) {
    require_supported(model->config(), program_capabilities(), "lm-bench");
    model->set_compute_dtype(opts.dtype);
    model->set_kv_dtype(opts.kv_dtype.value_or(model->weights_kv_dtype()));
  }
  r.cpu = cpu_info();
  r.threads = thread_count();
  r.blas = blas_config();
  r.gemm = gemm_config();
  done(r, BenchPart::Header);
  if (wants("sgemm") || wants("forward") || wants("train")) {
    // Each ISA twice, alternating, the better kept: on a shared machine a neighbour's burst
    // during one ISA's rounds crowned the other once (AVX2 above AVX-512, 2026-12-03).
    for (int pass = 0; pass < 2; ++pass) {
      size_t at = 0;
      for (Isa isa : {Isa::avx512, Isa::avx2}) {
        if (!cpu_has(isa)) continue;
        const double gflops = fma_peak_gflops(isa, r.threads);
        if (pass == 0)
          r.fma_peaks.push_back({isa_name(isa), gflops});
        else
          r.fma_peaks[at].gflops = std::max(r.fma_peaks[at].gflops, gflops);
        ++at;
      }
    }
    for (int64_t n : opts.sizes) {
      r.sgemm.push_back(bench_sgemm(n, n, n, false, opts.warmup, opts.repeats));
      r.sgemm_peak_gflops = std::max(r.sgemm_peak_gflops, r.sgemm.back().gflops);
    }
    done(r, BenchPart::Sgemm);
  }
  if (wants("bandwidth") || wants("decode")) {
    r.bandwidth = bench_read_bandwidth(static_cast<size_t>(opts.bandwidth_mib) << 20, opts.warmup, opts.repeats);
    done(r, BenchPart::Bandwidth);
  }
  if (!model) return r;
  const ModelConfig& cfg = model->config();
  const ParamCounts counts = count_params(cfg);
  r.model = BenchReport::Model{opts.model, opts.sets, counts.total, counts.active};
  done(r, BenchPart::Model);
  if (wants("forward")) {
    r.forward = bench_forward(*model, opts.batch, opts.seq, opts.warmup, opts.repeats);
    if (cfg.causal)
      r.prompt = bench_prompt(*model, std::min(opts.prompt_tokens, cfg.max_seq_len), opts.warmup, opts.repeats);
    done(r, BenchPart::Forward);
  }
  if (wants("train")) {
    r.train = bench_train(*model, opts.batch, opts.seq, opts.checkpointing, opts.warmup, opts.repeats);
    done(r, BenchPart::Train);
  }
  if (wants("decode")) {
    const BandwidthProbe probe(static_cast<size_t>(opts.bandwidth_mib) << 20);
    r.decode = bench_decode(*model, std::min(opts.decode_tokens, cfg.max_seq_len), probe, opts.warmup, opts.repeats);
    done(r, BenchPart::Decode);
  }
  return r;
}

}  // namespace lm
