// Helpers for the tests that read the PyTorch reference fixtures (tests/fixtures/<name>/).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/vision.h"

namespace lm::fixture {

// Float32 agreement with the reference: the bar of every fixture comparison.
inline constexpr double kTolerance = 1e-4;

inline std::filesystem::path dir() { return std::filesystem::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures"; }

// Fixture directories holding `file` (model.safetensors, grads.safetensors), sorted.
inline std::vector<std::string> names_with(const std::string& file) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir(), ec))
    if (e.is_directory() && std::filesystem::exists(e.path() / file)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// The fixtures one directory down (tests/fixtures/llama4/) whose features the model runs: the
// generic fixture tests take them along with names_with()'s (the others wait for their features).
inline const std::vector<std::string>& llama4_fixtures() {
  static const std::vector<std::string> names = {"llama4/l4_chunked",     "llama4/l4_moe_aux", "llama4/l4_moe_first_dense", "llama4/l4_moe_sigmoid",
                                                 "llama4/l4_moe_softmax_top2", "llama4/l4_nope",    "llama4/l4_qknorm",
                                                 "llama4/l4_temp",       "llama4/l4_vision"};
  return names;
}

// names_with(file) and llama4_fixtures().
inline std::vector<std::string> model_fixtures(const std::string& file) {
  std::vector<std::string> names = names_with(file);
  for (const std::string& n : llama4_fixtures()) names.push_back(n);
  return names;
}

// A fixture name as a test name ("llama4/l4_moe_aux" -> "llama4_l4_moe_aux").
inline std::string test_name(std::string name) {
  std::replace(name.begin(), name.end(), '/', '_');
  return name;
}

// max |got - want| over max |want|: relative to the tensor's scale, not elementwise.
inline double max_rel_error(const float* got, const float* want, size_t n) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return scale > 0 ? err / scale : err;
}

// An I64 tensor (token ids, positions) as T.
template <class T>
std::vector<T> read_ints(const SafeTensorsFile& f, const std::string& name) {
  const Tensor t = f.get(name);
  EXPECT_EQ(t.dtype(), DType::I64) << name;
  std::vector<T> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t x;
    std::memcpy(&x, static_cast<const char*>(t.raw()) + i * 8, 8);
    out[static_cast<size_t>(i)] = static_cast<T>(x);
  }
  return out;
}

inline std::vector<float> read_floats(const SafeTensorsFile& f, const std::string& name) {
  const Tensor t = f.get(name).to_f32();
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// The image inputs of a fixture case (docs/llama4.md §8): `vision_features` [M, Dv], the rows'
// features in row-major order of their places; `vision_mask` [B, T] when a mask marks the places
// (else the tokens equal to image_token_id do). No features: no rows.
struct VisionCase {
  std::vector<float> features;               // [M, Dv]
  std::vector<int64_t> offset, count;        // [B] each row's first feature and feature count
  std::vector<std::vector<int64_t>> places;  // [B] mask mode: each row's places; else empty
  int64_t dim = 0;

  bool empty() const { return count.empty(); }
  // [B] views (valid while this lives), or empty.
  std::vector<VisionRow> rows() const {
    std::vector<VisionRow> out;
    for (size_t b = 0; b < count.size(); ++b)
      out.push_back({features.data() + offset[b] * dim, count[b], places.empty() ? nullptr : places[b].data()});
    return out;
  }
};

inline VisionCase load_vision(const SafeTensorsFile& f, const ModelConfig& cfg, const std::vector<int32_t>& tokens,
                              int64_t B, int64_t T) {
  VisionCase v;
  if (!f.contains("vision_features")) return v;
  v.features = read_floats(f, "vision_features");
  v.dim = cfg.vision_dim;
  std::vector<int64_t> mask;
  if (f.contains("vision_mask")) mask = read_ints<int64_t>(f, "vision_mask");
  int64_t m = 0;
  for (int64_t b = 0; b < B; ++b) {
    v.offset.push_back(m);
    std::vector<int64_t> row;
    for (int64_t t = 0; t < T; ++t)
      if (mask.empty() ? tokens[b * T + t] == cfg.image_token_id : mask[b * T + t] != 0) row.push_back(t);
    v.count.push_back(static_cast<int64_t>(row.size()));
    m += static_cast<int64_t>(row.size());
    if (!mask.empty()) v.places.push_back(std::move(row));
  }
  EXPECT_EQ(m * v.dim, static_cast<int64_t>(v.features.size())) << "vision_features rows vs image places";
  return v;
}

}  // namespace lm::fixture
