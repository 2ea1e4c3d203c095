// lib/train: AdamW against torch.optim.AdamW (tests/fixtures/adamw), schedules, clipping,
// the data loader's determinism and saved position, checkpoint round trips, and exact
// resume of the training loop (with a stand-in gradient so it needs no backward pass).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <utility>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/threads.h"
#include "io/stream.h"
#include "io/tokstream.h"
#include "model/config.h"
#include "model/params.h"
#include "model/presets.h"
#include "tokenizer/byte_v1.h"
#include "tokenizer/spec_json.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/run_dir.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace lm;
using namespace lm::train;

namespace {

ModelConfig small_config() {
  ModelConfig c = preset("tiny");
  c.dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.hidden_dim = 32;
  c.max_seq_len = 32;
  return c;
}

TokenData make_data(const std::vector<std::vector<uint32_t>>& records) {
  TokenData d;
  d.spec = byte_v1::spec();
  uint64_t start = 0;
  for (const auto& r : records) {
    d.append(r.data(), r.size(), start);
    start += 1000;
  }
  return d;
}

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("lmkit_test_train_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(AdamW, MatchesTorchAdamW) {
  std::ifstream in(std::string(LMKIT_SOURCE_DIR) + "/tests/fixtures/adamw/adamw.json");
  ASSERT_TRUE(in) << "missing tests/fixtures/adamw/adamw.json";
  const nlohmann::json fx = nlohmann::json::parse(in);
  ModelConfig cfg = config_from_json(fx["config"].dump(), "fixture");
  validate(cfg, "fixture");
  const ParameterLayout layout(cfg);
  const auto& table = layout.tensors();
  ASSERT_EQ(table.size(), fx["tensors"].size());
  AdamWConfig ac;
  ac.beta1 = fx["hyper"]["beta1"];
  ac.beta2 = fx["hyper"]["beta2"];
  ac.eps = fx["hyper"]["eps"];
  ac.weight_decay = fx["hyper"]["weight_decay"];
  ac.decay_embeddings = false;
  AdamW opt(layout, ac);
  std::vector<float> params(static_cast<size_t>(layout.arena_floats()), 0.0f), grads(params.size(), 0.0f);
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& t = fx["tensors"][i];
    ASSERT_EQ(table[i].name, t["name"].get<std::string>());
    ASSERT_EQ(table[i].shape, t["shape"].get<Shape>());
    EXPECT_EQ(decays(table[i], false), t["decay"].get<bool>()) << table[i].name;
    const auto init = t["init"].get<std::vector<float>>();
    std::copy(init.begin(), init.end(), params.begin() + table[i].offset);
  }
  const auto lrs = fx["lrs"].get<std::vector<double>>();
  for (size_t s = 0; s < lrs.size(); ++s) {
    for (size_t i = 0; i < table.size(); ++i) {
      const auto g = fx["tensors"][i]["grads"][s].get<std::vector<float>>();
      std::copy(g.begin(), g.end(), grads.begin() + table[i].offset);
    }
    opt.step(params.data(), grads.data(), lrs[s], static_cast<int64_t>(s + 1));
  }
  double worst = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& t = fx["tensors"][i];
    for (const char* key : {"param", "m", "v"}) {
      const auto want = t[key].get<std::vector<float>>();
      const float* got = std::string(key) == "param" ? params.data() : std::string(key) == "m" ? opt.m() : opt.v();
      for (size_t k = 0; k < want.size(); ++k) {
        const double err = std::abs(got[table[i].offset + static_cast<int64_t>(k)] - want[k]) / (std::abs(want[k]) + 1e-6);
        worst = std::max(worst, err);
        ASSERT_LT(err, 1e-5) << table[i].name << " " << key << "[" << k << "]";
      }
    }
  }
  // Padding between tensors stays untouched (in arena order: a SwiGLU layer's w3 sits after its w1).
  std::vector<std::pair<int64_t, int64_t>> spans;  // [offset, end) of each tensor
  for (const ParamInfo& p : table) spans.emplace_back(p.offset, p.offset + p.numel);
  std::sort(spans.begin(), spans.end());
  for (size_t i = 0; i + 1 < spans.size(); ++i) {
    ASSERT_LE(spans[i].second, spans[i + 1].first);
    for (int64_t k = spans[i].second; k < spans[i + 1].first; ++k) EXPECT_EQ(params[k], 0.0f);
  }
}

TEST(AdamW, DecayRule) {
  ModelConfig c = small_config();
  c.norm_type = NormType::LayerNorm;
  c.norm_bias = true;
  c.attn_bias = true;
  c.qk_norm = true;
  const ParameterLayout layout(c);
  for (const ParamInfo& p : layout.tensors()) {
    const bool matrix = p.shape.size() == 2;
    if (p.kind == ParamKind::TokEmbeddings) {
      EXPECT_TRUE(decays(p, true));
      EXPECT_FALSE(decays(p, false));
    } else {
      EXPECT_EQ(decays(p, true), matrix) << p.name;
      EXPECT_EQ(decays(p, false), matrix) << p.name;
    }
  }
}

// materium's conditions (docs/materium.md): the projections decay like the other matrices,
// the tables (class, count, mask and type embeddings) like the token embedding, biases never.
TEST(AdamW, DecayRuleForConditions) {
  ModelConfig c = small_config();
  c.conditions = {{"band_gap", ProjLayerType::Linear, 1, 0, 0},
                  {"space_group", ProjLayerType::Embedding, 230, 0, 0},
                  {"formula", ProjLayerType::Formula, 8, 0, 0}};
  validate(c, "test");
  const ParameterLayout layout(c);
  int seen = 0;
  for (const ParamInfo& p : layout.tensors()) {
    switch (p.kind) {
      case ParamKind::CondLinearW:
      case ParamKind::CondMlpW1:
      case ParamKind::CondMlpW2:
        EXPECT_TRUE(decays(p, true)) << p.name;
        EXPECT_TRUE(decays(p, false)) << p.name;
        ++seen;
        break;
      case ParamKind::CondEmbedding:
      case ParamKind::CondCountEmb:
      case ParamKind::CondMaskEmb:
      case ParamKind::TypeEmbeddings:
        EXPECT_TRUE(decays(p, true)) << p.name;
        EXPECT_FALSE(decays(p, false)) << p.name;
        ++seen;
        break;
      case ParamKind::CondMlpB1:
      case ParamKind::CondMlpB2:
        EXPECT_FALSE(decays(p, true)) << p.name;
        ++seen;
        break;
      default:
        break;
    }
  }
  // linear W; embedding table; formula count table, 2 MLP weights, 2 biases; 3 masks; type table
  EXPECT_EQ(seen, 1 + 1 + 5 + 3 + 1);
}

TEST(Schedule, WarmupThenDecay) {
  LrSchedule s;
  s.lr = 1.0;
  s.min_lr = 0.1;
  s.warmup = 10;
  s.total = 110;
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(4), 0.5);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // half way: cos = 0
  EXPECT_NEAR(s.at(35), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.at(500), 0.1, 1e-12);
  s.decay = DecayKind::Linear;
  EXPECT_NEAR(s.at(35), 1.0 - 0.9 * 0.25, 1e-12);
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  s.decay = DecayKind::Constant;
  EXPECT_DOUBLE_EQ(s.at(35), 1.0);
  EXPECT_DOUBLE_EQ(s.at(3), 0.4);
  s.warmup = 0;
  s.decay = DecayKind::Cosine;
  EXPECT_DOUBLE_EQ(s.at(0), 1.0);
  EXPECT_EQ(decay_kind_from_name("linear"), DecayKind::Linear);
  EXPECT_FALSE(decay_kind_from_name("step"));
}

TEST(Clip, GlobalNorm) {
  const ParameterLayout layout(small_config());
  std::vector<float> g(static_cast<size_t>(layout.arena_floats()), 0.0f);
  const auto& t = layout.tensors();
  g[t[0].offset] = 3;
  g[t.back().offset + 1] = 4;
  EXPECT_DOUBLE_EQ(grad_global_norm(layout, g.data()), 5.0);
  EXPECT_DOUBLE_EQ(clip_grad_norm(layout, g.data(), 10.0), 5.0);  // under the limit: unchanged
  EXPECT_EQ(g[t[0].offset], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(layout, g.data(), 1.0), 5.0);
  EXPECT_NEAR(g[t[0].offset], 0.6f, 1e-6);
  EXPECT_NEAR(g[t.back().offset + 1], 0.8f, 1e-6);
  EXPECT_NEAR(grad_global_norm(layout, g.data()), 1.0, 1e-6);
  clip_grad_norm(layout, g.data(), 0.0);  // off
  EXPECT_NEAR(g[t[0].offset], 0.6f, 1e-6);
}

// Gradients in [-2, 2) for every tensor of `layout` (padding 0), from an LCG seeded with `seed`.
static std::vector<float> random_gradients(const ParameterLayout& layout, uint64_t seed) {
  std::vector<float> g(static_cast<size_t>(layout.arena_floats()), 0.0f);
  uint64_t state = seed;
  for (const ParamInfo& p : layout.tensors())
    for (int64_t i = 0; i < p.numel; ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      g[static_cast<size_t>(p.offset + i)] = static_cast<float>(static_cast<int64_t>(state >> 40) - (1 << 23)) / (1 << 22);
    }
  return g;
}

TEST(Clip, LanesMatchTheReferenceForAnyThreadCount) {
  // The lane sums against one double accumulator in order; the same bits for 1 and 2 threads;
  // AdamW with the clip scale folded in gives the bits of clipping in place, then a step.
  const ParameterLayout layout(small_config());
  const int64_t n = layout.arena_floats();
  std::vector<float> g = random_gradients(layout, 7);
  const int threads = thread_count();
  set_threads(1);
  const double one = grad_global_norm(layout, g.data());
  set_threads(2);
  const double two = grad_global_norm(layout, g.data());
  set_threads(threads);
  EXPECT_EQ(one, two);
  const double ref = grad_global_norm_ref(layout, g.data());
  EXPECT_NEAR(one, ref, 1e-12 * ref);
  EXPECT_GT(ref, 1.0);
  EXPECT_EQ(clip_scale(ref, 0.0), 1.0f);
  EXPECT_EQ(clip_scale(ref, 2 * ref), 1.0f);
  EXPECT_EQ(clip_scale(NAN, 1.0), 1.0f);
  const float scale = clip_scale(one, 1.0);
  EXPECT_NEAR(scale, 1.0 / one, 1e-6 / one);

  std::vector<float> p0(static_cast<size_t>(n), 0.5f), p1 = p0, clipped = g;
  AdamW a(layout, AdamWConfig{}), b(layout, AdamWConfig{});
  EXPECT_EQ(clip_grad_norm(layout, clipped.data(), 1.0), one);
  for (int64_t t = 1; t <= 2; ++t) {
    a.step(p0.data(), clipped.data(), 1e-3, t);
    b.step(p1.data(), g.data(), 1e-3, t, scale);
  }
  EXPECT_EQ(std::memcmp(p0.data(), p1.data(), p0.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(a.m(), b.m(), p0.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(a.v(), b.v(), p0.size() * sizeof(float)), 0);
}

TEST(AdamW, StepAndZeroIsStepThenZeroedGradients) {
  // step_and_zero against step, then a memset of the gradients: the same parameters and
  // moments to the bit on 1 and 2 threads, every range's gradients 0, padding untouched.
  // Large enough (about 300k floats, 37 chunks of the norm) for both passes to run parallel.
  ModelConfig c = small_config();
  c.dim = 128;
  c.hidden_dim = 384;
  c.n_layers = 2;
  const ParameterLayout layout(c);
  ASSERT_GT(layout.arena_floats(), 8 * 8192);
  const int64_t n = layout.arena_floats();
  std::vector<float> g = random_gradients(layout, 11);
  std::vector<bool> in_range(static_cast<size_t>(n), false);
  for (const ParamInfo& p : layout.tensors())
    for (int64_t i = 0; i < p.numel; ++i) in_range[static_cast<size_t>(p.offset + i)] = true;
  const int threads = thread_count();
  double norms[2];
  for (const int th : {1, 2}) {
    set_threads(th);
    norms[th - 1] = grad_global_norm(layout, g.data());
    std::vector<float> p0(static_cast<size_t>(n), 0.5f), p1 = p0;
    AdamW a(layout, AdamWConfig{}), b(layout, AdamWConfig{});
    for (int64_t t = 1; t <= 3; ++t) {
      std::vector<float> ga = g, gb = g;
      for (size_t k = 0; k < gb.size(); ++k)
        if (!in_range[k]) gb[k] = 7.0f;  // padding: must stay as it was
      a.step(p0.data(), ga.data(), 1e-3, t, 0.5f);
      b.step_and_zero(p1.data(), gb.data(), 1e-3, t, 0.5f);
      for (size_t k = 0; k < gb.size(); ++k) ASSERT_EQ(gb[k], in_range[k] ? 0.0f : 7.0f) << k;
    }
    EXPECT_EQ(std::memcmp(p0.data(), p1.data(), p0.size() * sizeof(float)), 0) << th;
    EXPECT_EQ(std::memcmp(a.m(), b.m(), p0.size() * sizeof(float)), 0) << th;
    EXPECT_EQ(std::memcmp(a.v(), b.v(), p0.size() * sizeof(float)), 0) << th;
  }
  set_threads(threads);
  EXPECT_EQ(norms[0], norms[1]);
  const double ref = grad_global_norm_ref(layout, g.data());
  EXPECT_NEAR(norms[0], ref, 1e-12 * ref);
}

TEST(Loader, RandomWindowsAreDeterministicAndResumable) {
  std::vector<uint32_t> toks(500);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<uint32_t>(i % 250);
  const TokenData d = make_data({toks});
  DataLoader a(&d, SampleMode::Random, 3, 8, 42, 256, "x"), b(&d, SampleMode::Random, 3, 8, 42, 256, "x");
  DataLoader c(&d, SampleMode::Random, 3, 8, 43, 256, "x");
  Batch ba, bb, bc;
  a.next(ba);
  b.next(bb);
  c.next(bc);
  EXPECT_EQ(ba.inputs, bb.inputs);
  EXPECT_NE(ba.inputs, bc.inputs);
  EXPECT_FALSE(ba.has_pos);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t t = 0; t < 7; ++t) EXPECT_EQ(ba.targets[r * 8 + t], ba.inputs[r * 8 + t + 1]);
  const LoaderState saved = a.state();
  Batch x1, x2;
  a.next(x1);
  DataLoader r(&d, SampleMode::Random, 3, 8, 7, 256, "x");
  r.set_state(saved);
  r.next(x2);
  EXPECT_EQ(x1.inputs, x2.inputs);
  EXPECT_EQ(x1.targets, x2.targets);
}

TEST(Loader, SequentialWindowsCarryPositionsAndPadding) {
  const TokenData d = make_data({{10, 11, 12, 13, 14, 257}, {20, 21, 22}});
  DataLoader l(&d, SampleMode::Sequential, 2, 4, 1, 256, "x");
  EXPECT_EQ(l.windows(), 3u);  // ceil(6/4) + ceil(3/4)
  Batch b;
  l.next(b);
  ASSERT_TRUE(b.has_pos);
  EXPECT_EQ(b.inputs, (std::vector<int32_t>{10, 11, 12, 13, 14, 257, 256, 256}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{11, 12, 13, 14, 257, 256, 256, 256}));
  EXPECT_EQ(b.pos, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 6}));
  l.next(b);  // wraps after the third window
  EXPECT_EQ(b.inputs, (std::vector<int32_t>{20, 21, 22, 256, 10, 11, 12, 13}));
  EXPECT_EQ(b.pos, (std::vector<int64_t>{1000, 1001, 1002, 1003, 0, 1, 2, 3}));
  EXPECT_EQ(l.state().epoch, 1u);
  EXPECT_EQ(l.state().cursor, 1u);
  EXPECT_EQ(l.eval_batches(), 2);
  Batch e;
  ASSERT_TRUE(l.eval_batch(1, e));
  EXPECT_EQ(e.B, 1);
  EXPECT_FALSE(l.eval_batch(2, e));
  EXPECT_THROW(DataLoader(&d, SampleMode::Sequential, 2, 4, 1, -1, "x"), Error);  // no PAD
}

TEST(Loader, RefusesDataShorterThanOneWindow) {
  const TokenData d = make_data({{1, 2, 3, 4}});
  EXPECT_THROW(DataLoader(&d, SampleMode::Random, 1, 4, 1, 256, "x"), Error);
  EXPECT_NO_THROW(DataLoader(&d, SampleMode::Random, 1, 3, 1, 256, "x"));
  const TokenData empty = make_data({});
  try {
    DataLoader(&empty, SampleMode::Random, 1, 3, 1, 256, "training data");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_STREQ(e.what(), "training data: no tokens");
  }
  TokenData other = make_data({{1, 2, 3}});
  EXPECT_THROW(check_vocab(other, 300, "x"), Error);
  other.spec = {};  // headerless: checked token by token
  EXPECT_NO_THROW(check_vocab(other, 4, "x"));
  EXPECT_THROW(check_vocab(other, 3, "x"), Error);
}

TEST(Loader, LoadsConcatenatedStreamsWithRecords) {
  const fs::path dir = scratch("streams");
  fs::create_directories(dir);
  for (const char* name : {"a.tok", "b.tok"}) {
    auto sink = open_output((dir / name).string());
    TokenStreamWriter w(*sink, byte_v1::spec());
    const uint32_t t[3] = {65, 66, 67};
    w.write_record(t, 3, 0);
    w.write_record(t, 2, 3);
    w.finish();
  }
  const TokenData d = load_tokens({(dir / "a.tok").string(), (dir / "b.tok").string()});
  EXPECT_EQ(d.size(), 10);
  ASSERT_EQ(d.records().size(), 4u);
  EXPECT_EQ(d.records()[1].start, 3u);
  EXPECT_EQ(d.records()[2].begin, 5);
  fs::remove_all(dir);
}

TEST(Loader, MapsStreamsInPlaceAndSpillsCompressedOnes) {
  const fs::path dir = scratch("mapped");
  fs::create_directories(dir);
  std::vector<uint32_t> all;
  {
    auto plain = open_output((dir / "a.tok").string());
    auto packed = zstd_sink(open_output((dir / "a.tok.zst").string()), 3);
    TokenStreamWriter w(*plain, byte_v1::spec()), z(*packed, byte_v1::spec());
    for (uint32_t r = 0; r < 50; ++r) {
      std::vector<uint32_t> rec(37 + r * 13);
      for (size_t i = 0; i < rec.size(); ++i) rec[i] = (r * 31 + static_cast<uint32_t>(i)) % 256;
      w.write_record(rec.data(), rec.size(), r * 100);
      z.write_record(rec.data(), rec.size(), r * 100);
      all.insert(all.end(), rec.begin(), rec.end());
    }
    w.finish();
    z.finish();
  }
  TokenReadOptions small_chunks;
  small_chunks.max_chunk_tokens = 10;  // records arrive in many chunks, each a view of the same record
  const TokenData a = load_tokens({(dir / "a.tok").string()}, small_chunks);
  const fs::path spill_dir = dir / "tmp";
  fs::create_directories(spill_dir);
  const char* old_tmp = std::getenv("TMPDIR");
  const std::string saved_tmp = old_tmp ? old_tmp : "";
  ::setenv("TMPDIR", spill_dir.c_str(), 1);
  const TokenData z = load_tokens({(dir / "a.tok.zst").string()});
  ::setenv("TMPDIR", (dir / "nowhere").c_str(), 1);  // the spill goes to $TMPDIR
  EXPECT_THROW(load_tokens({(dir / "a.tok.zst").string()}), Error);
  EXPECT_NO_THROW(load_tokens({(dir / "a.tok").string()}));  // a plain file needs none
  if (old_tmp) ::setenv("TMPDIR", saved_tmp.c_str(), 1);
  else ::unsetenv("TMPDIR");
  EXPECT_TRUE(fs::is_empty(spill_dir));  // the spill file was unlinked at once
  for (const TokenData* d : {&a, &z}) {
    ASSERT_EQ(d->size(), static_cast<int64_t>(all.size()));
    ASSERT_EQ(d->records().size(), 50u);
    EXPECT_EQ(d->records()[7].start, 700u);
    EXPECT_EQ(d->records()[0].width, 2u);  // u16 tokens, viewed as they are in the file
    std::vector<int32_t> got(all.size());
    d->read(0, d->size(), got.data());
    for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(got[i], static_cast<int32_t>(all[i])) << i;
    EXPECT_EQ(d->at(1234), all[1234]);
    EXPECT_EQ(d->max_token(), 255u);
    ASSERT_EQ(d->fingerprints.size(), 1u);
  }
  // Same content, same fingerprint, however it is stored.
  EXPECT_TRUE(a.fingerprints[0].same_content(z.fingerprints[0]));
  // A corrupt compressed stream names the offset in the decompressed bytes.
  {
    auto packed = zstd_sink(open_output((dir / "bad.tok.zst").string()), 3);
    const std::vector<uint8_t> header = tokstream::encode_header(byte_v1::spec());
    packed->write(header.data(), header.size());
    packed->write("XXXXXXXXXXXXXXXX", 16);
    packed->finish();
  }
  try {
    load_tokens({(dir / "bad.tok.zst").string()});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 64 of the decompressed stream"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Loader, FingerprintSeesSizeAndSampledContent) {
  std::vector<uint8_t> big(5 << 20, 7);
  const DataFingerprint f = fingerprint_bytes(big.data(), big.size(), "x");
  EXPECT_EQ(f.bytes, big.size());
  big[10] = 8;  // in the first 64 KiB
  EXPECT_FALSE(fingerprint_bytes(big.data(), big.size(), "x").same_content(f));
  big[10] = 7;
  big[big.size() - 5] = 9;  // in the last 64 KiB
  EXPECT_FALSE(fingerprint_bytes(big.data(), big.size(), "x").same_content(f));
  big[big.size() - 5] = 7;
  EXPECT_TRUE(fingerprint_bytes(big.data(), big.size(), "y").same_content(f));  // the name does not count
  EXPECT_FALSE(fingerprint_bytes(big.data(), big.size() - 1, "x").same_content(f));
  const DataFingerprint back = fingerprint_from_json(fingerprint_to_json(f));
  EXPECT_TRUE(back.same_content(f));
  EXPECT_EQ(back.source, "x");
}

// An integer field holding a float or a number past its type (found by fuzz_train_state: a
// generator word of 7e23 was cast to uint64_t, undefined) is a Data error naming the file.
TEST(Checkpoint, TrainStateIntegersMustBeIntegersInRange) {
  const std::string good = R"({"version": 1, "step": 2, "tokens": 64, "elapsed": 1.5,
    "rng": {"has_spare": false, "s": [1, 2, 3, 4], "spare_bits": 0},
    "data": {"rng": {"has_spare": false, "s": [5, 6, 7, 8], "spare_bits": 0}, "cursor": 0, "epoch": 0},
    "settings": {}})";
  EXPECT_EQ(train_state_from_json(good, "'c'").step, 2);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"[1, 2, 3, 4]", "[1, 2, 3, 69290722728385464e7]"}, {"\"step\": 2", "\"step\": 2.5"},
           {"\"tokens\": 64", "\"tokens\": -64"}, {"\"spare_bits\": 0}, \"cursor", "\"spare_bits\": 4294967296}, \"cursor"},
           {"\"epoch\": 0", "\"epoch\": 1e300"}}) {
    std::string bad = good;
    ASSERT_NE(bad.find(from), std::string::npos) << from;
    bad.replace(bad.find(from), from.size(), to);
    try {
      train_state_from_json(bad, "'c'");
      ADD_FAILURE() << to;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data);
      EXPECT_EQ(std::string(e.what()).rfind("'c': ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find("expected an integer in range"), std::string::npos) << e.what();
    }
  }
}

TEST(Checkpoint, RoundTripsModelMomentsAndState) {
  const fs::path dir = scratch("ckpt");
  fs::create_directories(dir);
  const ModelWeights w = ModelWeights::random(small_config(), 5);
  AdamW opt(w.layout(), {});
  for (int64_t i = 0; i < opt.arena_floats(); ++i) {
    opt.m()[i] = 0.5f * static_cast<float>(i);
    opt.v()[i] = static_cast<float>(i) * 1e-3f;
  }
  TrainState st;
  st.step = 17;
  st.tokens = 12345;
  Rng rng(9);
  rng.normal();  // leaves a spare
  st.rng = rng.state();
  st.data.cursor = 3;
  st.settings = {{"steps", 100}};
  const std::string path = (dir / "c.safetensors").string();
  save_checkpoint(path, w, opt, st, spec_to_json(byte_v1::spec()));
  const LoadedCheckpoint ck = load_checkpoint(path);
  EXPECT_EQ(ck.state.step, 17);
  EXPECT_EQ(ck.state.tokens, 12345u);
  EXPECT_EQ(ck.state.data.cursor, 3u);
  EXPECT_EQ(ck.state.settings["steps"], 100);
  Rng back;
  back.set_state(ck.state.rng);
  EXPECT_EQ(back.normal(), rng.normal());
  EXPECT_EQ(back.next_u64(), rng.next_u64());
  EXPECT_EQ(ck.weights.config(), w.config());
  for (const ParamInfo& p : w.layout().tensors()) {
    EXPECT_EQ(std::memcmp(ck.weights.params().tok_embeddings, w.params().tok_embeddings, 4 * 16), 0);
    EXPECT_EQ(std::memcmp(ck.m.data<float>() + p.offset, opt.m() + p.offset, p.numel * 4), 0) << p.name;
    EXPECT_EQ(std::memcmp(ck.v.data<float>() + p.offset, opt.v() + p.offset, p.numel * 4), 0) << p.name;
  }
  EXPECT_NE(ck.tokenizer_json.find("\"byte-v1\""), std::string::npos);
  // A plain model is not a training checkpoint.
  w.save((dir / "m.safetensors").string());
  EXPECT_THROW(load_checkpoint((dir / "m.safetensors").string()), Error);
  fs::remove_all(dir);
}

namespace {

// A stand-in gradient: loss = mean over params of (p - x)^2 where x depends on the batch.
StepFunction quadratic_step() {
  return [](Transformer& model, const Batch& b, const ParameterTensors& grads, float scale, Rng& rng) {
    const ModelWeights& w = model.weights();
    const float* p = w.params().tok_embeddings;
    const float noise = rng.uniform();
    const float x = static_cast<float>(b.inputs[0] % 7) * 0.01f + noise * 0.001f;
    double loss = 0;
    const int64_t n = w.layout().tensors()[0].numel;
    for (int64_t i = 0; i < n; ++i) {
      const float d = p[i] - x;
      loss += static_cast<double>(d) * d / static_cast<double>(n);
      grads.tok_embeddings[i] += scale * 2 * d / static_cast<float>(n);
    }
    TrainStepResult r;
    r.loss = loss;
    return r;
  };
}

std::vector<std::string> losses(const fs::path& log) {
  std::ifstream in(log);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    out.push_back(j["loss"].dump() + " " + j["lr"].dump() + " " + j["grad_norm"].dump());
  }
  return out;
}

}  // namespace

TEST(Trainer, ResumeEqualsAnUninterruptedRun) {
  const fs::path a = scratch("run_a"), b = scratch("run_b");
  std::vector<uint32_t> toks(400);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<uint32_t>((i * 7) % 256);
  const TokenData d = make_data({toks});
  TrainOptions o;
  o.steps = 8;
  o.batch = 2;
  o.seq = 8;
  o.grad_accum = 2;
  o.schedule.lr = 0.05;
  o.schedule.warmup = 2;
  o.save_every = 3;
  const ModelConfig cfg = small_config();
  {
    Trainer t(ModelWeights::random(cfg, 1), o, a.string(), "", &d, &d);
    t.set_step_function(quadratic_step());
    const TrainSummary s = t.run();
    EXPECT_EQ(s.step, 8);
    EXPECT_FALSE(s.interrupted);
    ASSERT_TRUE(s.val_loss.has_value());
  }
  {
    TrainOptions first = o;
    first.stop_after = 5;
    Trainer t(ModelWeights::random(cfg, 1), first, b.string(), "", &d, &d);
    t.set_step_function(quadratic_step());
    const TrainSummary s = t.run();
    EXPECT_TRUE(s.interrupted);
    EXPECT_EQ(s.step, 5);
    // The run directory is taken now.
    EXPECT_THROW(Trainer(ModelWeights::random(cfg, 1), o, b.string(), "", &d, nullptr), Error);
  }
  {
    TrainOptions again;
    again.steps = -1;
    auto t = Trainer::resume(b.string(), again, &d, &d);
    EXPECT_EQ(t->state().step, 5);
    EXPECT_EQ(t->options().grad_accum, 2);
    t->set_step_function(quadratic_step());
    EXPECT_EQ(t->run().step, 8);
  }
  EXPECT_EQ(losses(a / kLogFile), losses(b / kLogFile));
  const LoadedCheckpoint ca = load_checkpoint((a / kCheckpointFile).string());
  const LoadedCheckpoint cb = load_checkpoint((b / kCheckpointFile).string());
  const auto& t0 = ca.weights.layout().tensors()[0];
  EXPECT_EQ(std::memcmp(ca.weights.params().tok_embeddings, cb.weights.params().tok_embeddings, t0.numel * 4), 0);
  EXPECT_EQ(std::memcmp(ca.m.data<float>(), cb.m.data<float>(), ca.m.nbytes()), 0);
  EXPECT_EQ(ca.state.tokens, cb.state.tokens);
  EXPECT_EQ(ca.state.tokens, 8u * 2 * 2 * 8);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Trainer, NonFiniteLossStopsWithoutSaving) {
  const fs::path a = scratch("nan");
  std::vector<uint32_t> toks(100, 5);
  const TokenData d = make_data({toks});
  TrainOptions o;
  o.steps = 5;
  o.batch = 1;
  o.seq = 4;
  o.save_every = 1;
  Trainer t(ModelWeights::random(small_config(), 1), o, a.string(), "", &d, nullptr);
  int calls = 0;
  t.set_step_function([&](Transformer&, const Batch&, const ParameterTensors&, float, Rng&) {
    TrainStepResult r;
    r.loss = ++calls >= 3 ? std::nan("") : 1.0;
    return r;
  });
  try {
    t.run();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_EQ(std::string(e.what()), "loss is nan at step 3; training stopped");
    // Step 2's weights gave the NaN: the last good checkpoint is step 1's.
    EXPECT_NE(e.hint().find("checkpoint (step 1)"), std::string::npos) << e.hint();
  }
  EXPECT_EQ(load_checkpoint((a / kCheckpointFile).string()).state.step, 1);
  fs::remove_all(a);
}

TEST(Trainer, NeverSavesNonFiniteWeights) {
  const fs::path a = scratch("inf");
  std::vector<uint32_t> toks(100, 5);
  const TokenData d = make_data({toks});
  TrainOptions o;
  o.steps = 5;
  o.batch = 1;
  o.seq = 4;
  o.save_every = 1;
  o.grad_clip = 0;
  o.schedule.lr = 1e38;  // finite, but the first update overflows float
  o.schedule.min_lr = 0;
  Trainer t(ModelWeights::random(small_config(), 1), o, a.string(), "", &d, nullptr);
  t.set_step_function(quadratic_step());
  try {
    t.run();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_NE(std::string(e.what()).find("training stopped"), std::string::npos) << e.what();
    EXPECT_EQ(e.hint(), "nothing was saved; try a lower --lr");
  }
  EXPECT_FALSE(fs::exists(a / kCheckpointFile));
  EXPECT_FALSE(fs::exists(a / kModelFile));
  fs::remove_all(a);
}

TEST(Trainer, OptionsRefuseValuesNoRunCanUse) {
  auto refused = [](const std::function<void(TrainOptions&)>& set, const std::string& what) {
    TrainOptions o;
    set(o);
    try {
      o.validate();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << what;
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted: " << what;
  };
  const double nan = std::nan(""), inf = INFINITY;
  refused([&](TrainOptions& o) { o.schedule.lr = nan; }, "--lr");
  refused([&](TrainOptions& o) { o.schedule.lr = -1; }, "--lr");
  refused([&](TrainOptions& o) { o.schedule.lr = inf; }, "--lr");
  refused([&](TrainOptions& o) { o.schedule.min_lr = nan; }, "--min-lr");
  refused([&](TrainOptions& o) { o.schedule.min_lr = 1; }, "--min-lr 1 is above --lr");
  refused([&](TrainOptions& o) { o.schedule.warmup = -1; }, "--warmup");
  refused([&](TrainOptions& o) { o.grad_clip = -1; }, "--grad-clip");
  refused([&](TrainOptions& o) { o.grad_clip = nan; }, "--grad-clip");
  refused([&](TrainOptions& o) { o.adamw.beta1 = 1; }, "--beta1");
  refused([&](TrainOptions& o) { o.adamw.beta1 = nan; }, "--beta1");
  refused([&](TrainOptions& o) { o.adamw.beta2 = -0.5; }, "--beta2");
  refused([&](TrainOptions& o) { o.adamw.eps = 0; }, "--eps");
  refused([&](TrainOptions& o) { o.adamw.eps = inf; }, "--eps");
  refused([&](TrainOptions& o) { o.adamw.weight_decay = -0.1; }, "--weight-decay");
  refused([&](TrainOptions& o) { o.batch = 0; }, "--batch");
  refused([&](TrainOptions& o) { o.grad_accum = 0; }, "--grad-accum");
  refused([&](TrainOptions& o) { o.log_every = 0; }, "--log-every");
  TrainOptions ok;
  ok.adamw.beta1 = 0;
  ok.grad_clip = 0;
  ok.schedule.lr = 0;
  EXPECT_NO_THROW(ok.validate());
}

TEST(Trainer, ResumeRefusesChangedDataUnlessAllowed) {
  const fs::path a = scratch("changed");
  std::vector<uint32_t> toks(300);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<uint32_t>((i * 5) % 256);
  TokenData d = make_data({toks});
  d.fingerprints.push_back(fingerprint_bytes(reinterpret_cast<const uint8_t*>(toks.data()), toks.size() * 4, "d"));
  TrainOptions o;
  o.steps = 4;
  o.batch = 1;
  o.seq = 8;
  o.stop_after = 2;
  {
    Trainer t(ModelWeights::random(small_config(), 1), o, a.string(), "", &d, nullptr);
    t.set_step_function(quadratic_step());
    t.run();
  }
  toks[150] ^= 1;  // one token changed
  TokenData changed = make_data({toks});
  changed.fingerprints.push_back(
      fingerprint_bytes(reinterpret_cast<const uint8_t*>(toks.data()), toks.size() * 4, "d"));
  TrainOptions again;
  again.steps = -1;
  try {
    Trainer::resume(a.string(), again, &changed, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_EQ(std::string(e.what()), "the training data changed since the run started: 'd' (same size, other content)");
  }
  EXPECT_NO_THROW(Trainer::resume(a.string(), again, &d, nullptr));  // the same data: fine
  again.allow_data_change = true;
  {
    auto t = Trainer::resume(a.string(), again, &changed, nullptr);
    ASSERT_EQ(t->warnings().size(), 1u);
    t->set_step_function(quadratic_step());
    t->run();
  }
  std::ifstream log(a / kLogFile);
  std::string line, notes;
  while (std::getline(log, line))
    if (line.find("\"note\"") != std::string::npos) notes += line;
  EXPECT_NE(notes.find("\"step\":2,\"note\":\"the training data changed"), std::string::npos) << notes;
  // The new data is the run's now.
  again.allow_data_change = false;
  EXPECT_NO_THROW(Trainer::resume(a.string(), again, &changed, nullptr));
  fs::remove_all(a);
}

TEST(Trainer, OneWriterPerRunDirectory) {
  const fs::path a = scratch("lock");
  fs::create_directories(a);
  {
    RunLock first = RunLock::acquire(a.string());
    try {
      RunLock::acquire(a.string());
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Runtime);
      EXPECT_EQ(std::string(e.what()), cat(quote(a.string()), " is in use by another lm-train (pid ", ::getpid(), ")"));
    }
    const TokenData d = make_data({std::vector<uint32_t>(100, 3)});
    TrainOptions o;
    o.steps = 0;
    EXPECT_THROW(Trainer(ModelWeights::random(small_config(), 1), o, a.string(), "", &d, nullptr), Error);
  }
  EXPECT_NO_THROW(RunLock::acquire(a.string()));  // released with its holder
  // A log alone holds a run; stale temporary files of a killed save go at the next start.
  EXPECT_EQ(run_marker(a.string()), "");
  std::ofstream(a / kLogFile) << "{\"step\":1}\n";
  EXPECT_EQ(run_marker(a.string()), kLogFile);
  for (const char* f : {".checkpoint.safetensors.Ab12Cd", ".model.safetensors.xYz789", ".log.jsonl.QQQQQQ", ".other.123456"})
    std::ofstream(a / f) << "x";
  remove_stale_temporaries(a.string());
  EXPECT_FALSE(fs::exists(a / ".checkpoint.safetensors.Ab12Cd"));
  EXPECT_FALSE(fs::exists(a / ".model.safetensors.xYz789"));
  EXPECT_FALSE(fs::exists(a / ".log.jsonl.QQQQQQ"));
  EXPECT_TRUE(fs::exists(a / ".other.123456"));  // not ours
  fs::remove_all(a);
}

TEST(Trainer, FormatsDurations) {
  EXPECT_EQ(format_duration(5), "5s");
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}
