#include "model/loss_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace lm {

void check_loss_weights(const std::vector<float>& w, int64_t vocab_size, const std::string& where) {
  if (static_cast<int64_t>(w.size()) != vocab_size)
    fail_data(cat(where, ": loss weights: ", w.size(), " weights for a vocabulary of ", vocab_size));
  bool any = false;
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) fail_data(cat(where, ": loss weight of token ", i, " is not finite (", w[i], ")"));
    if (w[i] < 0) fail_data(cat(where, ": loss weight of token ", i, " is negative (", w[i], ")"));
    any = any || w[i] > 0;
  }
  if (!any) fail_data(cat(where, ": every loss weight is zero"));
}

namespace {

// A decimal token id: digits only, no sign, no leading zeros (so each id has one spelling).
bool parse_id(const std::string& s, int64_t& id) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  if (s.size() > 1 && s[0] == '0') return false;
  id = std::stoll(s);
  return true;
}

std::vector<float> from_json(const MappedFile& f, int64_t V, const std::string& where) {
  const std::string_view text(reinterpret_cast<const char*>(f.data()), f.size());
  const nlohmann::json j = parse_json_strict(text, where + ": ");  // duplicate ids are refused
  if (!j.is_object()) fail_data(cat(where, ": expected a JSON object {\"token_id\": weight, ...}"));
  std::vector<float> w(static_cast<size_t>(V), 1.0f);
  for (const auto& [key, value] : j.items()) {
    int64_t id = 0;
    if (!parse_id(key, id)) fail_data(cat(where, ": ", quote(key), " is not a token id (a decimal integer)"));
    if (id >= V) fail_data(cat(where, ": token id ", id, " is out of range (vocab_size ", V, ")"));
    if (!value.is_number()) fail_data(cat(where, ": token ", id, ": the weight must be a number, got ", value.dump()));
    const double x = value.get<double>();
    if (!std::isfinite(x) || std::abs(x) > 3.0e38)
      fail_data(cat(where, ": loss weight of token ", id, " is not a finite float (", value.dump(), ")"));
    w[static_cast<size_t>(id)] = static_cast<float>(x);
  }
  return w;
}

std::vector<float> from_safetensors(std::shared_ptr<MappedFile> f, int64_t V, const std::string& where) {
  const SafeTensorsFile file = SafeTensorsFile::parse(std::move(f));
  if (file.tensors().size() != 1)
    fail_data(cat(where, ": expected one loss weight tensor [", V, "], found ", file.tensors().size(), " tensors"));
  const TensorInfo& info = file.tensors()[0];
  if (info.dtype != DType::F32 && info.dtype != DType::F16 && info.dtype != DType::BF16)
    fail_data(cat(where, ": tensor ", quote(info.name), ": got dtype ", dtype_name(info.dtype), ", expected F32, F16 or BF16"));
  if (info.shape != Shape{V})
    fail_data(cat(where, ": tensor ", quote(info.name), ": got shape ", shape_str(info.shape), ", expected [", V, "]"));
  const Tensor t = file.get(info.name).to_f32();
  std::vector<float> w(static_cast<size_t>(V));
  std::memcpy(w.data(), t.data<float>(), w.size() * sizeof(float));
  return w;
}

}  // namespace

std::vector<float> read_loss_weights(const std::string& path, int64_t vocab_size) {
  return read_loss_weights(MappedFile::open(path), vocab_size);
}

std::vector<float> read_loss_weights(std::shared_ptr<MappedFile> f, int64_t vocab_size) {
  const std::string where = quote(f->path());
  std::vector<float> w = looks_like_json(f->path(), f->data(), f->size()) ? from_json(*f, vocab_size, where)
                                                                          : from_safetensors(f, vocab_size, where);
  check_loss_weights(w, vocab_size, where);
  return w;
}

std::vector<float> loss_weights_from_checkpoint(const SafeTensorsFile& file, int64_t V, const std::string& where) {
  const TensorInfo* info = file.find(kLossWeightsTensor);
  if (!info)
    fail_data(cat(where, ": missing tensor ", quote(kLossWeightsTensor), " (the config has loss_weights = true)"));
  if (info->shape != Shape{V})
    fail_data(cat(where, ": tensor ", quote(kLossWeightsTensor), ": got shape ", shape_str(info->shape), ", expected [",
                  V, "]"));
  if (info->dtype != DType::F32 && info->dtype != DType::F16 && info->dtype != DType::BF16)
    fail_data(cat(where, ": tensor ", quote(kLossWeightsTensor), ": got dtype ", dtype_name(info->dtype),
                  ", expected F32, F16 or BF16"));
  const Tensor t = file.get(kLossWeightsTensor).to_f32();
  const float* p = t.data<float>();
  std::vector<float> w(p, p + V);
  check_loss_weights(w, V, where);
  return w;
}

LossWeightStats loss_weight_stats(const float* w, int64_t vocab_size) {
  LossWeightStats s;
  if (!w || vocab_size <= 0) return s;
  s.min = s.max = w[0];
  for (int64_t i = 0; i < vocab_size; ++i) {
    s.non_unit += w[i] != 1.0f;
    s.zero += w[i] == 0.0f;
    s.min = std::min<double>(s.min, w[i]);
    s.max = std::max<double>(s.max, w[i]);
  }
  return s;
}

}  // namespace lm
