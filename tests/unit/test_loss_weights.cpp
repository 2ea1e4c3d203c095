// Per-token-id loss weights (materium) end to end: weight files (JSON, safetensors) and their
// errors, the tensor in model and training checkpoints, the trainer's step against the
// PyTorch fixture tests/fixtures/loss_weights (weights read back from a checkpoint), the
// weighted validation loss, and lm-eval-loss's Evaluator.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "core/error.h"
#include "eval/eval.h"
#include "io/safetensors.h"
#include "io/tokstream.h"
#include "model/loss.h"
#include "model/loss_weights.h"
#include "model/params.h"
#include "model/transformer.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace lm {
namespace {

using fixture::kTolerance;
using fixture::max_rel_error;
using fixture::read_floats;
using fixture::read_ints;

namespace fs = std::filesystem;

fs::path fixture_dir() { return fs::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures" / "loss_weights"; }

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("lmkit_lw_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name, const std::string& text = {}) const {
    const std::string p = (path / name).string();
    if (!text.empty()) std::ofstream(p) << text;
    return p;
  }
};

std::string error_of(const std::function<void()>& f, ErrorKind* kind = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (kind) *kind = e.kind();
    return e.what();
  }
  return "(no error)";
}

ModelConfig small_config() {
  ModelConfig c;
  c.dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.vocab_size = 12;
  c.max_seq_len = 8;
  c.multiple_of = 16;
  c.pad_id = 0;
  c.bos_id = -1;
  c.eos_id = 1;
  return c;
}

TEST(LossWeightSupport, TheModelAcceptsThemAndStillRefusesTheRest) {
  ModelConfig c = small_config();
  c.loss_weights = true;
  EXPECT_NO_THROW(require_model_support(c));
  EXPECT_NO_THROW(Transformer(ModelWeights::random(c, 1)));
  c.moe.n_experts = 2;  // a Llama 4 feature, not implemented
  ErrorKind kind = ErrorKind::Usage;
  EXPECT_EQ(error_of([&] { require_model_support(c); }, &kind), "mixture of experts (moe.n_experts = 2) is not supported yet");
  EXPECT_EQ(kind, ErrorKind::Unsupported);
}

// ---- weight files ----

TEST(LossWeightFile, JsonListsSomeIdsTheOthersWeighOne) {
  TempDir d;
  const auto w = read_loss_weights(d.file("w.json", R"({"3": 0.5, "7": 0, "11": 2e0})"), 12);
  ASSERT_EQ(w.size(), 12u);
  EXPECT_EQ(w[3], 0.5f);
  EXPECT_EQ(w[7], 0.0f);
  EXPECT_EQ(w[11], 2.0f);
  EXPECT_EQ(w[0], 1.0f);
  EXPECT_EQ(w[10], 1.0f);
  const LossWeightStats st = loss_weight_stats(w.data(), 12);
  EXPECT_EQ(st.non_unit, 3);
  EXPECT_EQ(st.zero, 1);
  EXPECT_EQ(st.min, 0.0);
  EXPECT_EQ(st.max, 2.0);
}

TEST(LossWeightFile, BadFilesAreDataErrorsNamingTheFile) {
  TempDir d;
  struct Case {
    const char* json;
    const char* want;
  };
  const Case cases[] = {
      {R"({"12": 1})", "token id 12 is out of range (vocab_size 12)"},
      {R"({"2": -0.5})", "loss weight of token 2 is negative (-0.5)"},
      {R"({"2": 1, )", "not valid JSON: "},
      {R"({"2": 1, "2": 3})", "duplicate key '2'"},
      {R"([1, 2])", "expected a JSON object"},
      {R"({"x": 1})", "'x' is not a token id"},
      {R"({"-1": 1})", "'-1' is not a token id"},
      {R"({"2": "1"})", "token 2: the weight must be a number"},
      {R"({"2": 1e999})", "not valid JSON: number overflow parsing '1e999'"},
  };
  for (const Case& c : cases) {
    const std::string path = d.file("bad.json", c.json);
    ErrorKind kind = ErrorKind::Usage;
    const std::string msg = error_of([&] { read_loss_weights(path, 12); }, &kind);
    EXPECT_EQ(msg.rfind("'" + path + "': ", 0), 0u) << c.json << " -> " << msg;
    EXPECT_NE(msg.find(c.want), std::string::npos) << c.json << " -> " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(kind, ErrorKind::Data) << c.json;
  }
  std::string all_zero = "{";
  for (int i = 0; i < 12; ++i) all_zero += (i ? ", \"" : "\"") + std::to_string(i) + "\": 0";
  all_zero += "}";
  const std::string path = d.file("zero.json", all_zero);
  EXPECT_EQ(error_of([&] { read_loss_weights(path, 12); }), "'" + path + "': every loss weight is zero");
  ErrorKind kind = ErrorKind::Usage;
  error_of([&] { read_loss_weights(d.file("missing.json"), 12); }, &kind);
  EXPECT_EQ(kind, ErrorKind::Io);
}

TEST(LossWeightFile, SafetensorsWithOneVocabTensor) {
  TempDir d;
  Tensor t = Tensor::zeros(DType::F32, {12});
  for (int i = 0; i < 12; ++i) t.data_mut<float>()[i] = 0.25f * static_cast<float>(i);
  SafeTensorsWriter w;
  w.add("weights", t);
  const std::string path = d.file("w.safetensors");
  w.write_file(path);
  const auto got = read_loss_weights(path, 12);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(got[i], 0.25f * static_cast<float>(i));
  EXPECT_EQ(error_of([&] { read_loss_weights(path, 13); }),
            "'" + path + "': tensor 'weights': got shape [12], expected [13]");
  t.data_mut<float>()[5] = -1;
  SafeTensorsWriter neg;
  neg.add("w", t);
  neg.write_file(path);
  EXPECT_EQ(error_of([&] { read_loss_weights(path, 12); }), "'" + path + "': loss weight of token 5 is negative (-1)");
  SafeTensorsWriter two;
  two.add("a", t);
  two.add("b", t);
  two.write_file(path);
  EXPECT_EQ(error_of([&] { read_loss_weights(path, 12); }),
            "'" + path + "': expected one loss weight tensor [12], found 2 tensors");
}

// ---- checkpoints ----

TEST(LossWeightCheckpoint, ModelRoundTripAndRefusals) {
  TempDir d;
  ModelWeights m = ModelWeights::random(small_config(), 3);
  EXPECT_EQ(m.loss_weights(), nullptr);
  std::vector<float> w(12, 1.0f);
  w[4] = 0;
  w[9] = 3.5f;
  m.set_loss_weights(w, "test");
  EXPECT_TRUE(m.config().loss_weights);
  const std::string path = d.file("m.safetensors");
  m.save(path);
  const ModelWeights back = ModelWeights::load(path);
  EXPECT_TRUE(back.config().loss_weights);
  ASSERT_NE(back.loss_weights(), nullptr);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(back.loss_weights()[i], w[i]) << i;
  const SafeTensorsFile f = SafeTensorsFile::open(path);
  ASSERT_TRUE(f.contains("loss_weights"));
  EXPECT_EQ(f.find("loss_weights")->dtype, DType::F32);
  // The tensor with the flag switched off (--set loss_weights=false) is left unused; the flag
  // without the tensor is refused.
  ModelConfig off = small_config();
  const ModelWeights unweighted = ModelWeights::from_checkpoint(f, off);
  EXPECT_FALSE(unweighted.config().loss_weights);
  EXPECT_EQ(unweighted.loss_weights(), nullptr);
  ModelConfig on = small_config();
  on.loss_weights = true;
  ModelWeights::random(small_config(), 3).save(d.file("plain.safetensors"));
  const SafeTensorsFile plain = SafeTensorsFile::open(d.file("plain.safetensors"));
  EXPECT_EQ(error_of([&] { ModelWeights::from_checkpoint(plain, on); }),
            "'" + d.file("plain.safetensors") + "': missing tensor 'loss_weights' (the config has loss_weights = true)");
  // random() with the flag: every id weighs 1.
  const ModelWeights ones = ModelWeights::random(on, 1);
  ASSERT_NE(ones.loss_weights(), nullptr);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(ones.loss_weights()[i], 1.0f);
  // A bad vector is refused by set_loss_weights.
  EXPECT_EQ(error_of([&] { m.set_loss_weights(std::vector<float>(12, 0.0f), "'x'"); }), "'x': every loss weight is zero");
  EXPECT_EQ(error_of([&] { m.set_loss_weights(std::vector<float>(11, 1.0f), "'x'"); }),
            "'x': loss weights: 11 weights for a vocabulary of 12");
}

TEST(LossWeightCheckpoint, TrainingCheckpointKeepsThem) {
  TempDir d;
  ModelWeights m = ModelWeights::random(small_config(), 3);
  std::vector<float> w(12, 0.5f);
  w[2] = 4;
  m.set_loss_weights(w, "test");
  m.make_writable();
  train::AdamW opt(m.layout(), train::AdamWConfig{});
  const std::string path = d.file("ck.safetensors");
  train::save_checkpoint(path, m, opt, train::TrainState{}, "");
  const train::LoadedCheckpoint ck = train::load_checkpoint(path);
  EXPECT_TRUE(ck.weights.config().loss_weights);
  ASSERT_NE(ck.weights.loss_weights(), nullptr);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(ck.weights.loss_weights()[i], w[i]) << i;
}

// ---- training against PyTorch ----

// The fixture's model with its loss weights (grads.safetensors "loss_weights") set, saved and
// loaded back: what lm-train --loss-weights and then --resume would train.
TEST(LossWeightTraining, TrainerStepThroughACheckpointMatchesPyTorch) {
  TempDir d;
  const auto cf = SafeTensorsFile::open(fixture_dir() / "case.safetensors");
  const auto gf = SafeTensorsFile::open(fixture_dir() / "grads.safetensors");
  ModelWeights src = ModelWeights::load(fixture_dir() / "model.safetensors");
  ASSERT_FALSE(src.config().loss_weights);
  src.set_loss_weights(read_floats(gf, "loss_weights"), "fixture");
  const std::string path = d.file("weighted.safetensors");
  src.save(path);
  Transformer model(ModelWeights::load(path));
  ASSERT_TRUE(model.config().loss_weights);

  train::Batch b;
  b.B = cf.get("tokens").dim(0);
  b.T = cf.get("tokens").dim(1);
  b.inputs = read_ints<int32_t>(cf, "tokens");
  b.targets = read_ints<int32_t>(cf, "targets");
  b.pos = read_ints<int64_t>(cf, "pos");
  b.has_pos = true;
  Tensor arena = Tensor::zeros(DType::F32, {model.weights().layout().arena_floats()});
  const ParameterTensors grads = model.weights().layout().bind(arena.data_mut<float>());
  Rng rng(1);
  const double loss = train::transformer_step()(model, b, grads, 1.0f, rng);

  const double want = read_floats(gf, "loss")[0];
  EXPECT_LE(std::abs(loss - want) / want, 1e-4) << loss << " want " << want;
  // The unweighted loss of the same batch differs clearly, so the check above can fail.
  const double plain = read_floats(cf, "loss")[0];
  EXPECT_GT(std::abs(plain - want) / want, 1e-2) << "weighted " << want << " plain " << plain;
  for (const ParamInfo& p : model.weights().layout().tensors()) {
    const std::vector<float> g = read_floats(gf, p.name);
    EXPECT_LE(max_rel_error(arena.data<float>() + p.offset, g.data(), g.size()), 1e-4) << p.name;
  }
  // Evaluation (validation, lm-eval-loss) reports the same weighted mean.
  model.forward(b.inputs.data(), b.pos.data(), b.B, b.T);
  const LossResult r = model.loss(b.targets.data());
  EXPECT_LE(std::abs(r.loss - want) / want, 1e-4) << r.loss << " want " << want;
  double wsum = 0;
  const float* w = model.weights().loss_weights();
  for (int32_t t : b.targets)
    if (t != model.config().pad_id) wsum += w[t];
  EXPECT_NEAR(r.weight_sum, wsum, 1e-4);
}

// ---- evaluation ----

TEST(LossWeightEval, WeightedMeanAndZeroWeightTokensDoNotCount) {
  ModelWeights weights = ModelWeights::random(small_config(), 5, InitOptions{0.5f, false});
  const std::vector<uint32_t> rec{2, 5, 7, 3, 7, 9, 4, 7, 6};  // token 7 is a target 3 times
  std::vector<float> w(12, 1.0f);
  w[3] = 2.5f;
  w[7] = 0.0f;
  weights.set_loss_weights(w, "test");
  Transformer m(std::move(weights));

  TokenChunk ch;
  ch.tokens = rec;
  ch.first = ch.last = true;
  EvalOptions o;
  o.batch = 1;
  o.seq = 8;
  Evaluator ev(m, o);
  ev.add(ch);
  const EvalResult r = ev.finish();
  ASSERT_TRUE(r.loss_weighted);
  EXPECT_EQ(r.tokens, 8);
  EXPECT_EQ(r.zero_weight_ids, 1);
  EXPECT_EQ(r.non_unit_weight_ids, 2);

  // Directly: per-target cross-entropy of the one window.
  std::vector<int32_t> x(rec.begin(), rec.begin() + 8), y(rec.begin() + 1, rec.end());
  std::vector<int64_t> pos{0, 1, 2, 3, 4, 5, 6, 7};
  const float* logits = m.forward(x.data(), pos.data(), 1, 8);
  std::vector<float> ce(8);
  crossentropy_forward(ce.data(), logits, y.data(), 8, 12, -1);
  double num = 0, den = 0, plain = 0;
  int64_t n7 = 0;
  for (int i = 0; i < 8; ++i) {
    num += w[y[i]] * ce[i];
    den += w[y[i]];
    plain += ce[i];
    n7 += y[i] == 7;
  }
  ASSERT_EQ(n7, 3);
  EXPECT_NEAR(r.loss(), num / den, 1e-6);
  EXPECT_NEAR(r.unweighted_loss(), plain / 8, 1e-6);
  EXPECT_GT(std::abs(r.loss() - r.unweighted_loss()), 1e-3);
}

}  // namespace
}  // namespace lm
