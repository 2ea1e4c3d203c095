// Llama 4 style attention and vision inputs (docs/llama4.md §1-§4, §8) beyond the PyTorch
// fixtures that test_model.cpp and test_backward.cpp run (llama4/l4_nope, l4_chunked, l4_temp,
// l4_qknorm, l4_vision): the chunk spans, chunk locality and decode across chunk boundaries in
// multi-token steps, NoPE's position independence, the temperature scale, the parameter table,
// the image merge (places, errors, decode, gradients) and the --vision file reader.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/params.h"
#include "model/transformer.h"
#include "model/vision.h"
#include "test_util.h"

namespace lm {
namespace {

using fixture::max_rel_error;

namespace fs = std::filesystem;

// "message" or "message | hint".
// The message and hint of the error `f` throws, which must be of `kind`.
std::string error_of(const std::function<void()>& f, ErrorKind kind = ErrorKind::Data) { return test::error_and_hint_of(f, kind); }

ModelConfig small_config() {
  ModelConfig c;
  c.name = "l4-small";
  c.dim = 32;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 50;
  c.multiple_of = 16;
  c.max_seq_len = 128;
  c.rope_theta = 500000;
  return c;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t V, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  return t;
}

std::vector<float> copy_logits(const float* p, int64_t n) { return std::vector<float>(p, p + n); }

// ---- the rules of §1 ----

TEST(Llama4Layers, ScheduleAndParameterTable) {
  ModelConfig c = small_config();
  c.n_layers = 8;
  c.nope_layer_interval = 4;
  c.attn_chunk_size = 16;
  c.qk_norm = true;
  for (int64_t l = 0; l < 8; ++l) {
    EXPECT_EQ(c.is_nope_layer(l), l == 3 || l == 7) << l;
    EXPECT_EQ(c.layer_chunk(l), c.is_nope_layer(l) ? 0 : 16) << l;
  }
  // Weighted QK-norm: [HS] weights on the RoPE layers only.
  const ParameterLayout layout(c);
  for (int64_t l = 0; l < 8; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".attention.";
    EXPECT_EQ(layout.find(p + "q_norm.weight") != nullptr, !c.is_nope_layer(l)) << l;
    EXPECT_EQ(layout.find(p + "k_norm.weight") != nullptr, !c.is_nope_layer(l)) << l;
  }
  c.qk_norm_weight = false;  // Llama 4's: weightless
  const ParameterLayout weightless(c);
  for (const ParamInfo& p : weightless.tensors()) EXPECT_NE(p.kind, ParamKind::QNormW) << p.name;
  // vision_projection [C, Dv] right after the embeddings.
  c.vision_dim = 12;
  const ParameterLayout vision(c);
  ASSERT_NE(vision.find("vision_projection.weight"), nullptr);
  EXPECT_EQ(vision.find("vision_projection.weight")->shape, (Shape{32, 12}));
  EXPECT_EQ(vision.tensors()[1].name, "vision_projection.weight");
}

TEST(Llama4Layers, TheModelRunsEveryAttentionFeatureAndProgramsRunVision) {
  ModelConfig c = small_config();
  c.nope_layer_interval = 3;
  c.attn_chunk_size = 8;
  c.attn_temperature_tuning = true;
  c.vision_dim = 6;
  EXPECT_NO_THROW(require_model_support(c));
  EXPECT_NO_THROW(Transformer(ModelWeights::random(c, 1)));
  EXPECT_NO_THROW(require_supported(c, program_capabilities(), "lm-eval-loss"));  // --vision
  c.vision_dim = 0;
  EXPECT_NO_THROW(require_supported(c, program_capabilities(), "lm-eval-loss"));
}

// ---- chunked attention (§3) ----

TEST(ChunkedAttention, SpansFollowPlacesAndIntersectDocuments) {
  // c = 4: place 5 sees places 4 and 5 only; place 8 sees only itself.
  const int64_t T = 10;
  std::vector<int32_t> tokens(T, 7);
  std::vector<int64_t> lo(T), hi(T);
  attention_spans(lo.data(), hi.data(), tokens.data(), 1, T, 0, true, false, 2, nullptr);
  narrow_spans_to_chunks(lo.data(), 1, T, 0, 4);
  EXPECT_EQ(lo, (std::vector<int64_t>{0, 0, 0, 0, 4, 4, 4, 4, 8, 8}));
  EXPECT_EQ(hi, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  // After P = 6 cached slots the chunks stay aligned to slots: slots 6, 7 | 8 ...
  std::vector<int64_t> lo2(3), hi2(3);
  attention_spans(lo2.data(), hi2.data(), tokens.data(), 1, 3, 6, true, false, 2, nullptr);
  narrow_spans_to_chunks(lo2.data(), 1, 3, 6, 4);
  EXPECT_EQ(lo2, (std::vector<int64_t>{4, 4, 8}));
  // With documents: the later of the chunk start and the document start (EOS = 2 at place 5).
  tokens[5] = 2;
  attention_spans(lo.data(), hi.data(), tokens.data(), 1, T, 0, true, true, 2, nullptr);
  narrow_spans_to_chunks(lo.data(), 1, T, 0, 4);
  EXPECT_EQ(lo, (std::vector<int64_t>{0, 0, 0, 0, 4, 4, 6, 6, 8, 8}));
}

TEST(ChunkedAttention, KernelsMatchReferenceOverChunksWithCache) {
  Rng rng(21);
  const int64_t B = 2, T = 9, P = 5, S = 16, NH = 4, NKV = 2, HS = 8;
  std::vector<float> q(B * T * NH * HS), k(B * S * NKV * HS), v(k.size());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = 2 * rng.normal();
  std::vector<int32_t> tokens = random_tokens(B * T, 9, 3);
  tokens[4] = 2;
  for (int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{100}}) {
    std::vector<int64_t> lo(B * T), hi(B * T), start = {0, 2};
    attention_spans(lo.data(), hi.data(), tokens.data(), B, T, P, true, true, 2, start.data());
    narrow_spans_to_chunks(lo.data(), B, T, P, chunk);
    std::vector<float> out(B * T * NH * HS), ref(out.size()), att(B * NH * T * (P + T)), att_ref(att.size());
    attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S, NH, NKV,
                      HS);
    attention_forward_ref(ref.data(), att_ref.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S,
                          NH, NKV, HS);
    EXPECT_LE(max_rel_error(out.data(), ref.data(), out.size()), 1e-5) << chunk;
    EXPECT_LE(max_rel_error(att.data(), att_ref.data(), att.size()), 1e-5) << chunk;
    std::vector<float> lean(out.size());
    attention_forward(lean.data(), nullptr, q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S, NH, NKV,
                      HS);
    EXPECT_LE(max_rel_error(lean.data(), ref.data(), out.size()), 1e-5) << chunk;
  }
}

// On a model whose every layer is chunked, a chunk's logits are those of the chunk alone: the
// tokens before it do not reach it through any layer. (The defining property, in a long row.)
TEST(ChunkedAttention, ChunksAreIndependentInALongRow) {
  ModelConfig c = small_config();
  c.attn_chunk_size = 16;
  c.qk_norm = true;
  c.qk_norm_weight = false;
  Transformer model(ModelWeights::random(c, 5));
  const int64_t T = 96, V = c.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(T, V, 6);
  const std::vector<float> full = copy_logits(model.forward(tokens.data(), nullptr, 1, T), T * V);
  for (int64_t start : {int64_t{16}, int64_t{48}, int64_t{80}}) {
    std::vector<int64_t> pos(16);
    for (int64_t i = 0; i < 16; ++i) pos[i] = start + i;
    const float* alone = model.forward(tokens.data() + start, pos.data(), 1, 16);
    EXPECT_LE(max_rel_error(alone, full.data() + start * V, 16 * V), 1e-5) << start;
  }
  // Without the chunk the same weights give different logits there (the test can fail).
  c.attn_chunk_size = 0;
  Transformer global(ModelWeights::random(c, 5));
  const float* g = global.forward(tokens.data(), nullptr, 1, T);
  EXPECT_GT(max_rel_error(g + 48 * V, full.data() + 48 * V, 16 * V), 1e-3);
}

// Decode in steps of several tokens that straddle chunk boundaries (the cache is never reset;
// the spans mask the earlier chunks) equals the full forward: l4_chunked (chunk 5, T = 16).
TEST(ChunkedAttention, DecodeInMultiTokenStepsAcrossBoundaries) {
  for (const char* name : {"llama4/l4_chunked", "llama4/l4_temp", "llama4/l4_nope"}) {
    const fs::path dir = fixture::dir() / name;
    const auto cf = SafeTensorsFile::open(dir / "case.safetensors");
    const auto tokens = fixture::read_ints<int32_t>(cf, "tokens");
    const auto pos = fixture::read_ints<int64_t>(cf, "pos");
    const std::vector<float> want = fixture::read_floats(cf, "logits");
    const int64_t B = cf.get("tokens").dim(0), T = cf.get("tokens").dim(1), V = cf.get("logits").dim(2);
    Transformer model(ModelWeights::load(dir / "model.safetensors"));
    for (int64_t step : {int64_t{3}, int64_t{4}, int64_t{7}}) {
      KVCache cache = model.make_cache(B);
      double worst = 0;
      for (int64_t t0 = 0; t0 < T; t0 += step) {
        const int64_t n = std::min(step, T - t0);
        std::vector<int32_t> tok(static_cast<size_t>(B * n));
        std::vector<int64_t> ps(tok.size());
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < n; ++i) {
            tok[b * n + i] = tokens[b * T + t0 + i];
            ps[b * n + i] = pos[b * T + t0 + i];
          }
        const float* got = model.forward(tok.data(), ps.data(), n, cache);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < n; ++i)
            worst = std::max(worst, max_rel_error(got + (b * n + i) * V, want.data() + (b * T + t0 + i) * V, V));
      }
      EXPECT_LE(worst, fixture::kTolerance) << name << " step " << step;
    }
  }
}

// ---- NoPE and temperature tuning (§2, §4) ----

TEST(NoPE, AllNoPELayersIgnorePositionIdsUnlessTemperatureTuned) {
  ModelConfig c = small_config();
  c.nope_layer_interval = 1;  // every layer
  c.qk_norm = true;           // never applied on NoPE layers (and no weights)
  const int64_t T = 12, V = c.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(2 * T, V, 8);
  std::vector<int64_t> pos(2 * T), shifted(2 * T);
  for (int64_t i = 0; i < 2 * T; ++i) pos[i] = i % T, shifted[i] = i % T + 1000;
  Transformer model(ModelWeights::random(c, 9));
  const std::vector<float> a = copy_logits(model.forward(tokens.data(), pos.data(), 2, T), 2 * T * V);
  EXPECT_EQ(copy_logits(model.forward(tokens.data(), shifted.data(), 2, T), 2 * T * V), a);
  c.attn_temperature_tuning = true;
  c.attn_floor_scale = 4;
  c.attn_scale = 0.5;
  Transformer tuned(ModelWeights::random(c, 9));
  const std::vector<float> b = copy_logits(tuned.forward(tokens.data(), pos.data(), 2, T), 2 * T * V);
  EXPECT_LE(max_rel_error(b.data(), a.data(), 3 * V), 1e-6) << "s(p) = 1 for p + 1 < floor_scale";
  EXPECT_GT(max_rel_error(tuned.forward(tokens.data(), shifted.data(), 2, T), b.data(), b.size()), 1e-3);
}

TEST(TemperatureTuning, ScaleStepsWithTheFloor) {
  const std::vector<int64_t> pos = {0, 1, 2, 4, 5, 8, 8191, 8192 * 3 - 1, 1000000};
  std::vector<float> s(pos.size());
  temperature_scales(s.data(), pos.data(), 6, 3.0, 0.4);
  EXPECT_FLOAT_EQ(s[0], 1.0f);
  EXPECT_FLOAT_EQ(s[1], 1.0f);
  EXPECT_FLOAT_EQ(s[2], static_cast<float>(std::log(2.0) * 0.4 + 1));  // floor(3 / 3) = 1
  EXPECT_FLOAT_EQ(s[3], static_cast<float>(std::log(2.0) * 0.4 + 1));  // floor(5 / 3) = 1
  EXPECT_FLOAT_EQ(s[4], static_cast<float>(std::log(3.0) * 0.4 + 1));  // floor(6 / 3) = 2
  EXPECT_FLOAT_EQ(s[5], static_cast<float>(std::log(4.0) * 0.4 + 1));  // floor(9 / 3) = 3
  temperature_scales(s.data(), pos.data(), static_cast<int64_t>(pos.size()), 8192, 0.1);  // Llama 4
  EXPECT_FLOAT_EQ(s[6], static_cast<float>(std::log(2.0) * 0.1 + 1));
  EXPECT_FLOAT_EQ(s[7], static_cast<float>(std::log(4.0) * 0.1 + 1));
  EXPECT_FLOAT_EQ(s[8], static_cast<float>(std::log(std::floor(1000001.0 / 8192) + 1) * 0.1 + 1));
  EXPECT_FLOAT_EQ(s[0], 1.0f);
}

// ---- vision inputs (§8) ----

ModelConfig vision_config(int64_t image_token_id) {
  ModelConfig c = small_config();
  c.n_layers = 2;
  c.vision_dim = 6;
  c.image_token_id = image_token_id;
  return c;
}

std::vector<float> features(int64_t M, int64_t Dv, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> f(static_cast<size_t>(M * Dv));
  for (auto& x : f) x = rng.normal();
  return f;
}

TEST(Vision, PlacesAndTheirErrors) {
  const ModelConfig masked = vision_config(-1), by_token = vision_config(7);
  const std::vector<int32_t> tokens = {7, 1, 7, 3, 4, 7, 5, 6};  // B = 2, T = 4
  const std::vector<float> f = features(3, 6, 1);
  VisionPlaces vp;
  // image_token_id: places 0, 2 in row 0 and 1 (slot 5) in row 1; row-major feature order.
  std::vector<VisionRow> rows = {{f.data(), 2, nullptr}, {f.data() + 12, 1, nullptr}};
  resolve_vision_places(vp, by_token, rows.data(), tokens.data(), 2, 4, 0, nullptr);
  EXPECT_EQ(vp.rows, (std::vector<int64_t>{0, 2, 5}));
  EXPECT_EQ(vp.features, f);
  // Given places.
  const std::vector<int64_t> p0 = {1, 3}, p1 = {0};
  rows = {{f.data(), 2, p0.data()}, {f.data() + 12, 1, p1.data()}};
  resolve_vision_places(vp, masked, rows.data(), tokens.data(), 2, 4, 0, nullptr);
  EXPECT_EQ(vp.rows, (std::vector<int64_t>{1, 3, 4}));
  // Decode (used given): only the places among this call's slots [2, 4).
  std::vector<int64_t> used = {0, 0};
  const std::vector<int32_t> two = {5, 5, 5, 5};
  resolve_vision_places(vp, masked, rows.data(), two.data(), 2, 2, 2, used.data());
  EXPECT_EQ(vp.rows, (std::vector<int64_t>{1}));  // row 0's place 3 = slot 1 of this call
  EXPECT_EQ(std::vector<float>(vp.features.begin(), vp.features.end()), std::vector<float>(f.begin() + 6, f.begin() + 12));
  // Errors.
  std::vector<VisionRow> one = {{f.data(), 3, nullptr}, {f.data(), 0, nullptr}};
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, by_token, one.data(), tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: 2 image places (tokens equal to image_token_id 7) but 3 features");
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, by_token, nullptr, tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: image place 0 (token 7 at place 0) has no feature: 0 given");
  std::vector<VisionRow> with_places = {{f.data(), 2, p0.data()}, {}};
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, by_token, with_places.data(), tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: image places given to a model whose image_token_id (7) marks them");
  std::vector<VisionRow> no_places = {{f.data(), 2, nullptr}, {}};
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, masked, no_places.data(), tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: 2 image features without their places (the model has no image_token_id to mark them)");
  const std::vector<int64_t> backwards = {3, 1};
  std::vector<VisionRow> unordered = {{f.data(), 2, backwards.data()}, {}};
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, masked, unordered.data(), tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: image places must be ascending and >= 0, got 1 at index 1");
  const std::vector<int64_t> far = {1, 9};
  std::vector<VisionRow> outside = {{f.data(), 2, far.data()}, {}};
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, masked, outside.data(), tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: image place 9 lies outside the sequence of 4 tokens");
  ModelConfig text = small_config();
  EXPECT_EQ(error_of([&] { resolve_vision_places(vp, text, rows.data(), tokens.data(), 2, 4, 0, nullptr); }),
            "vision row 0: 2 image features given to a model without vision inputs (vision_dim = 0)");
  // A vision model runs text-only: no places, no features.
  resolve_vision_places(vp, masked, nullptr, tokens.data(), 2, 4, 0, nullptr);
  EXPECT_EQ(vp.count(), 0);
}

// The merged places' logits depend on the features, the token there does not matter, and the
// image_token_id form gives what the same places given explicitly give.
TEST(Vision, MergeReplacesTheEmbeddingAtThePlaces) {
  const int64_t T = 10, Dv = 6;
  const ModelConfig masked = vision_config(-1);
  ModelConfig by_token = masked;
  by_token.image_token_id = 7;
  ModelWeights wt = ModelWeights::random(by_token, 11);  // the same tensors (same table, same seed)
  Transformer a(ModelWeights::random(masked, 11)), b(std::move(wt));
  std::vector<int32_t> tokens = random_tokens(T, 7, 12);  // ids < 7: no image token
  const std::vector<int64_t> places = {2, 3, 8};
  const std::vector<float> f = features(3, Dv, 13);
  const VisionRow row{f.data(), 3, places.data()};
  const int64_t V = masked.vocab_size;
  const std::vector<float> got = copy_logits(a.forward(tokens.data(), nullptr, 1, T, nullptr, &row), T * V);
  const std::vector<float> text = copy_logits(a.forward(tokens.data(), nullptr, 1, T), T * V);
  EXPECT_LE(max_rel_error(got.data(), text.data(), 2 * V), 1e-6) << "places before the first image are unaffected";
  EXPECT_GT(max_rel_error(got.data() + 2 * V, text.data() + 2 * V, V), 1e-3);
  std::vector<int32_t> other = tokens;
  for (int64_t p : places) other[static_cast<size_t>(p)] = 7;
  EXPECT_LE(max_rel_error(a.forward(other.data(), nullptr, 1, T, nullptr, &row), got.data(), got.size()), 1e-6);
  const VisionRow by_token_row{f.data(), 3, nullptr};
  EXPECT_LE(max_rel_error(b.forward(other.data(), nullptr, 1, T, nullptr, &by_token_row), got.data(), got.size()), 1e-6);
}

// Decode takes each feature in the call that holds its place, in either form, across calls.
TEST(Vision, DecodeEqualsTheFullForward) {
  const int64_t B = 2, T = 12, Dv = 6;
  for (int64_t image_token : {int64_t{-1}, int64_t{7}}) {
    ModelConfig c = vision_config(image_token);
    c.attn_chunk_size = 4;
    c.nope_layer_interval = 2;
    c.attn_temperature_tuning = true;
    c.attn_floor_scale = 3;
    Transformer model(ModelWeights::random(c, 21));
    std::vector<int32_t> tokens = random_tokens(B * T, 7, 22);
    std::vector<std::vector<int64_t>> places = {{0, 1, 5, 11}, {4, 6}};
    if (image_token >= 0)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p : places[b]) tokens[b * T + p] = 7;
    const std::vector<float> f = features(6, Dv, 23);
    std::vector<VisionRow> rows = {{f.data(), 4, image_token >= 0 ? nullptr : places[0].data()},
                                   {f.data() + 4 * Dv, 2, image_token >= 0 ? nullptr : places[1].data()}};
    const int64_t V = c.vocab_size;
    const std::vector<float> full = copy_logits(model.forward(tokens.data(), nullptr, B, T, nullptr, rows.data()), B * T * V);
    for (int64_t step : {int64_t{1}, int64_t{5}}) {
      KVCache cache = model.make_cache(B);
      double worst = 0;
      for (int64_t t0 = 0; t0 < T; t0 += step) {
        const int64_t n = std::min(step, T - t0);
        std::vector<int32_t> tok(static_cast<size_t>(B * n));
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < n; ++i) tok[b * n + i] = tokens[b * T + t0 + i];
        const float* got = model.forward(tok.data(), nullptr, n, cache, nullptr, rows.data());
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < n; ++i)
            worst = std::max(worst, max_rel_error(got + (b * n + i) * V, full.data() + (b * T + t0 + i) * V, V));
      }
      EXPECT_LE(worst, 1e-5) << "image_token_id " << image_token << " step " << step;
      if (image_token >= 0) EXPECT_EQ(cache.vision_used()[0], 4);
    }
    // A failed call leaves the cache as it was: one more image token than features.
    if (image_token >= 0) {
      KVCache cache = model.make_cache(B);
      std::vector<int32_t> all7(static_cast<size_t>(B * 5), 7);
      EXPECT_EQ(error_of([&] { model.forward(all7.data(), nullptr, 5, cache, nullptr, rows.data()); }),
                "vision row 0: image place 4 (token 7 at place 4) has no feature: 4 given");
      EXPECT_EQ(cache.length(), 0);
      EXPECT_EQ(cache.vision_used()[0], 0);
    }
  }
}

// Training: the projection gets the gradient of the merged places (finite differences of the
// loss), the token embedding rows get none from them, the features are constants.
TEST(Vision, GradientsReachTheProjectionNotTheOverwrittenEmbeddings) {
  const int64_t B = 2, T = 8, Dv = 6;
  ModelConfig c = vision_config(7);
  ModelWeights w = ModelWeights::random(c, 31);
  w.make_writable();
  Transformer model(std::move(w));
  std::vector<int32_t> tokens = random_tokens(B * T, 7, 32), targets = random_tokens(B * T, c.vocab_size, 33);
  tokens[1] = tokens[2] = tokens[12] = 7;
  const std::vector<float> f = features(3, Dv, 34);
  std::vector<VisionRow> rows = {{f.data(), 2, nullptr}, {f.data() + 2 * Dv, 1, nullptr}};
  const ParameterLayout& layout = model.weights().layout();
  Tensor arena = Tensor::zeros(DType::F32, {layout.arena_floats()});
  const ParameterTensors g = layout.bind(arena.data_mut<float>());
  TrainStepOptions opt;
  opt.vision = rows.data();
  model.train_step(g, tokens.data(), nullptr, targets.data(), B, T, opt);
  const int64_t C = c.dim;
  for (int64_t i = 0; i < C; ++i) EXPECT_EQ(g.tok_embeddings[7 * C + i], 0.0f) << "row of the image token";
  double scale = 0;
  for (int64_t i = 0; i < C * Dv; ++i) scale = std::max(scale, static_cast<double>(std::abs(g.vision_projection[i])));
  EXPECT_GT(scale, 0.0);
  // Finite differences of the loss in a few projection entries.
  float* proj = model.weights().arena() + layout.find("vision_projection.weight")->offset;
  auto loss = [&] {
    model.forward(tokens.data(), nullptr, B, T, nullptr, rows.data());
    return model.loss(targets.data()).loss;
  };
  for (int64_t i = 0; i < C * Dv; i += 37) {
    const float keep = proj[i];
    const float h = 1e-2f;
    proj[i] = keep + h;
    const double up = loss();
    proj[i] = keep - h;
    const double down = loss();
    proj[i] = keep;
    EXPECT_NEAR(g.vision_projection[i], (up - down) / (2 * h), 2e-2 * scale + 1e-5) << i;
  }
}

// ---- the --vision file ----

std::string write_vision_file(const fs::path& path, const std::function<void(SafeTensorsWriter&)>& fill) {
  SafeTensorsWriter w;
  fill(w);
  w.write_file(path.string());
  return path.string();
}

Tensor f32(const std::vector<float>& v, Shape shape) {
  Tensor t = Tensor::zeros(DType::F32, std::move(shape));
  std::memcpy(t.data_mut<float>(), v.data(), v.size() * sizeof(float));
  return t;
}

Tensor i64(const std::vector<int64_t>& v) {
  Tensor t = Tensor::zeros(DType::I64, {static_cast<int64_t>(v.size())});
  std::memcpy(t.raw_mut(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

TEST(VisionFile, ReadsRecordsAndChecksEveryKey) {
  const fs::path dir = fs::temp_directory_path() / ("lmkit_vision_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const ModelConfig masked = vision_config(-1), by_token = vision_config(7);
  const std::vector<float> f = features(5, 6, 41);
  const std::string good = write_vision_file(dir / "good.safetensors", [&](SafeTensorsWriter& w) {
    w.add("record.0", f32({f.begin(), f.begin() + 12}, {2, 6}));
    w.add("record.0.places", i64({3, 9}));
    w.add("record.2", f32({f.begin() + 12, f.end()}, {3, 6}).cast(DType::BF16));
    w.add("record.2.places", i64({0, 1, 2}));
  });
  const VisionFile vf = VisionFile::open(good, masked);
  EXPECT_EQ(vf.records(), 3);
  const VisionRow r0 = vf.row(0), r1 = vf.row(1), r2 = vf.row(2), r9 = vf.row(9);
  ASSERT_EQ(r0.count, 2);
  EXPECT_EQ(std::vector<float>(r0.features, r0.features + 12), std::vector<float>(f.begin(), f.begin() + 12));
  EXPECT_EQ(r0.places[1], 9);
  EXPECT_EQ(r1.count, 0);
  EXPECT_EQ(r9.count, 0);
  ASSERT_EQ(r2.count, 3);
  EXPECT_NEAR(r2.features[0], f[12], 1e-2 * std::abs(f[12]));  // bf16, converted
  EXPECT_EQ(r2.places[2], 2);

  auto refused = [&](const char* name, const ModelConfig& cfg, const std::function<void(SafeTensorsWriter&)>& fill) {
    const std::string path = write_vision_file(dir / name, fill);
    return error_of([&] { VisionFile::open(path, cfg); });
  };
  auto where = [&](const char* name) { return "'" + (dir / name).string() + "': "; };
  EXPECT_EQ(refused("a.safetensors", masked, [&](SafeTensorsWriter& w) { w.add("image.0", f32(f, {5, 6})); }),
            where("a.safetensors") + "unexpected tensor 'image.0' | a vision file holds record.{i} [N, vision_dim] "
                                     "and optionally record.{i}.places [N] I64");
  EXPECT_EQ(refused("b.safetensors", masked, [&](SafeTensorsWriter& w) { w.add("record.01", f32(f, {5, 6})); }),
            where("b.safetensors") + "unexpected tensor 'record.01' | a vision file holds record.{i} [N, vision_dim] "
                                     "and optionally record.{i}.places [N] I64");
  EXPECT_EQ(refused("c.safetensors", masked, [&](SafeTensorsWriter& w) { w.add("record.0", f32(f, {6, 5})); }),
            where("c.safetensors") + "tensor 'record.0': got shape [6, 5], expected [N, 6] (vision_dim 6)");
  EXPECT_EQ(refused("d.safetensors", masked, [&](SafeTensorsWriter& w) { w.add("record.0", f32(f, {5, 6})); }),
            where("d.safetensors") + "'record.0' has no places | the model has no image_token_id: give "
                                     "record.0.places [N] I64");
  EXPECT_EQ(refused("e.safetensors", by_token, [&](SafeTensorsWriter& w) {
              w.add("record.0", f32(f, {5, 6}));
              w.add("record.0.places", i64({0, 1, 2, 3, 4}));
            }),
            where("e.safetensors") + "tensor 'record.0.places': the model's image_token_id (7) marks the image "
                                     "places; places are for models without it");
  EXPECT_EQ(refused("f.safetensors", masked, [&](SafeTensorsWriter& w) {
              w.add("record.0", f32(f, {5, 6}));
              w.add("record.0.places", i64({0, 1, 1, 3, 4}));
            }),
            where("f.safetensors") + "tensor 'record.0.places': places must be ascending and >= 0, got 1 at index 2");
  EXPECT_EQ(refused("g.safetensors", masked, [&](SafeTensorsWriter& w) {
              w.add("record.0", f32(f, {5, 6}));
              w.add("record.0.places", i64({0, 1, 2}));
            }),
            where("g.safetensors") + "tensor 'record.0.places': got I64 [3], expected I64 [5]");
  EXPECT_EQ(refused("h.safetensors", masked, [&](SafeTensorsWriter& w) { w.add("record.3.places", i64({0})); }),
            where("h.safetensors") + "tensor 'record.3.places' has no features 'record.3'");
  EXPECT_EQ(refused("i.safetensors", small_config(), [&](SafeTensorsWriter& w) { w.add("record.0", f32(f, {5, 6})); }),
            where("i.safetensors") + "image features for a model without vision inputs (vision_dim = 0)");
  // image_token_id models need no places.
  const std::string tok = write_vision_file(dir / "tok.safetensors", [&](SafeTensorsWriter& w) {
    w.add("record.1", f32(f, {5, 6}));
  });
  const VisionFile vt = VisionFile::open(tok, by_token);
  EXPECT_EQ(vt.records(), 2);
  EXPECT_EQ(vt.row(1).count, 5);
  EXPECT_EQ(vt.row(1).places, nullptr);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lm
