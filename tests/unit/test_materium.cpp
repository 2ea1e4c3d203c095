// materium's conditioned Llama (docs/materium.md) against the PyTorch fixtures under
// tests/fixtures/materium/ (made by make_fixtures.py): forward logits, loss and hidden states,
// the position ids, every gradient, and incremental decode against full re-forwards; the
// block-wise position rule on the worked examples of the doc; the config fields, their
// validation and the legacy key; condition values and their errors.
//
// Error measure as in test_model.cpp: max |got - want| / max |want| over a tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <unistd.h>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "test_util.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "io/stream.h"
#include "io/safetensors.h"
#include "model/accounting.h"
#include "model/conditions.h"
#include "model/conditions_file.h"
#include "eval/eval.h"
#include "model/config.h"
#include "model/params.h"
#include "model/positions.h"
#include "model/transformer.h"

namespace lm {
namespace {

using fixture::kTolerance;
using fixture::max_rel_error;
using fixture::read_floats;
using fixture::read_ints;

namespace fs = std::filesystem;

const std::vector<std::string> kFixtures = {"mat_linear",    "mat_embedding", "mat_formula",
                                            "mat_blockwise", "mat_all",       "mat_dropped"};

fs::path fixture_dir(const std::string& name) { return fixture::dir() / "materium" / name; }

// The message and hint of the error `f` throws, which must be of `kind`.
std::string error_of(const std::function<void()>& f, ErrorKind kind = ErrorKind::Data) { return test::error_and_hint_of(f, kind); }

// A case file: tokens, targets, the full position ids, K, expectations, and the condition values
// (cond.{name}, cond.{name}_mask; a configured condition without them is dropped).
struct MatCase {
  int64_t B = 0, T = 0, V = 0, C = 0, K = 0;
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> pos;  // [B, K + T]
  std::vector<float> logits, hidden;
  float loss = 0;
  ConditionBatch conditions;
};

MatCase load_case(const std::string& name, const ModelConfig& cfg) {
  const auto f = SafeTensorsFile::open(fixture_dir(name) / "case.safetensors");
  MatCase c;
  const Tensor logits = f.get("logits").to_f32();
  c.B = logits.dim(0);
  c.T = logits.dim(1);
  c.V = logits.dim(2);
  c.C = f.get("hidden").dim(2);
  c.logits = read_floats(f, "logits");
  c.hidden = read_floats(f, "hidden");
  c.tokens = read_ints<int32_t>(f, "tokens");
  c.targets = read_ints<int32_t>(f, "targets");
  c.pos = read_ints<int64_t>(f, "pos");
  c.K = read_ints<int64_t>(f, "cond_len")[0];
  c.loss = read_floats(f, "loss")[0];
  if (cfg.conditions.empty()) return c;
  c.conditions = ConditionBatch(cfg, c.B);
  for (size_t i = 0; i < cfg.conditions.size(); ++i) {
    const ConditionConfig& cc = cfg.conditions[i];
    const std::string key = "cond." + cc.name;
    if (!f.contains(key)) {
      c.conditions.drop(i);
      continue;
    }
    const auto null = read_ints<int64_t>(f, key + "_mask");
    for (int64_t b = 0; b < c.B; ++b) {
      if (null[static_cast<size_t>(b)]) {
        c.conditions.set_null(i, b);
        continue;
      }
      switch (cc.proj_layer_type) {
        case ProjLayerType::Linear:
          c.conditions.set_linear(i, b, read_floats(f, key).data() + b * cc.input_dim);
          break;
        case ProjLayerType::Embedding:
          c.conditions.set_class(i, b, read_ints<int64_t>(f, key)[static_cast<size_t>(b)]);
          break;
        case ProjLayerType::Formula: {
          const auto slots = read_ints<int64_t>(f, key);  // [B, S, 2]
          std::vector<std::pair<int64_t, int64_t>> pairs;
          for (int64_t j = 0; j < cc.positions(); ++j) {
            const size_t at = static_cast<size_t>((b * cc.positions() + j) * 2);
            if (slots[at] >= 0) pairs.emplace_back(slots[at], slots[at + 1]);
          }
          c.conditions.set_formula(i, b, pairs);
          break;
        }
      }
    }
  }
  return c;
}

ModelWeights load_model(const std::string& name) { return ModelWeights::load(fixture_dir(name) / "model.safetensors"); }

const ConditionBatch* conditions_of(const MatCase& c, const ModelConfig& cfg) {
  return cfg.conditions.empty() ? nullptr : &c.conditions;
}

// ---- every fixture ----

class MateriumFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MateriumFixture, ForwardMatchesPyTorch) {
  Transformer model(load_model(GetParam()));
  const ModelConfig& cfg = model.config();
  const MatCase c = load_case(GetParam(), cfg);
  const ConditionBatch* cb = conditions_of(c, cfg);
  EXPECT_EQ(cb ? cb->positions() : 0, c.K);
  const float* logits = model.forward(c.tokens.data(), nullptr, c.B, c.T, cb);
  const double err = max_rel_error(logits, c.logits.data(), c.logits.size());
  const double hidden_err = max_rel_error(model.hidden(), c.hidden.data(), c.hidden.size());
  const LossResult loss = model.loss(c.targets.data());
  const double loss_err = std::abs(loss.loss - c.loss) / std::abs(c.loss);
  std::printf("[ %-14s ] K=%lld logits max rel err %.2e, hidden %.2e, loss %.6f (want %.6f, rel err %.2e)\n",
              GetParam().c_str(), static_cast<long long>(c.K), err, hidden_err, loss.loss, c.loss, loss_err);
  EXPECT_LE(err, kTolerance);
  EXPECT_LE(hidden_err, kTolerance);
  EXPECT_LE(loss_err, kTolerance);
  // The model's own position ids are the reference's, condition positions included.
  EXPECT_EQ(model.activations().pos, c.pos);
  EXPECT_EQ(model.activations().K, c.K);
}

TEST_P(MateriumFixture, GradientsMatchPyTorch) {
  const fs::path dir = fixture_dir(GetParam());
  const auto gf = SafeTensorsFile::open(dir / "grads.safetensors");
  Transformer model(load_model(GetParam()));
  const MatCase c = load_case(GetParam(), model.config());
  Tensor arena = Tensor::zeros(DType::F32, {model.weights().layout().arena_floats()});
  const ParameterTensors grads = model.weights().layout().bind(arena.data_mut<float>());
  TrainStepOptions opt;
  opt.conditions = conditions_of(c, model.config());
  std::vector<float> weights;
  if (gf.contains("loss_weights")) opt.loss_weights = (weights = read_floats(gf, "loss_weights")).data();
  const TrainStepResult r = model.train_step(grads, c.tokens.data(), nullptr, c.targets.data(), c.B, c.T, opt);
  const double want_loss = read_floats(gf, "loss")[0];
  EXPECT_LE(std::abs(r.loss - want_loss) / std::abs(want_loss), kTolerance) << r.loss << " want " << want_loss;
  double worst = 0;
  std::string worst_name;
  int zero = 0;
  for (const ParamInfo& p : model.weights().layout().tensors()) {
    ASSERT_TRUE(gf.contains(p.name)) << p.name;
    const std::vector<float> want = read_floats(gf, p.name);
    ASSERT_EQ(static_cast<int64_t>(want.size()), p.numel) << p.name;
    const float* got = arena.data<float>() + p.offset;
    const double err = max_rel_error(got, want.data(), want.size());
    EXPECT_LE(err, kTolerance) << p.name;
    if (std::all_of(want.begin(), want.end(), [](float x) { return x == 0.0f; })) {
      ++zero;  // a dropped condition's tensors, or a mask embedding no row used: exactly zero here too
      EXPECT_TRUE(std::all_of(got, got + p.numel, [](float x) { return x == 0.0f; })) << p.name;
    }
    if (err >= worst) worst = err, worst_name = p.name;
  }
  std::printf("[ %-14s ] loss %.6f, worst gradient max rel err %.2e (%s), %d all-zero tensors\n", GetParam().c_str(),
              r.loss, worst, worst_name.c_str(), zero);
}

// Incremental decode (prefill with the conditions, then token by token) gives the logits of a
// full re-forward of each prefix: block-wise ids depend on the prefix only, across [LATTICE]
// and a second [ATOMS]; the condition positions are the cache's first.
TEST_P(MateriumFixture, DecodeEqualsFullReforwards) {
  Transformer model(load_model(GetParam()));
  const ModelConfig& cfg = model.config();
  const MatCase c = load_case(GetParam(), cfg);
  const ConditionBatch* cb = conditions_of(c, cfg);
  const int64_t B = c.B, T = c.T, V = c.V;
  // The re-forward of every prefix, row by row.
  std::vector<float> prefix_logits(static_cast<size_t>(B * T * V));
  for (int64_t t = 1; t <= T; ++t) {
    std::vector<int32_t> tok(static_cast<size_t>(B * t));
    for (int64_t b = 0; b < B; ++b)
      std::copy(c.tokens.begin() + b * T, c.tokens.begin() + b * T + t, tok.begin() + b * t);
    const float* l = model.forward(tok.data(), nullptr, B, t, cb);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(prefix_logits.data() + (b * T + t - 1) * V, l + (b * t + t - 1) * V, static_cast<size_t>(V) * sizeof(float));
  }
  EXPECT_LE(max_rel_error(prefix_logits.data(), c.logits.data(), c.logits.size()), kTolerance);

  for (int64_t prefill : {int64_t{1}, T / 2 + 1}) {
    KVCache cache = model.make_cache(B);
    double worst_vs_prefix = 0, worst_vs_torch = 0;
    auto check = [&](const float* got, int64_t t0, int64_t n) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = t0; t < t0 + n; ++t) {
          const float* g = got + (b * n + (t - t0)) * V;
          worst_vs_prefix = std::max(worst_vs_prefix, max_rel_error(g, prefix_logits.data() + (b * T + t) * V, V));
          worst_vs_torch = std::max(worst_vs_torch, max_rel_error(g, c.logits.data() + (b * T + t) * V, V));
        }
    };
    std::vector<int32_t> tok(static_cast<size_t>(B * prefill));
    for (int64_t b = 0; b < B; ++b)
      std::copy(c.tokens.begin() + b * T, c.tokens.begin() + b * T + prefill, tok.begin() + b * prefill);
    check(model.forward(tok.data(), nullptr, prefill, cache, cb), 0, prefill);
    EXPECT_EQ(cache.cond_len(), c.K);
    EXPECT_EQ(cache.length(), c.K + prefill);
    for (int64_t t = prefill; t < T; ++t) {
      std::vector<int32_t> step(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) step[static_cast<size_t>(b)] = c.tokens[static_cast<size_t>(b * T + t)];
      check(model.forward_step(step.data(), nullptr, cache), t, 1);
      for (int64_t b = 0; b < B; ++b)  // the id this step used is the reference's
        EXPECT_EQ(model.activations().pos[static_cast<size_t>(b)], c.pos[static_cast<size_t>(b * (c.K + T) + c.K + t)])
            << "row " << b << " token " << t;
    }
    EXPECT_EQ(cache.length(), c.K + T);
    std::printf("[ %-14s ] decode (prefill %lld): max rel err %.2e vs re-forwards, %.2e vs PyTorch\n",
                GetParam().c_str(), static_cast<long long>(prefill), worst_vs_prefix, worst_vs_torch);
    EXPECT_LE(worst_vs_prefix, 1e-5);
    EXPECT_LE(worst_vs_torch, kTolerance);
  }

  // Row 0 alone takes the fused one-token step after its prefill (B = 1, two threads, two or
  // more kv heads), with the position ids of the rule: the re-forwards' logits again.
  if (cfg.kv_heads() < 2) return;
  const int saved = thread_count();
  set_threads(2);
  ConditionBatch one;
  if (cb) {  // row 0's values
    one = ConditionBatch(cfg, 1);
    for (size_t i = 0; i < cfg.conditions.size(); ++i) {
      const ConditionBatch::Values& v = cb->values(i);
      const ConditionConfig& cc = cfg.conditions[i];
      if (!v.present) {
        one.drop(i);
      } else if (v.null[0]) {
        one.set_null(i, 0);
      } else if (cc.proj_layer_type == ProjLayerType::Linear) {
        one.set_linear(i, 0, v.linear.data());
      } else if (cc.proj_layer_type == ProjLayerType::Embedding) {
        one.set_class(i, 0, v.classes[0]);
      } else {
        std::vector<std::pair<int64_t, int64_t>> pairs;
        for (int64_t j = 0; j < cc.positions() && v.formula[static_cast<size_t>(2 * j)] >= 0; ++j)
          pairs.emplace_back(v.formula[static_cast<size_t>(2 * j)], v.formula[static_cast<size_t>(2 * j + 1)]);
        one.set_formula(i, 0, pairs);
      }
    }
  }
  KVCache single = model.make_cache(1);
  double worst = max_rel_error(model.forward(c.tokens.data(), nullptr, 1, single, cb ? &one : nullptr),
                               prefix_logits.data(), static_cast<size_t>(V));
  for (int64_t t = 1; t < T; ++t)
    worst = std::max(worst, max_rel_error(model.forward_step(c.tokens.data() + t, nullptr, single),
                                          prefix_logits.data() + t * V, static_cast<size_t>(V)));
  set_threads(saved);
  EXPECT_LE(worst, 1e-5) << "row 0 alone";
}

INSTANTIATE_TEST_SUITE_P(PyTorch, MateriumFixture, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return info.param; });

TEST(MateriumFixtures, AllArePresent) {
  for (const std::string& name : kFixtures)
    for (const char* file : {"model.safetensors", "case.safetensors", "grads.safetensors"})
      EXPECT_TRUE(fs::exists(fixture_dir(name) / file)) << name << "/" << file;
}

TEST(Materium, CheckpointingGivesTheSameGradientsBitForBit) {
  for (bool dropout : {false, true}) {
    ModelWeights w = load_model("mat_all");
    const MatCase c = load_case("mat_all", w.config());
    ModelConfig cfg = w.config();
    if (dropout) cfg.dropout = 0.1, cfg.attn_dropout = 0.1, cfg.emb_dropout = 0.1;
    w.make_writable();
    auto copy = [&] {
      ModelWeights m = ModelWeights::random(cfg, 1);
      std::memcpy(m.arena(), w.arena(), static_cast<size_t>(w.layout().arena_floats()) * sizeof(float));
      return m;
    };
    Transformer full(copy()), ckpt(copy());
    ckpt.set_gradient_checkpointing(true);
    Tensor g0 = Tensor::zeros(DType::F32, {w.layout().arena_floats()}), g1 = Tensor::zeros(DType::F32, {w.layout().arena_floats()});
    Rng r0(5), r1(5);
    TrainStepOptions o0, o1;
    o0.conditions = o1.conditions = &c.conditions;
    o0.rng = &r0;
    o1.rng = &r1;
    const double l0 = full.train_step(w.layout().bind(g0.data_mut<float>()), c.tokens.data(), nullptr, c.targets.data(),
                                      c.B, c.T, o0).loss;
    const double l1 = ckpt.train_step(w.layout().bind(g1.data_mut<float>()), c.tokens.data(), nullptr, c.targets.data(),
                                      c.B, c.T, o1).loss;
    EXPECT_EQ(l0, l1);
    EXPECT_EQ(std::memcmp(g0.raw(), g1.raw(), g0.nbytes()), 0) << "dropout " << dropout;
  }
}

// With dropout masks fixed (the same RNG state each time) the loss is a function of the
// parameters: the condition tensors' gradients against central differences, dropout included.
TEST(Materium, ConditionGradientsFiniteDifferencesWithDropout) {
  ModelWeights w = load_model("mat_all");
  const MatCase c = load_case("mat_all", w.config());
  ModelConfig cfg = w.config();
  cfg.dropout = 0.1, cfg.attn_dropout = 0.1, cfg.emb_dropout = 0.2;
  ModelWeights m = ModelWeights::random(cfg, 1);
  w.make_writable();
  std::memcpy(m.arena(), w.arena(), static_cast<size_t>(w.layout().arena_floats()) * sizeof(float));
  Transformer model(std::move(m));
  const ParameterLayout& layout = model.weights().layout();
  Tensor g = Tensor::zeros(DType::F32, {layout.arena_floats()}), scratch = Tensor::zeros(DType::F32, {layout.arena_floats()});
  TrainStepOptions opt;
  opt.conditions = &c.conditions;
  const Rng start(77);
  Rng rng = start;
  opt.rng = &rng;
  model.train_step(layout.bind(g.data_mut<float>()), c.tokens.data(), nullptr, c.targets.data(), c.B, c.T, opt);
  float* params = model.weights().arena();
  auto loss_at = [&] {
    Rng again = start;
    opt.rng = &again;
    return model.train_step(layout.bind(scratch.data_mut<float>()), c.tokens.data(), nullptr, c.targets.data(), c.B,
                            c.T, opt).loss;
  };
  int probed = 0;
  for (const ParamInfo& p : layout.tensors()) {
    if (p.condition < 0 && p.kind != ParamKind::TypeEmbeddings && p.kind != ParamKind::TokEmbeddings) continue;
    const float* gp = g.data<float>() + p.offset;
    int64_t j = 0;
    for (int64_t i = 1; i < p.numel; ++i)
      if (std::abs(gp[i]) > std::abs(gp[j])) j = i;
    float& x = params[p.offset + j];
    const float keep = x, h = 1e-2f;
    x = keep + h;
    const double up = loss_at();
    x = keep - h;
    const double down = loss_at();
    x = keep;
    const double numeric = (up - down) / (2.0 * h);
    EXPECT_NEAR(gp[j], numeric, 3e-2 * std::abs(numeric) + 2e-4) << p.name << "[" << j << "]";
    ++probed;
  }
  EXPECT_EQ(probed, 12);  // tok_embeddings, type_embeddings, 7 projection tensors, 3 mask embeddings
}

// ---- block-wise positions: docs/materium.md, the worked examples ----

ModelConfig blockwise_config(int64_t block = 4) {
  ModelConfig c;
  c.vocab_size = 40;
  c.rope_mode = RopeMode::Blockwise;
  c.atoms_token_id = 4;
  c.lattice_token_id = 3;
  c.atom_block_size = block;
  return c;
}

// Token symbols: S [SOS] 1, A [ATOMS] 4, L [LATTICE] 3, E [EOS] 2; others (species, coordinates,
// lattice values) any id >= 5.
std::vector<int32_t> row_of(const std::string& symbols) {
  std::vector<int32_t> row;
  for (char s : symbols) row.push_back(s == 'S' ? 1 : s == 'A' ? 4 : s == 'L' ? 3 : s == 'E' ? 2 : 5 + (s - 'a'));
  return row;
}

std::vector<int64_t> ids(const std::string& symbols, int64_t K, int64_t block = 4) {
  const std::vector<int32_t> row = row_of(symbols);
  std::vector<int64_t> pos(row.size());
  token_positions(pos.data(), row.data(), 1, static_cast<int64_t>(row.size()), K, 0, blockwise_config(block), nullptr);
  return pos;
}

TEST(BlockwisePositions, TheWorkedExamples) {
  using P = std::vector<int64_t>;
  // A: [SOS] [ATOMS] Fe x y z O x y z [LATTICE] a b c α β γ [EOS]
  EXPECT_EQ(ids("SAfxyzgxyzLabcdefE", 0), (P{0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17}));
  // B: the same after three condition positions (their ids 0..2 are the model's, not here).
  EXPECT_EQ(ids("SAfxyzgxyzLabcdefE", 3), (P{3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 13, 14, 15, 16, 17, 18, 19, 20}));
  // C: generation in progress: the span runs to the end; the prefix's ids never change.
  EXPECT_EQ(ids("SAfxyzgx", 0), (P{0, 1, 2, 3, 4, 5, 2, 3}));
  EXPECT_EQ(ids("SAfxyzgxyzL", 0), (P{0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 10}));
  // D: two [ATOMS] in a row: the second is the span's first token.
  EXPECT_EQ(ids("SAAfxyzLa", 0), (P{0, 1, 2, 3, 4, 5, 2, 7, 8}));
  // E: no [ATOMS] (K = 2): standard.
  EXPECT_EQ(ids("SabcE", 2), (P{2, 3, 4, 5, 6}));
  // G: an empty span; [ATOMS] last.
  EXPECT_EQ(ids("SALab", 0), (P{0, 1, 2, 3, 4}));
  EXPECT_EQ(ids("SaA", 0), (P{0, 1, 2}));
  // I: block 3; an [ATOMS] after [LATTICE] opens nothing.
  EXPECT_EQ(ids("SAfxygxyLaAhxy", 0, 3), (P{0, 1, 2, 3, 4, 2, 3, 4, 8, 9, 10, 11, 12, 13}));
  // F: [LATTICE] before [ATOMS], or without one: an error naming the row and the token.
  EXPECT_EQ(error_of([] { ids("SLaAfx", 0); }), "row 0: [LATTICE] (token 3) at token 1 comes before any [ATOMS] (token 4)");
  EXPECT_EQ(error_of([] { ids("SLab", 0); }), "row 0: [LATTICE] (token 3) at token 1 comes before any [ATOMS] (token 4)");
}

TEST(BlockwisePositions, RowsOfABatchAndIncrementalStateAgree) {
  // H: rows differ (K = 1).
  const std::string rows[3] = {"SAfxyzgxyzLa", "SAfxyzgxyzhx", "Sabcdefghijk"};
  std::vector<int32_t> tokens;
  for (const auto& r : rows) {
    const auto t = row_of(r);
    tokens.insert(tokens.end(), t.begin(), t.end());
  }
  const ModelConfig cfg = blockwise_config();
  std::vector<int64_t> full(tokens.size());
  token_positions(full.data(), tokens.data(), 3, 12, 1, 0, cfg, nullptr);
  EXPECT_EQ(full, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 11, 12, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4,
                                        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  // One token at a time with the rows' state: the same ids.
  std::vector<BlockwiseState> state(3);
  for (int64_t t = 0; t < 12; ++t) {
    int32_t step[3] = {tokens[t], tokens[12 + t], tokens[24 + t]};
    int64_t pos[3];
    token_positions(pos, step, 3, 1, 1, t, cfg, state.data());
    for (int b = 0; b < 3; ++b) EXPECT_EQ(pos[b], full[static_cast<size_t>(b * 12 + t)]) << b << " " << t;
  }
  // An error leaves the state as it was.
  std::vector<BlockwiseState> fresh(1);
  const int32_t lattice = 3;
  int64_t pos = 0;
  EXPECT_THROW(token_positions(&pos, &lattice, 1, 1, 0, 0, cfg, fresh.data()), Error);
  EXPECT_EQ(fresh[0].atoms_at, -1);
  // Standard mode: K + first + t.
  ModelConfig standard = cfg;
  standard.rope_mode = RopeMode::Standard;
  int64_t two[2];
  const int32_t any[2] = {3, 4};
  token_positions(two, any, 1, 2, 5, 7, standard, nullptr);
  EXPECT_EQ(two[0], 12);
  EXPECT_EQ(two[1], 13);
}

TEST(BlockwisePositions, ALatticeFirstRowIsRefusedByTheModel) {
  Transformer model(load_model("mat_blockwise"));
  std::vector<int32_t> tokens = {1, 3, 15, 4, 5, 16};
  EXPECT_EQ(error_of([&] { model.forward(tokens.data(), nullptr, 1, 6); }),
            "row 0: [LATTICE] (token 3) at token 1 comes before any [ATOMS] (token 4)");
  KVCache cache = model.make_cache(1);
  model.forward(tokens.data(), nullptr, 1, cache);  // [SOS]
  EXPECT_THROW(model.forward_step(tokens.data() + 1, nullptr, cache), Error);
  EXPECT_EQ(cache.length(), 1) << "a failed step leaves the cache as it was";
  const int32_t atoms = 4;
  model.forward_step(&atoms, nullptr, cache);
  EXPECT_EQ(cache.blockwise()[0].atoms_at, 1);
}

// ---- inputs the model refuses ----

TEST(Materium, InputsThatDoNotFitAreUsageErrors) {
  Transformer model(load_model("mat_all"));
  const MatCase c = load_case("mat_all", model.config());
  EXPECT_EQ(error_of([&] { model.forward(c.tokens.data(), c.pos.data(), c.B, c.T, &c.conditions); }, ErrorKind::Usage),
            "a model with conditions or block-wise positions computes its own position ids: pass none");
  EXPECT_EQ(error_of([&] { model.forward(c.tokens.data(), nullptr, 1, c.T, &c.conditions); }, ErrorKind::Usage),
            "condition values for 2 rows given with a batch of 1 rows");
  // K + T > max_seq_len: 5 condition positions and 28 tokens.
  std::vector<int32_t> long_row(28, 15);
  EXPECT_EQ(error_of([&] {
              ConditionBatch one(model.config(), 1);
              model.forward(long_row.data(), nullptr, 1, 28, &one);
            }, ErrorKind::Usage),
            "sequence of 5 condition positions and 28 tokens exceeds max_seq_len (32)");
  KVCache cache = model.make_cache(c.B);
  const int32_t firsts[2] = {c.tokens[0], c.tokens[static_cast<size_t>(c.T)]};
  model.forward(firsts, nullptr, 1, cache, &c.conditions);  // the prefill: each row's first token
  EXPECT_EQ(error_of([&] { model.forward(firsts, nullptr, 1, cache, &c.conditions); }, ErrorKind::Usage),
            "condition values go with the first call on an empty KV cache (the prefill)");
  Transformer other(load_model("mat_linear"));
  EXPECT_EQ(error_of([&] { other.forward(c.tokens.data(), nullptr, c.B, 4, &c.conditions); }, ErrorKind::Usage),
            "the condition values were made for another model's conditions");
  Transformer plain(load_model("mat_blockwise"));
  EXPECT_EQ(error_of([&] { plain.forward(c.tokens.data(), nullptr, c.B, 4, &c.conditions); }, ErrorKind::Usage),
            "condition values given to a model without conditions");
}

// No conditions given (all dropped, K = 0: unconditional) equals a batch that drops each one.
TEST(Materium, NoValuesMeansEveryConditionDropped) {
  Transformer model(load_model("mat_all"));
  const MatCase c = load_case("mat_all", model.config());
  const float* l0 = model.forward(c.tokens.data(), nullptr, c.B, c.T);
  const std::vector<float> none(l0, l0 + c.B * c.T * c.V);
  EXPECT_EQ(model.activations().K, 0);
  ConditionBatch dropped(model.config(), c.B);
  for (size_t i = 0; i < 3; ++i) dropped.drop(i);
  const float* l1 = model.forward(c.tokens.data(), nullptr, c.B, c.T, &dropped);
  EXPECT_EQ(std::vector<float>(l1, l1 + none.size()), none);
  const float* l2 = model.forward(c.tokens.data(), nullptr, c.B, c.T, &c.conditions);
  EXPECT_GT(max_rel_error(l2, none.data(), none.size()), 1e-3) << "the conditions change the logits";
}

// ---- condition values ----

TEST(ConditionValues, EachIsCheckedWhenSet) {
  const ModelConfig cfg = load_model("mat_all").config();  // space_group (embedding 12), band_gap (linear 2), formula (6, 3 slots)
  ConditionBatch cb(cfg, 2);
  EXPECT_EQ(cb.positions(), 5);
  EXPECT_EQ(cb.find("band_gap"), 1);
  EXPECT_EQ(cb.find("bandgap"), -1);
  EXPECT_EQ(error_of([&] { cb.set_class(0, 1, 12); }), "'space_group' of row 1: class 12 is not in 0..11");
  const float nan[2] = {1.0f, NAN};
  EXPECT_EQ(error_of([&] { cb.set_linear(1, 0, nan); }), "'band_gap' of row 0: value 1 is not finite (nan)");
  EXPECT_EQ(error_of([&] { cb.set_formula(2, 0, {}); }), "'formula' of row 0: expected 1..3 (element, count) pairs, got 0");
  EXPECT_EQ(error_of([&] { cb.set_formula(2, 0, {{40, 1}}); }), "'formula' of row 0: element id 40 is not below vocab_size 40");
  EXPECT_EQ(error_of([&] { cb.set_formula(2, 0, {{5, 0}}); }), "'formula' of row 0: count 0 of element 5 is not in 1..6");
  EXPECT_EQ(error_of([&] { cb.set_formula(2, 0, {{5, 1}, {5, 2}}); }), "'formula' of row 0: element 5 appears twice");
  EXPECT_EQ(error_of([&] { cb.set_class(1, 0, 3); }, ErrorKind::Usage),
            "condition 'band_gap' is a linear condition, not embedding");
  EXPECT_EQ(error_of([&] { cb.set_null(0, 2); }, ErrorKind::Usage), "row 2 of a condition batch of 2 rows does not exist");
  cb.set_formula(2, 1, {{8, 2}, {5, 1}});
  EXPECT_EQ(cb.values(2).formula, (std::vector<int32_t>{-1, 0, -1, 0, -1, 0, 8, 2, 5, 1, -1, 0}));
  EXPECT_EQ(cb.values(2).null, (std::vector<uint8_t>{1, 0}));
  cb.set_null(2, 1);
  EXPECT_EQ(cb.values(2).formula, (std::vector<int32_t>{-1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0}));
  EXPECT_EQ(cb.values(2).null, (std::vector<uint8_t>{1, 1}));
  cb.drop(0);
  EXPECT_EQ(cb.positions(), 4);
  EXPECT_EQ(position_types(cfg, &cb, 2), (std::vector<int32_t>{2, 3, 3, 3, 0, 0}));
}

// ---- the conditions file ----

// The JSON Lines reader over a memory source: values land in their rows, nulls mark the mask,
// and every mistake names the file, the line and the record (docs/materium.md's messages).
ConditionBatch read_text(const ModelConfig& cfg, const std::string& text, int64_t records) {
  ConditionsReader r(memory_source(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "c.jsonl"), cfg);
  ConditionBatch cb(cfg, std::max<int64_t>(records, 1));
  for (int64_t b = 0; b < records && r.next(cb, b); ++b) {
  }
  r.expect_records(records);
  return cb;
}

TEST(ConditionsFile, ReadsEveryKindOfValue) {
  const ModelConfig cfg = load_model("mat_all").config();  // space_group (embedding 12), band_gap (linear 2), formula (6, 3)
  const ConditionBatch cb = read_text(cfg,
                                      "{\"space_group\": 3, \"band_gap\": [1.5, -2], \"formula\": [[8, 2], [5, 1]]}\n"
                                      "{\"formula\": null, \"band_gap\": null, \"space_group\": 11}\r\n"
                                      "{\"space_group\": null, \"band_gap\": [0, 0.25], \"formula\": [[39, 6]]}",
                                      3);
  EXPECT_EQ(cb.values(0).classes, (std::vector<int32_t>{3, 11, 0}));
  EXPECT_EQ(cb.values(0).null, (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(cb.values(1).linear, (std::vector<float>{1.5f, -2.0f, 0, 0, 0, 0.25f}));
  EXPECT_EQ(cb.values(1).null, (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(cb.values(2).formula, (std::vector<int32_t>{8, 2, 5, 1, -1, 0, -1, 0, -1, 0, -1, 0, 39, 6, -1, 0, -1, 0}));
  EXPECT_EQ(cb.values(2).null, (std::vector<uint8_t>{0, 1, 0}));
  // Rows copy whole (what a batch of whole records takes from the file's table).
  ConditionBatch two(cfg, 2);
  copy_condition_row(cb, 2, two, 0);
  copy_condition_row(cb, 0, two, 1);
  EXPECT_EQ(two.values(0).null, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(two.values(1).linear, (std::vector<float>{0, 0.25f, 1.5f, -2.0f}));
  EXPECT_EQ(two.values(2).formula, (std::vector<int32_t>{39, 6, -1, 0, -1, 0, 8, 2, 5, 1, -1, 0}));
}

TEST(ConditionsFile, EveryMistakeNamesTheLineAndRecord) {
  const ModelConfig cfg = load_model("mat_all").config();
  const std::string ok = "{\"space_group\": 3, \"band_gap\": [1, 2], \"formula\": [[8, 2]]}\n";
  auto err = [&](const std::string& second, int64_t records = 2) {
    return error_of([&] { read_text(cfg, ok + second, records); });
  };
  const std::string at = "c.jsonl: line 2 (record 1): ";
  EXPECT_EQ(err("{\"space_group\": 3, \"formula\": [[8, 2]]}\n"), at + "missing 'band_gap' (null marks an unknown value)");
  EXPECT_EQ(err("{\"space_group\": 3, \"bandgap\": [1, 2], \"band_gap\": [1, 2], \"formula\": null}\n"),
            at + "unknown condition 'bandgap' (the model's: space_group, band_gap, formula)");
  EXPECT_EQ(err("{\"space_group\": 3, \"band_gap\": null, \"band_gap\": [1, 2], \"formula\": null}\n"),
            at + "duplicate key 'band_gap'");
  EXPECT_EQ(err("\n").rfind(at + "not a JSON object: ", 0), 0u);
  EXPECT_EQ(err("[1, 2]\n"), at + "not a JSON object: got [1,2]");
  EXPECT_EQ(err("{\"space_group\": 3, \"band_gap\": 1.2, \"formula\": null}\n"),
            at + "'band_gap': expected an array of 2 finite numbers, got 1.2");
  EXPECT_EQ(err("{\"space_group\": 3, \"band_gap\": [1, \"2\"], \"formula\": null}\n"),
            at + "'band_gap': expected an array of 2 finite numbers, got [1,\"2\"]");
  EXPECT_EQ(err("{\"space_group\": 3, \"band_gap\": [1, 1e300], \"formula\": null}\n"),
            at + "'band_gap': expected an array of 2 finite numbers, got [1,1e+300]");
  EXPECT_EQ(err("{\"space_group\": 12, \"band_gap\": null, \"formula\": null}\n"),
            at + "'space_group': expected an integer class in 0..11, got 12");
  EXPECT_EQ(err("{\"space_group\": 3.0, \"band_gap\": null, \"formula\": null}\n"),
            at + "'space_group': expected an integer class in 0..11, got 3.0");
  EXPECT_EQ(err("{\"space_group\": \"P1\", \"band_gap\": null, \"formula\": null}\n"),
            at + "'space_group': expected an integer class in 0..11, got \"P1\"");
  EXPECT_EQ(err("{\"space_group\": 1, \"band_gap\": null, \"formula\": []}\n"),
            at + "'formula': expected 1..3 [element id, count] pairs, got []");
  EXPECT_EQ(err("{\"space_group\": 1, \"band_gap\": null, \"formula\": [[1, 1], [2, 1], [3, 1], [4, 1]]}\n"),
            at + "'formula': expected 1..3 [element id, count] pairs, got [[1,1],[2,1],[3,1],[4,1]]");
  EXPECT_EQ(err("{\"space_group\": 1, \"band_gap\": null, \"formula\": [[1, 1.5]]}\n"),
            at + "'formula': expected 1..3 [element id, count] pairs, got [[1,1.5]]");
  EXPECT_EQ(err("{\"space_group\": 1, \"band_gap\": null, \"formula\": [[40, 1]]}\n"),
            at + "'formula': element id 40 is not below vocab_size 40");
  EXPECT_EQ(err("{\"space_group\": 1, \"band_gap\": null, \"formula\": [[5, 0]]}\n"),
            at + "'formula': count 0 of element 5 is not in 1..6");
  EXPECT_EQ(err("{\"space_group\": 1, \"band_gap\": null, \"formula\": [[5, 1], [5, 2]]}\n"),
            at + "'formula': element 5 appears twice");
  // One line per record, checked when either side ends.
  EXPECT_EQ(err("", 2), "c.jsonl: 1 line for 2 records | the conditions file has one line per record of its token stream");
  EXPECT_EQ(err(ok + ok, 2), "c.jsonl: 3 lines for 2 records | the conditions file has one line per record of its token stream");
  EXPECT_NO_THROW(read_text(cfg, ok + ok, 2));
  EXPECT_NO_THROW(read_text(cfg, ok + ok.substr(0, ok.size() - 1), 2));  // no final newline
  EXPECT_EQ(error_of([&] { read_text(cfg, "", 1); }), "c.jsonl: 0 lines for 1 record | the conditions file has one line per record of its token stream");
  // A line longer than the limit is refused without reading it whole.
  const std::string huge(kMaxConditionsLine + 10, ' ');
  EXPECT_EQ(err(huge), at + "longer than 1048576 bytes");
}

// lm-eval-loss's materium path: every record one window with its file line's conditions, the
// positions the model's own; --hidden-out's states are the library forward's hidden() bit for bit.
TEST(ConditionsFile, EvaluatorRunsWholeRecordsWithTheirConditions) {
  Transformer model(load_model("mat_all"));
  const ModelConfig& cfg = model.config();
  const std::vector<std::vector<uint32_t>> records = {{1, 4, 10, 11, 12, 13, 3, 20, 2}, {1, 4, 14, 15, 3, 2}};
  const std::string lines = "{\"space_group\": 3, \"band_gap\": [1.5, -2], \"formula\": [[8, 2], [5, 1]]}\n"
                            "{\"space_group\": null, \"band_gap\": [0, 0.25], \"formula\": [[39, 6]]}\n";
  ConditionsReader reader(memory_source(reinterpret_cast<const uint8_t*>(lines.data()), lines.size(), "c"), cfg);
  EvalOptions eo;
  eo.batch = 2;
  eo.seq = 12;
  eo.hidden = true;
  Evaluator ev(model, eo);
  ev.conditions = &reader;
  for (size_t r = 0; r < records.size(); ++r) {
    TokenChunk ch;
    ch.tokens = records[r];
    ch.record = r;
    ch.first = ch.last = true;
    ev.add(ch);
  }
  const EvalResult res = ev.finish();
  EXPECT_EQ(res.windows, 2);
  EXPECT_EQ(res.tokens, 8 + 5);
  EXPECT_EQ(res.hidden_lengths, (std::vector<int32_t>{9, 6}));
  // The same rows through the library: PAD-filled tokens, the values set by hand.
  std::vector<int32_t> tokens(24, static_cast<int32_t>(cfg.pad_id)), targets(24, static_cast<int32_t>(cfg.pad_id));
  for (size_t r = 0; r < 2; ++r)
    for (size_t t = 0; t < records[r].size(); ++t) {
      tokens[r * 12 + t] = static_cast<int32_t>(records[r][t]);
      if (t > 0) targets[r * 12 + t - 1] = static_cast<int32_t>(records[r][t]);
    }
  EXPECT_EQ(res.hidden_tokens, tokens);
  ConditionBatch cb(cfg, 2);
  cb.set_class(0, 0, 3);
  const float gap0[2] = {1.5f, -2.0f}, gap1[2] = {0.0f, 0.25f};
  cb.set_linear(1, 0, gap0);
  cb.set_formula(2, 0, {{8, 2}, {5, 1}});
  cb.set_null(0, 1);
  cb.set_linear(1, 1, gap1);
  cb.set_formula(2, 1, {{39, 6}});
  model.forward(tokens.data(), nullptr, 2, 12, &cb);
  const std::vector<float> want(model.hidden(), model.hidden() + 24 * cfg.dim);
  EXPECT_EQ(res.hidden, want);
  const LossResult l = model.loss(targets.data());
  EXPECT_NEAR(res.loss(), l.loss, 1e-6 * std::abs(l.loss));
  // Without the reader: the values are required.
  Evaluator bare(model, eo);
  TokenChunk ch;
  ch.tokens = records[0];
  ch.first = ch.last = true;
  EXPECT_EQ(error_of([&] { bare.add(ch); }, ErrorKind::Usage),
            "the model has conditions (space_group, band_gap, formula): give their values with --conditions FILE");
}

TEST(ConditionsFile, ReadConditionsPairsFilesWithStreams) {
  const ModelConfig cfg = load_model("mat_all").config();
  const fs::path dir = fs::temp_directory_path() / ("lmkit_cond_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string a = (dir / "a.jsonl").string(), b = (dir / "b.jsonl").string();
  std::FILE* f = std::fopen(a.c_str(), "w");
  std::fputs("{\"space_group\": 1, \"band_gap\": null, \"formula\": null}\n", f);
  std::fclose(f);
  f = std::fopen(b.c_str(), "w");
  std::fputs("{\"space_group\": 2, \"band_gap\": null, \"formula\": null}\n{\"space_group\": 5, \"band_gap\": null, \"formula\": null}\n", f);
  std::fclose(f);
  const ConditionBatch cb = read_conditions({a, b}, {1, 2}, cfg);
  EXPECT_EQ(cb.batch(), 3);
  EXPECT_EQ(cb.values(0).classes, (std::vector<int32_t>{1, 2, 5}));
  EXPECT_EQ(error_of([&] { read_conditions({a, b}, {2, 1}, cfg); }),
            a + ": 1 line for 2 records | the conditions file has one line per record of its token stream");
  EXPECT_EQ(error_of([&] { read_conditions({a}, {1, 2}, cfg); }, ErrorKind::Usage),
            "1 conditions files for 2 token streams: give one per stream");
  fs::remove_all(dir);
}

// ---- config ----

TEST(MateriumConfig, FixtureConfigsParseAndRoundTrip) {
  for (const std::string& name : kFixtures) {
    const ModelConfig c = load_model(name).config();
    EXPECT_TRUE(c.is_materium()) << name;
    EXPECT_EQ(config_from_json(config_to_json(c), name), c) << name;
    EXPECT_EQ(config_to_json(c).find("block_pos_ids"), std::string::npos);
  }
  const ModelConfig all = load_model("mat_all").config();
  ASSERT_EQ(all.conditions.size(), 3u);
  EXPECT_EQ(all.conditions[2].proj_layer_type, ProjLayerType::Formula);
  EXPECT_EQ(all.conditions[2].positions(), 3);
  EXPECT_EQ(all.condition_positions(), 5);
  EXPECT_EQ(all.rope_mode, RopeMode::Blockwise);
  EXPECT_EQ(all.atom_block_size, 4);
}

TEST(MateriumConfig, TheLegacyKeyIsReadNeverWritten) {
  // Every checkpoint before rope_mode carries "block_pos_ids": false.
  EXPECT_EQ(config_from_json(R"({"block_pos_ids": false})", "x"), ModelConfig{});
  EXPECT_EQ(config_from_json(R"({"block_pos_ids": true})", "x").rope_mode, RopeMode::Blockwise);
  EXPECT_EQ(config_from_json(R"({"rope_mode": "blockwise", "block_pos_ids": true})", "x").rope_mode, RopeMode::Blockwise);
  EXPECT_EQ(error_of([] { config_from_json(R"({"block_pos_ids": true, "rope_mode": "standard"})", "c.json"); }),
            "'c.json': block_pos_ids (true) contradicts rope_mode 'standard'");
  EXPECT_EQ(error_of([] { config_from_json(R"({"rope_mode": "blockwise", "block_pos_ids": false})", "c.json"); }),
            "'c.json': block_pos_ids (false) contradicts rope_mode 'blockwise'");
  EXPECT_EQ(error_of([] { config_from_json(R"({"block_pos_ids": 1})", "c.json"); }),
            "'c.json': 'block_pos_ids': expected true or false, got 1");
  // Not a settable key.
  ModelConfig c;
  EXPECT_THROW(apply_override(c, "block_pos_ids=true"), Error);
}

TEST(MateriumConfig, ParseErrorsNameTheKey) {
  auto parse = [](const std::string& text) { return error_of([&] { config_from_json(text, "c.json"); }); };
  EXPECT_EQ(parse(R"({"rope_mode": "block"})"), "'c.json': 'rope_mode': expected one of 'standard', 'blockwise', got \"block\"");
  EXPECT_EQ(parse(R"({"doc_mask_boundary": "begin"})"),
            "'c.json': 'doc_mask_boundary': expected one of 'end', 'start', got \"begin\"");
  EXPECT_EQ(parse(R"({"conditions": [{"name": "x", "proj_layer_type": "mlp", "input_dim": 2}]})"),
            "'c.json': 'conditions[0].proj_layer_type': expected one of 'linear', 'embedding', 'formula', got \"mlp\"");
  EXPECT_EQ(parse(R"({"conditions": [{"name": "x", "input_dim": 2}]})"),
            "'c.json': conditions[0]: 'proj_layer_type' is required");
  EXPECT_EQ(parse(R"({"conditions": [{"proj_layer_type": "linear", "input_dim": 2}]})"),
            "'c.json': conditions[0]: 'name' is required");
  EXPECT_EQ(parse(R"({"conditions": [{"name": "x", "proj_layer_type": "linear", "input_dim": 2.5}]})"),
            "'c.json': 'conditions[0].input_dim': expected an integer, got 2.5");
  EXPECT_EQ(parse(R"({"conditions": {"x": 1}})"), "'c.json': 'conditions': expected an array of condition objects, got {\"x\":1}");
}

ConditionConfig cond(const std::string& name, ProjLayerType type, int64_t input_dim, int64_t out_dim = 0,
                     int64_t max_elements = 0) {
  ConditionConfig c;
  c.name = name;
  c.proj_layer_type = type;
  c.input_dim = input_dim;
  c.out_dim = out_dim;
  c.max_elements = max_elements;
  return c;
}

std::string first_problem(const std::function<void(ModelConfig&)>& edit) {
  ModelConfig c = load_model("mat_dropped").config();  // dim 32, V 40, max_seq_len 32, blockwise (4, 3)
  edit(c);
  const auto errs = validation_errors(c);
  return errs.empty() ? "" : errs[0];
}

TEST(MateriumConfig, EachRuleHasAPreciseMessage) {
  using C = ModelConfig;
  using L = ProjLayerType;
  EXPECT_EQ(first_problem([](C&) {}), "");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[0].name = "x y"; }), "conditions[0].name 'x y' must be letters, digits and '_'");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[0].name = ""; }), "conditions[0].name '' must be letters, digits and '_'");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[0].name = "gap_mask"; }), "conditions[0].name 'gap_mask' must not end in '_mask'");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[2].name = "band_gap"; }), "conditions[2]: duplicate name 'band_gap'");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[1].input_dim = 0; }), "conditions[1].input_dim must be positive, got 0");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[1].out_dim = 256; }), "conditions[1].out_dim (256) must equal dim (32)");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[1].out_dim = 0; }), "");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[2].max_elements = 9; }),
            "conditions[2].max_elements (9) must be in 0..input_dim (4)");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[0].max_elements = 2; }),
            "conditions[0].max_elements is for formula conditions only, got 2");
  EXPECT_EQ(first_problem([](C& c) { c.atoms_token_id = -1; }),
            "rope_mode blockwise needs atoms_token_id in [0, vocab_size 40), got -1");
  EXPECT_EQ(first_problem([](C& c) { c.lattice_token_id = 40; }),
            "rope_mode blockwise needs lattice_token_id in [0, vocab_size 40), got 40");
  EXPECT_EQ(first_problem([](C& c) { c.lattice_token_id = 4; }), "atoms_token_id and lattice_token_id must differ");
  EXPECT_EQ(first_problem([](C& c) { c.atom_block_size = 0; }), "atom_block_size must be positive, got 0");
  EXPECT_EQ(first_problem([](C& c) { c.causal = false; }), "conditions and blockwise positions need causal attention");
  EXPECT_EQ(first_problem([](C& c) { c.doc_mask = true; }), "conditions and blockwise positions do not combine with doc_mask");
  EXPECT_EQ(first_problem([](C& c) { c.conditions = {}, c.doc_mask = true; }),
            "conditions and blockwise positions do not combine with doc_mask");
  EXPECT_EQ(first_problem([](C& c) { c.rope_mode = RopeMode::Standard, c.atoms_token_id = -1, c.atom_block_size = 0; }),
            "");  // the block-wise fields mean nothing in standard mode
  EXPECT_EQ(first_problem([](C& c) { c.conditions.push_back(cond("big", L::Formula, 40)); }),
            "the conditions take 44 positions, which leaves no room for tokens within max_seq_len (32)");
  EXPECT_EQ(first_problem([](C& c) { c.conditions[1].input_dim = int64_t(1) << 30; }),
            "conditions[1].input_dim (1073741824) is too large: the limit is 16777216");
}

TEST(MateriumConfig, AccountingCountsEveryConditionTensor) {
  for (const std::string& name : kFixtures) {
    const ModelWeights w = load_model(name);
    EXPECT_EQ(count_params(w.config()).total, w.layout().num_parameters()) << name;
  }
  const ModelConfig c = load_model("mat_all").config();  // C 48: embedding 12, linear 2, formula 6
  const int64_t C = 48;
  EXPECT_EQ(count_params(c).conditions, 12 * C + 2 * C + (7 * C + 4 * C * C + 3 * C) + 3 * C + 4 * C);
  // The K condition positions go through the layers: more activation memory than tokens alone.
  ModelConfig plain = c;
  plain.conditions.clear();
  EXPECT_GT(training_memory(c, 2, 16).activations, training_memory(plain, 2, 16).activations);
}

TEST(MateriumParams, MateriumNamesShapesAndRandomInit) {
  const ModelConfig cfg = load_model("mat_all").config();
  const ParameterLayout layout(cfg);
  auto shape_of = [&](const std::string& n) {
    const ParamInfo* p = layout.find(n);
    return p ? p->shape : Shape{};
  };
  EXPECT_EQ(shape_of("cond_proj_layers.space_group.weight"), (Shape{12, 48}));
  EXPECT_EQ(shape_of("cond_proj_layers.band_gap.weight"), (Shape{48, 2}));
  EXPECT_EQ(shape_of("cond_proj_layers.formula.composition_num_atoms.weight"), (Shape{7, 48}));
  EXPECT_EQ(shape_of("cond_proj_layers.formula.combined_emb.0.weight"), (Shape{96, 48}));
  EXPECT_EQ(shape_of("cond_proj_layers.formula.combined_emb.0.bias"), (Shape{96}));
  EXPECT_EQ(shape_of("cond_proj_layers.formula.combined_emb.2.weight"), (Shape{48, 96}));
  EXPECT_EQ(shape_of("cond_proj_layers.formula.combined_emb.2.bias"), (Shape{48}));
  EXPECT_EQ(shape_of("condition_mask_embeddings.band_gap"), (Shape{48}));
  EXPECT_EQ(shape_of("type_embeddings.weight"), (Shape{4, 48}));
  EXPECT_EQ(layout.find("type_embeddings.weight")->condition, -1);
  EXPECT_EQ(layout.find("condition_mask_embeddings.formula")->condition, 2);

  const ModelWeights w = ModelWeights::random(cfg, 3);
  const ParameterTensors& p = w.params();
  ASSERT_EQ(p.conditions.size(), 3u);
  EXPECT_NE(p.conditions[0].embedding, nullptr);
  EXPECT_EQ(p.conditions[0].linear_w, nullptr);
  EXPECT_NE(p.conditions[1].linear_w, nullptr);
  EXPECT_NE(p.conditions[2].mlp_w2, nullptr);
  EXPECT_EQ(p.conditions[2].mlp_b1[5], 0.0f);  // biases start at zero
  EXPECT_NE(p.type_embeddings[7], 0.0f);
  const std::string path = ::testing::TempDir() + "/lmkit_materium.safetensors";
  w.save(path);
  const ModelWeights back = ModelWeights::load(path);
  EXPECT_EQ(back.config(), cfg);
  for (size_t i = 0; i < w.layout().tensors().size(); ++i)
    EXPECT_EQ(std::memcmp(back.tensor(i).raw(), w.tensor(i).raw(), w.tensor(i).nbytes()), 0) << w.layout().tensors()[i].name;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace lm
