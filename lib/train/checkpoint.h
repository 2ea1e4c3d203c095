// A training checkpoint: one safetensors file, so that writing it (temp file + rename) is
// atomic. It holds the model under its Meta names (docs/checkpoint-format.md), the AdamW
// moments as "optimizer.m.<name>" / "optimizer.v.<name>" (a walk over the parameter
// table), and in __metadata__ the model config (lmkit.config), the tokenizer spec
// (lmkit.tokenizer) and the training state (lmkit.train: step, RNG and data position,
// the run's settings), everything a resumed run needs to continue bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/rng.h"
#include "io/tokstream.h"
#include "model/config.h"
#include "model/params.h"
#include "train/data.h"
#include "train/optimizer.h"

namespace lm::train {

inline constexpr int kCheckpointVersion = 1;
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";  // in a run directory
inline constexpr const char* kModelFile = "model.safetensors";            // plain model, in a run directory
inline constexpr const char* kLogFile = "log.jsonl";                     // in a run directory

struct TrainState {
  int64_t step = 0;       // optimizer steps completed
  uint64_t tokens = 0;    // training tokens consumed
  double elapsed = 0;     // seconds spent training (summed over resumed runs)
  Rng::State rng{};       // the training generator (dropout, SIGReg projections)
  LoaderState data;       // where the training data loader is
  std::vector<Rng::State> rank_rngs;  // multi-process runs: the generators of ranks 1..N-1
  std::vector<DataFingerprint> data_fingerprints;  // of each training stream (none in older checkpoints)
  nlohmann::json settings = nlohmann::json::object();  // the run's options (TrainOptions)
};

nlohmann::json rng_state_to_json(const Rng::State& s);
Rng::State rng_state_from_json(const nlohmann::json& j);  // Data errors for a malformed object

// Writes `path` atomically.
void save_checkpoint(const std::string& path, const ModelWeights& weights, const AdamW& optimizer,
                     const TrainState& state, const std::string& tokenizer_json);

struct LoadedCheckpoint {
  ModelWeights weights;  // writable (in its own arena)
  Tensor m, v;           // [arena_floats] moments laid out by weights.layout()
  TrainState state;
  std::string tokenizer_json;
};
// Reads a checkpoint written by save_checkpoint; Data errors name the file and what is wrong.
LoadedCheckpoint load_checkpoint(const std::string& path);

// The spec a model without token data implies: byte-v1 when the config has the byte-v1
// vocabulary (264, pad 256, eos 257), else raw with the config's vocabulary size.
TokenizerSpec default_tokenizer_spec(const ModelConfig& cfg);

}  // namespace lm::train
