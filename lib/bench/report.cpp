#include "bench/report.h"

#include <cstdarg>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/blas.h"
#include "core/error.h"
#include "model/accounting.h"
#include "version.h"

namespace lm {

namespace {

// printf into a std::string, for the text report's aligned columns.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  std::string s(static_cast<size_t>(n > 0 ? n : 0), '\0');
  std::vsnprintf(s.data(), s.size() + 1, fmt, again);
  va_end(again);
  return s;
}

nlohmann::json timing_json(const TimingStats& t) {
  return {{"repeats", t.repeats}, {"median_s", t.median}, {"min_s", t.min},
          {"max_s", t.max},       {"mean_s", t.mean},     {"stddev_s", t.stddev}};
}

const char* dtype_json(DType t) { return t == DType::BF16 ? "bf16" : t == DType::F16 ? "f16" : "f32"; }

// " (bf16 compute, onednn_bf16)" for the text lines of bf16 compute, else "".
std::string dtype_words(DType t) {
  return t == DType::BF16 ? cat(" (bf16 compute, ", gemm_bf16_path_name(gemm_bf16_path()), ")") : std::string();
}

double bound_tokens_per_s(const DecodeBench& d) { return d.bandwidth_gbytes_per_s * 1e9 / d.bytes_per_token; }

// "40% MFU of the avx512 FMA peak", or what stands for it when no peak was measured.
std::string mfu_words(const BenchReport& r, double gflops) {
  const BenchReport::FmaPeak* p = r.best_fma_peak();
  if (!p) return "MFU unknown (no FMA peak measured)";
  return format("%.0f%% MFU of the %s FMA peak", 100 * gflops / p->gflops, p->isa.c_str());
}

}  // namespace

const BenchReport::FmaPeak* BenchReport::best_fma_peak() const {
  const FmaPeak* best = nullptr;
  for (const FmaPeak& p : fma_peaks)
    if (!best || p.gflops > best->gflops) best = &p;
  return best;
}

std::string bench_report_text(const BenchReport& r, BenchPart part) {
  const double peak = r.sgemm_peak_gflops;
  switch (part) {
    case BenchPart::Header:
      return format("lm-bench (lmkit %s): %s, %d threads\nBLAS: %s\nGEMM: %s\n", kVersion, r.cpu.model.c_str(),
                    r.threads, r.blas.c_str(), r.gemm.c_str());
    case BenchPart::Sgemm: {
      if (r.sgemm.empty()) return {};
      std::string s;
      if (!r.fma_peaks.empty()) {
        s += format("\nFMA peak (register-only loop, %d threads):", r.threads);
        for (const BenchReport::FmaPeak& p : r.fma_peaks) s += format(" %s %.1f GFLOP/s", p.isa.c_str(), p.gflops);
        s += "\n";
      }
      const BenchReport::FmaPeak* fma = r.best_fma_peak();
      s += format("\n%-22s %10s %10s %10s %8s %8s\n", "sgemm M x N x K", "GFLOP/s", "min ms", "max ms", "of peak",
                  "of FMA");
      for (const SgemmBench& b : r.sgemm)
        s += format("%-22s %10.1f %10.3f %10.3f %7.0f%% %s\n", cat(b.m, " x ", b.n, " x ", b.k).c_str(), b.gflops,
                    b.time.min * 1e3, b.time.max * 1e3, 100 * b.gflops / peak,
                    fma ? format("%7.0f%%", 100 * b.gflops / fma->gflops).c_str() : "      -");
      return s + format("sgemm peak (best of the sizes above): %.1f GFLOP/s\n", peak);
    }
    case BenchPart::Bandwidth: {
      if (!r.bandwidth) return {};
      const BandwidthBench& b = *r.bandwidth;
      return format("\nmemory read bandwidth (%lld MiB buffer): %.1f GB/s (min %.2f ms, max %.2f ms)\n",
                    static_cast<long long>(b.bytes >> 20), b.gbytes_per_s, b.time.min * 1e3, b.time.max * 1e3);
    }
    case BenchPart::Model:
      if (!r.model) return {};
      if (r.model->active_params > 0 && r.model->active_params != r.model->params)
        return format("\nmodel %s (%lld parameters, %lld active per token)\n", r.model->name.c_str(),
                      static_cast<long long>(r.model->params), static_cast<long long>(r.model->active_params));
      return format("\nmodel %s (%lld parameters)\n", r.model->name.c_str(), static_cast<long long>(r.model->params));
    case BenchPart::Forward: {
      if (!r.forward) return {};
      const ForwardBench& f = *r.forward;
      std::string s = format("forward %lld x %lld%s (logits at every position): %.0f tokens/s, %.1f GFLOP/s = %.0f%% of "
                             "sgemm peak, %s (min %.1f ms, max %.1f ms)\n",
                             static_cast<long long>(f.batch), static_cast<long long>(f.seq), dtype_words(f.dtype).c_str(),
                             f.tokens_per_s, f.gflops, 100 * f.gflops / peak, mfu_words(r, f.gflops).c_str(), f.time.min * 1e3, f.time.max * 1e3);
      if (const auto& p = r.prompt)
        s += format("prompt %lld tokens (batch 1, last logits only, as llama-bench -p): %.0f tokens/s, %.1f GFLOP/s = "
                    "%.0f%% of sgemm peak, %s (min %.1f ms, max %.1f ms)\n",
                    static_cast<long long>(p->tokens), p->tokens_per_s, p->gflops, 100 * p->gflops / peak,
                    mfu_words(r, p->gflops).c_str(), p->time.min * 1e3, p->time.max * 1e3);
      return s;
    }
    case BenchPart::Train: {
      if (!r.train) return {};
      const TrainBench& t = *r.train;
      return format("train %lld x %lld%s%s%s: %.0f tokens/s, %.1f GFLOP/s = %s, %.0f%% of sgemm peak "
                    "(min %.1f ms, max %.1f ms per step; activations %s)\n",
                    static_cast<long long>(t.batch), static_cast<long long>(t.seq),
                    t.checkpointing ? " (checkpointing)" : "", t.row_parallel ? " (rows in parallel)" : "",
                    dtype_words(t.dtype).c_str(), t.tokens_per_s, t.gflops, mfu_words(r, t.gflops).c_str(),
                    100 * t.gflops / peak, t.time.min * 1e3, t.time.max * 1e3,
                    human_bytes(static_cast<double>(t.activation_bytes)).c_str());
    }
    case BenchPart::Decode: {
      if (!r.decode) return {};
      const DecodeBench& d = *r.decode;
      return format("decode (batch 1, %lld tokens, %s KV cache): %.1f tokens/s, %.1f GB/s = %.0f%% of the bandwidth bound "
                    "(%.1f tokens/s at %.1f MB per token and %.1f GB/s; median of %d runs, each against the "
                    "bandwidth measurement just before it)\n",
                    static_cast<long long>(d.tokens), dtype_json(d.kv_dtype), d.tokens_per_s, d.gbytes_per_s, 100 * d.fraction_of_bound,
                    bound_tokens_per_s(d), d.bytes_per_token * 1e-6, d.bandwidth_gbytes_per_s, d.time.repeats);
    }
  }
  return {};
}

std::string bench_report_json(const BenchReport& r) {
  const double peak = r.sgemm_peak_gflops;
  nlohmann::json j{{"version", kVersion},
                   {"threads", r.threads},
                   {"cpu", {{"model", r.cpu.model}, {"cores", r.cpu.cores}, {"simd", r.cpu.simd}}},
                   {"blas", r.blas},
                   {"gemm", r.gemm}};
  const BenchReport::FmaPeak* fma = r.best_fma_peak();
  // The fraction of the best FMA peak, when one was measured (MFU for the model benches).
  auto add_mfu = [&](nlohmann::json& o, const char* key, double gflops) {
    if (fma) o[key] = gflops / fma->gflops;
  };
  if (fma) {
    for (const BenchReport::FmaPeak& p : r.fma_peaks) j["fma_peak"][p.isa] = p.gflops;
    j["fma_peak_gflops"] = fma->gflops;
    j["fma_peak_isa"] = fma->isa;
  }
  if (!r.sgemm.empty()) {
    for (const SgemmBench& b : r.sgemm) {
      nlohmann::json s{{"m", b.m},
                       {"n", b.n},
                       {"k", b.k},
                       {"calls", b.calls},
                       {"min_batch_s", b.min_batch_seconds},
                       {"gflops", b.gflops},
                       {"fraction_of_peak", b.gflops / peak},
                       {"time", timing_json(b.time)}};
      add_mfu(s, "fraction_of_fma_peak", b.gflops);
      j["sgemm"].push_back(s);
    }
    j["sgemm_peak_gflops"] = peak;
  }
  if (r.bandwidth)
    j["bandwidth"] = {{"bytes", r.bandwidth->bytes},
                      {"gbytes_per_s", r.bandwidth->gbytes_per_s},
                      {"time", timing_json(r.bandwidth->time)}};
  if (r.model)
    j["model"] = {{"name", r.model->name},
                  {"overrides", r.model->overrides},
                  {"params", r.model->params},
                  {"active_params", r.model->active_params}};
  if (const auto& f = r.forward) {
    j["forward"] = {{"batch", f->batch},   {"seq", f->seq},       {"dtype", dtype_json(f->dtype)},
                    {"tokens_per_s", f->tokens_per_s},
                    {"flops", f->flops},   {"gflops", f->gflops}, {"fraction_of_sgemm_peak", f->gflops / peak},
                    {"logits", "all"},     {"time", timing_json(f->time)}};
    add_mfu(j["forward"], "mfu", f->gflops);
  }
  if (const auto& p = r.prompt) {
    j["prompt"] = {{"batch", 1},
                   {"tokens", p->tokens},
                   {"tokens_per_s", p->tokens_per_s},
                   {"flops", p->flops},
                   {"gflops", p->gflops},
                   {"fraction_of_sgemm_peak", p->gflops / peak},
                   {"logits", "last"},
                   {"time", timing_json(p->time)}};
    add_mfu(j["prompt"], "mfu", p->gflops);
  }
  if (const auto& t = r.train) {
    j["train"] = {{"batch", t->batch},
                  {"seq", t->seq},
                  {"checkpointing", t->checkpointing},
                  {"row_parallel", t->row_parallel},
                  {"dtype", dtype_json(t->dtype)},
                  {"tokens_per_s", t->tokens_per_s},
                  {"flops", t->flops},
                  {"gflops", t->gflops},
                  {"fraction_of_sgemm_peak", t->gflops / peak},
                  {"activation_bytes", t->activation_bytes},
                  {"loss", t->loss},
                  {"time", timing_json(t->time)}};
    add_mfu(j["train"], "mfu", t->gflops);
  }
  // bf16 compute: how the bf16 GEMM runs on this machine (blas.h's Bf16GemmPath).
  if ((r.forward && r.forward->dtype == DType::BF16) || (r.train && r.train->dtype == DType::BF16))
    j["bf16_gemm"] = gemm_bf16_path_name(gemm_bf16_path());
  if (const auto& d = r.decode) {
    nlohmann::json rounds = nlohmann::json::array();
    for (const DecodeBench::Round& round : d->rounds)
      rounds.push_back({{"bandwidth_gbytes_per_s", round.bandwidth_gbytes_per_s},
                        {"gbytes_per_s", round.gbytes_per_s},
                        {"fraction", round.fraction}});
    j["decode"] = {{"batch", 1},
                   {"tokens", d->tokens},
                   {"kv_dtype", dtype_json(d->kv_dtype)},
                   {"tokens_per_s", d->tokens_per_s},
                   {"bytes_per_token", d->bytes_per_token},
                   {"gbytes_per_s", d->gbytes_per_s},
                   {"bandwidth_gbytes_per_s", d->bandwidth_gbytes_per_s},
                   {"bandwidth_bound_tokens_per_s", bound_tokens_per_s(*d)},
                   {"fraction_of_bound", d->fraction_of_bound},
                   {"rounds", rounds},
                   {"time", timing_json(d->time)}};
  }
  return j.dump(2);
}

}  // namespace lm
