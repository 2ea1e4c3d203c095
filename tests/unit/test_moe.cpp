// The mixture of experts (lib/model/moe.h, docs/llama4.md §5-§6): the sparse kernels against
// their dense reference twins (forward, backward with the balance loss, both routings, with
// and without the shared expert, few and many rows), the reference's backward against finite
// differences, sparsity (experts nobody chose are never read), and a MoE model's training
// step: gradient checkpointing bit for bit, accumulation, activation sizes, the config's
// MoE fields and their validation, and the parameter table. The PyTorch fixtures
// (tests/fixtures/llama4/l4_moe_*) run in test_model.cpp and test_backward.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "test_util.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/config_infer.h"
#include "model/moe.h"
#include "model/params.h"
#include "model/transformer.h"

namespace lm {
namespace {

using fixture::max_rel_error;
using test::TokenBatch;
using test::small_token_batch;

std::vector<float> randn(int64_t n, uint64_t seed, float scale) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}

// A MoE layer's random weights (and a zeroed gradient set of the same shapes).
struct Layer {
  MoEShape s;
  std::vector<float> router, w1, w2, w3, sw1, sw2, sw3;
  Layer(const MoEShape& shape, uint64_t seed) : s(shape) {
    const float in_c = 1.0f / std::sqrt(static_cast<float>(s.C)), in_f = 1.0f / std::sqrt(static_cast<float>(s.Fe));
    router = randn(s.E * s.C, seed, 2 * in_c);
    w1 = randn(s.E * s.Fe * s.C, seed + 1, in_c);
    w3 = randn(s.E * s.Fe * s.C, seed + 2, in_c);
    w2 = randn(s.E * s.C * s.Fe, seed + 3, in_f);
    if (s.shared) {
      sw1 = randn(s.Fe * s.C, seed + 4, in_c);
      sw3 = randn(s.Fe * s.C, seed + 5, in_c);
      sw2 = randn(s.C * s.Fe, seed + 6, in_f);
    }
  }
  static Layer zeros(const MoEShape& shape) {
    Layer l(shape, 0);
    for (auto* v : {&l.router, &l.w1, &l.w2, &l.w3, &l.sw1, &l.sw2, &l.sw3}) std::fill(v->begin(), v->end(), 0.0f);
    return l;
  }
  MoEParams params() {
    return {router.data(), w1.data(), w2.data(), w3.data(), s.shared ? sw1.data() : nullptr,
            s.shared ? sw2.data() : nullptr, s.shared ? sw3.data() : nullptr};
  }
  std::vector<std::vector<float>*> tensors() { return {&router, &w1, &w2, &w3, &sw1, &sw2, &sw3}; }
};

// Views of moe_buffers() over one owned vector.
template <class Struct>
struct Buffers {
  Struct views;
  std::vector<float> storage;
  explicit Buffers(const MoEShape& s) {
    int64_t total = 0;
    for (const auto& [slot, n] : moe_buffers(views, s)) total += n;
    storage.assign(static_cast<size_t>(total), std::numeric_limits<float>::quiet_NaN());
    float* p = storage.data();
    for (const auto& [slot, n] : moe_buffers(views, s)) {
      *slot = p;
      p += n;
    }
  }
};

MoEShape shape(int64_t N, int64_t E, int64_t K, MoERouting routing, bool shared) {
  MoEShape s;
  s.N = N, s.C = 12, s.E = E, s.K = K, s.Fe = 10, s.routing = routing, s.shared = shared;
  return s;
}

std::vector<MoEShape> shapes() {
  std::vector<MoEShape> out;
  for (MoERouting routing : {MoERouting::Sigmoid, MoERouting::Softmax})
    for (bool shared : {false, true})
      for (int64_t N : {1, 3, 37})  // the few-rows kernels and sgemm
        for (int64_t K : {1, 2}) out.push_back(shape(N, 5, K, routing, shared));
  return out;
}

std::string describe(const MoEShape& s) {
  return cat(name_of(s.routing), s.shared ? " + shared" : "", ", N ", s.N, ", E ", s.E, ", K ", s.K);
}

TEST(MoE, FastForwardMatchesTheDenseReference) {
  for (const MoEShape& s : shapes()) {
    Layer l(s, 7);
    const std::vector<float> x = randn(s.N * s.C, 3, 1.0f);
    Buffers<MoEActivations> a(s);
    std::vector<float> out(static_cast<size_t>(s.N * s.C)), want(out.size()), logits(static_cast<size_t>(s.N * s.E));
    moe_forward(out.data(), a.views, x.data(), l.params(), s);
    moe_forward_ref(want.data(), logits.data(), x.data(), l.params(), s);
    EXPECT_LE(max_rel_error(out.data(), want.data(), out.size()), 1e-5) << describe(s);
    EXPECT_LE(max_rel_error(a.views.logits, logits.data(), logits.size()), 1e-5) << describe(s);
    EXPECT_NEAR(moe_balance_loss(a.views, s), moe_balance_loss_ref(logits.data(), s), 1e-6) << describe(s);
    // The grouping: every assignment once, experts in order, tokens ascending within one.
    for (int64_t e = 0; e < s.E; ++e)
      for (int64_t r = a.views.offsets[e]; r < a.views.offsets[e + 1]; ++r) {
        EXPECT_EQ(a.views.expert[a.views.order[r]], e);
        EXPECT_EQ(a.views.row[a.views.order[r]], r);
        if (r > a.views.offsets[e]) EXPECT_LT(a.views.order[r - 1], a.views.order[r]);
      }
    EXPECT_EQ(a.views.offsets[s.E], s.N * s.K);
  }
}

TEST(MoE, FastBackwardMatchesTheDenseReference) {
  for (const MoEShape& s : shapes()) {
    for (float aux : {0.0f, 0.7f}) {
      Layer l(s, 11);
      const std::vector<float> x = randn(s.N * s.C, 5, 1.0f), dout = randn(s.N * s.C, 6, 1.0f);
      Buffers<MoEActivations> a(s);
      Buffers<MoEScratch> scratch(s);
      std::vector<float> out(static_cast<size_t>(s.N * s.C));
      moe_forward(out.data(), a.views, x.data(), l.params(), s);
      Layer g = Layer::zeros(s), gref = Layer::zeros(s);
      std::vector<float> dx(out.size(), 0.5f), dxref(out.size(), 0.5f);  // accumulates onto what is there
      moe_backward(dx.data(), g.params(), dout.data(), x.data(), a.views, l.params(), s, aux, scratch.views);
      moe_backward_ref(dxref.data(), gref.params(), dout.data(), x.data(), l.params(), s, aux);
      EXPECT_LE(max_rel_error(dx.data(), dxref.data(), dx.size()), 1e-5) << describe(s) << " aux " << aux;
      const auto got = g.tensors(), want = gref.tensors();
      const char* names[] = {"router", "w1", "w2", "w3", "shared w1", "shared w2", "shared w3"};
      // The router's gradient goes through each gate's dot product of dout with its expert's
      // output, which cancels: rounded in another order (a Debug build fuses no multiply-adds,
      // make test-asan) it moves by 1.06e-5 of its largest value for N 1.
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_LE(max_rel_error(got[i]->data(), want[i]->data(), got[i]->size()), i == 0 ? 3e-5 : 1e-5)
            << describe(s) << " aux " << aux << ": " << names[i];
    }
  }
}

// The reference backward against central differences of L = sum(r * moe(x)) + aux * balance(x)
// (float forward, double accumulation inside; the selection is piecewise constant, so the probes
// stay far from a tie at this step size).
TEST(MoE, ReferenceBackwardMatchesFiniteDifferences) {
  for (MoERouting routing : {MoERouting::Sigmoid, MoERouting::Softmax}) {
    const MoEShape s = shape(6, 4, 2, routing, true);
    Layer l(s, 21);
    std::vector<float> x = randn(s.N * s.C, 8, 1.0f);
    const std::vector<float> r = randn(s.N * s.C, 9, 1.0f);
    const float aux = 0.9f;
    auto objective = [&] {
      std::vector<float> y(r.size()), logits(static_cast<size_t>(s.N * s.E));
      moe_forward_ref(y.data(), logits.data(), x.data(), l.params(), s);
      double sum = 0;
      for (size_t i = 0; i < y.size(); ++i) sum += static_cast<double>(y[i]) * r[i];
      return sum + aux * moe_balance_loss_ref(logits.data(), s);
    };
    Layer g = Layer::zeros(s);
    std::vector<float> dx(x.size(), 0.0f);
    moe_backward_ref(dx.data(), g.params(), r.data(), x.data(), l.params(), s, aux);
    auto check = [&](const char* what, std::vector<float>& v, const std::vector<float>& grad) {
      Rng pick(99);
      double scale = 0;
      for (float gv : grad) scale = std::max(scale, static_cast<double>(std::abs(gv)));
      ASSERT_GT(scale, 0.0) << what;
      for (int i = 0; i < 10; ++i) {
        const size_t j = static_cast<size_t>(pick.below(v.size()));
        const float keep = v[j], h = 2e-3f;
        v[j] = keep + h;
        const double up = objective();
        v[j] = keep - h;
        const double down = objective();
        v[j] = keep;
        EXPECT_NEAR(grad[j], (up - down) / (2.0 * h), 1e-2 * scale + 1e-4) << name_of(routing) << " " << what << " " << j;
      }
    };
    check("x", x, dx);
    check("router", l.router, g.router);
    check("w1", l.w1, g.w1);
    check("w2", l.w2, g.w2);
    check("w3", l.w3, g.w3);
    check("shared w1", l.sw1, g.sw1);
    check("shared w2", l.sw2, g.sw2);
  }
}

TEST(MoE, ExpertsNobodyChoseAreNeverRead) {
  // Poison every expert no token selects: the output and every gradient stay finite, so the
  // kernels touched only the chosen experts' weights (a dense kernel would produce NaN).
  for (int64_t N : {1, 2, 40}) {
    MoEShape s = shape(N, 16, 1, MoERouting::Sigmoid, true);
    Layer l(s, 31);
    const std::vector<float> x = randn(s.N * s.C, 12, 1.0f), dout = randn(s.N * s.C, 13, 1.0f);
    Buffers<MoEActivations> a(s);
    std::vector<float> out(static_cast<size_t>(s.N * s.C));
    moe_forward(out.data(), a.views, x.data(), l.params(), s);
    int64_t unused = 0;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t e = 0; e < s.E; ++e) {
      if (a.views.offsets[e + 1] > a.views.offsets[e]) continue;
      ++unused;
      std::fill_n(l.w1.begin() + e * s.Fe * s.C, s.Fe * s.C, nan);
      std::fill_n(l.w3.begin() + e * s.Fe * s.C, s.Fe * s.C, nan);
      std::fill_n(l.w2.begin() + e * s.C * s.Fe, s.C * s.Fe, nan);
    }
    EXPECT_GT(unused, 0) << "N " << N;
    std::vector<float> again(out.size());
    moe_forward(again.data(), a.views, x.data(), l.params(), s);
    EXPECT_EQ(again, out) << "N " << N;
    Buffers<MoEScratch> scratch(s);
    Layer g = Layer::zeros(s);
    std::vector<float> dx(out.size(), 0.0f);
    moe_backward(dx.data(), g.params(), dout.data(), x.data(), a.views, l.params(), s, 0.5f, scratch.views);
    for (float v : dx) ASSERT_TRUE(std::isfinite(v)) << "N " << N;
    for (auto* t : g.tensors())
      for (float v : *t) ASSERT_TRUE(std::isfinite(v)) << "N " << N;
  }
}

TEST(MoE, TopKTiesGoToTheLowerIndexAndSoftmaxGatesSumToOne) {
  MoEShape s = shape(1, 4, 2, MoERouting::Softmax, false);
  Layer l(s, 41);
  // Router rows 1, 2 and 3 equal: logits tie; row 0 lower. The top 2 are experts 1 and 2.
  std::vector<float> x(static_cast<size_t>(s.C), 1.0f);
  for (int64_t c = 0; c < s.C; ++c) {
    l.router[0 * s.C + c] = -0.5f;
    for (int64_t e = 1; e < 4; ++e) l.router[e * s.C + c] = 0.25f;
  }
  Buffers<MoEActivations> a(s);
  std::vector<float> out(static_cast<size_t>(s.C));
  moe_forward(out.data(), a.views, x.data(), l.params(), s);
  EXPECT_EQ(a.views.expert[0], 1);
  EXPECT_EQ(a.views.expert[1], 2);
  EXPECT_FLOAT_EQ(a.views.gate[0], 0.5f);
  EXPECT_FLOAT_EQ(a.views.gate[1], 0.5f);
}

// ---- a MoE model ----

ModelConfig moe_config() {
  ModelConfig c;
  c.name = "moe";
  c.dim = 16;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.hidden_dim = 24;
  c.max_seq_len = 8;
  c.pad_id = 0;
  c.moe.n_experts = 4;
  c.moe.top_k = 2;
  c.moe.hidden_dim = 12;
  c.moe.shared_expert = true;
  c.moe.interleave_step = 2;  // MoE layer 1 (and 3 with 4 layers)
  c.moe.aux_loss_coef = 0.3;
  return c;
}

struct Grads {
  Tensor arena;
  ParameterTensors views;
  explicit Grads(const ModelWeights& w) {
    arena = Tensor::zeros(DType::F32, {w.layout().arena_floats()});
    views = w.layout().bind(arena.data_mut<float>());
  }
};

TEST(MoEModel, ParameterTableHasStackedExpertsOnMoELayersOnly) {
  ModelConfig c = moe_config();
  c.n_layers = 4;  // MoE layers 1 and 3
  const ParameterLayout layout(c);
  EXPECT_NE(layout.find("layers.0.feed_forward.w1.weight"), nullptr);
  EXPECT_EQ(layout.find("layers.1.feed_forward.w1.weight"), nullptr);
  const ParamInfo* w1 = layout.find("layers.3.feed_forward.experts.w1.weight");
  ASSERT_NE(w1, nullptr);
  EXPECT_EQ(w1->shape, (Shape{4, 12, 16}));
  EXPECT_EQ(w1->kind, ParamKind::ExpertsW1);
  EXPECT_EQ(layout.find("layers.1.feed_forward.experts.w2.weight")->shape, (Shape{4, 16, 12}));
  EXPECT_EQ(layout.find("layers.1.feed_forward.router.weight")->shape, (Shape{4, 16}));
  EXPECT_EQ(layout.find("layers.1.feed_forward.shared_expert.w2.weight")->shape, (Shape{16, 12}));
  c.moe.shared_expert = false;
  EXPECT_EQ(ParameterLayout(c).find("layers.1.feed_forward.shared_expert.w1.weight"), nullptr);
  // Random init, save and load: the same tensors.
  const ModelWeights w = ModelWeights::random(moe_config(), 3);
  EXPECT_NE(w.params().layers[1].experts_w3, nullptr);
  EXPECT_EQ(w.params().layers[0].experts_w3, nullptr);
  const std::string path = ::testing::TempDir() + "/lmkit_moe.safetensors";
  w.save(path);
  const ModelWeights back = ModelWeights::load(path);
  EXPECT_EQ(back.config(), w.config());
  ASSERT_EQ(back.layout().tensors().size(), w.layout().tensors().size());
  for (size_t i = 0; i < w.layout().tensors().size(); ++i)
    EXPECT_EQ(std::memcmp(back.tensor(i).raw(), w.tensor(i).raw(), w.tensor(i).nbytes()), 0)
        << w.layout().tensors()[i].name;
  std::remove(path.c_str());
}

TEST(MoEModel, CheckpointingGivesTheSameGradientsBitForBit) {
  for (bool dropout : {false, true}) {
    ModelConfig c = moe_config();
    c.n_layers = 4;
    if (dropout) c.dropout = 0.1, c.attn_dropout = 0.1;
    const TokenBatch b = small_token_batch(c.vocab_size);
    Transformer full(ModelWeights::random(c, 6, {0.3f, false})), ckpt(ModelWeights::random(c, 6, {0.3f, false}));
    ckpt.set_gradient_checkpointing(true);
    Grads g0(full.weights()), g1(ckpt.weights());
    Rng r0(11), r1(11);
    TrainStepOptions o0, o1;
    o0.rng = &r0;
    o1.rng = &r1;
    const TrainStepResult a = full.train_step(g0.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, o0);
    const TrainStepResult d = ckpt.train_step(g1.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, o1);
    EXPECT_GT(a.moe_aux, 0.0);
    EXPECT_EQ(a.loss, d.loss);
    EXPECT_EQ(a.moe_aux, d.moe_aux);
    EXPECT_DOUBLE_EQ(a.loss, a.ce + 0.3 * a.moe_aux);
    EXPECT_EQ(std::memcmp(g0.arena.raw(), g1.arena.raw(), g0.arena.nbytes()), 0) << "dropout " << dropout;
    EXPECT_LT(ckpt.activation_bytes(), full.activation_bytes());
  }
}

TEST(MoEModel, BalanceLossGradientIsTheCoefficientsShare) {
  // The gradient of coef * moe_aux is the difference of the steps with and without it:
  // linear in the coefficient.
  const TokenBatch b = small_token_batch(40);
  std::vector<std::vector<float>> arenas;
  std::vector<double> aux;
  for (double coef : {0.0, 0.5, 1.0}) {
    ModelConfig c = moe_config();
    c.moe.aux_loss_coef = coef;
    Transformer m(ModelWeights::random(c, 9, {0.3f, false}));
    Grads g(m.weights());
    const TrainStepResult r = m.train_step(g.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T);
    EXPECT_NEAR(r.loss, r.ce + coef * r.moe_aux, 1e-12);
    aux.push_back(r.moe_aux);
    arenas.emplace_back(g.arena.data<float>(), g.arena.data<float>() + g.arena.numel());
  }
  EXPECT_EQ(aux[0], aux[1]);  // reported whatever the coefficient
  double diff = 0, scale = 0;
  for (size_t i = 0; i < arenas[0].size(); ++i) {
    const double half = arenas[1][i] - arenas[0][i], whole = arenas[2][i] - arenas[0][i];
    diff = std::max(diff, std::abs(2 * half - whole));
    scale = std::max(scale, std::abs(whole));
  }
  EXPECT_GT(scale, 0.0);
  EXPECT_LE(diff, 1e-4 * scale);
}

TEST(MoEModel, ActivationArenaHoldsEachLayersOwnFeedForward) {
  // Kept activations: MoE layers hold the experts' buffers and no dense FFN's, dense layers
  // the reverse; the arena grows with top_k (A = N * K rows), not with the expert count.
  ModelConfig c = moe_config();
  const TokenBatch b = small_token_batch(c.vocab_size);
  auto bytes = [&](const ModelConfig& cfg) {
    Transformer m(ModelWeights::random(cfg, 1));
    m.set_keep_activations(true);
    m.forward(b.tokens.data(), nullptr, b.B, b.T);
    EXPECT_EQ(m.activations().layers[1].fch, nullptr);
    EXPECT_NE(m.activations().layers[1].moe.xs, nullptr);
    EXPECT_NE(m.activations().layers[0].fch, nullptr);
    EXPECT_EQ(m.activations().layers[0].moe.xs, nullptr);
    return m.activation_bytes();
  };
  const int64_t base = bytes(c);
  ModelConfig many = c;
  many.moe.n_experts = 64;
  // 60 more router logits per token, and the offsets: nothing expert-sized.
  EXPECT_LE(bytes(many) - base, (60 * b.B * b.T + 60 + 64) * 4);
  ModelConfig wide = c;
  wide.moe.top_k = 3;
  EXPECT_GE(bytes(wide) - base, b.B * b.T * (2 * c.dim + 3 * 12) * 4);  // one more row per token
}

TEST(MoEModel, ConfigFieldsAndValidation) {
  ModelConfig c = config_from_json(R"({"moe": {"n_experts": 4, "routing": "softmax", "aux_loss_coef": 0.01}})", "x");
  EXPECT_EQ(c.moe.routing, MoERouting::Softmax);
  EXPECT_EQ(c.moe.aux_loss_coef, 0.01);
  EXPECT_EQ(config_from_json(config_to_json(c), "y"), c);
  try {
    config_from_json(R"({"moe": {"routing": "top1"}})", "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("one of 'sigmoid', 'softmax'"), std::string::npos) << e.what();
  }
  apply_override(c, "moe.routing=sigmoid");
  EXPECT_EQ(c.moe.routing, MoERouting::Sigmoid);
  auto first_error = [](ModelConfig m) {
    const auto errs = validation_errors(m);
    return errs.empty() ? std::string() : errs[0];
  };
  ModelConfig m = moe_config();
  EXPECT_EQ(first_error(m), "");
  m.moe.aux_loss_coef = -1;
  EXPECT_EQ(first_error(m), "moe.aux_loss_coef must be >= 0, got -1");
  m = moe_config();
  m.ffn_bias = true;
  EXPECT_EQ(first_error(m), "mixture of experts needs ffn_type 'swiglu' without ffn_bias (experts are bias-free SwiGLU FFNs)");
  m = moe_config();
  m.ffn_type = FfnType::GELU;
  EXPECT_NE(first_error(m), "");
  EXPECT_TRUE(unsupported_features(moe_config(), model_capabilities()).empty());
}

TEST(MoEModel, FirstDenseLayersStayDenseEverywhere) {
  // moe.first_dense_layers k: layers 0 .. k-1 are dense whatever the interleave (DeepSeek-V3's
  // first_k_dense_replace). The parameter table, JSON, validation and tensor inference follow it;
  // the PyTorch fixture llama4/l4_moe_first_dense holds the forward, backward and decode to it.
  ModelConfig c = moe_config();
  c.n_layers = 6;
  c.moe.interleave_step = 1;
  c.moe.first_dense_layers = 2;
  for (int64_t l = 0; l < 6; ++l) EXPECT_EQ(c.is_moe_layer(l), l >= 2) << l;
  const ParameterLayout layout(c);
  EXPECT_NE(layout.find("layers.1.feed_forward.w1.weight"), nullptr);
  EXPECT_EQ(layout.find("layers.1.feed_forward.router.weight"), nullptr);
  EXPECT_NE(layout.find("layers.2.feed_forward.router.weight"), nullptr);
  EXPECT_EQ(layout.find("layers.2.feed_forward.w1.weight"), nullptr);
  EXPECT_EQ(config_from_json(config_to_json(c), "x"), c);
  EXPECT_EQ(config_from_json(R"({"moe": {"n_experts": 2, "first_dense_layers": 3}})", "x").moe.first_dense_layers, 3);
  // With a step: layers 3 and 5 (not 1).
  c.moe.interleave_step = 2;
  for (int64_t l = 0; l < 6; ++l) EXPECT_EQ(c.is_moe_layer(l), l == 3 || l == 5) << l;
  auto first_error = [](ModelConfig m) {
    const auto errs = validation_errors(m);
    return errs.empty() ? std::string() : errs[0];
  };
  EXPECT_EQ(first_error(c), "");
  c.moe.first_dense_layers = 6;  // 5 is the last layer a step of 2 makes MoE
  EXPECT_EQ(first_error(c), "moe.first_dense_layers (6) leaves no MoE layer among 6 layers (interleave_step 2)");
  c.moe.first_dense_layers = 5;
  EXPECT_EQ(first_error(c), "");
  c.moe.first_dense_layers = -1;
  EXPECT_EQ(first_error(c), "moe.first_dense_layers must be >= 0, got -1");

  // Tensor inference: the interleave from the first router on.
  auto inferred = [](const ModelConfig& m) {
    std::map<std::string, Shape> shapes;
    const ParameterLayout layout(m);
    for (const ParamInfo& p : layout.tensors()) shapes[p.name] = p.shape;
    return infer_config(shapes, {"n_heads=" + std::to_string(m.n_heads)}, "m.safetensors").config;
  };
  for (auto [step, first] : {std::pair<int64_t, int64_t>{1, 2}, {2, 2}, {2, 0}, {1, 0}, {3, 0}}) {
    ModelConfig m = moe_config();
    m.n_layers = 7;
    m.moe.interleave_step = step;
    m.moe.first_dense_layers = first;
    const ModelConfig got = inferred(m);
    for (int64_t l = 0; l < 7; ++l) EXPECT_EQ(got.is_moe_layer(l), m.is_moe_layer(l)) << step << " " << first << " " << l;
  }
  // MoE on layers 1 and 2 of 4 (0 and 3 dense): neither rule gives that.
  ModelConfig all = moe_config(), dense = moe_config();
  all.n_layers = dense.n_layers = 4;
  all.moe.interleave_step = 1;
  dense.moe = MoEConfig{};
  std::map<std::string, Shape> shapes;
  auto is_layer = [](const std::string& name, int l) { return name.rfind("layers." + std::to_string(l) + ".", 0) == 0; };
  const ParameterLayout all_layout(all), dense_layout(dense);
  for (const ParamInfo& p : all_layout.tensors())
    if (!is_layer(p.name, 0) && !is_layer(p.name, 3)) shapes[p.name] = p.shape;
  for (const ParamInfo& p : dense_layout.tensors())
    if (!shapes.count(p.name) && !is_layer(p.name, 1) && !is_layer(p.name, 2)) shapes[p.name] = p.shape;
  std::string why;
  try {
    infer_config(shapes, {"n_heads=4"}, "m.safetensors");
  } catch (const Error& e) {
    why = e.what();
  }
  EXPECT_NE(why.find("not every 2-th layer, nor every n-th from the first: layer 2 breaks the pattern"), std::string::npos)
      << why;
}

}  // namespace
}  // namespace lm
