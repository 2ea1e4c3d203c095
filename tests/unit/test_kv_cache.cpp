// KV caches of bf16 and f16 elements: what they store (each value rounded to nearest even,
// as f32_to_bf16 / f32_to_f16), what they refuse (a finite value that would round to an
// infinity), and that decode attention over them is attention over an f32 cache holding the
// widened values, bit for bit, on every head size path. tests/unit/test_model.cpp holds
// decode over them to the full forward and to PyTorch on every fixture, and
// test_batch_generate.cpp batched decode to one sequence at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/attention.h"
#include "model/kv_cache.h"
#include "model/params.h"
#include "model/transformer.h"
#include "test_util.h"

namespace lm {
namespace {

float rounded(DType t, float x) {
  return t == DType::BF16 ? bf16_to_f32(f32_to_bf16(x)) : t == DType::F16 ? f16_to_f32(f32_to_f16(x)) : x;
}

TEST(KVCache, StoresEachValueRoundedToNearestEven) {
  const ModelConfig cfg = test::small_gqa_llama("kv", 64, 32);  // 2 layers, 2 kv heads of 16
  const int64_t KD = cfg.kv_heads() * cfg.head_size();
  Rng rng(1);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    KVCache cache(cfg, 2, 10, t);
    EXPECT_EQ(cache.dtype(), t);
    EXPECT_EQ(cache.bytes(), static_cast<size_t>(cfg.n_layers * 2 * 2 * 10 * KD) * dtype_size(t));
    // Three positions of row 1 from slot 4 (whole vectors and a tail: 3 x 32 values), ties
    // and denormals among them.
    std::vector<float> k(static_cast<size_t>(3 * KD)), v(k.size());
    for (auto* x : {&k, &v})
      for (auto& e : *x) e = 3 * rng.normal();
    k[0] = 1.00390625f;     // a bf16 tie (1 + 2^-8): to even, 1
    k[1] = 1.01171875f;     // 1 + 3 x 2^-8: up, to 1 + 2^-6
    k[2] = 1.00048828125f;  // an f16 tie (1 + 2^-11): to even, 1
    k[3] = 1e-6f;           // an f16 denormal
    v[5] = -65504.0f;       // f16's largest
    cache.store(1, 1, 4, k.data(), v.data(), 3);
    // One slot's features [16, 32) alone, as the fused decode step stores its kv head.
    std::vector<float> kf(16), vf(16);
    for (int64_t i = 0; i < 16; ++i) kf[i] = rng.normal(), vf[i] = rng.normal();
    EXPECT_TRUE(cache.store_features(1, 1, 7, 16, 16, kf.data(), vf.data()));
    std::vector<float> wk(static_cast<size_t>(8 * KD)), wv(wk.size());
    cache.widen(1, 1, 8, wk.data(), wv.data());
    for (int64_t i = 0; i < 3 * KD; ++i) {
      EXPECT_EQ(wk[4 * KD + i], rounded(t, k[i])) << dtype_name(t) << " key " << i;
      EXPECT_EQ(wv[4 * KD + i], rounded(t, v[i])) << dtype_name(t) << " value " << i;
    }
    for (int64_t i = 0; i < 16; ++i) {
      EXPECT_EQ(wk[7 * KD + 16 + i], rounded(t, kf[i])) << dtype_name(t);
      EXPECT_EQ(wv[7 * KD + 16 + i], rounded(t, vf[i])) << dtype_name(t);
      EXPECT_EQ(wk[7 * KD + i], 0.0f) << "features outside the stored ones stay";
    }
    for (int64_t i = 0; i < 4 * KD; ++i) EXPECT_EQ(wk[i], 0.0f) << "slots before 4 untouched";
    // The other row and layer untouched.
    cache.widen(0, 1, 8, wk.data(), wv.data());
    cache.widen(1, 0, 8, wv.data(), wk.data());
    for (float x : wk) EXPECT_EQ(x, 0.0f);
    for (float x : wv) EXPECT_EQ(x, 0.0f);
  }
  KVCache bf(cfg, 1, 4, DType::BF16);
  std::vector<float> k(static_cast<size_t>(KD), 1.00390625f), v(k.size(), 1.01171875f);
  bf.store(0, 0, 0, k.data(), v.data(), 1);
  const CachedKV kv = bf.layer(0);
  EXPECT_EQ(static_cast<const uint16_t*>(kv.k)[0], 0x3f80u);
  EXPECT_EQ(static_cast<const uint16_t*>(kv.v)[0], 0x3f82u);
  EXPECT_THROW(KVCache(cfg, 1, 4, DType::I8), Error);
}

TEST(KVCache, RefusesAValueItsTypeCannotHold) {
  const ModelConfig cfg = test::small_gqa_llama("kv", 64, 32);
  const int64_t KD = cfg.kv_heads() * cfg.head_size();
  std::vector<float> k(static_cast<size_t>(KD), 0.5f), v(k.size(), 0.5f);
  KVCache f16(cfg, 1, 4, DType::F16);
  v[KD - 1] = 65519.0f;  // rounds to 65504
  EXPECT_NO_THROW(f16.store(1, 0, 0, k.data(), v.data(), 1));
  v[KD - 1] = 65520.0f;  // rounds to an infinity
  try {
    f16.store(1, 0, 1, k.data(), v.data(), 1);
    FAIL() << "65520 in an f16 cache";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("layer 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("F16"), std::string::npos) << e.what();
  }
  k[3] = -1e5f;
  v[KD - 1] = 0.5f;
  EXPECT_FALSE(f16.store_features(0, 0, 2, 0, 16, k.data(), v.data()));
  EXPECT_TRUE(f16.store_features(0, 0, 2, 16, 16, k.data() + 16, v.data() + 16)) << "the features past k[3]";
  // bf16 holds f32's range but for the last half ulp; an infinity or NaN given is not an overflow.
  KVCache bf16(cfg, 1, 4, DType::BF16);
  v[KD - 1] = 3.0e38f;
  EXPECT_NO_THROW(bf16.store(0, 0, 0, k.data(), v.data(), 1));
  v[KD - 1] = 3.4e38f;
  EXPECT_THROW(bf16.store(0, 0, 1, k.data(), v.data(), 1), Error);
  k[3] = INFINITY;
  v[KD - 1] = NAN;
  EXPECT_NO_THROW(f16.store(0, 0, 3, k.data(), v.data(), 1));
}

// Decode attention over a bf16 / f16 cache = over an f32 cache of the widened values, bit for
// bit: the vector paths (HS 32, 48, 64, 128) and the plain loops (HS 8, 24), GQA, windows.
TEST(KVCache, AttentionOverHalvesIsAttentionOverTheirWidenedValues) {
  Rng rng(17);
  struct Shape {
    int64_t B, S, NH, NKV, HS;
  };
  for (const Shape& sh : {Shape{2, 12, 6, 2, 8}, Shape{1, 40, 4, 2, 24}, Shape{3, 90, 8, 8, 32},
                          Shape{2, 70, 6, 3, 48}, Shape{2, 200, 12, 12, 64}, Shape{1, 60, 8, 2, 128}}) {
    const int64_t B = sh.B, S = sh.S, NH = sh.NH, NKV = sh.NKV, HS = sh.HS, KD = NKV * HS;
    std::vector<float> q(static_cast<size_t>(B * NH * HS)), k(static_cast<size_t>(B * S * KD)), v(k.size());
    for (auto* x : {&q, &k, &v})
      for (auto& e : *x) e = 2 * rng.normal();
    for (DType t : {DType::BF16, DType::F16}) {
      std::vector<uint16_t> hk(k.size()), hv(v.size());
      std::vector<float> wk(k.size()), wv(v.size());
      for (size_t i = 0; i < k.size(); ++i) {
        hk[i] = t == DType::BF16 ? f32_to_bf16(k[i]) : f32_to_f16(k[i]);
        hv[i] = t == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
        wk[i] = rounded(t, k[i]);
        wv[i] = rounded(t, v[i]);
      }
      for (int64_t P : {int64_t{0}, int64_t{5}, S - 1}) {
        std::vector<int64_t> lo(static_cast<size_t>(B)), hi(static_cast<size_t>(B), P);
        for (int64_t b = 0; b < B; ++b) lo[b] = b * P / (B + 1);
        std::vector<float> half(q.size()), wide(q.size());
        attention_decode(half.data(), q.data(), CachedKV{hk.data(), hv.data(), t}, lo.data(), hi.data(), B, S, NH, NKV, HS);
        attention_decode(wide.data(), q.data(), CachedKV{wk.data(), wv.data(), DType::F32}, lo.data(), hi.data(), B, S,
                         NH, NKV, HS);
        ASSERT_EQ(half, wide) << dtype_name(t) << " HS " << HS << " P " << P;
      }
    }
  }
}

// The programs' --kv-dtype auto: f32 for f32 weights, bf16 for bf16, f16 for f16 and the quantized types.
TEST(KVCache, WeightsKvDtypeFollowsTheKeyProjection) {
  const ModelWeights w = ModelWeights::random(test::small_gqa_llama("kv", 64, 32), 2);
  EXPECT_EQ(Transformer(w.cast(WeightType::F32)).weights_kv_dtype(), DType::F32);
  EXPECT_EQ(Transformer(w.cast(WeightType::BF16)).weights_kv_dtype(), DType::BF16);
  EXPECT_EQ(Transformer(w.cast(WeightType::F16)).weights_kv_dtype(), DType::F16);
  EXPECT_EQ(Transformer(w.cast(WeightType::Q8_0)).weights_kv_dtype(), DType::F16);
  EXPECT_EQ(Transformer(w.cast(WeightType::Q4_0)).weights_kv_dtype(), DType::F16);
  Transformer m(w.cast(WeightType::F32));
  m.set_kv_dtype(DType::F16);
  EXPECT_EQ(m.make_cache(1).dtype(), DType::F16);
  EXPECT_THROW(m.set_kv_dtype(DType::I32), Error);
}

// A model whose keys pass 65504 fails in an f16 cache (prefill, one-token step, batched step)
// with a Data error, and leaves the cache's length as it was.
TEST(KVCache, ModelStopsWhenAKeyOverflowsTheCache) {
  ModelWeights w = ModelWeights::random(test::small_gqa_llama("kv", 64, 32), 2);
  w.make_writable();
  const ModelConfig& cfg = w.config();
  float* wk = w.params().layers[1].wk;
  for (int64_t i = 0; i < cfg.kv_heads() * cfg.head_size() * cfg.dim; ++i) wk[i] *= 1e7f;
  Transformer model(std::move(w));
  model.set_kv_dtype(DType::F16);
  const std::vector<int32_t> t{7, 8, 9};
  KVCache cache = model.make_cache(1);
  EXPECT_THROW(model.forward_last(t.data(), nullptr, 3, cache), Error);
  EXPECT_EQ(cache.length(), 0);
  EXPECT_THROW(model.forward_step(t.data(), nullptr, cache), Error);
  EXPECT_EQ(cache.length(), 0);
  KVCache other = model.make_cache(1);
  KVCache* both[] = {&cache, &other};
  EXPECT_THROW(model.forward_steps(t.data(), both, 2), Error);
  EXPECT_EQ(other.length(), 0);
  model.set_kv_dtype(DType::BF16);
  KVCache bf = model.make_cache(1);
  EXPECT_NO_THROW(model.forward_last(t.data(), nullptr, 3, bf));
  EXPECT_EQ(bf.length(), 3);
}

}  // namespace
}  // namespace lm
