// The backward pass: Transformer::train_step's gradients against the PyTorch fixtures
// (tests/fixtures/*/grads.safetensors, made by make_fixtures.py), every kernel's backward
// against central finite differences of its forward, the fast kernels against their plain
// references, dropout (mask equivalence, p = 0 identity, whole-model finite differences
// through fixed masks), gradient accumulation and the RNG drawing order.
//
// Error measure for a gradient tensor (as for the logits in test_model.cpp): the max
// relative error max_i |got_i - want_i| / max_i |want_i| over the whole tensor, i.e.
// relative to the tensor's largest expected magnitude; for the losses |got - want| / |want|.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "fixture_util.h"
#include "test_util.h"
#include "core/error.h"
#include "core/threads.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "model/attention.h"
#include "model/dropout.h"
#include "model/embedding.h"
#include "model/ffn.h"
#include "model/loss.h"
#include "model/matmul.h"
#include "model/norm.h"
#include "model/params.h"
#include "model/rope.h"
#include "model/sigreg.h"
#include "model/transformer.h"

namespace lm {
namespace {

using fixture::kTolerance;
using fixture::max_rel_error;
using test::TokenBatch;
using test::small_token_batch;
using fixture::read_floats;
using fixture::read_ints;

namespace fs = std::filesystem;

std::vector<std::string> grad_fixture_names() {
  return fixture::model_fixtures("grads.safetensors");
}

// A zeroed gradient arena for a model and its named views.
struct Grads {
  Tensor arena;
  ParameterTensors views;
  explicit Grads(const ModelWeights& w) {
    arena = Tensor::zeros(DType::F32, {w.layout().arena_floats()});
    views = w.layout().bind(arena.data_mut<float>());
  }
  const float* of(const ParamInfo& p) const { return arena.data<float>() + p.offset; }
};

// ---- every fixture with gradients ----

class GradFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(GradFixture, GradientsMatchPyTorch) {
  const fs::path dir = fixture::dir() / GetParam();
  const auto cf = SafeTensorsFile::open(dir / "case.safetensors");
  const auto gf = SafeTensorsFile::open(dir / "grads.safetensors");
  const Tensor tok = cf.get("tokens");
  const int64_t B = tok.dim(0), T = tok.dim(1);
  const auto tokens = read_ints<int32_t>(cf, "tokens");
  const auto targets = read_ints<int32_t>(cf, "targets");
  const auto pos = read_ints<int64_t>(cf, "pos");

  Transformer model(ModelWeights::load(dir / "model.safetensors"));
  Grads g(model.weights());
  TrainStepOptions opt;
  const fixture::VisionCase vision = fixture::load_vision(cf, model.config(), tokens, B, T);
  const std::vector<VisionRow> vision_rows = vision.rows();
  if (!vision_rows.empty()) opt.vision = vision_rows.data();
  std::vector<float> weights, noise;
  if (gf.contains("loss_weights")) {
    weights = read_floats(gf, "loss_weights");
    opt.loss_weights = weights.data();
  }
  if (gf.contains("sigreg_noise")) {
    noise = read_floats(gf, "sigreg_noise");
    opt.sigreg_noise = noise.data();
  }
  // The measured chunk (every fixture's rows in one) and chunks of 5 rows (several, the last
  // one short, or of 1 to 3 rows: the few-rows kernel); the weights as loaded (mapped from the
  // file, in its order: w3 after w2), then copied into the arena, which stacks [w1; w3] (the
  // fused projections where the config allows them).
  for (const int64_t chunk : {int64_t{0}, int64_t{5}, int64_t{-1}}) {
  SCOPED_TRACE("classifier chunk " + std::to_string(chunk) + (chunk < 0 ? " (weights in the arena)" : ""));
  if (chunk < 0) {
    model.weights().make_writable();
    model.weights_changed();
  }
  model.set_classifier_chunk(chunk < 0 ? 0 : chunk);
  std::memset(g.arena.data_mut<float>(), 0, g.arena.nbytes());
  const TrainStepResult r = model.train_step(g.views, tokens.data(), pos.data(), targets.data(), B, T, opt);

  const double want_loss = read_floats(gf, "loss")[0];
  const double loss_err = std::abs(r.loss - want_loss) / std::abs(want_loss);
  EXPECT_LE(loss_err, kTolerance) << "loss " << r.loss << " want " << want_loss;
  const double want_sigreg = read_floats(gf, "sigreg")[0];
  if (model.config().sigreg.enabled) {
    EXPECT_GT(want_sigreg, 0.0);
    EXPECT_LE(std::abs(r.sigreg - want_sigreg) / std::abs(want_sigreg), kTolerance)
        << "sigreg " << r.sigreg << " want " << want_sigreg;
  }
  if (gf.contains("moe_aux")) {  // the balance loss, in the loss when moe.aux_loss_coef != 0
    const double want_aux = read_floats(gf, "moe_aux")[0];
    EXPECT_GT(want_aux, 0.0);
    EXPECT_LE(std::abs(r.moe_aux - want_aux) / want_aux, kTolerance) << "moe_aux " << r.moe_aux << " want " << want_aux;
    EXPECT_LE(std::abs(r.ce - read_floats(gf, "ce")[0]) / read_floats(gf, "ce")[0], kTolerance);
  } else {
    EXPECT_EQ(r.moe_aux, 0.0);
  }
  double worst = 0;
  std::string worst_name;
  for (const ParamInfo& p : model.weights().layout().tensors()) {
    ASSERT_TRUE(gf.contains(p.name)) << p.name;
    const std::vector<float> want = read_floats(gf, p.name);
    ASSERT_EQ(static_cast<int64_t>(want.size()), p.numel) << p.name;
    const double err = max_rel_error(g.of(p), want.data(), want.size());
    EXPECT_LE(err, kTolerance) << p.name;
    if (err >= worst) {
      worst = err;
      worst_name = p.name;
    }
  }
  std::printf("[ %-22s ] chunk %d, fused q/k/v %d, w1/w3 %d: loss %.6f (rel err %.1e), worst gradient max rel err "
              "%.2e (%s)\n",
              GetParam().c_str(), static_cast<int>(model.classifier_chunk(B * T)),
              static_cast<int>(model.fused_qkv(0, B * T)), static_cast<int>(model.fused_w13(0, B * T)), r.loss,
              loss_err, worst, worst_name.c_str());
  }
}

TEST_P(GradFixture, AccumulatesAndScales) {
  // Two half-scaled steps into the same arena equal one full step (accumulation by +=).
  const fs::path dir = fixture::dir() / GetParam();
  const auto cf = SafeTensorsFile::open(dir / "case.safetensors");
  const auto gf = SafeTensorsFile::open(dir / "grads.safetensors");
  const int64_t B = cf.get("tokens").dim(0), T = cf.get("tokens").dim(1);
  const auto tokens = read_ints<int32_t>(cf, "tokens");
  const auto targets = read_ints<int32_t>(cf, "targets");
  const auto pos = read_ints<int64_t>(cf, "pos");
  Transformer model(ModelWeights::load(dir / "model.safetensors"));
  std::vector<float> weights, noise;
  TrainStepOptions opt;
  const fixture::VisionCase vision = fixture::load_vision(cf, model.config(), tokens, B, T);
  const std::vector<VisionRow> vision_rows = vision.rows();
  if (!vision_rows.empty()) opt.vision = vision_rows.data();
  if (gf.contains("loss_weights")) opt.loss_weights = (weights = read_floats(gf, "loss_weights")).data();
  if (gf.contains("sigreg_noise")) opt.sigreg_noise = (noise = read_floats(gf, "sigreg_noise")).data();
  Grads one(model.weights()), two(model.weights());
  model.train_step(one.views, tokens.data(), pos.data(), targets.data(), B, T, opt);
  opt.grad_scale = 0.5f;
  model.train_step(two.views, tokens.data(), pos.data(), targets.data(), B, T, opt);
  model.train_step(two.views, tokens.data(), pos.data(), targets.data(), B, T, opt);
  const int64_t n = model.weights().layout().arena_floats();
  EXPECT_LE(max_rel_error(two.arena.data<float>(), one.arena.data<float>(), static_cast<size_t>(n)), 1e-6);
}

TEST_P(GradFixture, RowParallelMatchesPyTorch) {
  // The row-parallel step (each thread one part of the batch's rows, gradients summed) is held
  // to the same PyTorch gradients, on every fixture it applies to (B >= 2, no dropout, SIGReg,
  // MoE, conditions or images); the others run the plain step and are only checked to.
  const fs::path dir = fixture::dir() / GetParam();
  const auto cf = SafeTensorsFile::open(dir / "case.safetensors");
  const auto gf = SafeTensorsFile::open(dir / "grads.safetensors");
  const int64_t B = cf.get("tokens").dim(0), T = cf.get("tokens").dim(1);
  const auto tokens = read_ints<int32_t>(cf, "tokens");
  const auto targets = read_ints<int32_t>(cf, "targets");
  const auto pos = read_ints<int64_t>(cf, "pos");
  Transformer model(ModelWeights::load(dir / "model.safetensors"));
  TrainStepOptions opt;
  const fixture::VisionCase vision = fixture::load_vision(cf, model.config(), tokens, B, T);
  const std::vector<VisionRow> vision_rows = vision.rows();
  if (!vision_rows.empty()) opt.vision = vision_rows.data();
  std::vector<float> weights, noise;
  if (gf.contains("loss_weights")) opt.loss_weights = (weights = read_floats(gf, "loss_weights")).data();
  if (gf.contains("sigreg_noise")) opt.sigreg_noise = (noise = read_floats(gf, "sigreg_noise")).data();
  const int threads = thread_count();
  set_threads(2);
  model.set_row_parallel(true);
  const bool applies = model.row_parallel_applies(B, opt);
  for (const int64_t chunk : {int64_t{0}, int64_t{5}}) {
  SCOPED_TRACE("classifier chunk " + std::to_string(chunk));
  model.set_classifier_chunk(chunk);
  Grads g(model.weights());
  const TrainStepResult r = model.train_step(g.views, tokens.data(), pos.data(), targets.data(), B, T, opt);
  const double want_loss = read_floats(gf, "loss")[0];
  EXPECT_LE(std::abs(r.loss - want_loss) / std::abs(want_loss), kTolerance) << "loss " << r.loss;
  double worst = 0;
  for (const ParamInfo& p : model.weights().layout().tensors()) {
    const std::vector<float> want = read_floats(gf, p.name);
    const double err = max_rel_error(g.of(p), want.data(), want.size());
    EXPECT_LE(err, kTolerance) << p.name;
    worst = std::max(worst, err);
  }
  std::printf("[ %-22s ] row-parallel %s, chunk %d, worst gradient max rel err %.2e\n", GetParam().c_str(),
              applies ? "applied" : "not applicable", static_cast<int>(chunk), worst);
  }
  set_threads(threads);
}

INSTANTIATE_TEST_SUITE_P(PyTorch, GradFixture, ::testing::ValuesIn(grad_fixture_names()),
                         [](const auto& info) { return fixture::test_name(info.param); });

TEST(GradFixtures, EveryModelFixtureHasGradients) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fixture::dir(), ec)) {
    if (e.is_directory() && fs::exists(e.path() / "model.safetensors")) {
      EXPECT_TRUE(fs::exists(e.path() / "grads.safetensors")) << e.path();
    }
  }
  EXPECT_GE(grad_fixture_names().size(), 11u);
}

// ---- finite differences of each kernel ----
//
// For a kernel y = f(x), the objective is L = sum_i r_i y_i with fixed random r; its
// backward with dout = r gives dL/dx, compared at a few coordinates with the central
// difference (L(x + h e) - L(x - h e)) / 2h (float32 forward, so a loose 2e-2 relative bar
// with an absolute floor).

std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Checks grad (analytic dL/dx) against central differences of `objective` over x at `probes` coordinates.
void fd_check(const char* what, std::vector<float>& x, const std::vector<float>& grad,
              const std::function<double()>& objective, int probes = 12, float h = 1e-2f) {
  ASSERT_EQ(x.size(), grad.size());
  Rng pick(99);
  double scale = 0;
  for (float gval : grad) scale = std::max(scale, static_cast<double>(std::abs(gval)));
  for (int i = 0; i < probes; ++i) {
    const size_t j = static_cast<size_t>(pick.below(x.size()));
    const float keep = x[j];
    x[j] = keep + h;
    const double up = objective();
    x[j] = keep - h;
    const double down = objective();
    x[j] = keep;
    const double numeric = (up - down) / (2.0 * h);
    EXPECT_NEAR(grad[j], numeric, 2e-2 * scale + 1e-4) << what << " coordinate " << j;
  }
}

TEST(KernelBackward, MatmulFiniteDifferencesAndReference) {
  const int64_t N = 5, IC = 7, OC = 6;
  auto x = randn(N * IC, 1), w = randn(OC * IC, 2), b = randn(OC, 3), r = randn(N * OC, 4);
  std::vector<float> y(static_cast<size_t>(N * OC));
  auto objective = [&] {
    matmul_forward_ref(y.data(), x.data(), w.data(), b.data(), N, IC, OC);
    return dot(y, r);
  };
  std::vector<float> dx(x.size()), dw(w.size()), db(b.size());
  matmul_backward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, IC, OC);
  fd_check("matmul dx", x, dx, objective);
  fd_check("matmul dw", w, dw, objective);
  fd_check("matmul db", b, db, objective);
  // Fast against the plain reference, accumulating on top of existing values.
  const int64_t N2 = 37, IC2 = 29, OC2 = 70;
  auto x2 = randn(N2 * IC2, 5), w2 = randn(OC2 * IC2, 6), r2 = randn(N2 * OC2, 7);
  auto f_dx = randn(N2 * IC2, 8), f_dw = randn(OC2 * IC2, 9), f_db = randn(OC2, 10);
  auto r_dx = f_dx, r_dw = f_dw, r_db = f_db;
  matmul_backward(f_dx.data(), f_dw.data(), f_db.data(), r2.data(), x2.data(), w2.data(), N2, IC2, OC2);
  matmul_backward_ref(r_dx.data(), r_dw.data(), r_db.data(), r2.data(), x2.data(), w2.data(), N2, IC2, OC2);
  EXPECT_LE(max_rel_error(f_dx.data(), r_dx.data(), r_dx.size()), 1e-5);
  EXPECT_LE(max_rel_error(f_dw.data(), r_dw.data(), r_dw.size()), 1e-5);
  EXPECT_LE(max_rel_error(f_db.data(), r_db.data(), r_db.size()), 1e-5);
}

TEST(KernelBackward, NormsFiniteDifferences) {
  const int64_t N = 4, C = 9;
  for (int kind = 0; kind < 4; ++kind) {  // rms, rms weightless (QK-norm), layernorm, layernorm + bias
    const bool ln = kind >= 2, has_w = kind != 1, has_b = kind == 3;
    auto x = randn(N * C, 11 + kind, 2.0f), w = randn(C, 12), b = randn(C, 13), r = randn(N * C, 14);
    for (auto& v : w) v += 1.0f;
    std::vector<float> y(x.size()), mean(N), rstd(N);
    auto objective = [&] {
      if (ln)
        layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), has_w ? w.data() : nullptr,
                          has_b ? b.data() : nullptr, N, C, 1e-5f);
      else
        rmsnorm_forward(y.data(), rstd.data(), x.data(), has_w ? w.data() : nullptr, nullptr, N, C, 1e-5f);
      return dot(y, r);
    };
    objective();
    std::vector<float> dx(x.size()), dw(w.size()), db(b.size());
    if (ln)
      layernorm_backward(dx.data(), has_w ? dw.data() : nullptr, has_b ? db.data() : nullptr, r.data(), x.data(),
                         has_w ? w.data() : nullptr, mean.data(), rstd.data(), N, C);
    else
      rmsnorm_backward(dx.data(), has_w ? dw.data() : nullptr, nullptr, r.data(), x.data(),
                       has_w ? w.data() : nullptr, rstd.data(), N, C);
    fd_check("norm dx", x, dx, objective);
    if (has_w) fd_check("norm dw", w, dw, objective);
    if (has_b) fd_check("norm db", b, db, objective);
  }
}

TEST(KernelBackward, RopeIsTheTransposedRotation) {
  const int64_t N = 3, H = 2, HS = 8;
  std::vector<double> inv_freq = {1.0, 0.3, 0.05, 0.001};
  const std::vector<int64_t> pos = {0, 17, 123456};
  std::vector<float> cs(N * HS / 2), sn(N * HS / 2);
  rope_tables(cs.data(), sn.data(), pos.data(), inv_freq.data(), N, HS / 2, 2.0);
  auto x = randn(N * H * HS, 21), r = randn(N * H * HS, 22);
  std::vector<float> y(x.size());
  auto objective = [&] {
    rope_forward(y.data(), x.data(), cs.data(), sn.data(), N, H, HS);
    return dot(y, r);
  };
  std::vector<float> dx(x.size());
  rope_backward(dx.data(), r.data(), cs.data(), sn.data(), N, H, HS);
  fd_check("rope dx", x, dx, objective);
}

// ---- the per-layer fusions, each held to the unfused kernels it replaces ----

// Whether two float vectors are equal bit for bit (NaN-free inputs).
bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(FusedKernels, ResidualRmsNormIsTheAddThenTheNormBitForBit) {
  // Small (one thread) and large enough for the parallel path; with and without weight / bias.
  for (auto [N, C] : {std::pair<int64_t, int64_t>{5, 24}, {300, 288}}) {
    for (int kind = 0; kind < 3; ++kind) {
      auto x = randn(N * C, 41 + kind), y = randn(N * C, 44), w = randn(C, 45), b = randn(C, 46);
      const float* wp = kind >= 1 ? w.data() : nullptr;
      const float* bp = kind == 2 ? b.data() : nullptr;
      std::vector<float> h(x.size()), out(x.size()), rstd(N), rh(x.size()), rout(x.size()), rrstd(N);
      residual_rmsnorm_forward(h.data(), out.data(), rstd.data(), x.data(), y.data(), wp, bp, N, C, 1e-5f);
      residual_rmsnorm_forward_ref(rh.data(), rout.data(), rrstd.data(), x.data(), y.data(), wp, bp, N, C, 1e-5f);
      EXPECT_TRUE(same_floats(h, rh)) << N << " " << kind;
      EXPECT_TRUE(same_floats(out, rout)) << N << " " << kind;
      EXPECT_TRUE(same_floats(rstd, rrstd)) << N << " " << kind;
      // In place over the residual (h = x), as a layer may run it.
      auto hx = x;
      residual_rmsnorm_forward(hx.data(), out.data(), rstd.data(), hx.data(), y.data(), wp, bp, N, C, 1e-5f);
      EXPECT_TRUE(same_floats(hx, rh));
      EXPECT_TRUE(same_floats(out, rout));
    }
  }
}

TEST(FusedKernels, RmsNormBackwardMatchesTheTwoPassReference) {
  for (auto [N, C] : {std::pair<int64_t, int64_t>{7, 24}, {300, 288}, {2000, 64}}) {
    for (int kind = 0; kind < 3; ++kind) {  // weight + dweight + dbias, weight + dweight, weightless (QK-norm)
      const bool has_w = kind != 2, has_b = kind == 0;
      auto x = randn(N * C, 51 + kind, 2.0f), w = randn(C, 52), r = randn(N * C, 53);
      std::vector<float> y(x.size()), rstd(N);
      rmsnorm_forward(y.data(), rstd.data(), x.data(), has_w ? w.data() : nullptr, nullptr, N, C, 1e-5f);
      // Accumulating on top of existing values.
      auto dx = randn(N * C, 54), dw = randn(C, 55), db = randn(C, 56);
      auto rdx = dx, rdw = dw, rdb = db;
      rmsnorm_backward(dx.data(), has_w ? dw.data() : nullptr, has_b ? db.data() : nullptr, r.data(), x.data(),
                       has_w ? w.data() : nullptr, rstd.data(), N, C);
      rmsnorm_backward_ref(rdx.data(), has_w ? rdw.data() : nullptr, has_b ? rdb.data() : nullptr, r.data(), x.data(),
                           has_w ? w.data() : nullptr, rstd.data(), N, C);
      EXPECT_LE(max_rel_error(dx.data(), rdx.data(), rdx.size()), 1e-6) << N << " " << kind;
      EXPECT_LE(max_rel_error(dw.data(), rdw.data(), rdw.size()), 1e-5) << N << " " << kind;
      EXPECT_LE(max_rel_error(db.data(), rdb.data(), rdb.size()), 1e-5) << N << " " << kind;
      // The parameter gradients are summed per block of rows in block order: the same bits on
      // one thread as on two.
      auto dx1 = randn(N * C, 54), dw1 = randn(C, 55), db1 = randn(C, 56);
      const int threads = thread_count();
      set_threads(1);
      rmsnorm_backward(dx1.data(), has_w ? dw1.data() : nullptr, has_b ? db1.data() : nullptr, r.data(), x.data(),
                       has_w ? w.data() : nullptr, rstd.data(), N, C);
      set_threads(threads);
      EXPECT_TRUE(same_floats(dx1, dx));
      EXPECT_TRUE(same_floats(dw1, dw));
      EXPECT_TRUE(same_floats(db1, db));
    }
  }
}

TEST(FusedKernels, RopeQkIsRopeOnQAndKBitForBit) {
  const int64_t HS = 16;
  std::vector<double> inv_freq = {1.0, 0.5, 0.2, 0.1, 0.03, 0.01, 0.003, 0.001};
  for (auto [N, NH, NKV] : {std::tuple<int64_t, int64_t, int64_t>{3, 4, 2}, {400, 6, 6}}) {
    std::vector<int64_t> pos(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) pos[static_cast<size_t>(n)] = (n * 37) % 1000;
    std::vector<float> cs(N * HS / 2), sn(N * HS / 2);
    rope_tables(cs.data(), sn.data(), pos.data(), inv_freq.data(), N, HS / 2, 1.0);
    auto q = randn(N * NH * HS, 61), k = randn(N * NKV * HS, 62);
    std::vector<float> qr(q.size()), kr(k.size()), rq(q.size()), rk(k.size());
    rope_qk_forward(qr.data(), kr.data(), q.data(), k.data(), cs.data(), sn.data(), N, NH, NKV, HS);
    rope_forward(rq.data(), q.data(), cs.data(), sn.data(), N, NH, HS);
    rope_forward(rk.data(), k.data(), cs.data(), sn.data(), N, NKV, HS);
    EXPECT_TRUE(same_floats(qr, rq));
    EXPECT_TRUE(same_floats(kr, rk));
    auto qi = q, ki = k;  // in place
    rope_qk_forward(qi.data(), ki.data(), qi.data(), ki.data(), cs.data(), sn.data(), N, NH, NKV, HS);
    EXPECT_TRUE(same_floats(qi, rq));
    EXPECT_TRUE(same_floats(ki, rk));
    // Backward writes: the old contents of dq, dk do not matter.
    auto dqr = randn(q.size(), 63), dkr = randn(k.size(), 64);
    auto dq = randn(q.size(), 65, 100.0f), dk = randn(k.size(), 66, 100.0f);
    std::vector<float> rdq(q.size(), 0.0f), rdk(k.size(), 0.0f);
    rope_qk_backward(dq.data(), dk.data(), dqr.data(), dkr.data(), cs.data(), sn.data(), N, NH, NKV, HS);
    rope_backward(rdq.data(), dqr.data(), cs.data(), sn.data(), N, NH, HS);
    rope_backward(rdk.data(), dkr.data(), cs.data(), sn.data(), N, NKV, HS);
    EXPECT_TRUE(same_floats(dq, rdq));
    EXPECT_TRUE(same_floats(dk, rdk));
  }
}

TEST(FusedKernels, SwigluBackwardWriteIsTheAccumulationIntoZeros) {
  for (int64_t n : {int64_t{50}, int64_t{40000}}) {
    auto g = randn(n, 71, 3.0f), u = randn(n, 72), r = randn(n, 73);
    auto dg = randn(n, 74, 100.0f), du = randn(n, 75, 100.0f);  // old contents: overwritten
    std::vector<float> rdg(n, 0.0f), rdu(n, 0.0f);
    swiglu_backward_write(dg.data(), du.data(), r.data(), g.data(), u.data(), n);
    swiglu_backward(rdg.data(), rdu.data(), r.data(), g.data(), u.data(), n);
    EXPECT_LE(max_rel_error(dg.data(), rdg.data(), rdg.size()), 1e-7);
    EXPECT_LE(max_rel_error(du.data(), rdu.data(), rdu.size()), 1e-7);
  }
}

TEST(FusedKernels, MatmulBackwardCanWriteDinp) {
  const int64_t N = 37, IC = 29, OC = 70;
  auto x = randn(N * IC, 81), w = randn(OC * IC, 82), r = randn(N * OC, 83);
  std::vector<float> dx(N * IC, std::nanf("")), dw(OC * IC, 0.0f);  // old dinp: never read
  std::vector<float> rdx(N * IC, 0.0f), rdw(OC * IC, 0.0f);
  matmul_backward(dx.data(), dw.data(), nullptr, r.data(), x.data(), w.data(), N, IC, OC, false);
  matmul_backward_ref(rdx.data(), rdw.data(), nullptr, r.data(), x.data(), w.data(), N, IC, OC);
  EXPECT_LE(max_rel_error(dx.data(), rdx.data(), rdx.size()), 1e-5);
  EXPECT_LE(max_rel_error(dw.data(), rdw.data(), rdw.size()), 1e-5);
}

TEST(KernelBackward, ActivationsFiniteDifferences) {
  const int64_t n = 64;
  auto g = randn(n, 31, 2.0f), u = randn(n, 32), r = randn(n, 33);
  std::vector<float> y(n);
  auto swiglu = [&] {
    swiglu_forward(y.data(), g.data(), u.data(), n);
    return dot(y, r);
  };
  std::vector<float> dg(n), du(n);
  swiglu_backward(dg.data(), du.data(), r.data(), g.data(), u.data(), n);
  fd_check("swiglu dgate", g, dg, swiglu);
  fd_check("swiglu dup", u, du, swiglu);
  for (bool tanh_approx : {false, true}) {
    auto gelu = [&] {
      gelu_forward(y.data(), g.data(), n, tanh_approx);
      return dot(y, r);
    };
    std::vector<float> dx(n);
    gelu_backward(dx.data(), r.data(), g.data(), n, tanh_approx);
    fd_check(tanh_approx ? "gelu tanh" : "gelu erf", g, dx, gelu);
  }
  auto softcap = [&] {
    softcap_forward(y.data(), g.data(), n, 1.5f);
    return dot(y, r);
  };
  softcap();
  std::vector<float> dc = r;
  softcap_backward_inplace(dc.data(), y.data(), n, 1.5f);
  fd_check("softcap", g, dc, softcap);
}

TEST(KernelBackward, CrossEntropyWeightedFiniteDifferences) {
  const int64_t N = 6, V = 11;
  auto logits = randn(N * V, 41, 2.0f);
  const std::vector<int32_t> targets = {3, 0, 10, 7, 0, 2};  // 0 = ignored
  auto w = randn(V, 42);
  for (auto& x : w) x = 0.5f + std::abs(x);
  for (const float* weights : {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
    auto objective = [&] { return crossentropy_weighted_mean(logits.data(), targets.data(), weights, N, V, 0).loss; };
    const WeightedLoss l = crossentropy_weighted_mean(logits.data(), targets.data(), weights, N, V, 0);
    EXPECT_EQ(l.count, 4);
    std::vector<float> d(logits.size(), NAN), losses(N), want(N);  // written, not accumulated
    crossentropy_backward(d.data(), losses.data(), logits.data(), targets.data(), weights, l.weight_sum, 1.0f, N, V, 0);
    crossentropy_forward(want.data(), logits.data(), targets.data(), N, V, 0);
    for (int64_t n = 0; n < N; ++n) EXPECT_NEAR(losses[n], want[n], 1e-5 * std::abs(want[n]) + 1e-6);
    for (int64_t j = 0; j < V; ++j) EXPECT_EQ(d[1 * V + j], 0.0f);  // ignored row
    fd_check("crossentropy", logits, d, objective, 16, 1e-2f);
  }
}

// The fused, chunked classifier + cross-entropy pass against its unchunked reference twin
// (the step as it ran through the whole [N, V] logits, held to PyTorch by the fixtures) at
// awkward shapes: chunks that do not divide N, of 1 row (the few-rows kernel), larger than
// N; ignored rows, loss weights, a bias, the soft cap, a dW that already holds a gradient
// (tied embeddings accumulate); threaded, and inside a parallel region on single-threaded
// kernels, two halves at once into their own gradients (the row-parallel step).
TEST(ClassifierCrossEntropy, DefaultChunkBoundsTheLogits) {
  // A training step holds one chunk of logits at a time: at most 128 MiB of them, whatever the
  // batch (a long batch never stores all its [B*T, V] logits), and never less than one row.
  constexpr int64_t kBound = int64_t{128} << 20;
  for (const int64_t V : {int64_t{256}, int64_t{32000}, int64_t{128256}}) {
    const int64_t rows = classifier_chunk_rows(V);
    EXPECT_LE(rows * V * 4, kBound) << V;
    EXPECT_GT((rows + 1) * V * 4, kBound) << V;
  }
  EXPECT_EQ(classifier_chunk_rows(32000), 1048);
  EXPECT_EQ(classifier_chunk_rows(int64_t{1} << 30), 1);
}

TEST(ClassifierCrossEntropy, ChunkedMatchesUnchunkedReference) {
  const int64_t N = 37, C = 24, V = 301;
  const int32_t ignore = 5;
  const auto x = randn(N * C, 61), W = randn(V * C, 62, 0.5f), bias = randn(V, 63);
  const auto dW0 = randn(V * C, 64), db0 = randn(V, 65);
  std::vector<int32_t> targets(N);
  for (int64_t n = 0; n < N; ++n) targets[n] = static_cast<int32_t>((n * 97 + 13) % V);
  targets[3] = targets[20] = targets[36] = ignore;
  auto lw = randn(V, 66);
  for (auto& v : lw) v = 0.5f + std::abs(v);
  double weight_sum = 0;
  for (int32_t t : targets)
    if (t != ignore) weight_sum += lw[t];
  const int threads = thread_count();
  set_threads(2);
  for (const float cap : {0.0f, 3.0f})
    for (const bool with_bias : {false, true})
      for (const int64_t chunk : {1, 4, 5, 16, 36, 37, 64}) {
        const float* b = with_bias ? bias.data() : nullptr;
        std::vector<float> dx_ref(N * C, NAN), dW_ref = dW0, db_ref = db0, loss_ref(N, NAN);
        classifier_crossentropy_ref(dx_ref.data(), dW_ref.data(), with_bias ? db_ref.data() : nullptr, loss_ref.data(),
                                    x.data(), W.data(), b, targets.data(), lw.data(), weight_sum, 0.5f, cap, N, C, V,
                                    ignore);
        const std::string what = "cap " + std::to_string(cap) + " bias " + std::to_string(with_bias) + " chunk " +
                                 std::to_string(chunk);
        // Threaded: one call over all rows.
        std::vector<float> dx(N * C, NAN), dW = dW0, db = db0, loss(N, NAN), scratch(std::min(chunk, N) * V, NAN);
        classifier_crossentropy(dx.data(), dW.data(), with_bias ? db.data() : nullptr, loss.data(), scratch.data(),
                                x.data(), W.data(), b, targets.data(), lw.data(), weight_sum, 0.5f, cap, N, C, V,
                                ignore, chunk);
        EXPECT_LE(max_rel_error(dx.data(), dx_ref.data(), dx.size()), 1e-5) << what;
        EXPECT_LE(max_rel_error(dW.data(), dW_ref.data(), dW.size()), 1e-5) << what;
        if (with_bias) {
          EXPECT_LE(max_rel_error(db.data(), db_ref.data(), db.size()), 1e-5) << what;
        }
        for (int64_t n = 0; n < N; ++n) EXPECT_NEAR(loss[n], loss_ref[n], 1e-5 * (1 + std::abs(loss_ref[n]))) << what;
        EXPECT_EQ(loss[3], 0.0f);
        // Row-parallel: rows [0, 18) and [18, 37) on one thread each, gradients summed after.
        const int64_t half = 18;
        std::vector<float> dx2(N * C, NAN), loss2(N, NAN), dWa = dW0, dWb(V * C, 0.0f), dba = db0, dbb(V, 0.0f);
        std::vector<float> sa(std::min(chunk, half) * V), sb(std::min(chunk, N - half) * V);
#pragma omp parallel num_threads(2)
        {
          const bool first = omp_get_thread_num() == 0;
          const int64_t r0 = first ? 0 : half, rows = first ? half : N - half;
          classifier_crossentropy(dx2.data() + r0 * C, first ? dWa.data() : dWb.data(),
                                  with_bias ? (first ? dba.data() : dbb.data()) : nullptr, loss2.data() + r0,
                                  first ? sa.data() : sb.data(), x.data() + r0 * C, W.data(), b, targets.data() + r0,
                                  lw.data(), weight_sum, 0.5f, cap, rows, C, V, ignore, std::min(chunk, rows));
        }
        for (int64_t i = 0; i < V * C; ++i) dWa[i] += dWb[i];
        for (int64_t i = 0; i < V; ++i) dba[i] += dbb[i];
        EXPECT_LE(max_rel_error(dx2.data(), dx_ref.data(), dx2.size()), 1e-5) << what << " row-parallel";
        EXPECT_LE(max_rel_error(dWa.data(), dW_ref.data(), dWa.size()), 1e-5) << what << " row-parallel";
        if (with_bias) {
          EXPECT_LE(max_rel_error(dba.data(), db_ref.data(), dba.size()), 1e-5) << what << " row-parallel";
        }
        for (int64_t n = 0; n < N; ++n)
          EXPECT_NEAR(loss2[n], loss_ref[n], 1e-5 * (1 + std::abs(loss_ref[n]))) << what << " row-parallel";
      }
  set_threads(threads);
}

TEST(KernelBackward, EmbeddingAddsRepeatedRows) {
  const int64_t N = 5, C = 3, V = 4;
  const std::vector<int32_t> tokens = {1, 3, 1, 0, 1};
  auto dout = randn(N * C, 51);
  std::vector<float> dw(V * C, 1.0f);
  embedding_backward(dw.data(), dout.data(), tokens.data(), N, C);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_FLOAT_EQ(dw[1 * C + c], 1.0f + dout[0 * C + c] + dout[2 * C + c] + dout[4 * C + c]);
    EXPECT_FLOAT_EQ(dw[2 * C + c], 1.0f);
    EXPECT_FLOAT_EQ(dw[0 * C + c], 1.0f + dout[3 * C + c]);
  }
}

// Attention over a batch with GQA and every mask kind; fast vs reference and finite differences.
struct AttentionCase {
  bool causal, doc_mask;
  int64_t NH, NKV;
  float dropout;
  int64_t chunk = 0;  // chunked local attention (causal only)
};

class AttentionBackward : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionBackward, FiniteDifferencesAndReference) {
  const AttentionCase ac = GetParam();
  const int64_t B = 2, T = 7, HS = 4, NH = ac.NH, NKV = ac.NKV;
  const std::vector<int32_t> tokens = {5, 2, 5, 5, 2, 2, 5, 5, 5, 5, 2, 5, 5, 5};  // eos = 2
  std::vector<int64_t> lo(B * T), hi(B * T);
  attention_spans(lo.data(), hi.data(), tokens.data(), B, T, 0, ac.causal, ac.doc_mask, 2, nullptr);
  if (ac.chunk > 0) narrow_spans_to_chunks(lo.data(), B, T, 0, ac.chunk);
  auto q = randn(B * T * NH * HS, 61), k = randn(B * T * NKV * HS, 62), v = randn(B * T * NKV * HS, 63);
  auto r = randn(B * T * NH * HS, 64);
  std::vector<float> out(r.size()), att(B * NH * T * T);
  const uint64_t seed = 0x1234;
  auto objective = [&] {
    attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, 0, T, NH, NKV,
                      HS, ac.dropout, seed);
    return dot(out, r);
  };
  objective();
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  attention_backward(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), att.data(), lo.data(),
                     hi.data(), B, T, NH, NKV, HS, ac.dropout, seed);
  std::vector<float> rq(q.size()), rk(k.size()), rv(v.size());
  attention_backward_ref(rq.data(), rk.data(), rv.data(), r.data(), q.data(), k.data(), v.data(), att.data(),
                         lo.data(), hi.data(), B, T, NH, NKV, HS, ac.dropout, seed);
  EXPECT_LE(max_rel_error(dq.data(), rq.data(), rq.size()), 1e-5);
  EXPECT_LE(max_rel_error(dk.data(), rk.data(), rk.size()), 1e-5);
  EXPECT_LE(max_rel_error(dv.data(), rv.data(), rv.size()), 1e-5);
  fd_check("attention dq", q, dq, objective, 16);
  fd_check("attention dk", k, dk, objective, 16);
  fd_check("attention dv", v, dv, objective, 16);
}

INSTANTIATE_TEST_SUITE_P(Masks, AttentionBackward,
                         ::testing::Values(AttentionCase{true, false, 4, 4, 0}, AttentionCase{true, true, 4, 2, 0},
                                           AttentionCase{false, false, 2, 1, 0}, AttentionCase{false, true, 4, 2, 0},
                                           AttentionCase{true, true, 4, 2, 0.3f},
                                           AttentionCase{false, false, 2, 2, 0.5f},
                                           AttentionCase{true, false, 4, 2, 0, 3}, AttentionCase{true, true, 4, 2, 0, 3},
                                           AttentionCase{true, true, 4, 4, 0.3f, 2}));

// Rows long enough that causal queries run in several blocks, each over its own key window
// (attention.cpp's kCausalQueryRows): forward and backward still match the references.
TEST(AttentionLongRows, QueryBlocksMatchTheReference) {
  const int64_t B = 2, T = 300, HS = 16, NH = 4, NKV = 2;
  std::vector<int32_t> tokens(B * T, 5);
  tokens[40] = 2;  // documents: row 0 ends one at 40 and one at 250; row 1 is one document
  tokens[250] = 2;
  auto q = randn(B * T * NH * HS, 91, 2.0f), k = randn(B * T * NKV * HS, 92, 2.0f), v = randn(B * T * NKV * HS, 93);
  auto r = randn(B * T * NH * HS, 94);
  for (bool causal : {true, false}) {
    for (bool doc : {false, true}) {
      for (float dropout : {0.0f, 0.25f}) {
        std::vector<int64_t> lo(B * T), hi(B * T);
        attention_spans(lo.data(), hi.data(), tokens.data(), B, T, 0, causal, doc, 2, nullptr);
        std::vector<float> out(r.size()), ref(r.size()), att(B * NH * T * T), att_ref(att.size());
        attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, 0, T, NH,
                          NKV, HS, dropout, 7);
        attention_forward_ref(ref.data(), att_ref.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, 0,
                              T, NH, NKV, HS);
        EXPECT_LE(max_rel_error(att.data(), att_ref.data(), att.size()), 1e-5) << causal << doc << dropout;
        if (dropout == 0) {
          EXPECT_LE(max_rel_error(out.data(), ref.data(), out.size()), 1e-5) << causal << doc;
          std::vector<float> lean(out.size());  // without saved probabilities: the same numbers
          attention_forward(lean.data(), nullptr, q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, 0, T, NH,
                            NKV, HS);
          EXPECT_EQ(lean, out);
        }
        std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), rq(q.size()), rk(k.size()), rv(v.size());
        attention_backward(dq.data(), dk.data(), dv.data(), r.data(), q.data(), k.data(), v.data(), att.data(),
                           lo.data(), hi.data(), B, T, NH, NKV, HS, dropout, 7);
        attention_backward_ref(rq.data(), rk.data(), rv.data(), r.data(), q.data(), k.data(), v.data(), att.data(),
                               lo.data(), hi.data(), B, T, NH, NKV, HS, dropout, 7);
        EXPECT_LE(max_rel_error(dq.data(), rq.data(), rq.size()), 1e-5) << causal << doc << dropout;
        EXPECT_LE(max_rel_error(dk.data(), rk.data(), rk.size()), 1e-5) << causal << doc << dropout;
        EXPECT_LE(max_rel_error(dv.data(), rv.data(), rv.size()), 1e-5) << causal << doc << dropout;
        // Written instead of added to: the old contents do not matter.
        auto wq = randn(q.size(), 95, 100.0f), wk = randn(k.size(), 96, 100.0f), wv = randn(v.size(), 97, 100.0f);
        attention_backward(wq.data(), wk.data(), wv.data(), r.data(), q.data(), k.data(), v.data(), att.data(),
                           lo.data(), hi.data(), B, T, NH, NKV, HS, dropout, 7, false);
        EXPECT_EQ(wq, dq);
        EXPECT_EQ(wk, dk);
        EXPECT_EQ(wv, dv);
      }
    }
  }
}

// ---- SIGReg ----

TEST(SigReg, FastMatchesReferenceAndFiniteDifferences) {
  SigRegConfig cfg;
  cfg.enabled = true;
  cfg.slices = 12;
  const int64_t N = 6, C = 5, S = cfg.slices, P = cfg.points;
  auto x = randn(N * C, 71), noise = randn(C * S, 72);
  std::vector<float> A(C * S), proj(N * S), cm(N * P), sm(N * P), dproj(N * S);
  sigreg_projections(A.data(), noise.data(), C, S);
  for (int64_t s = 0; s < S; ++s) {
    double n2 = 0;
    for (int64_t c = 0; c < C; ++c) n2 += static_cast<double>(A[c * S + s]) * A[c * S + s];
    EXPECT_NEAR(n2, 1.0, 1e-6);
  }
  const double fast = sigreg_forward(proj.data(), cm.data(), sm.data(), x.data(), A.data(), N, C, S, cfg);
  const double ref = sigreg_forward_ref(x.data(), A.data(), N, C, S, cfg);
  EXPECT_NEAR(fast, ref, 1e-5 * std::abs(ref));
  EXPECT_NEAR(sigreg_value(x.data(), noise.data(), N, C, cfg), ref, 1e-5 * std::abs(ref));
  std::vector<float> dx(x.size()), rdx(x.size());
  sigreg_backward(dx.data(), dproj.data(), 0.7f, proj.data(), cm.data(), sm.data(), A.data(), N, C, S, cfg);
  sigreg_backward_ref(rdx.data(), 0.7f, x.data(), A.data(), N, C, S, cfg);
  EXPECT_LE(max_rel_error(dx.data(), rdx.data(), rdx.size()), 1e-5);
  auto objective = [&] { return 0.7 * sigreg_forward_ref(x.data(), A.data(), N, C, S, cfg); };
  fd_check("sigreg dx", x, dx, objective, 16, 1e-2f);
}

TEST(SigReg, NoiseDrawOrderIsRowMajorNormals) {
  Rng a(5), b(5);
  std::vector<float> noise(3 * 4);
  sigreg_draw_noise(noise.data(), a, 3, 4);
  for (float x : noise) EXPECT_EQ(x, b.normal());
  std::vector<float> x = {1, 2, 3, 5, 7, 9}, m(3);
  mean_embedding(m.data(), x.data(), 2, 3);
  EXPECT_FLOAT_EQ(m[0], 3.0f);
  EXPECT_FLOAT_EQ(m[2], 6.0f);
}

// ---- dropout and the training step on a small model ----

ModelConfig small_config() {
  ModelConfig c;
  c.name = "small";
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.multiple_of = 8;
  c.max_seq_len = 8;
  c.attn_bias = true;
  c.qk_norm = true;
  c.pad_id = 0;
  return c;
}

TEST(RowParallel, MatchesThePlainStepOnUnevenPartsWithPadAndLossWeights) {
  // B = 3 over 2 threads: parts of 1 and 2 rows, a pad target in the first, loss weights;
  // two steps with an in-place weight update between (the replicas share the storage), then
  // the weights moved to new storage (the replicas follow).
  ModelConfig c = small_config();
  c.max_seq_len = 8;
  TokenBatch b = small_token_batch(c.vocab_size);
  b.B = 3;
  Rng rng(5);
  for (int64_t i = 0; i < b.T; ++i) {
    b.tokens.push_back(static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(c.vocab_size - 1))));
    b.targets.push_back(static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(c.vocab_size - 1))));
  }
  std::vector<float> lw(static_cast<size_t>(c.vocab_size));
  for (size_t i = 0; i < lw.size(); ++i) lw[i] = 0.5f + 0.05f * static_cast<float>(i % 7);
  const int threads = thread_count();
  set_threads(2);
  Transformer plain(ModelWeights::random(c, 8)), split(ModelWeights::random(c, 8));
  split.set_row_parallel(true);
  TrainStepOptions opt;
  opt.loss_weights = lw.data();
  opt.grad_scale = 0.5f;
  EXPECT_TRUE(split.row_parallel_applies(b.B, opt));
  EXPECT_FALSE(plain.row_parallel_applies(b.B, opt));
  EXPECT_FALSE(split.row_parallel_applies(1, opt));
  for (int step = 0; step < 3; ++step) {
    auto scale = [](ModelWeights& w) {
      float* a = w.arena();
      for (int64_t i = 0; i < w.layout().arena_floats(); ++i) a[i] *= 0.9f;
    };
    if (step == 1) {  // an optimizer-like update in place
      scale(plain.weights());
      scale(split.weights());
    }
    if (step == 2) {  // the same values in new storage
      split.weights() = ModelWeights::random(c, 8);
      scale(split.weights());
      split.weights_changed();
    }
    Grads g0(plain.weights()), g1(split.weights());
    const TrainStepResult r0 = plain.train_step(g0.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt);
    const TrainStepResult r1 = split.train_step(g1.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt);
    EXPECT_EQ(r1.count, r0.count);
    EXPECT_EQ(r1.count, b.B * b.T - 1);
    EXPECT_NEAR(r1.weight_sum, r0.weight_sum, 1e-9 * r0.weight_sum);
    EXPECT_NEAR(r1.loss, r0.loss, 1e-6 * r0.loss) << "step " << step;
    EXPECT_NEAR(r1.ce, r0.ce, 1e-6 * r0.ce);
    EXPECT_LE(max_rel_error(g1.arena.data<float>(), g0.arena.data<float>(),
                            static_cast<size_t>(plain.weights().layout().arena_floats())),
              1e-5)
        << "step " << step;
  }
  set_threads(threads);
}

// q/k/v and w1/w3 as one GEMM each (Transformer::fused_qkv, fused_w13) against the three- and
// two-GEMM path (set_fused_projections(false)): the same loss, hidden states and gradients up
// to the order of float sums, with GQA and MHA, checkpointing, dropout, and gradients whose
// tensors are not adjacent (the weight gradients then run one strided GEMM per tensor).
TEST(FusedProjections, StepMatchesTheUnfusedStep) {
  struct Case {
    int64_t kv_heads;
    bool checkpointing;
    double dropout;
    bool separate_grads;
  };
  for (const Case& k : {Case{2, false, 0.0, false}, Case{4, false, 0.0, true}, Case{1, true, 0.1, false}}) {
    SCOPED_TRACE(testing::Message() << "kv_heads " << k.kv_heads << " checkpointing " << k.checkpointing
                                    << " dropout " << k.dropout << " separate grads " << k.separate_grads);
    ModelConfig c = small_config();
    c.attn_bias = false;
    c.qk_norm = false;
    c.n_kv_heads = k.kv_heads;
    c.dropout = k.dropout;
    const TokenBatch b = small_token_batch(c.vocab_size);
    const int64_t N = b.B * b.T, F = c.ffn_hidden();
    Transformer fused(ModelWeights::random(c, 4)), plain(ModelWeights::random(c, 4));
    plain.set_fused_projections(false);
    for (Transformer* m : {&fused, &plain}) m->set_gradient_checkpointing(k.checkpointing);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      EXPECT_TRUE(fused.fused_qkv(l, N));
      EXPECT_TRUE(fused.fused_w13(l, N));
      EXPECT_FALSE(plain.fused_qkv(l, N));
      EXPECT_FALSE(plain.fused_w13(l, N));
      const LayerParams& lp = fused.weights().params().layers[static_cast<size_t>(l)];
      EXPECT_EQ(lp.w3, lp.w1 + F * c.dim);  // the arena stacks [w1; w3]
    }
    // Gradients: the arena, or (separate_grads) each tensor in its own allocation.
    const ParameterLayout& layout = fused.weights().layout();
    Grads g0(plain.weights()), g1(fused.weights());
    std::vector<std::vector<float>> own;
    ParameterTensors views = g1.views;
    if (k.separate_grads) {
      std::vector<float*> ptrs;
      for (const ParamInfo& p : layout.tensors()) {
        own.emplace_back(static_cast<size_t>(p.numel + 16), 0.0f);
        ptrs.push_back(own.back().data() + 16);  // never adjacent to the previous tensor
      }
      views = layout.bind(ptrs);
    }
    Rng r0(11), r1(11);
    TrainStepOptions o0, o1;
    o0.rng = &r0;
    o1.rng = &r1;
    const TrainStepResult a = plain.train_step(g0.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, o0);
    const TrainStepResult f = fused.train_step(views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, o1);
    EXPECT_NEAR(f.loss, a.loss, 1e-6 * a.loss);
    EXPECT_LE(max_rel_error(fused.hidden(), plain.hidden(), static_cast<size_t>(N * c.dim)), 1e-5);
    for (size_t i = 0; i < layout.tensors().size(); ++i) {
      const ParamInfo& p = layout.tensors()[i];
      const float* got = k.separate_grads ? own[i].data() + 16 : g1.of(p);
      EXPECT_LE(max_rel_error(got, g0.of(p), static_cast<size_t>(p.numel)), 1e-5) << p.name;
    }
    // The evaluation forward (no dropout) takes the fused path too.
    const float* lf = fused.forward(b.tokens.data(), nullptr, b.B, b.T);
    std::vector<float> logits(lf, lf + N * c.vocab_size);
    const float* lp = plain.forward(b.tokens.data(), nullptr, b.B, b.T);
    EXPECT_LE(max_rel_error(logits.data(), lp, logits.size()), 1e-5);
  }
}

TEST(RowParallel, ErrorsNameTheWholeBatch) {
  ModelConfig c = small_config();
  TokenBatch b = small_token_batch(c.vocab_size);
  const int threads = thread_count();
  set_threads(2);
  Transformer m(ModelWeights::random(c, 8));
  m.set_row_parallel(true);
  Grads g(m.weights());
  b.targets[static_cast<size_t>(b.B * b.T - 1)] = static_cast<int32_t>(c.vocab_size);  // in the second part
  try {
    m.train_step(g.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 15"), std::string::npos) << e.what();
  }
  set_threads(threads);
}

TEST(Dropout, MaskIsDeterministicAndHasTheRightRate) {
  const int64_t n = 200000;
  std::vector<float> ones(n, 1.0f), out(n);
  dropout_forward(out.data(), ones.data(), n, 0.25f, 77);
  int64_t dropped = 0;
  for (float x : out) {
    if (x == 0) ++dropped;
    else EXPECT_FLOAT_EQ(x, 1.0f / 0.75f);
  }
  EXPECT_NEAR(static_cast<double>(dropped) / n, 0.25, 0.005);
  std::vector<float> d(n, 0.0f);
  dropout_backward(d.data(), ones.data(), n, 0.25f, 77);
  EXPECT_EQ(std::memcmp(d.data(), out.data(), n * sizeof(float)), 0);  // the same mask
  dropout_forward(out.data(), ones.data(), n, 0.0f, 77);
  EXPECT_EQ(std::count(out.begin(), out.end(), 1.0f), n);  // p = 0: identity
}

TEST(Dropout, ZeroProbabilityStepEqualsPlainStep) {
  // Dropout probabilities of 0 draw seeds but change nothing: same loss and gradients as a
  // config without dropout fields, and the same logits as the evaluation forward.
  ModelConfig c = small_config();
  const TokenBatch b = small_token_batch(c.vocab_size);
  Transformer plain(ModelWeights::random(c, 1));
  Grads g0(plain.weights());
  const TrainStepResult r0 = plain.train_step(g0.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T);
  // The step stores no logits (its classifier runs in chunks): its hidden states and loss
  // are the evaluation forward's.
  EXPECT_EQ(plain.activations().logits, nullptr);
  const float* train_hidden = plain.hidden();
  std::vector<float> th(train_hidden, train_hidden + b.B * b.T * c.dim);
  plain.forward(b.tokens.data(), nullptr, b.B, b.T);
  EXPECT_EQ(std::memcmp(th.data(), plain.hidden(), th.size() * sizeof(float)), 0);
  EXPECT_NEAR(plain.loss(b.targets.data()).loss, r0.ce, 1e-5 * r0.ce);

  c.dropout = 1e-30;  // > 0, so the dropout paths run, but no element is dropped
  Transformer tiny(ModelWeights::random(c, 1));
  Grads g1(tiny.weights());
  Rng rng(9);
  TrainStepOptions opt;
  opt.rng = &rng;
  const TrainStepResult r1 = tiny.train_step(g1.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt);
  EXPECT_NEAR(r1.loss, r0.loss, 1e-6 * r0.loss);
  EXPECT_LE(max_rel_error(g1.arena.data<float>(), g0.arena.data<float>(),
                          static_cast<size_t>(tiny.weights().layout().arena_floats())),
            1e-5);
}

TEST(Dropout, NeedsAnRng) {
  ModelConfig c = small_config();
  c.attn_dropout = 0.1;
  const TokenBatch b = small_token_batch(c.vocab_size);
  Transformer model(ModelWeights::random(c, 1));
  Grads g(model.weights());
  EXPECT_THROW(model.train_step(g.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T), Error);
}

// With fixed masks (the same RNG state for every evaluation) the loss is a deterministic
// function of the parameters, so the whole model's gradient with every dropout kind on
// (and SIGReg from the RNG) can be checked by finite differences.
TEST(Dropout, WholeModelFiniteDifferencesThroughFixedMasks) {
  ModelConfig c = small_config();
  c.dropout = 0.2;
  c.attn_dropout = 0.3;
  c.emb_dropout = 0.1;
  c.sigreg.enabled = true;
  c.sigreg.slices = 8;
  c.sigreg.coefficient = 0.3;
  c.tie_embeddings = true;
  const TokenBatch b = small_token_batch(c.vocab_size);
  ModelWeights w = ModelWeights::random(c, 4, {0.3f, false});
  Transformer model(std::move(w));
  Grads g(model.weights());
  const Rng start(1234);
  Rng rng = start;
  TrainStepOptions opt;
  opt.rng = &rng;
  const TrainStepResult r = model.train_step(g.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt);
  EXPECT_GT(r.sigreg, 0.0);
  // Same RNG state: same masks and noise, bit-identical result.
  {
    Rng again = start;
    opt.rng = &again;
    Grads g2(model.weights());
    const TrainStepResult r2 = model.train_step(g2.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt);
    EXPECT_EQ(r2.loss, r.loss);
    EXPECT_EQ(std::memcmp(g2.arena.raw(), g.arena.raw(), g.arena.nbytes()), 0);
    Rng other(4321);
    opt.rng = &other;
    Grads g3(model.weights());
    EXPECT_NE(model.train_step(g3.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt).loss, r.loss);
  }
  float* params = model.weights().arena();
  Grads scratch(model.weights());
  auto loss_at = [&] {
    Rng again = start;
    opt.rng = &again;
    return model.train_step(scratch.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, opt).loss;
  };
  // Probe the coordinates with the largest gradients of a few tensors.
  for (const ParamInfo& p : model.weights().layout().tensors()) {
    if (p.layer > 0) continue;
    const float* gp = g.of(p);
    int64_t j = 0;
    for (int64_t i = 1; i < p.numel; ++i)
      if (std::abs(gp[i]) > std::abs(gp[j])) j = i;
    float& x = params[p.offset + j];
    const float keep = x;
    const float h = 1e-2f;
    x = keep + h;
    const double up = loss_at();
    x = keep - h;
    const double down = loss_at();
    x = keep;
    const double numeric = (up - down) / (2.0 * h);
    EXPECT_NEAR(gp[j], numeric, 3e-2 * std::abs(numeric) + 2e-4) << p.name << "[" << j << "]";
  }
}

TEST(TrainStep, RefusesBadInputs) {
  ModelConfig c = small_config();
  TokenBatch b = small_token_batch(c.vocab_size);
  Transformer model(ModelWeights::random(c, 1));
  Grads g(model.weights());
  auto kind = [&](int64_t B, int64_t T) {
    try {
      model.train_step(g.views, b.tokens.data(), nullptr, b.targets.data(), B, T);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Runtime;  // not thrown
  };
  EXPECT_EQ(kind(0, 8), ErrorKind::Usage);
  EXPECT_EQ(kind(1, 9), ErrorKind::Usage);  // T > max_seq_len
  b.targets[3] = static_cast<int32_t>(c.vocab_size);
  EXPECT_EQ(kind(2, 8), ErrorKind::Data);
  b.targets[3] = 1;
  b.tokens[4] = -1;
  EXPECT_EQ(kind(2, 8), ErrorKind::Data);
  // Every target PAD: loss 0, no gradient.
  b.tokens[4] = 1;
  std::fill(b.targets.begin(), b.targets.end(), 0);
  Grads z(model.weights());
  const TrainStepResult r = model.train_step(z.views, b.tokens.data(), nullptr, b.targets.data(), 2, 8);
  EXPECT_EQ(r.count, 0);
  EXPECT_EQ(r.loss, 0.0);
  const float* a = z.arena.data<float>();
  EXPECT_TRUE(std::all_of(a, a + model.weights().layout().arena_floats(), [](float x) { return x == 0.0f; }));
}

TEST(Checkpointing, SameGradientsBitForBitWithLessMemory) {
  for (bool dropout : {false, true}) {
    ModelConfig c = small_config();
    c.n_layers = 4;
    if (dropout) {
      c.dropout = 0.1;
      c.attn_dropout = 0.2;
      c.emb_dropout = 0.1;
    }
    const TokenBatch b = small_token_batch(c.vocab_size);
    Transformer full(ModelWeights::random(c, 6)), ckpt(ModelWeights::random(c, 6));
    ckpt.set_gradient_checkpointing(true);
    Grads g0(full.weights()), g1(ckpt.weights());
    Rng r0(11), r1(11);
    TrainStepOptions o0, o1;
    o0.rng = &r0;
    o1.rng = &r1;
    const TrainStepResult a = full.train_step(g0.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, o0);
    const TrainStepResult d = ckpt.train_step(g1.views, b.tokens.data(), nullptr, b.targets.data(), b.B, b.T, o1);
    EXPECT_EQ(a.loss, d.loss);
    EXPECT_EQ(std::memcmp(g0.arena.raw(), g1.arena.raw(), g0.arena.nbytes()), 0) << "dropout " << dropout;
    EXPECT_TRUE(ckpt.activations().checkpointed);
    EXPECT_LT(ckpt.activation_bytes(), full.activation_bytes());
    std::printf("[ checkpointing          ] L=4 activations %lld -> %lld bytes\n",
                static_cast<long long>(full.activation_bytes()), static_cast<long long>(ckpt.activation_bytes()));
    // The evaluation forward afterwards is unaffected.
    const float* l0 = full.forward(b.tokens.data(), nullptr, b.B, b.T);
    std::vector<float> want(l0, l0 + b.B * b.T * c.vocab_size);
    const float* l1 = ckpt.forward(b.tokens.data(), nullptr, b.B, b.T);
    EXPECT_EQ(std::memcmp(want.data(), l1, want.size() * sizeof(float)), 0);
    EXPECT_TRUE(ckpt.activations().checkpointed) << "an evaluation forward reuses the training arena";
    Transformer lean(ModelWeights::random(c, 6));
    const float* l2 = lean.forward(b.tokens.data(), nullptr, b.B, b.T);
    EXPECT_EQ(std::memcmp(want.data(), l2, want.size() * sizeof(float)), 0);
  }
}

}  // namespace
}  // namespace lm
