// Image features in the programs (docs/llama4.md §8, --vision): lm-eval-loss's Evaluator gives
// each window its record's features (l4_vision's loss from a --vision file; records cut into
// several windows equal the model run on those windows by hand, in both place modes; features
// that meet no input place are refused), and lm-generate's Generator prefills the prompt's
// features (l4_vision's next token) and never samples image_token_id.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "core/error.h"
#include "core/rng.h"
#include "eval/eval.h"
#include "generate/generate.h"
#include "io/safetensors.h"
#include "model/loss.h"
#include "model/params.h"
#include "model/transformer.h"
#include "model/vision.h"

namespace lm {
namespace {

namespace fs = std::filesystem;
using fixture::read_floats;
using fixture::read_ints;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("lmkit_vision_programs_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

Tensor f32(const float* v, int64_t rows, int64_t cols) {
  Tensor t = Tensor::zeros(DType::F32, {rows, cols});
  std::memcpy(t.data_mut<float>(), v, static_cast<size_t>(rows * cols) * sizeof(float));
  return t;
}

Tensor i64(const std::vector<int64_t>& v) {
  Tensor t = Tensor::zeros(DType::I64, {static_cast<int64_t>(v.size())});
  std::memcpy(t.raw_mut(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

TokenChunk record_chunk(const std::vector<int32_t>& tokens, uint64_t record) {
  TokenChunk c;
  c.tokens.assign(tokens.begin(), tokens.end());
  c.start = 0;
  c.record = record;
  c.first = c.last = true;
  return c;
}

// l4_vision as lm-eval-loss reads it: each case row is a record of its 12 tokens and its last
// target, the row's features and places in a --vision file. One window per record (T = 12).
TEST(VisionPrograms, EvaluatorGivesTheFixtureLossFromAVisionFile) {
  const fs::path dir = fixture::dir() / "llama4" / "l4_vision";
  Transformer model(ModelWeights::load((dir / "model.safetensors").string()));
  const ModelConfig& cfg = model.config();
  const SafeTensorsFile cs = SafeTensorsFile::open((dir / "case.safetensors").string());
  const std::vector<int32_t> tokens = read_ints<int32_t>(cs, "tokens"), targets = read_ints<int32_t>(cs, "targets");
  const int64_t B = 2, T = 12;
  const fixture::VisionCase vc = fixture::load_vision(cs, cfg, tokens, B, T);
  TempDir tmp;
  const std::string vpath = (tmp.path / "v.safetensors").string();
  SafeTensorsWriter w;
  for (int64_t b = 0; b < B; ++b) {
    w.add(cat("record.", b), f32(vc.features.data() + vc.offset[b] * vc.dim, vc.count[b], vc.dim));
    w.add(cat("record.", b, ".places"), i64(vc.places[b]));
  }
  w.write_file(vpath);
  const VisionFile vf = VisionFile::open(vpath, cfg);

  EvalOptions o;
  o.batch = B;
  o.seq = T;
  o.vision = &vf;
  Evaluator ev(model, o);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> rec(tokens.begin() + b * T, tokens.begin() + (b + 1) * T);
    rec.push_back(targets[(b + 1) * T - 1]);
    ev.add(record_chunk(rec, static_cast<uint64_t>(b)));
  }
  const EvalResult r = ev.finish();
  EXPECT_EQ(r.tokens, B * T);
  const double want = read_floats(cs, "loss")[0];
  EXPECT_NEAR(r.loss(), want, fixture::kTolerance * std::abs(want));

  // Text only (no --vision) the same tokens give another loss: the features are used.
  EvalOptions text = o;
  text.vision = nullptr;
  Evaluator et(model, text);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> rec(tokens.begin() + b * T, tokens.begin() + (b + 1) * T);
    rec.push_back(targets[(b + 1) * T - 1]);
    et.add(record_chunk(rec, static_cast<uint64_t>(b)));
  }
  EXPECT_GT(std::abs(et.finish().loss() - want), 1e-3);
}

ModelConfig vision_model(int64_t image_token_id) {
  ModelConfig c;
  c.name = "vision-eval";
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.multiple_of = 16;
  c.max_seq_len = 32;
  c.vision_dim = 6;
  c.image_token_id = image_token_id;
  return c;
}

// A record of 2T + 1 tokens is evaluated as the windows [0, T) and [T, 2T): each must take the
// features of its own places. The model run on the two windows by hand must give the same sum.
void check_split_windows(int64_t image_token_id) {
  const ModelConfig cfg = vision_model(image_token_id);
  Transformer model(ModelWeights::random(cfg, 11));
  const int64_t T = 8, n = 2 * T + 1, Dv = cfg.vision_dim, V = cfg.vocab_size;
  Rng rng(5);
  std::vector<int32_t> rec(static_cast<size_t>(n));
  for (auto& t : rec) t = static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(V - 1)));
  const std::vector<int64_t> places = {1, 6, 7, 8, 13};  // window 0: 1, 6, 7; window 1: 0, 5
  std::vector<int32_t> clean = rec;
  if (image_token_id >= 0) {
    for (auto& t : clean)
      if (t == image_token_id) t = static_cast<int32_t>(image_token_id + 1);
    rec = clean;
    for (int64_t p : places) rec[static_cast<size_t>(p)] = static_cast<int32_t>(image_token_id);
  }
  const int64_t M = static_cast<int64_t>(places.size());
  std::vector<float> feat(static_cast<size_t>(M * Dv));
  for (auto& f : feat) f = static_cast<float>(rng.normal());

  TempDir tmp;
  const std::string vpath = (tmp.path / "split.safetensors").string();
  SafeTensorsWriter w;
  w.add("record.0", f32(feat.data(), M, Dv));
  if (image_token_id < 0) w.add("record.0.places", i64(places));
  w.write_file(vpath);
  const VisionFile vf = VisionFile::open(vpath, cfg);
  EvalOptions o;
  o.batch = 1;  // one window per forward: window 1 runs after window 0
  o.seq = T;
  o.vision = &vf;
  Evaluator ev(model, o);
  ev.add(record_chunk(rec, 0));
  const EvalResult r = ev.finish();
  ASSERT_EQ(r.windows, 2);
  ASSERT_EQ(r.tokens, 2 * T);

  // By hand: window k = tokens [kT, kT + T), targets shifted by one, positions kT + t.
  double want = 0;
  std::vector<float> losses(static_cast<size_t>(T));
  for (int64_t k = 0; k < 2; ++k) {
    std::vector<int32_t> x(rec.begin() + k * T, rec.begin() + (k + 1) * T), y(rec.begin() + k * T + 1, rec.begin() + (k + 1) * T + 1);
    std::vector<int64_t> pos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) pos[t] = k * T + t;
    std::vector<int64_t> local;
    std::vector<float> f;
    for (int64_t m = 0; m < M; ++m)
      if (places[m] >= k * T && places[m] < (k + 1) * T) {
        local.push_back(places[m] - k * T);
        f.insert(f.end(), feat.begin() + m * Dv, feat.begin() + (m + 1) * Dv);
      }
    const VisionRow row{f.data(), static_cast<int64_t>(local.size()), image_token_id < 0 ? local.data() : nullptr};
    const float* logits = model.forward(x.data(), pos.data(), 1, T, nullptr, &row);
    crossentropy_forward(losses.data(), logits, y.data(), T, V, -1);
    for (float l : losses) want += l;
  }
  EXPECT_NEAR(r.loss_sum, want, 1e-5 * std::abs(want)) << "image_token_id " << image_token_id;

  // A feature on the record's last token (only a target) meets no input: refused.
  if (image_token_id < 0) {
    const std::string bad = (tmp.path / "last.safetensors").string();
    SafeTensorsWriter wb;
    wb.add("record.0", f32(feat.data(), 2, Dv));
    wb.add("record.0.places", i64({3, n - 1}));
    wb.write_file(bad);
    const VisionFile vb = VisionFile::open(bad, cfg);
    o.vision = &vb;
    Evaluator eb(model, o);
    try {
      eb.add(record_chunk(rec, 0));
      eb.finish();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data);
      EXPECT_EQ(std::string(e.what()), "record 0: 2 image features, but only 1 of them fall on input tokens of the record");
    }
  } else {
    // One feature short: the window with the last image token has none for it.
    const std::string bad = (tmp.path / "short.safetensors").string();
    SafeTensorsWriter wb;
    wb.add("record.0", f32(feat.data(), M - 1, Dv));
    wb.write_file(bad);
    const VisionFile vb = VisionFile::open(bad, cfg);
    o.vision = &vb;
    Evaluator eb(model, o);
    try {
      eb.add(record_chunk(rec, 0));
      eb.finish();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), cat("record 0: more image tokens (image_token_id ", image_token_id, ") than its ",
                                           M - 1, " image features"));
    }
  }
}

TEST(VisionPrograms, EvaluatorWindowsTakeTheirOwnPlacesFeatures) { check_split_windows(-1); }
TEST(VisionPrograms, EvaluatorWindowsTakeTheirOwnImageTokensFeatures) { check_split_windows(3); }

// l4_vision row 0 as a prompt with its features: greedy's first token is the argmax of the
// fixture's last logits. Places past the prompt are refused.
TEST(VisionPrograms, GeneratorPrefillsThePromptsFeatures) {
  const fs::path dir = fixture::dir() / "llama4" / "l4_vision";
  Transformer model(ModelWeights::load((dir / "model.safetensors").string()));
  const ModelConfig& cfg = model.config();
  const SafeTensorsFile cs = SafeTensorsFile::open((dir / "case.safetensors").string());
  const std::vector<int32_t> tokens = read_ints<int32_t>(cs, "tokens");
  const std::vector<float> logits = read_floats(cs, "logits");
  const int64_t T = 12, V = cfg.vocab_size;
  const fixture::VisionCase vc = fixture::load_vision(cs, cfg, tokens, 2, T);
  const std::vector<VisionRow> rows = vc.rows();
  const std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + T);
  const float* last = logits.data() + (T - 1) * V;
  const int32_t want = static_cast<int32_t>(std::max_element(last, last + V) - last);

  Generator gen(model, nullptr);
  GenerateOptions go;
  go.max_new_tokens = 1;
  go.sampling.temperature = 0;
  go.stop_at_eos = false;
  const Completion c = gen.generate(prompt, go, 1, nullptr, "prompt 1", nullptr, &rows[0]);
  ASSERT_EQ(c.tokens.size(), 1u);
  EXPECT_EQ(c.tokens[0], want);

  const std::vector<int32_t> shorter(prompt.begin(), prompt.begin() + 4);  // places 2, 3, 4: 4 is past it
  try {
    gen.generate(shorter, go, 1, nullptr, "prompt 1", nullptr, &rows[0]);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "prompt 1: image place 4 lies past its 4 tokens");
  }
}

TEST(VisionPrograms, GeneratorNeverSamplesTheImageToken) {
  ModelConfig cfg = vision_model(3);
  TokenizerSpec spec;
  spec.vocab_size = static_cast<uint32_t>(cfg.vocab_size);
  EXPECT_EQ(reserved_ids(cfg, spec, nullptr)[3], 1);
  EXPECT_EQ(reserved_ids(cfg, spec, nullptr)[4], 0);
  cfg.image_token_id = -1;
  EXPECT_EQ(reserved_ids(cfg, spec, nullptr)[3], 0);
  // A prompt with an image token and no features: refused before any forward.
  cfg.image_token_id = 3;
  Transformer model(ModelWeights::random(cfg, 2));
  Generator gen(model, nullptr);
  GenerateOptions go;
  go.max_new_tokens = 2;
  try {
    gen.generate({1, 3, 5}, go, 1, nullptr, "prompt 2");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "prompt 2 has 1 image places (token 3) but 0 image features");
  }
}

}  // namespace
}  // namespace lm
