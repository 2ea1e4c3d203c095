// Vision inputs (docs/llama4.md §8): precomputed image features [M, Dv] per sequence, projected
// by vision_projection [C, Dv] and written over the token embeddings at the row's image places
// (the tokens equal to image_token_id, or places given with the input), one feature per place
// in the order of the places. The vision encoder is not lmkit's: features arrive from a file.
// Shape letters: B batch, T tokens, P past slots, C dim, Dv vision_dim, M image places.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace lm {

// One sequence's image features (a view: the caller keeps the memory alive).
// features [count, Dv] F32 row-major: feature k goes to the sequence's k-th image place.
// places [count] (or null): the places in the sequence, strictly ascending (0 = its first
// token, the KV-cache slot in decode); required when the model has no image_token_id, refused
// when it has one (its tokens mark the places).
struct VisionRow {
  const float* features = nullptr;
  int64_t count = 0;
  const int64_t* places = nullptr;
};

// The image places of one forward over [B, T] tokens, resolved against the inputs.
struct VisionPlaces {
  std::vector<int64_t> rows;    // [M] the place's row n = b * T + t in the forward's [B*T, C]
  std::vector<float> features;  // [M, Dv] the feature of each place (gathered)
  int64_t count() const { return static_cast<int64_t>(rows.size()); }
};

// Resolves the image places of tokens [B, T] that follow P slots of each row (0 for a full
// forward) into `out`. rows: [B] VisionRow, or null (no features). A full forward (used =
// null) must use every row's features exactly; decode (used [B]: features consumed by earlier
// calls in image_token_id mode, advanced here) takes the places that fall in this call.
// Data errors name the row: count mismatches, places out of order or outside the sequence,
// features for a model without vision_dim, places given to an image_token_id model.
void resolve_vision_places(VisionPlaces& out, const ModelConfig& cfg, const VisionRow* rows, const int32_t* tokens,
                           int64_t B, int64_t T, int64_t P, int64_t* used);

// The merge, its own step after the token embedding: encoded [B*T, C] rows at the places =
// vision_projection [C, Dv] · feature. proj [M, C] scratch.
void vision_merge_forward(float* encoded, float* proj, const VisionPlaces& vp, const float* projection, int64_t C,
                          int64_t Dv);
// Its backward: dprojection [C, Dv] += sum over places of dencoded[row] ⊗ feature; then the
// places' rows of dencoded are zeroed (their token embeddings were overwritten: no gradient).
// dproj [M, C] scratch. The features are inputs: no gradient.
void vision_merge_backward(float* dprojection, float* dencoded, float* dproj, const VisionPlaces& vp, int64_t C,
                           int64_t Dv);

// A --vision file (docs/llama4.md §8): safetensors with `record.{i}` [N_i, Dv] (F32, F16 or
// BF16) holding the image features of record i (0-based, in the token stream's record order)
// and, optionally, `record.{i}.places` [N_i] I64, the places of those features among the
// record's tokens (required unless the model has image_token_id, refused when it has). A
// record without a key has no image features.
class VisionFile {
 public:
  // Opens and checks the whole file against the model config: every key, dtype, shape, the
  // places (strictly ascending, >= 0). Data errors name the file and the key.
  static VisionFile open(const std::string& path, const ModelConfig& cfg);

  // 1 + the highest record index with features (0 for an empty file).
  int64_t records() const { return records_; }
  // Record i's features (count 0 when it has none or i >= records()); valid while this lives.
  VisionRow row(int64_t record) const;

 private:
  struct Record {
    int64_t index = 0;            // i of record.{i}
    Tensor features;              // [N_i, Dv] F32 (a view of the mapping, or a converted copy)
    std::vector<int64_t> places;  // [N_i], or empty
  };
  std::vector<Record> rows_;  // the records with a key, by index
  int64_t records_ = 0;
};

}  // namespace lm
