#include "bench/model_bench.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/accounting.h"
#include "train/optimizer.h"

namespace lm {

namespace {
// Random tokens a block-wise model accepts: no [LATTICE] (which may not come before [ATOMS]);
// its places take [ATOMS], which opens the block-wise span as materium's rows do.
void without_lattice(const ModelConfig& c, std::vector<int32_t>& tokens) {
  if (c.rope_mode != RopeMode::Blockwise) return;
  for (auto& t : tokens)
    if (t == c.lattice_token_id) t = static_cast<int32_t>(c.atoms_token_id);
}
}  // namespace

double forward_flops(const ModelConfig& cfg, int64_t B, int64_t T) {
  const FlopCounts f = count_flops(cfg, T);
  double keys = 0;  // per row, summed over the layers: the keys each query attends to
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const int64_t chunk = cfg.layer_chunk(l);
    auto causal = [](double n) { return 0.5 * n * (n + 1); };  // queries 0..n-1 of one span
    if (!cfg.causal)
      keys += static_cast<double>(T) * T;
    else if (chunk > 0)  // whole chunks, then the partial last one
      keys += static_cast<double>(T / chunk) * causal(static_cast<double>(chunk)) + causal(static_cast<double>(T % chunk));
    else
      keys += causal(static_cast<double>(T));
  }
  const double attn = 4.0 * cfg.n_heads * cfg.head_size() * keys;
  return B * (T * f.matmul_per_token + attn);
}

double decode_bytes_per_token(const ModelConfig& cfg, int64_t context) {
  return 4.0 * static_cast<double>(decode_params_per_token(cfg)) +
         kv_cache_bytes_per_token(cfg, 4) * static_cast<double>(context);
}

namespace {
// A random token of the text: a vision model's image_token_id (a place that needs a feature)
// is moved to the next id, so vision models are measured on text only.
int32_t text_token(Rng& rng, const ModelConfig& c) {
  int64_t t = static_cast<int64_t>(rng.below(static_cast<uint64_t>(c.vocab_size)));
  if (c.vision_dim > 0 && c.image_token_id >= 0 && t == c.image_token_id) t = (t + 1) % c.vocab_size;
  return static_cast<int32_t>(t);
}
}  // namespace
double decode_bytes_per_token(const ModelWeights& w, int64_t context, int kv_bytes) {
  const ModelConfig& cfg = w.config();
  double bytes = 0;
  for (size_t i = 0; i < w.layout().tensors().size(); ++i) {
    const ParamInfo& p = w.layout().tensors()[i];
    const double stored = static_cast<double>(w.stored_bytes(i));
    // An untied table is read one row per token; a tied one is the classifier, read whole;
    // of the stacked experts a token reads only the top_k it is routed to.
    if (p.kind == ParamKind::TokEmbeddings && !cfg.tie_embeddings)
      bytes += stored / static_cast<double>(p.shape[0]);
    else if (p.kind == ParamKind::ExpertsW1 || p.kind == ParamKind::ExpertsW2 || p.kind == ParamKind::ExpertsW3)
      bytes += stored * static_cast<double>(cfg.moe.top_k) / static_cast<double>(cfg.moe.n_experts);  // the selected ones
    else
      bytes += stored;
  }
  return bytes + kv_cache_bytes_per_token(cfg, kv_bytes) * static_cast<double>(context);
}

ForwardBench bench_forward(Transformer& model, int64_t B, int64_t T, int warmup, int repeats) {
  const ModelConfig& c = model.config();
  if (B < 1 || T < 1 || T > c.max_seq_len)
    fail_usage(cat("forward benchmark needs 1 <= seq <= max_seq_len (", c.max_seq_len, ") and batch >= 1, got ", B,
                   " x ", T));
  std::vector<int32_t> tokens(static_cast<size_t>(B * T));
  Rng rng(1);
  for (auto& t : tokens) t = text_token(rng, c);
  without_lattice(c, tokens);
  ForwardBench r;
  r.batch = B;
  r.seq = T;
  r.dtype = model.compute_dtype();
  r.time = measure([&] { model.forward(tokens.data(), nullptr, B, T); }, warmup, repeats);
  r.tokens_per_s = static_cast<double>(B * T) / r.time.median;
  r.flops = forward_flops(c, B, T);
  r.gflops = r.flops / r.time.median * 1e-9;
  return r;
}

PromptBench bench_prompt(Transformer& model, int64_t tokens, int warmup, int repeats) {
  const ModelConfig& c = model.config();
  if (!c.causal) fail(ErrorKind::Unsupported, "prompt benchmark: the model is not causal");
  if (tokens < 1 || tokens > c.max_seq_len)
    fail_usage(cat("prompt benchmark needs 1 <= tokens <= max_seq_len (", c.max_seq_len, "), got ", tokens));
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  Rng rng(5);
  for (auto& t : ids) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab_size)));
  KVCache cache = model.make_cache(1, tokens);
  PromptBench r;
  r.tokens = tokens;
  r.time = measure(
      [&] {
        cache.reset();
        model.forward_last(ids.data(), nullptr, tokens, cache);
      },
      warmup, repeats);
  r.tokens_per_s = static_cast<double>(tokens) / r.time.median;
  const double classifier_per_row = 2.0 * static_cast<double>(c.dim) * static_cast<double>(c.vocab_size);
  r.flops = forward_flops(c, 1, tokens) - classifier_per_row * static_cast<double>(tokens - 1);
  r.gflops = r.flops / r.time.median * 1e-9;
  return r;
}

double train_flops(const ModelConfig& cfg, int64_t B, int64_t T) { return 3.0 * forward_flops(cfg, B, T); }

TrainBench bench_train(Transformer& model, int64_t B, int64_t T, bool checkpointing, int warmup, int repeats) {
  const ModelConfig& c = model.config();
  if (B < 1 || T < 1 || T > c.max_seq_len)
    fail_usage(cat("train benchmark needs 1 <= seq <= max_seq_len (", c.max_seq_len, ") and batch >= 1, got ", B,
                   " x ", T));
  std::vector<int32_t> tokens(static_cast<size_t>(B * (T + 1)));
  Rng data_rng(3);
  for (auto& t : tokens) t = text_token(data_rng, c);
  without_lattice(c, tokens);
  std::vector<int32_t> inputs(static_cast<size_t>(B * T)), targets(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      inputs[static_cast<size_t>(b * T + t)] = tokens[static_cast<size_t>(b * (T + 1) + t)];
      targets[static_cast<size_t>(b * T + t)] = tokens[static_cast<size_t>(b * (T + 1) + t + 1)];
    }
  ModelWeights& w = model.weights();
  if (!w.writable()) {
    w.make_writable();
    model.weights_changed();  // the storage moved
  }
  const ParameterLayout& layout = w.layout();
  Tensor grad_arena = Tensor::zeros(DType::F32, {layout.arena_floats()});
  float* grads = grad_arena.data_mut<float>();
  const ParameterTensors grad_views = layout.bind(grads);
  train::AdamW adamw(layout, train::AdamWConfig{});
  Rng rng(4);
  model.set_gradient_checkpointing(checkpointing);
  model.set_row_parallel(Transformer::row_parallel_pays(c));  // as lm-train
  TrainBench r;
  r.batch = B;
  r.seq = T;
  r.checkpointing = checkpointing;
  r.dtype = model.compute_dtype();
  int64_t step = 0;
  r.time = measure(
      [&] {
        TrainStepOptions opt;  // the gradients start at 0: zeros, then AdamW's pass (as lm-train)
        opt.rng = &rng;
        r.loss = model.train_step(grad_views, inputs.data(), nullptr, targets.data(), B, T, opt).loss;
        const double norm = train::grad_global_norm(layout, grads);  // clipped as lm-train: inside AdamW's pass
        adamw.step_and_zero(w.arena(), grads, 1e-4, ++step, train::clip_scale(norm, 1.0));
        model.weights_changed();
      },
      warmup, repeats);
  model.set_gradient_checkpointing(false);
  r.row_parallel = model.row_parallel_applies(B, TrainStepOptions{});
  model.set_row_parallel(false);
  r.tokens_per_s = static_cast<double>(B * T) / r.time.median;
  r.flops = train_flops(c, B, T);
  r.gflops = r.flops / r.time.median * 1e-9;
  r.activation_bytes = model.activation_bytes();
  return r;
}

DecodeBench bench_decode(Transformer& model, int64_t tokens, const BandwidthProbe& probe, int warmup, int repeats) {
  const ModelConfig& c = model.config();
  if (!c.causal) fail(ErrorKind::Unsupported, "decode benchmark: the model is not causal");
  if (tokens < 1 || tokens > c.max_seq_len)
    fail_usage(cat("decode benchmark needs 1 <= tokens <= max_seq_len (", c.max_seq_len, "), got ", tokens));
  if (repeats < 1) fail_usage(cat("repeats must be at least 1, got ", repeats));
  KVCache cache = model.make_cache(1, tokens);
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  Rng rng(2);
  for (auto& t : ids) t = text_token(rng, c);
  without_lattice(c, ids);
  auto run = [&] {
    cache.reset();
    for (int64_t i = 0; i < tokens; ++i) model.forward_step(&ids[static_cast<size_t>(i)], nullptr, cache);
  };
  DecodeBench r;
  r.tokens = tokens;
  r.kv_dtype = model.kv_dtype();
  r.bytes_per_token = decode_bytes_per_token(model.weights(), tokens / 2, static_cast<int>(dtype_size(r.kv_dtype)));
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> times, bandwidths, fractions;
  for (int i = 0; i < repeats; ++i) {
    DecodeBench::Round round;
    // Two passes, the faster counts: the first pass after a decode run reads about 10% slower
    // than the ones after it, which would flatter the run that follows.
    const double pass = std::min(time_once([&] { probe.read(); }), time_once([&] { probe.read(); }));
    round.bandwidth_gbytes_per_s = static_cast<double>(probe.bytes()) / pass * 1e-9;
    const double seconds = time_once(run);
    round.gbytes_per_s = r.bytes_per_token * static_cast<double>(tokens) / seconds * 1e-9;
    round.fraction = round.gbytes_per_s / round.bandwidth_gbytes_per_s;
    r.rounds.push_back(round);
    times.push_back(seconds);
    bandwidths.push_back(round.bandwidth_gbytes_per_s);
    fractions.push_back(round.fraction);
  }
  r.time = timing_stats(times);
  r.tokens_per_s = static_cast<double>(tokens) / r.time.median;
  r.gbytes_per_s = r.bytes_per_token * r.tokens_per_s * 1e-9;
  r.bandwidth_gbytes_per_s = median(bandwidths);
  r.fraction_of_bound = median(fractions);
  return r;
}

}  // namespace lm
