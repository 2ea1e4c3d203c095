// A model whose matrices are stored as f16, bf16, q8_0, q4_0, q4_K or q6_K (ModelWeights::cast): the full
// forward over many rows (decoded weights into the GEMM) equals the f32 model holding the
// decoded weights, over few rows (the row kernel) it follows it,
// decode through the row kernels follows the full forward, checkpoints keep the types
// (lmkit.weight_types), and training refuses them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/quant.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "model/matmul.h"
#include "model/transformer.h"
#include "test_util.h"

namespace lm {
namespace {

ModelConfig quant_config() { return test::small_gqa_llama("quant", 48, 16); }

// Rows of 256 (and a hidden size of 512) for the super-blocks of q4_K and q6_K.
ModelConfig kquant_config() {
  ModelConfig c = quant_config();
  c.name = "kquant";
  c.dim = 256;
  c.n_layers = 1;
  c.hidden_dim = 512;
  return c;
}

// The typed weights decoded back to f32: the model the typed one must equal on the GEMM path.
ModelWeights decoded(const ModelWeights& w) { return w.cast(WeightType::F32); }

double max_abs(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

const std::vector<int32_t> kTokens = {1, 7, 3, 40, 22, 9, 13, 0, 47, 5};

TEST(QuantModel, ForwardEqualsDecodedF32Model) {
  const ModelWeights f32 = ModelWeights::random(quant_config(), 5);
  const int64_t T = static_cast<int64_t>(kTokens.size()), V = 48;
  for (WeightType type : {WeightType::F16, WeightType::BF16, WeightType::Q8_0, WeightType::Q4_0}) {
    ModelWeights typed = f32.cast(type);
    EXPECT_FALSE(typed.all_f32());
    EXPECT_EQ(typed.types_summary(), weight_type_name(type));
    Transformer ref(decoded(typed));
    Transformer model(std::move(typed));
    // More rows than few_rows_limit: the GEMM over the decoded weights, the f32 model's numbers.
    const int64_t B = few_rows_limit(type) / T + 1;
    std::vector<int32_t> tokens;
    for (int64_t b = 0; b < B; ++b) tokens.insert(tokens.end(), kTokens.begin(), kTokens.end());
    const float* r = ref.forward(tokens.data(), nullptr, B, T);
    const std::vector<float> want(r, r + B * T * V);
    EXPECT_LE(max_abs(model.forward(tokens.data(), nullptr, B, T), want.data(), B * T * V), 1e-5)
        << weight_type_name(type) << " " << B << " rows of " << T;
    // One row of T (a short prompt): the row kernel on the weights as stored, as decode reads
    // them: f16 exactly widened; bf16 with the activations rounded to bf16, q8_0 quantized to
    // int8 blocks (QuantModel.DecodeFollowsTheFullForward's tolerances); q4_0 still the GEMM.
    double scale = 0;
    for (int64_t i = 0; i < T * V; ++i) scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
    const double tol = type == WeightType::F16 || type == WeightType::Q4_0 ? 1e-5
                       : type == WeightType::BF16                            ? 0.01 * scale
                                                                             : 0.03 * scale;
    const float* got = model.forward(kTokens.data(), nullptr, 1, T);
    const double err = max_abs(got, want.data(), T * V);
    EXPECT_LE(err, tol) << weight_type_name(type);
    if (type == WeightType::BF16 || type == WeightType::Q8_0) EXPECT_GT(err, 0) << "the row kernel's rounding";
  }
}

TEST(QuantModel, DecodeFollowsTheFullForward) {
  const ModelWeights f32 = ModelWeights::random(quant_config(), 6);
  const int64_t T = static_cast<int64_t>(kTokens.size()), V = 48;
  for (WeightType type : {WeightType::F16, WeightType::BF16, WeightType::Q8_0, WeightType::Q4_0}) {
    Transformer model(f32.cast(type));
    const std::vector<float> full(model.forward(kTokens.data(), nullptr, 1, T),
                                  model.forward(kTokens.data(), nullptr, 1, T) + T * V);
    KVCache cache = model.make_cache(1);
    double scale = 0;
    for (int64_t i = 0; i < T * V; ++i) scale = std::max(scale, std::fabs(static_cast<double>(full[i])));
    for (int64_t t = 0; t < T; ++t) {
      const float* step = model.forward_step(&kTokens[t], nullptr, cache);
      // f16 decode reads the same weights in float: rounding only. bf16 decode rounds the
      // activations to bf16 (8 significant bits, 0.2%), q8_0/q4_0 decode quantizes them to int8
      // blocks (about 0.4% of a block's largest value).
      const double tol = type == WeightType::F16 ? 1e-5 : type == WeightType::BF16 ? 0.01 * scale : 0.03 * scale;
      EXPECT_LE(max_abs(step, full.data() + t * V, V), tol) << weight_type_name(type) << " t=" << t;
    }
  }
}

TEST(QuantModel, KQuantsForwardAndDecode) {
  const ModelWeights f32 = ModelWeights::random(kquant_config(), 9);
  const int64_t T = static_cast<int64_t>(kTokens.size()), V = 48;
  for (WeightType type : {WeightType::Q4_K, WeightType::Q6_K}) {
    ModelWeights typed = f32.cast(type);
    EXPECT_EQ(typed.types_summary(), weight_type_name(type));
    Transformer ref(decoded(typed));
    Transformer model(std::move(typed));
    const std::vector<float> want(ref.forward(kTokens.data(), nullptr, 1, T), ref.forward(kTokens.data(), nullptr, 1, T) + T * V);
    const float* got = model.forward(kTokens.data(), nullptr, 1, T);
    EXPECT_LE(max_abs(got, want.data(), T * V), 1e-5) << weight_type_name(type);
    double scale = 0;
    for (float v : want) scale = std::max(scale, std::fabs(static_cast<double>(v)));
    KVCache cache = model.make_cache(1);
    for (int64_t t = 0; t < T; ++t)
      EXPECT_LE(max_abs(model.forward_step(&kTokens[t], nullptr, cache), want.data() + t * V, V), 0.03 * scale)
          << weight_type_name(type) << " t=" << t;
  }
  try {
    ModelWeights::random(quant_config(), 9).cast(WeightType::Q4_K);
    ADD_FAILURE() << "q4_K accepted rows of 64";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("multiple of 256"), std::string::npos) << e.what();
  }
}

TEST(QuantModel, Q8DecodeIsCloseToF32) {
  const ModelWeights f32 = ModelWeights::random(quant_config(), 7);
  Transformer q8(f32.cast(WeightType::Q8_0));
  Transformer ref(ModelWeights::random(quant_config(), 7));
  const int64_t T = static_cast<int64_t>(kTokens.size()), V = 48;
  const std::vector<float> want(ref.forward(kTokens.data(), nullptr, 1, T), ref.forward(kTokens.data(), nullptr, 1, T) + T * V);
  KVCache cache = q8.make_cache(1);
  double scale = 0, err = 0;
  for (float v : want) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  for (int64_t t = 0; t < T; ++t)
    err = std::max(err, max_abs(q8.forward_step(&kTokens[t], nullptr, cache), want.data() + t * V, V));
  EXPECT_LE(err, 0.02 * scale);
  EXPECT_GT(err, 0.0);  // the weights did change
}

TEST(QuantModel, CheckpointKeepsTypes) {
  for (WeightType type : {WeightType::Q4_0, WeightType::Q4_K}) {
  const ModelConfig cfg = type == WeightType::Q4_0 ? quant_config() : kquant_config();
  const ModelWeights typed = ModelWeights::random(cfg, 8).cast(type);
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  typed.writer().write(*sink);
  sink->finish();
  const SafeTensorsFile file = SafeTensorsFile::parse(MappedFile::from_bytes(bytes, "q4.safetensors"));
  ASSERT_TRUE(file.metadata_value(kWeightTypesMetadataKey).has_value());
  const ModelWeights back = ModelWeights::from_checkpoint(file, cfg, true);
  ASSERT_EQ(back.layout().tensors().size(), typed.layout().tensors().size());
  for (size_t i = 0; i < back.layout().tensors().size(); ++i) {
    EXPECT_EQ(back.type(i), typed.type(i));
    const Tensor a = back.tensor(i), b = typed.tensor(i);
    ASSERT_EQ(a.nbytes(), b.nbytes());
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << back.layout().tensors()[i].name;
  }
  try {
    ModelWeights::from_checkpoint(file, cfg);
    ADD_FAILURE() << "training load accepted " << weight_type_name(type) << " tensors";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("training needs f32 weights"), std::string::npos) << e.what();
  }
  }
}

TEST(QuantModel, TypeTagsAreReadByTheStrictJsonReader) {
  const ModelWeights typed = ModelWeights::random(quant_config(), 8).cast(WeightType::Q4_0);
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  typed.writer().write(*sink);
  sink->finish();
  // One tensor's tag given twice (the same length: the header's offsets stay right). nlohmann's
  // plain parse kept the last one.
  std::string text(bytes.begin(), bytes.end());
  const std::string wk = "\\\"layers.0.attention.wk.weight\\\"", wq = "\\\"layers.0.attention.wq.weight\\\"";
  const size_t at = text.find(wk);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, wk.size(), wq);
  const SafeTensorsFile file =
      SafeTensorsFile::parse(MappedFile::from_bytes(std::vector<uint8_t>(text.begin(), text.end()), "q4.safetensors"));
  try {
    ModelWeights::from_checkpoint(file, quant_config(), true);
    ADD_FAILURE() << "a repeated tag was taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_EQ(std::string(e.what()), std::string("'q4.safetensors': metadata ") + kWeightTypesMetadataKey +
                                         ": duplicate key 'layers.0.attention.wq.weight'");
  }
}

TEST(QuantModel, TrainingRefusesTypedWeights) {
  Transformer model(ModelWeights::random(quant_config(), 9).cast(WeightType::Q8_0));
  Tensor grads = Tensor::zeros(DType::F32, {model.weights().layout().arena_floats()});
  const ParameterTensors g = model.weights().layout().bind(grads.data_mut<float>());
  const std::vector<int32_t> tok = {1, 2, 3, 4};
  try {
    model.train_step(g, tok.data(), nullptr, tok.data(), 1, 4);
    ADD_FAILURE() << "train_step ran on q8_0 weights";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("q8_0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lm
