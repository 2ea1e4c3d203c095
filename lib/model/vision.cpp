#include "model/vision.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "model/matmul.h"

namespace lm {

void resolve_vision_places(VisionPlaces& out, const ModelConfig& cfg, const VisionRow* rows, const int32_t* tokens,
                           int64_t B, int64_t T, int64_t P, int64_t* used) {
  out.rows.clear();
  out.features.clear();
  const int64_t Dv = cfg.vision_dim;
  const bool by_token = cfg.image_token_id >= 0;
  // (row n, feature pointer) of every place, in row-major order of the places.
  std::vector<std::pair<int64_t, const float*>> places;
  std::vector<int64_t> next(static_cast<size_t>(B), 0);  // image_token_id mode: features consumed per row
  for (int64_t b = 0; b < B; ++b) {
    const VisionRow* r = rows ? rows + b : nullptr;
    const int64_t count = r ? r->count : 0;
    if (count < 0) fail_data(cat("vision row ", b, ": negative feature count ", count));
    if (Dv <= 0) {
      if (count > 0) fail_data(cat("vision row ", b, ": ", count, " image features given to a model without vision inputs (vision_dim = 0)"));
      continue;
    }
    if (count > 0 && !r->features) fail_data(cat("vision row ", b, ": ", count, " features but no data"));
    if (by_token) {
      if (r && r->places)
        fail_data(cat("vision row ", b, ": image places given to a model whose image_token_id (", cfg.image_token_id,
                      ") marks them"));
      int64_t k = used ? used[b] : 0;
      for (int64_t t = 0; t < T; ++t) {
        if (tokens[b * T + t] != cfg.image_token_id) continue;
        if (k >= count)
          fail_data(cat("vision row ", b, ": image place ", k, " (token ", cfg.image_token_id, " at place ", P + t,
                        ") has no feature: ", count, " given"));
        places.emplace_back(b * T + t, r->features + k * Dv);
        ++k;
      }
      if (!used && k != count)
        fail_data(cat("vision row ", b, ": ", k, " image places (tokens equal to image_token_id ", cfg.image_token_id,
                      ") but ", count, " features"));
      next[static_cast<size_t>(b)] = k;
      continue;
    }
    if (count == 0) continue;
    if (!r->places)
      fail_data(cat("vision row ", b, ": ", count,
                    " image features without their places (the model has no image_token_id to mark them)"));
    for (int64_t k = 0; k < count; ++k) {
      const int64_t place = r->places[k];
      if (place < 0 || (k > 0 && place <= r->places[k - 1]))
        fail_data(cat("vision row ", b, ": image places must be ascending and >= 0, got ", place, " at index ", k));
      if (!used && place >= T)
        fail_data(cat("vision row ", b, ": image place ", place, " lies outside the sequence of ", T, " tokens"));
      if (place >= P && place < P + T) places.emplace_back(b * T + place - P, r->features + k * Dv);
    }
  }
  if (by_token && used) std::copy(next.begin(), next.end(), used);
  // Row-major order of the places (by_token already is; given places are per row, ascending).
  out.rows.reserve(places.size());
  out.features.resize(places.size() * static_cast<size_t>(std::max<int64_t>(Dv, 0)));
  for (size_t m = 0; m < places.size(); ++m) {
    out.rows.push_back(places[m].first);
    std::memcpy(out.features.data() + m * Dv, places[m].second, static_cast<size_t>(Dv) * sizeof(float));
  }
}

void vision_merge_forward(float* encoded, float* proj, const VisionPlaces& vp, const float* projection, int64_t C,
                          int64_t Dv) {
  const int64_t M = vp.count();
  if (M == 0) return;
  matmul_forward(proj, vp.features.data(), projection, nullptr, M, Dv, C);
  for (int64_t m = 0; m < M; ++m)
    std::memcpy(encoded + vp.rows[m] * C, proj + m * C, static_cast<size_t>(C) * sizeof(float));
}

void vision_merge_backward(float* dprojection, float* dencoded, float* dproj, const VisionPlaces& vp, int64_t C,
                           int64_t Dv) {
  const int64_t M = vp.count();
  if (M == 0) return;
  for (int64_t m = 0; m < M; ++m) {
    float* d = dencoded + vp.rows[m] * C;
    std::memcpy(dproj + m * C, d, static_cast<size_t>(C) * sizeof(float));
    std::fill(d, d + C, 0.0f);
  }
  matmul_backward(nullptr, dprojection, nullptr, dproj, vp.features.data(), nullptr, M, Dv, C);
}

// ---- the --vision file ----

namespace {

// "record.12" -> 12, "record.12.places" -> 12 with places = true; -1 for anything else.
int64_t record_key(const std::string& name, bool& places) {
  const std::string prefix = "record.";
  if (name.rfind(prefix, 0) != 0) return -1;
  std::string rest = name.substr(prefix.size());
  places = false;
  const std::string suffix = ".places";
  if (rest.size() > suffix.size() && rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0) {
    rest.resize(rest.size() - suffix.size());
    places = true;
  }
  if (rest.empty() || rest.size() > 15 || (rest.size() > 1 && rest[0] == '0')) return -1;
  for (char ch : rest)
    if (ch < '0' || ch > '9') return -1;
  return std::stoll(rest);
}

}  // namespace

VisionFile VisionFile::open(const std::string& path, const ModelConfig& cfg) {
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  const std::string where = quote(display_name(path));
  const int64_t Dv = cfg.vision_dim;
  if (Dv <= 0) fail_data(cat(where, ": image features for a model without vision inputs (vision_dim = 0)"));
  std::map<int64_t, Record> records;
  std::map<int64_t, std::string> places_keys;
  for (const TensorInfo& info : file.tensors()) {
    bool is_places = false;
    const int64_t i = record_key(info.name, is_places);
    if (i < 0)
      fail(ErrorKind::Data, cat(where, ": unexpected tensor ", quote(info.name)),
           "a vision file holds record.{i} [N, vision_dim] and optionally record.{i}.places [N] I64");
    if (is_places) {
      places_keys[i] = info.name;
      continue;
    }
    if (info.dtype != DType::F32 && info.dtype != DType::F16 && info.dtype != DType::BF16)
      fail_data(cat(where, ": tensor ", quote(info.name), ": got dtype ", dtype_name(info.dtype),
                    ", expected F32, F16 or BF16"));
    if (info.shape.size() != 2 || info.shape[1] != Dv)
      fail_data(cat(where, ": tensor ", quote(info.name), ": got shape ", shape_str(info.shape), ", expected [N, ", Dv,
                    "] (vision_dim ", Dv, ")"));
    Record& r = records[i];
    r.index = i;
    r.features = file.get(info.name).to_f32();  // the mapping itself when aligned F32
  }
  for (const auto& [i, name] : places_keys) {
    const TensorInfo& info = *file.find(name);
    const auto it = records.find(i);
    if (it == records.end())
      fail_data(cat(where, ": tensor ", quote(name), " has no features ", quote(cat("record.", i))));
    Record& r = it->second;
    const int64_t n = r.features.dim(0);
    if (cfg.image_token_id >= 0)
      fail_data(cat(where, ": tensor ", quote(name), ": the model's image_token_id (", cfg.image_token_id,
                    ") marks the image places; places are for models without it"));
    if (info.dtype != DType::I64 || info.shape != Shape{n})
      fail_data(cat(where, ": tensor ", quote(name), ": got ", dtype_name(info.dtype), " ", shape_str(info.shape),
                    ", expected I64 [", n, "]"));
    const Tensor t = file.get(name);
    r.places.resize(static_cast<size_t>(n));
    if (n > 0) std::memcpy(r.places.data(), t.raw(), static_cast<size_t>(n) * sizeof(int64_t));
    for (int64_t k = 0; k < n; ++k)
      if (r.places[k] < 0 || (k > 0 && r.places[k] <= r.places[k - 1]))
        fail_data(cat(where, ": tensor ", quote(name), ": places must be ascending and >= 0, got ", r.places[k],
                      " at index ", k));
  }
  VisionFile out;
  for (auto& [i, r] : records) {
    if (cfg.image_token_id < 0 && r.features.dim(0) > 0 && r.places.empty())
      fail(ErrorKind::Data, cat(where, ": ", quote(cat("record.", i)), " has no places"),
           cat("the model has no image_token_id: give record.", i, ".places [N] I64"));
    out.records_ = i + 1;
    out.rows_.push_back(std::move(r));
  }
  return out;
}

VisionRow VisionFile::row(int64_t record) const {
  const auto it = std::lower_bound(rows_.begin(), rows_.end(), record,
                                   [](const Record& r, int64_t i) { return r.index < i; });
  if (it == rows_.end() || it->index != record) return {};
  VisionRow row;
  row.count = it->features.dim(0);
  row.features = it->features.data<float>();
  row.places = it->places.empty() ? nullptr : it->places.data();
  return row;
}

}  // namespace lm
