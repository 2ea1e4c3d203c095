// Batched generation: Transformer::forward_steps (one decode forward over sequences of
// different lengths, each in its own cache) against forward_step on each cache alone, bit for
// bit; and BatchGenerator (continuous batching) against Generator one prompt at a time,
// token for token, greedy and seeded sampling, with EOS and stop strings, on a Llama
// (GQA), a Llama 4 style model (MoE, NoPE, chunked attention, temperature tuning, QK-norm),
// q8_0 weights, and the soma fixture (byte tokenizer: text and stop strings).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/panels.h"
#include "core/rng.h"
#include "core/rows.h"
#include "generate/generate.h"
#include "model/params.h"
#include "model/transformer.h"
#include "tokenizer/byte_v1.h"
#include "test_util.h"

namespace lm {
namespace {

namespace fs = std::filesystem;

ModelConfig llama_config() {
  ModelConfig c = test::small_gqa_llama("batch-llama", 96, 96);
  c.eos_id = 5;
  return c;
}

ModelConfig llama4_config() {
  ModelConfig c = llama_config();
  c.name = "batch-llama4";
  c.n_layers = 4;
  c.moe.n_experts = 4;
  c.moe.top_k = 1;
  c.moe.shared_expert = true;
  c.moe.interleave_step = 2;  // layers 1 and 3
  c.nope_layer_interval = 2;
  c.attn_chunk_size = 8;
  c.qk_norm = true;
  c.qk_norm_weight = false;
  c.attn_temperature_tuning = true;
  c.attn_floor_scale = 4;
  c.attn_scale = 0.5;
  return c;
}

std::vector<std::vector<int32_t>> prompts_of(int64_t V, int count, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> p(static_cast<size_t>(1 + (i * 7) % 13));  // lengths 1..13
    for (auto& t : p) t = static_cast<int32_t>(6 + rng.below(static_cast<uint64_t>(V - 6)));
    out.push_back(p);
  }
  return out;
}

// The row kernel over 1..9 input rows (the blocked kernel from kBlockedMinRows rows on): each
// output as the one-row product's (tests/unit/test_rows.cpp holds the blocked kernel to dot_f32
// at more shapes).
TEST(BatchDecode, RowKernelRowsAreOneRowProductsBitForBit) {
  Rng rng(3);
  const int64_t OC = 11, IC = 77;  // two 4-row tiles of the weights and three rows left
  std::vector<float> wm(static_cast<size_t>(OC * IC)), bias(static_cast<size_t>(OC)), xm(static_cast<size_t>(9 * IC));
  for (auto& v : wm) v = rng.normal();
  for (auto& v : bias) v = rng.normal();
  for (auto& v : xm) v = rng.normal();
  const WeightView view = f32_weights(wm.data(), OC, IC);
  for (int64_t N = 1; N <= 9; ++N) {
    std::vector<float> many(static_cast<size_t>(N * OC)), one(static_cast<size_t>(OC));
    matmul_rows(many.data(), xm.data(), view, bias.data(), N, 0, OC);
    for (int64_t r = 0; r < N; ++r) {
      matmul_rows(one.data(), xm.data() + r * IC, view, bias.data(), 1, 0, OC);
      for (int64_t o = 0; o < OC; ++o) EXPECT_EQ(many[r * OC + o], one[o]) << "N " << N << " row " << r;
    }
  }
}

// forward_steps over several sequences (not every one every step) against forward_step on
// each alone: every logit the same bits.
void expect_steps_equal_one_at_a_time(Transformer& model, const std::string& what) {
  const int64_t V = model.config().vocab_size;
  const auto prompts = prompts_of(V, 5, 11);
  // Reference: each sequence alone. Batched: the same sequences in their own caches.
  std::vector<KVCache> ref, bat;
  std::vector<std::vector<float>> ref_logits(prompts.size());
  for (const auto& p : prompts) {
    ref.push_back(model.make_cache(1));
    bat.push_back(model.make_cache(1, 40));  // another capacity: a stride only
    model.forward_last(p.data(), nullptr, static_cast<int64_t>(p.size()), ref.back());
    model.forward_last(p.data(), nullptr, static_cast<int64_t>(p.size()), bat.back());
  }
  Rng rng(5);
  for (int step = 0; step < 12; ++step) {
    std::vector<int32_t> tokens;
    std::vector<KVCache*> caches;
    std::vector<size_t> which;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if ((step + i) % 4 == 3) continue;  // not every sequence every step: lengths drift apart
      tokens.push_back(static_cast<int32_t>(6 + rng.below(static_cast<uint64_t>(V - 6))));
      caches.push_back(&bat[i]);
      which.push_back(i);
    }
    for (size_t k = 0; k < which.size(); ++k) {
      const float* l = model.forward_step(&tokens[k], nullptr, ref[which[k]]);
      ref_logits[k].assign(l, l + V);
    }
    const float* l = model.forward_steps(tokens.data(), caches.data(), static_cast<int64_t>(tokens.size()));
    for (size_t k = 0; k < which.size(); ++k) {
      for (int64_t v = 0; v < V; ++v)
        ASSERT_EQ(l[k * V + v], ref_logits[k][v]) << what << " step " << step << " sequence " << which[k] << " id " << v;
      EXPECT_EQ(bat[which[k]].length(), ref[which[k]].length());
    }
  }
}

TEST(BatchDecode, StepsEqualOneSequenceAtATimeBitForBit) {
  for (const ModelConfig& cfg : {llama_config(), llama4_config()})
    for (DType kv : {DType::F32, DType::BF16, DType::F16}) {  // every cache type
      Transformer model(ModelWeights::random(cfg, 3));
      model.set_kv_dtype(kv);
      expect_steps_equal_one_at_a_time(model, cfg.name + " " + std::string(dtype_name(kv)));
    }
}

TEST(BatchDecode, PanelsGiveEverySequenceItsOwnNumbers) {
  // Matrices of every type on panels (core/panels.h), as lm-generate runs them: the batched
  // steps equal the one-sequence steps bit for bit, and the logits are the row kernel's within
  // float rounding (the same products summed in another order).
  ModelConfig wide = llama_config();  // rows of whole q4_K super-blocks
  wide.name = "batch-llama-256";
  wide.dim = 256;
  wide.multiple_of = 256;
  std::vector<std::pair<ModelConfig, WeightType>> cases;
  for (const ModelConfig& cfg : {llama_config(), llama4_config()})
    for (WeightType type : {WeightType::F32, WeightType::BF16, WeightType::F16, WeightType::Q8_0, WeightType::Q4_0})
      cases.emplace_back(cfg, type);
  cases.emplace_back(wide, WeightType::Q4_K);
  cases.emplace_back(wide, WeightType::Q6_K);
  for (const auto& [cfg, type] : cases) {
    if (!has_panel_kernels(type)) continue;
    const ModelWeights rows = ModelWeights::random(cfg, 3).cast(type);
    ModelWeights paneled = rows;
    paneled.add_panels();
    ASSERT_TRUE(paneled.has_panels());
    ASSERT_TRUE(paneled.matrices().layers[0].wq.panels && paneled.matrices().output.panels);
    Transformer model(std::move(paneled)), plain(rows);
    const std::string what = cfg.name + " " + weight_type_name(type) + " panels";
    expect_steps_equal_one_at_a_time(model, what);
    const auto prompts = prompts_of(cfg.vocab_size, 2, 9);
    KVCache a = model.make_cache(1), b = plain.make_cache(1);
    const int64_t V = cfg.vocab_size, P = static_cast<int64_t>(prompts[0].size());
    model.forward_last(prompts[0].data(), nullptr, P, a);
    plain.forward_last(prompts[0].data(), nullptr, P, b);
    const int32_t next = 7;
    const float* lp = model.forward_step(&next, nullptr, a);
    const std::vector<float> got(lp, lp + V);
    const float* lr = plain.forward_step(&next, nullptr, b);
    double scale = 0, worst = 0;
    for (int64_t v = 0; v < V; ++v) scale = std::max(scale, std::fabs(static_cast<double>(lr[v])));
    for (int64_t v = 0; v < V; ++v) worst = std::max(worst, std::fabs(static_cast<double>(got[v]) - lr[v]));
    // Of the logits' scale; q8_0's rows and panels both quantize the activations.
    const double tolerance =
        type == WeightType::F32 || type == WeightType::F16 ? 1e-4 : type == WeightType::Q8_0 ? 1e-3 : 2e-2;
    EXPECT_LT(worst, tolerance * scale) << what;
    EXPECT_GT(worst, 0.0) << what << ": the panels' sums are in another order; equal logits mean they were not used";
    // A prompt of 90 tokens over a cache (the others: 40): f32 panels take it
    // (kPanelPromptRows), the rows model the GEMM; the others both on their row kernels
    // (few_rows_limit) or on panels against the GEMM (kIntPanelRows).
    const int64_t P2 = type == WeightType::F32 || type == WeightType::BF16 ? 90 : 40;
    std::vector<int32_t> long_prompt(static_cast<size_t>(P2));
    for (size_t i = 0; i < long_prompt.size(); ++i) long_prompt[i] = static_cast<int32_t>(6 + (i * 37) % (V - 6));
    KVCache c = model.make_cache(1), d = plain.make_cache(1);
    const float* pp = model.forward_last(long_prompt.data(), nullptr, P2, c);
    const std::vector<float> pgot(pp, pp + V);
    const float* pr = plain.forward_last(long_prompt.data(), nullptr, P2, d);
    double pscale = 0, pworst = 0;
    for (int64_t v = 0; v < V; ++v) pscale = std::max(pscale, std::fabs(static_cast<double>(pr[v])));
    for (int64_t v = 0; v < V; ++v) pworst = std::max(pworst, std::fabs(static_cast<double>(pgot[v]) - pr[v]));
    EXPECT_LT(pworst, tolerance * pscale) << what << " prompt";
    EXPECT_GT(pworst, 0.0) << what << " prompt: equal logits mean the panels were not used";
  }
}

TEST(BatchDecode, Errors) {
  Transformer model(ModelWeights::random(llama_config(), 3));
  KVCache a = model.make_cache(1), b = model.make_cache(2), full = model.make_cache(1, 2);
  const std::vector<int32_t> t{7, 8};
  model.forward_last(t.data(), nullptr, 1, a);
  KVCache* same[] = {&a, &a};
  EXPECT_THROW(model.forward_steps(t.data(), same, 2), Error);
  KVCache* two_rows[] = {&b};
  EXPECT_THROW(model.forward_steps(t.data(), two_rows, 1), Error);
  model.forward_last(t.data(), nullptr, 2, full);
  KVCache* over[] = {&a, &full};
  EXPECT_THROW(model.forward_steps(t.data(), over, 2), Error);
  EXPECT_EQ(a.length(), 1) << "a failed step leaves every cache as it was";
  const std::vector<int32_t> bad{7, 1000};
  KVCache c = model.make_cache(1);
  model.forward_last(t.data(), nullptr, 1, c);
  KVCache* ok[] = {&a, &c};
  EXPECT_THROW(model.forward_steps(bad.data(), ok, 2), Error);
  EXPECT_EQ(c.length(), 1);
}

// Every prompt through Generator, then through BatchGenerator with `slots`, started in order
// as slots free up: the same completions.
void expect_batches_match(Transformer& model, const Tokenizer* tok, const std::vector<std::vector<int32_t>>& prompts,
                          const GenerateOptions& o, const std::string& what) {
  Generator one(model, tok);
  std::vector<Completion> ref;
  std::vector<std::string> ref_streamed(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i)
    ref.push_back(one.generate(prompts[i], o, 100 + i, [&, i](std::string_view s) { ref_streamed[i] += s; }));
  for (const int64_t slots : {int64_t{1}, int64_t{3}, int64_t{16}}) {
    BatchGenerator gen(model, tok, nullptr, slots);
    std::vector<Completion> got(prompts.size());
    std::vector<std::string> streamed(prompts.size());
    std::vector<int64_t> slot_of(prompts.size(), -1);
    size_t next = 0, finished = 0;
    int64_t max_running = 0;
    while (finished < prompts.size()) {
      int64_t s;
      while (next < prompts.size() && (s = gen.free_slot()) >= 0) {
        const size_t i = next++;
        gen.start(s, prompts[i], o, 100 + i, [&, i](std::string_view t) { streamed[i] += t; }, "prompt");
        slot_of[i] = s;
      }
      max_running = std::max(max_running, gen.running());
      gen.step();
      for (size_t i = 0; i < prompts.size(); ++i)
        if (slot_of[i] >= 0 && gen.done(slot_of[i])) {
          got[i] = gen.finish(slot_of[i]);
          slot_of[i] = -1;
          ++finished;
        }
    }
    if (slots > 1) EXPECT_GT(max_running, 1) << "the batch never held two sequences: the test proves nothing";
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(got[i].tokens, ref[i].tokens) << what << " slots " << slots << " prompt " << i;
      EXPECT_EQ(got[i].text, ref[i].text) << what << " slots " << slots << " prompt " << i;
      EXPECT_EQ(streamed[i], ref_streamed[i]) << what << " slots " << slots << " prompt " << i;
      EXPECT_EQ(got[i].stop_reason, ref[i].stop_reason) << what << " slots " << slots << " prompt " << i;
      EXPECT_EQ(got[i].generated, ref[i].generated) << what << " slots " << slots << " prompt " << i;
    }
  }
}

TEST(BatchGenerate, SameCompletionsAsOneAtATime) {
  for (const ModelConfig& cfg : {llama_config(), llama4_config()}) {
    Transformer model(ModelWeights::random(cfg, 7));
    const auto prompts = prompts_of(cfg.vocab_size, 9, 13);
    for (const double temperature : {0.0, 1.0}) {
      GenerateOptions o;
      o.max_new_tokens = 24;
      o.sampling.temperature = temperature;
      o.sampling.top_k = temperature > 0 ? 20 : 0;
      expect_batches_match(model, nullptr, prompts, o, cfg.name + " T=" + std::to_string(temperature));
    }
  }
}

TEST(BatchGenerate, EosEndsSomeSequencesEarly) {
  // EOS made likely: its classifier row raised, so sequences end at different steps.
  ModelConfig cfg = llama_config();
  ModelWeights w = ModelWeights::random(cfg, 9);
  float* out = w.params().output + cfg.eos_id * cfg.dim;
  for (int64_t i = 0; i < cfg.dim; ++i) out[i] *= 6;
  Transformer model(std::move(w));
  const auto prompts = prompts_of(cfg.vocab_size, 10, 17);
  GenerateOptions o;
  o.max_new_tokens = 30;
  o.sampling.temperature = 1.0;
  Generator one(model, nullptr);
  int eos = 0, length = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string r = one.generate(prompts[i], o, 100 + i, {}).stop_reason;
    eos += r == "eos";
    length += r == "length";
  }
  ASSERT_GT(eos, 0) << "no sequence met EOS: the test proves nothing";
  ASSERT_GT(length, 0) << "every sequence met EOS: the test proves nothing";
  expect_batches_match(model, nullptr, prompts, o, "eos");
}

TEST(BatchGenerate, Q8WeightsSameCompletions) {
  const ModelConfig cfg = llama_config();
  Transformer model(ModelWeights::random(cfg, 4).cast(WeightType::Q8_0));
  GenerateOptions o;
  o.max_new_tokens = 16;
  o.sampling.temperature = 0.8;
  expect_batches_match(model, nullptr, prompts_of(cfg.vocab_size, 6, 19), o, "q8_0");
}

TEST(BatchGenerate, TextAndStopStringsOnTheSomaFixture) {
  Transformer model(ModelWeights::load(fs::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures" / "soma_v1" /
                                       "model.safetensors"));
  ByteV1Tokenizer tok;
  std::vector<std::vector<int32_t>> prompts;
  for (const char* s : {"To be", "a", "The quick brown fox", "xy", "Once upon", "Q"})
    prompts.push_back(encode_prompt(tok, s));
  GenerateOptions o;
  o.max_new_tokens = 20;
  o.sampling.temperature = 0;
  Generator one(model, &tok);
  // A stop string that some completions meet: a piece of the first one's text.
  const std::string first = one.generate(prompts[0], o, 100, {}).text;
  ASSERT_GE(first.size(), 6u);
  o.stop = {first.substr(3, 2), "\x01never"};
  int stopped = 0;
  for (size_t i = 0; i < prompts.size(); ++i) stopped += one.generate(prompts[i], o, 100 + i, {}).stop_reason == "stop";
  ASSERT_GT(stopped, 0);
  expect_batches_match(model, &tok, prompts, o, "soma greedy");
  o.sampling.temperature = 0.9;
  expect_batches_match(model, &tok, prompts, o, "soma sampled");
}

TEST(BatchGenerate, Errors) {
  Transformer model(ModelWeights::random(llama_config(), 3));
  EXPECT_THROW(BatchGenerator(model, nullptr, nullptr, 0), Error);
  BatchGenerator gen(model, nullptr, nullptr, 2);
  GenerateOptions o;
  EXPECT_THROW(gen.start(0, {}, o, 0, {}, "prompt"), Error);  // empty prompt
  EXPECT_EQ(gen.free_slot(), 0) << "a refused prompt holds no slot";
  gen.start(0, {7, 8}, o, 0, {}, "prompt");
  EXPECT_THROW(gen.start(0, {7}, o, 0, {}, "prompt"), Error);  // slot taken
  EXPECT_THROW(gen.finish(1), Error);                          // nothing there
  EXPECT_EQ(gen.free_slot(), 1);
}

}  // namespace
}  // namespace lm
