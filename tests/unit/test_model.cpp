// The model against the PyTorch fixtures (tests/fixtures, made by make_fixtures.py), the
// KV-cache decode against the full forward, the checkpoint loader's errors, and the fast
// kernels against their plain references.
//
// Error measure: "max relative error" is max_i |got_i - want_i| / max_i |want_i| over the
// whole logits tensor (relative to the largest expected magnitude, so logits near zero do
// not blow it up); for the loss, |got - want| / |want|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/rng.h"
#include "core/rows.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "core/threads.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/ffn.h"
#include "model/matmul.h"
#include "model/params.h"
#include "model/transformer.h"

namespace lm {
namespace {

using fixture::kTolerance;
using fixture::max_rel_error;
using fixture::read_floats;
using fixture::read_ints;

namespace fs = std::filesystem;

std::vector<std::string> fixture_names() {
  return fixture::model_fixtures("model.safetensors");
}

struct Case {
  int64_t B = 0, T = 0, V = 0;
  std::vector<int32_t> tokens, targets;
  std::vector<int64_t> pos;
  std::vector<float> logits;
  float loss = 0;
  fixture::VisionCase vision;  // image inputs (vision_dim > 0)
  // [B] image feature rows for a forward, or null.
  const VisionRow* vision_rows() const {
    rows_ = vision.rows();
    return rows_.empty() ? nullptr : rows_.data();
  }

 private:
  mutable std::vector<VisionRow> rows_;
};

Case load_case(const std::string& name) {
  const auto f = SafeTensorsFile::open(fixture::dir() / name / "case.safetensors");
  Case c;
  const Tensor logits = f.get("logits").to_f32();
  c.B = logits.dim(0);
  c.T = logits.dim(1);
  c.V = logits.dim(2);
  c.logits.assign(logits.data<float>(), logits.data<float>() + logits.numel());
  c.tokens = read_ints<int32_t>(f, "tokens");
  c.targets = read_ints<int32_t>(f, "targets");
  c.pos = read_ints<int64_t>(f, "pos");
  c.loss = f.get("loss").to_f32().data<float>()[0];
  const auto model = SafeTensorsFile::open(fixture::dir() / name / "model.safetensors");
  const ModelConfig cfg = config_from_json(model.metadata_value("lmkit.config").value(), name);
  c.vision = fixture::load_vision(f, cfg, c.tokens, c.B, c.T);
  return c;
}

ModelWeights load_fixture_model(const std::string& name) {
  return ModelWeights::load(fixture::dir() / name / "model.safetensors");
}

// ---- every fixture ----

class Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Fixture, ForwardMatchesPyTorch) {
  const Case c = load_case(GetParam());
  Transformer model(load_fixture_model(GetParam()));
  EXPECT_FALSE(model.weights().writable()) << "aligned f32 weights should be used straight from the mapping";
  const float* logits = model.forward(c.tokens.data(), c.pos.data(), c.B, c.T, nullptr, c.vision_rows());
  const double err = max_rel_error(logits, c.logits.data(), c.logits.size());
  const LossResult loss = model.loss(c.targets.data());
  const double loss_err = std::abs(loss.loss - c.loss) / std::abs(c.loss);
  RecordProperty("logits_max_rel_error", std::to_string(err));
  RecordProperty("loss_rel_error", std::to_string(loss_err));
  std::printf("[ %-22s ] logits max rel err %.2e, loss %.6f (want %.6f, rel err %.2e, %lld targets)\n",
              GetParam().c_str(), err, loss.loss, c.loss, loss_err, static_cast<long long>(loss.count));
  EXPECT_LE(err, kTolerance);
  EXPECT_LE(loss_err, kTolerance);
}

TEST_P(Fixture, KeptActivationsAndWritableCopyGiveTheSameLogits) {
  const Case c = load_case(GetParam());
  Transformer lean(load_fixture_model(GetParam()));
  const float* l0 = lean.forward(c.tokens.data(), c.pos.data(), c.B, c.T, nullptr, c.vision_rows());
  std::vector<float> first(l0, l0 + c.logits.size());

  ModelWeights w = load_fixture_model(GetParam());
  w.make_writable();
  EXPECT_TRUE(w.writable());
  Transformer kept(std::move(w));
  kept.set_keep_activations(true);
  const float* l1 = kept.forward(c.tokens.data(), c.pos.data(), c.B, c.T, nullptr, c.vision_rows());
  EXPECT_EQ(max_rel_error(l1, first.data(), first.size()), 0.0);
  ASSERT_EQ(kept.activations().layers.size(), static_cast<size_t>(kept.config().n_layers));
  ASSERT_NE(kept.activations().layers[0].att, nullptr);
  if (kept.config().n_layers > 1)
    EXPECT_NE(kept.activations().layers[0].att, kept.activations().layers[1].att);
}

TEST_P(Fixture, KvCacheDecodeMatchesFullForward) {
  const Case c = load_case(GetParam());
  Transformer model(load_fixture_model(GetParam()));
  if (!model.config().causal) {
    KVCache cache = model.make_cache(c.B);
    try {
      model.forward_step(c.tokens.data(), c.pos.data(), cache);
      FAIL() << "decode of a non-causal model should be refused";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    }
    return;
  }
  const int64_t B = c.B, T = c.T, V = c.V;
  const VisionRow* vision = c.vision_rows();
  const float* full_ptr = model.forward(c.tokens.data(), c.pos.data(), B, T, nullptr, vision);
  const std::vector<float> full(full_ptr, full_ptr + B * T * V);

  // Token by token, then a prefill of part of the sequence followed by steps (over the cache:
  // a bf16 / f16 one widened for the prompt's GEMMs), with each cache type: f32 gives the full
  // forward's numbers; bf16 and f16 keep the keys and values rounded, so their logits move by
  // about their rounding (and must move: a cache that ignored its type would not).
  for (DType kv : {DType::F32, DType::BF16, DType::F16}) {
  model.set_kv_dtype(kv);
  const double tolerance = kv == DType::F32 ? 1e-5 : kv == DType::BF16 ? 3e-2 : 5e-3;
  for (int64_t prefill : {int64_t{0}, T / 2 + 1}) {
    KVCache cache = model.make_cache(B);
    ASSERT_EQ(cache.dtype(), kv);
    double worst_vs_full = 0, worst_vs_torch = 0;
    auto check = [&](const float* got, int64_t t0, int64_t n) {  // got [B, n, V] for positions t0..t0+n-1
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = t0; t < t0 + n; ++t) {
          const float* g = got + (b * n + (t - t0)) * V;
          worst_vs_full = std::max(worst_vs_full, max_rel_error(g, full.data() + (b * T + t) * V, V));
          worst_vs_torch = std::max(worst_vs_torch, max_rel_error(g, c.logits.data() + (b * T + t) * V, V));
        }
    };
    int64_t t = 0;
    if (prefill > 0) {
      std::vector<int32_t> tok(static_cast<size_t>(B * prefill));
      std::vector<int64_t> pos(tok.size());
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < prefill; ++i) {
          tok[b * prefill + i] = c.tokens[b * T + i];
          pos[b * prefill + i] = c.pos[b * T + i];
        }
      check(model.forward(tok.data(), pos.data(), prefill, cache, nullptr, vision), 0, prefill);
      t = prefill;
    }
    for (; t < T; ++t) {
      std::vector<int32_t> tok(static_cast<size_t>(B));
      std::vector<int64_t> pos(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) {
        tok[b] = c.tokens[b * T + t];
        pos[b] = c.pos[b * T + t];
      }
      check(model.forward(tok.data(), pos.data(), 1, cache, nullptr, vision), t, 1);
    }
    EXPECT_EQ(cache.length(), T);
    std::printf("[ %-22s ] decode (%s cache, prefill %lld): max rel err %.2e vs full forward, %.2e vs PyTorch\n",
                GetParam().c_str(), std::string(dtype_name(kv)).c_str(), static_cast<long long>(prefill), worst_vs_full,
                worst_vs_torch);
    EXPECT_LE(worst_vs_full, tolerance) << dtype_name(kv);
    EXPECT_LE(worst_vs_torch, kTolerance + tolerance) << dtype_name(kv);
    if (kv != DType::F32) EXPECT_GT(worst_vs_full, 0) << dtype_name(kv) << ": the cache's rounding left no trace";
  }
  }

  // One row alone (B = 1) takes the fused one-token attention step (a thread per kv head):
  // bit for bit what the batched path gives that row. Two threads, so that every causal
  // fixture (2 or more kv heads) takes it whatever the machine's core count.
  const int saved_threads = thread_count();
  set_threads(2);
  for (DType kv : {DType::F32, DType::BF16}) {
  model.set_kv_dtype(kv);
  KVCache batched = model.make_cache(B), single = model.make_cache(1);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> tok(static_cast<size_t>(B));
    std::vector<int64_t> pos(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      tok[b] = c.tokens[b * T + t];
      pos[b] = c.pos[b * T + t];
    }
    const float* many = model.forward(tok.data(), pos.data(), 1, batched, nullptr, vision);
    const std::vector<float> row0(many, many + V);
    const float* one = model.forward(tok.data(), pos.data(), 1, single, nullptr, vision);
    EXPECT_EQ(std::vector<float>(one, one + V), row0) << dtype_name(kv) << " position " << t;
  }
  }
  set_threads(saved_threads);
}

// Prefill computes the classifier on each row's last position only (forward_last): those
// logits are the full forward's last rows, without and with a KV cache, and the arena sized
// for the last rows gives way to a full forward again. Equal up to rounding, as decode is
// (1e-5): the classifier on B rows takes the few-row matmul kernel, on B*T rows the GEMM, and
// the two sum in different orders.
TEST_P(Fixture, LastPositionLogitsEqualTheFullForwardsLastRow) {
  const Case c = load_case(GetParam());
  Transformer model(load_fixture_model(GetParam()));
  const int64_t B = c.B, T = c.T, V = c.V;
  const VisionRow* vision = c.vision_rows();
  const float* full_ptr = model.forward(c.tokens.data(), c.pos.data(), B, T, nullptr, vision);
  const std::vector<float> full(full_ptr, full_ptr + B * T * V);
  auto expect_last_rows = [&](const float* last, const char* what) {
    for (int64_t b = 0; b < B; ++b) {
      const float* want = full.data() + (b * T + T - 1) * V;
      EXPECT_LE(max_rel_error(last + b * V, want, V), 1e-5) << what << ", row " << b;
      EXPECT_LE(max_rel_error(last + b * V, c.logits.data() + (b * T + T - 1) * V, V), kTolerance) << what;
    }
  };
  Transformer fresh(load_fixture_model(GetParam()));  // its arena sized for the last rows only
  expect_last_rows(fresh.forward_last(c.tokens.data(), c.pos.data(), B, T, nullptr, vision), "batched forward");
  try {
    fresh.loss(c.targets.data());
    FAIL() << "loss() after forward_last() should be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
  }
  const float* again = fresh.forward(c.tokens.data(), c.pos.data(), B, T, nullptr, vision);
  EXPECT_EQ(std::vector<float>(again, again + B * T * V), full) << "a full forward after forward_last";
  expect_last_rows(model.forward_last(c.tokens.data(), c.pos.data(), B, T, nullptr, vision), "in a full arena");
  if (!model.config().causal) return;
  KVCache cache = model.make_cache(B);
  expect_last_rows(model.forward_last(c.tokens.data(), c.pos.data(), T, cache, nullptr, vision), "prefill");
  EXPECT_EQ(cache.length(), T);
}

INSTANTIATE_TEST_SUITE_P(PyTorch, Fixture, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return fixture::test_name(info.param); });

TEST(ModelFixtures, AtLeastEightArePresent) { EXPECT_GE(fixture_names().size(), 8u); }

// ---- a small model built in the test ----

ModelConfig tiny_config() {
  ModelConfig c;
  c.name = "tiny";
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.multiple_of = 8;
  c.max_seq_len = 8;
  c.attn_bias = true;
  c.qk_norm = true;
  return c;
}

std::vector<uint8_t> to_bytes(const SafeTensorsWriter& w) {
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  w.write(*sink);
  sink->finish();
  return bytes;
}

SafeTensorsFile parse_bytes(std::vector<uint8_t> bytes) {
  return SafeTensorsFile::parse(MappedFile::from_bytes(std::move(bytes), "ckpt.safetensors"));
}

// The Data error message of loading `w`'s tensors with edits applied, "" when accepted.
std::string load_error(const ModelConfig& cfg, const SafeTensorsWriter& w) {
  try {
    ModelWeights::from_checkpoint(parse_bytes(to_bytes(w)), cfg);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    return e.what();
  }
}

TEST(Checkpoint, RandomInitIsDeterministicAndSaneAndRoundTrips) {
  const ModelConfig cfg = tiny_config();
  const ModelWeights a = ModelWeights::random(cfg, 7);
  const ModelWeights b = ModelWeights::random(cfg, 7);
  const ModelWeights c = ModelWeights::random(cfg, 8);
  ASSERT_TRUE(a.writable());
  const auto& layout = a.layout();
  double sum2 = 0;
  int64_t n = 0;
  for (size_t i = 0; i < layout.tensors().size(); ++i) {
    const ParamInfo& p = layout.tensors()[i];
    const Tensor ta = a.tensor(i), tb = b.tensor(i), tc = c.tensor(i);
    EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()), 0) << p.name;
    const float* x = ta.data<float>();
    if (p.kind == ParamKind::AttnNormW || p.kind == ParamKind::QNormW || p.kind == ParamKind::NormW) {
      EXPECT_EQ(x[0], 1.0f) << p.name;
    } else if (p.kind == ParamKind::Bq || p.kind == ParamKind::Bo) {
      EXPECT_EQ(x[0], 0.0f) << p.name;
    } else if (p.kind == ParamKind::Wq || p.kind == ParamKind::W1 || p.kind == ParamKind::TokEmbeddings) {
      EXPECT_NE(std::memcmp(ta.raw(), tc.raw(), ta.nbytes()), 0) << p.name;
      for (int64_t j = 0; j < p.numel; ++j, ++n) sum2 += static_cast<double>(x[j]) * x[j];
    }
  }
  EXPECT_NEAR(std::sqrt(sum2 / n), 0.02, 0.002);

  const std::string path = ::testing::TempDir() + "/lmkit_random.safetensors";
  a.save(path, R"({"kind":"raw","vocab_size":40})");
  const ModelWeights back = ModelWeights::load(path);
  EXPECT_EQ(back.config(), cfg);
  EXPECT_EQ(back.tokenizer_json(), R"({"kind":"raw","vocab_size":40})");
  ASSERT_EQ(back.layout().tensors().size(), layout.tensors().size());
  for (size_t i = 0; i < layout.tensors().size(); ++i) {
    const Tensor x = a.tensor(i), y = back.tensor(i);
    EXPECT_EQ(x.shape(), y.shape());
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << layout.tensors()[i].name;
  }
  const auto st = SafeTensorsFile::open(path);
  EXPECT_EQ(st.metadata_value("format").value_or(""), "pt");
  std::remove(path.c_str());
}

TEST(Checkpoint, HalfPrecisionAndUnalignedF32AreConverted) {
  const ModelConfig cfg = tiny_config();
  const ModelWeights w = ModelWeights::random(cfg, 3);
  for (DType dt : {DType::BF16, DType::F16}) {
    SafeTensorsWriter out;
    for (size_t i = 0; i < w.layout().tensors().size(); ++i)
      out.add(w.layout().tensors()[i].name, w.tensor(i).cast(dt));
    const ModelWeights back = ModelWeights::from_checkpoint(parse_bytes(to_bytes(out)), cfg);
    EXPECT_TRUE(back.writable());
    for (size_t i = 0; i < w.layout().tensors().size(); ++i) {
      const Tensor want = w.tensor(i).cast(dt).to_f32();
      EXPECT_EQ(std::memcmp(back.tensor(i).raw(), want.raw(), want.nbytes()), 0) << w.layout().tensors()[i].name;
    }
  }
  // Two more spaces of header padding put every f32 tensor 2 bytes off alignment.
  std::vector<uint8_t> bytes = to_bytes(w.writer());
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  bytes.insert(bytes.begin() + 8 + static_cast<ptrdiff_t>(n), {' ', ' '});
  n += 2;
  std::memcpy(bytes.data(), &n, 8);
  ASSERT_NE((8 + n) % 4, 0u);  // the data area starts off alignment: the reader copies such tensors
  const auto file = parse_bytes(bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(file.get("norm.weight").raw()) % 4, 0u);
  const ModelWeights back = ModelWeights::from_checkpoint(file, cfg);
  for (size_t i = 0; i < w.layout().tensors().size(); ++i)
    EXPECT_EQ(std::memcmp(back.tensor(i).raw(), w.tensor(i).raw(), w.tensor(i).nbytes()), 0);
}

TEST(Checkpoint, MismatchedCheckpointsAreRefusedNamingTheTensor) {
  const ModelConfig cfg = tiny_config();
  const ModelWeights w = ModelWeights::random(cfg, 1);
  const auto& table = w.layout().tensors();
  auto writer_with = [&](const std::string& skip) {
    SafeTensorsWriter out;
    for (size_t i = 0; i < table.size(); ++i)
      if (table[i].name != skip) out.add(table[i].name, w.tensor(i));
    return out;
  };
  EXPECT_EQ(load_error(cfg, writer_with("")), "");

  EXPECT_EQ(load_error(cfg, writer_with("layers.1.attention.wk.weight")),
            "'ckpt.safetensors': missing tensor 'layers.1.attention.wk.weight'");

  SafeTensorsWriter wrong_shape = writer_with("layers.0.feed_forward.w2.weight");
  wrong_shape.add("layers.0.feed_forward.w2.weight", Tensor::zeros(DType::F32, {16, 24}));
  EXPECT_EQ(load_error(cfg, wrong_shape),
            "'ckpt.safetensors': tensor 'layers.0.feed_forward.w2.weight': got shape [16, 24], expected [16, 48]");

  SafeTensorsWriter extra = writer_with("");
  extra.add("rope.freqs", Tensor::zeros(DType::F32, {2}));
  EXPECT_EQ(load_error(cfg, extra), "'ckpt.safetensors': unexpected tensor 'rope.freqs' for this config");
  ModelConfig tied = cfg;  // an untied checkpoint for a tied config: output.weight is one too many
  tied.tie_embeddings = true;
  EXPECT_EQ(load_error(tied, writer_with("")),
            "'ckpt.safetensors': unexpected tensor 'output.weight' for this config");

  SafeTensorsWriter wrong_dtype = writer_with("norm.weight");
  wrong_dtype.add("norm.weight", Tensor::zeros(DType::I32, {16}));
  EXPECT_EQ(load_error(cfg, wrong_dtype),
            "'ckpt.safetensors': tensor 'norm.weight': got dtype I32, expected F32, F16 or BF16");
}

TEST(Checkpoint, FileWithoutConfigIsRefused) {
  const ModelWeights w = ModelWeights::random(tiny_config(), 1);
  SafeTensorsWriter out;
  for (size_t i = 0; i < w.layout().tensors().size(); ++i) out.add(w.layout().tensors()[i].name, w.tensor(i));
  const std::string path = ::testing::TempDir() + "/lmkit_noconfig.safetensors";
  out.write_file(path);
  try {
    ModelWeights::load(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("no model config"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

TEST(Model, LengthLimitsAndBadTokens) {
  Transformer m(ModelWeights::random(tiny_config(), 5));
  std::vector<int32_t> tokens(9, 3);
  try {
    m.forward(tokens.data(), nullptr, 1, 9);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_STREQ(e.what(), "sequence of 9 tokens exceeds max_seq_len (8)");
  }
  KVCache cache = m.make_cache(1);
  m.forward(tokens.data(), nullptr, 5, cache);
  m.forward(tokens.data(), nullptr, 3, cache);
  try {
    m.forward_step(tokens.data(), nullptr, cache);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_STREQ(e.what(), "KV cache full: 8 + 1 positions exceed its capacity of 8 (max_seq_len)");
  }
  EXPECT_EQ(cache.length(), 8);
  cache.reset();
  EXPECT_EQ(cache.length(), 0);
  tokens[2] = 40;
  try {
    m.forward(tokens.data(), nullptr, 1, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_STREQ(e.what(), "token id 40 at index 2 is out of range for vocab size 40");
  }
}

// ---- fast kernels against their plain references ----

TEST(Kernels, MatmulMatchesReference) {
  Rng rng(11);
  const int64_t IC = 33, OC = 19;
  for (int64_t N : {int64_t{1}, kMatmulFewRows, kMatmulFewRows + 1, int64_t{7}}) {  // both paths
    std::vector<float> x(N * IC), w(OC * IC), b(OC), y(N * OC), r(N * OC);
    for (auto* v : {&x, &w, &b})
      for (auto& e : *v) e = rng.normal();
    matmul_forward(y.data(), x.data(), w.data(), b.data(), N, IC, OC);
    matmul_forward_ref(r.data(), x.data(), w.data(), b.data(), N, IC, OC);
    EXPECT_LE(max_rel_error(y.data(), r.data(), y.size()), 1e-6) << N;
    matmul_forward(y.data(), x.data(), w.data(), nullptr, N, IC, OC);
    matmul_forward_ref(r.data(), x.data(), w.data(), nullptr, N, IC, OC);
    EXPECT_LE(max_rel_error(y.data(), r.data(), y.size()), 1e-6) << N;
  }
}

// Over a KV cache (PromptRowsScope) f32 products of up to kPromptFewRows rows take the row
// kernel: each row then is its one-row product, bit for bit; outside, kMatmulFewRows.
TEST(Kernels, PromptRowsScopeTakesShortPromptsToTheRowKernel) {
  EXPECT_TRUE(few_rows_path(kMatmulFewRows));
  EXPECT_FALSE(few_rows_path(kMatmulFewRows + 1));
  EXPECT_EQ(few_rows_limit(WeightType::Q4_K), kMatmulFewRows);
  EXPECT_EQ(few_rows_limit(WeightType::BF16), 256);
  Rng rng(19);
  const int64_t IC = 70, OC = 45, N = kPromptFewRows;
  std::vector<float> x(N * IC), w(OC * IC), b(OC), many(N * OC), one(OC);
  for (auto* v : {&x, &w, &b})
    for (auto& e : *v) e = rng.normal();
  {
    const PromptRowsScope scope;
    EXPECT_TRUE(few_rows_path(kPromptFewRows));
    EXPECT_FALSE(few_rows_path(kPromptFewRows + 1));
    EXPECT_EQ(few_rows_limit(WeightType::Q4_K), kPromptFewRows);
    EXPECT_EQ(few_rows_limit(WeightType::BF16), 256);
    matmul_forward(many.data(), x.data(), w.data(), b.data(), N, IC, OC);
  }
  EXPECT_FALSE(few_rows_path(kMatmulFewRows + 1)) << "the scope ended";
  for (int64_t n = 0; n < N; ++n) {
    matmul_forward(one.data(), x.data() + n * IC, w.data(), b.data(), 1, IC, OC);
    for (int64_t o = 0; o < OC; ++o) ASSERT_EQ(many[n * OC + o], one[o]) << "row " << n << " output " << o;
  }
}

TEST(Kernels, MatmulPartsEqualSeparateMatmulsBitForBit) {
  Rng rng(12);
  const int64_t IC = 37, OC1 = 5, OC2 = 11, OC3 = 3;
  for (int64_t N : {int64_t{1}, kMatmulFewRows, kMatmulFewRows + 2}) {  // both paths
    std::vector<float> x(N * IC), w1(OC1 * IC), w2(OC2 * IC), w3(OC3 * IC), b2(OC2);
    for (auto* v : {&x, &w1, &w2, &w3, &b2})
      for (auto& e : *v) e = rng.normal();
    std::vector<float> y1(N * OC1), y2(N * OC2), y3(N * OC3), r1(y1.size()), r2(y2.size()), r3(y3.size());
    matmul_forward_parts({{y1.data(), w1.data(), nullptr, OC1}, {y2.data(), w2.data(), b2.data(), OC2},
                          {y3.data(), w3.data(), nullptr, OC3}},
                         x.data(), N, IC);
    matmul_forward(r1.data(), x.data(), w1.data(), nullptr, N, IC, OC1);
    matmul_forward(r2.data(), x.data(), w2.data(), b2.data(), N, IC, OC2);
    matmul_forward(r3.data(), x.data(), w3.data(), nullptr, N, IC, OC3);
    EXPECT_EQ(y1, r1) << N;
    EXPECT_EQ(y2, r2) << N;
    EXPECT_EQ(y3, r3) << N;
  }
}

TEST(Kernels, AttentionMatchesReferenceWithCacheGqaAndDocuments) {
  Rng rng(12);
  const int64_t B = 2, T = 5, P = 4, S = 12, NH = 6, NKV = 2, HS = 8;
  std::vector<float> q(B * T * NH * HS), k(B * S * NKV * HS), v(k.size());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = 2 * rng.normal();
  const std::vector<int32_t> tokens = {4, 2, 5, 5, 2, 2, 6, 7, 8, 9};  // eos = 2
  for (bool causal : {true, false}) {
    for (bool doc : {false, true}) {
      std::vector<int64_t> lo(B * T), hi(B * T), start = {1, 0};
      attention_spans(lo.data(), hi.data(), tokens.data(), B, T, P, causal, doc, 2, start.data());
      std::vector<float> out(B * T * NH * HS), ref(out.size()), att(B * NH * T * (P + T)), att_ref(att.size());
      attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S, NH,
                        NKV, HS);
      attention_forward_ref(ref.data(), att_ref.data(), q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P,
                            S, NH, NKV, HS);
      EXPECT_LE(max_rel_error(out.data(), ref.data(), out.size()), 1e-5) << causal << doc;
      EXPECT_LE(max_rel_error(att.data(), att_ref.data(), att.size()), 1e-5) << causal << doc;
      std::vector<float> out2(out.size());
      attention_forward(out2.data(), nullptr, q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S, NH,
                        NKV, HS);
      EXPECT_EQ(out2, out);
      if (causal && doc) {
        // Row 0 (document began at slot 1): tokens at slots 4..8 = 4 2 | 5 5 2 |.
        EXPECT_EQ(lo[0], 1);
        EXPECT_EQ(lo[1], 1);
        EXPECT_EQ(lo[2], 6);
        EXPECT_EQ(lo[4], 6);
        EXPECT_EQ(hi[4], 8);
        EXPECT_EQ(start[0], 9);
        // Row 1: 2 | 6 7 8 9 (the EOS at slot 4 ends the document that began at 0).
        EXPECT_EQ(lo[5], 0);
        EXPECT_EQ(lo[6], 5);
        EXPECT_EQ(start[1], 5);
      }
      if (!causal && doc) {
        EXPECT_EQ(hi[0], 5);  // up to and including its EOS
        EXPECT_EQ(hi[2], 8);
        EXPECT_EQ(hi[9], 8);
      }
    }
  }
}

// One query per row (decode) takes its own loops instead of BLAS: the same numbers, on one
// thread (short windows) and on several (long ones: rows and head groups over the threads);
// heads of 8 features in plain loops, of 32, 48, 64 and 128 in whole vectors (the values'
// sums in groups of 12, 8, 6 and 3 heads: here whole groups and a group's remainder).
TEST(Kernels, AttentionSingleQueryMatchesReference) {
  Rng rng(13);
  struct Shape {
    int64_t B, S, NH, NKV, HS;
  };
  for (const Shape& sh : {Shape{2, 12, 6, 2, 8}, Shape{1, 400, 8, 4, 64}, Shape{3, 300, 8, 8, 32}, Shape{2, 200, 6, 3, 48},
                          Shape{2, 300, 12, 12, 64}, Shape{1, 300, 8, 2, 128}}) {
    const int64_t B = sh.B, T = 1, S = sh.S, NH = sh.NH, NKV = sh.NKV, HS = sh.HS;
    std::vector<float> q(B * T * NH * HS), k(B * S * NKV * HS), v(k.size());
    for (auto* x : {&q, &k, &v})
      for (auto& e : *x) e = 2 * rng.normal();
    for (int64_t P : {int64_t{0}, int64_t{1}, int64_t{7}, S - 1}) {
      std::vector<int64_t> lo(B), hi(B, P);
      for (int64_t b = 0; b < B; ++b) lo[b] = b * P / (B + 1);  // later rows see only their document
      std::vector<float> out(B * T * NH * HS), ref(out.size());
      attention_forward(out.data(), nullptr, q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S, NH,
                        NKV, HS);
      attention_forward_ref(ref.data(), nullptr, q.data(), k.data(), v.data(), lo.data(), hi.data(), B, T, P, S,
                            NH, NKV, HS);
      EXPECT_LE(max_rel_error(out.data(), ref.data(), out.size()), 1e-5) << B << " rows, P " << P;
    }
  }
}

// Decode's fused w1/w3 + SwiGLU pass gives the numbers of the separate steps, bit for bit.
TEST(Kernels, SwigluUpForwardEqualsSeparateStepsBitForBit) {
  Rng rng(14);
  const int64_t C = 40, F = 29;
  std::vector<float> w1(F * C), w3(F * C), b1(F), b3(F);
  for (auto* x : {&w1, &w3, &b1, &b3})
    for (auto& e : *x) e = rng.normal();
  for (int64_t N : {int64_t{1}, kMatmulFewRows, kMatmulFewRows + 2})
    for (bool bias : {false, true}) {
      std::vector<float> x(N * C);
      for (auto& e : x) e = rng.normal();
      std::vector<float> act(N * F), gate(N * F), up(N * F), ract(N * F), rgate(N * F), rup(N * F);
      const float* pb1 = bias ? b1.data() : nullptr;
      const float* pb3 = bias ? b3.data() : nullptr;
      swiglu_up_forward(act.data(), gate.data(), up.data(), x.data(), w1.data(), pb1, w3.data(), pb3, N, C, F);
      matmul_forward(rgate.data(), x.data(), w1.data(), pb1, N, C, F);
      matmul_forward(rup.data(), x.data(), w3.data(), pb3, N, C, F);
      swiglu_forward(ract.data(), rgate.data(), rup.data(), N * F);
      EXPECT_EQ(gate, rgate) << N << bias;
      EXPECT_EQ(up, rup) << N << bias;
      EXPECT_EQ(act, ract) << N << bias;
    }
}

// doc_mask_boundary "start" (xlstm-jax): an EOS opens the next document instead of closing its
// own. The spans, causal and not, across calls (a cache's document start); and the fixture made
// with it gives other logits under "end", so the boundary is what the fixture checks.
TEST(DocumentMask, EosStartsTheNextDocument) {
  const std::vector<int32_t> tokens = {2, 5, 5, 2, 2, 5};  // eos = 2
  const int64_t T = 6;
  std::vector<int64_t> lo(T), hi(T), start = {0};
  attention_spans(lo.data(), hi.data(), tokens.data(), 1, T, 0, true, true, 2, start.data(), true);
  EXPECT_EQ(lo, (std::vector<int64_t>{0, 0, 0, 3, 4, 4}));
  EXPECT_EQ(hi, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(start[0], 4);
  attention_spans(lo.data(), hi.data(), tokens.data(), 1, T, 0, false, true, 2, nullptr, true);
  EXPECT_EQ(lo, (std::vector<int64_t>{0, 0, 0, 3, 4, 4}));
  EXPECT_EQ(hi, (std::vector<int64_t>{2, 2, 2, 3, 5, 5}));
  // Continued after 6 cached slots whose last document began at slot 4: [5 2 5] -> 4 4 | 7 7.
  const std::vector<int32_t> more = {5, 2, 5};
  std::vector<int64_t> lo2(3), hi2(3);
  attention_spans(lo2.data(), hi2.data(), more.data(), 1, 3, 6, true, true, 2, start.data(), true);
  EXPECT_EQ(lo2, (std::vector<int64_t>{4, 7, 7}));
  EXPECT_EQ(start[0], 7);

  ModelWeights w = load_fixture_model("xlstm_docstart");
  ASSERT_EQ(w.config().doc_mask_boundary, DocMaskBoundary::Start);
  const Case c = load_case("xlstm_docstart");
  ModelConfig end = w.config();
  end.doc_mask_boundary = DocMaskBoundary::End;
  w.make_writable();
  ModelWeights other = ModelWeights::random(end, 1);
  std::memcpy(other.arena(), w.arena(), static_cast<size_t>(w.layout().arena_floats()) * sizeof(float));
  Transformer model(std::move(other));
  const float* logits = model.forward(c.tokens.data(), c.pos.data(), c.B, c.T);
  EXPECT_GT(max_rel_error(logits, c.logits.data(), c.logits.size()), 1e-2);
}

}  // namespace
}  // namespace lm
