// Model throughput for lm-bench: a batched forward pass over [B, T] (bound by sgemm), a full
// training step over [B, T] (bound by sgemm), and batch-1 decoding with a KV cache (bound by
// memory bandwidth: every weight is read once per token), each with the work it does so a
// report can compare it with the machine's limit.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/bench.h"
#include "model/config.h"
#include "model/transformer.h"

namespace lm {

// FLOPs of a forward over [B, T]: 2 x (every matmul weight a token uses, incl. the classifier;
// of a MoE layer the router, top_k experts and the shared expert) per token,
// plus causal attention as computed (q.k and p.v over the t + 1 keys query t sees; all T for
// a non-causal model; on a chunked layer the keys of the query's own chunk): 2 x 2 x NH x HS x
// keys per layer.
double forward_flops(const ModelConfig& cfg, int64_t B, int64_t T);

// Bytes a decode step reads: every f32 weight it uses once (decode_params_per_token: the token
// embedding only as one row unless it is the tied classifier; of a MoE layer the router, the
// top_k selected experts and the shared expert, not the experts left unread), plus k and v of
// `context` positions in every layer.
double decode_bytes_per_token(const ModelConfig& cfg, int64_t context);
// The same from the weights as stored (f16, q8_0, ... matrices count their own bytes), the
// cache's k and v at kv_bytes each (4: f32, 2: bf16 or f16).
double decode_bytes_per_token(const ModelWeights& w, int64_t context, int kv_bytes = 4);

struct ForwardBench {
  int64_t batch = 0, seq = 0;
  TimingStats time;
  double tokens_per_s = 0;
  double flops = 0;   // per forward
  double gflops = 0;  // at the median time
  DType dtype = DType::F32;  // the model's compute dtype
};
// Random tokens, positions 0..T-1.
ForwardBench bench_forward(Transformer& model, int64_t B, int64_t T, int warmup, int repeats);

struct PromptBench {
  int64_t tokens = 0;  // prompt length (batch 1)
  TimingStats time;
  double tokens_per_s = 0;
  double flops = 0;   // per prompt: forward_flops(cfg, 1, T) less the classifier on T - 1 rows
  double gflops = 0;  // at the median time
};
// Prompt processing as llama-bench's pp test and lm-generate's prefill run it: one row of
// `tokens` random tokens into an empty KV cache, the logits of the last position only
// (Transformer::forward_last). Causal models only.
PromptBench bench_prompt(Transformer& model, int64_t tokens, int warmup, int repeats);

// FLOPs of a training step over [B, T]: 3 x forward_flops (the backward pass does two
// matmuls for every forward one: the input and the weight gradient), i.e. the 6N-per-token
// convention plus attention as computed. The AdamW update, norms and the loss are not counted.
double train_flops(const ModelConfig& cfg, int64_t B, int64_t T);

struct TrainBench {
  int64_t batch = 0, seq = 0;
  bool checkpointing = false;
  TimingStats time;
  double tokens_per_s = 0;
  double flops = 0;   // per step
  double gflops = 0;  // at the median time
  int64_t activation_bytes = 0;  // the model's activation arena during the step
  double loss = 0;               // of the last timed step (random tokens: about ln V)
  DType dtype = DType::F32;      // the model's compute dtype
  bool row_parallel = false;     // the batch's rows split over the threads (Transformer::set_row_parallel)
};
// One optimizer step as lm-train runs it, per timed run: zero the gradient arena,
// Transformer::train_step (forward with dropout, loss, backward) on random tokens and
// targets, clipping to global norm 1, AdamW (lm-train's defaults, lr 1e-4), and in bf16
// compute the rounding of the weight copies that follows each update. The model's weights are
// updated (made writable first); `checkpointing` recomputes each layer in backward.
TrainBench bench_train(Transformer& model, int64_t B, int64_t T, bool checkpointing, int warmup, int repeats);

struct DecodeBench {
  int64_t tokens = 0;        // decode steps per timed run, from an empty cache
  TimingStats time;
  double tokens_per_s = 0;
  DType kv_dtype = DType::F32;  // the cache's elements (Transformer::kv_dtype)
  double bytes_per_token = 0;  // at the mean context (tokens / 2)
  double gbytes_per_s = 0;     // bytes_per_token x tokens_per_s
  // Paired rounds: each timed run comes right after one pass of the bandwidth probe, and is
  // held to that bandwidth. On a shared machine the bandwidth drifts by tens of percent from
  // one second to the next, so a bound measured once, before all the runs, says little
  // about any one of them.
  struct Round {
    double bandwidth_gbytes_per_s = 0;  // the faster of two probe passes just before the run
    double gbytes_per_s = 0;            // the run's
    double fraction = 0;                // gbytes_per_s / bandwidth_gbytes_per_s
  };
  std::vector<Round> rounds;
  double bandwidth_gbytes_per_s = 0;  // median over the rounds
  double fraction_of_bound = 0;       // median of the rounds' fractions
};
DecodeBench bench_decode(Transformer& model, int64_t tokens, const BandwidthProbe& probe, int warmup, int repeats);

}  // namespace lm
