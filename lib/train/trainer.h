// The training loop: batches from a DataLoader, forward + backward into a gradient arena
// (gradient accumulation over micro-batches), clipping by global norm, AdamW at the
// scheduled learning rate, periodic validation, JSON Lines logging and atomic checkpoints
// in a run directory; exact resume from a checkpoint (same batches, same dropout, same bits).
//
// Data parallel across processes (distributed.h; mpirun -np N): every rank draws the same
// global micro-batch of N x batch rows (the batches one process with batch N x B would draw)
// and trains on its own rows [rank B, (rank + 1) B); the gradients are summed over the ranks,
// each rank's weighted by its share of the micro-batch's counted targets (!= pad_id), so a
// step equals one process's step with batch N x B (up to float rounding). Every rank has its
// own dropout stream (saved in checkpoints). Rank 0 alone writes the run directory and calls
// on_step; validation is split over the ranks and summed. Every rank runs the same control
// flow; a run resumes on the same number of ranks.
//
// A run directory holds checkpoint.safetensors (the latest training checkpoint, see
// checkpoint.h), model.safetensors (the same model as a plain lmkit checkpoint) and
// log.jsonl (one JSON object per logged step).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/params.h"
#include "model/transformer.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace lm::train {

struct TrainOptions {
  // The run (saved in checkpoints; a resumed run keeps them).
  int64_t steps = 1000;       // optimizer steps in the whole run
  int64_t batch = 8;          // B rows per micro-batch
  int64_t seq = 256;          // T tokens per row
  int64_t grad_accum = 1;     // micro-batches per optimizer step
  uint64_t seed = 1;          // data sampling and dropout
  SampleMode sample = SampleMode::Random;
  LrSchedule schedule;        // schedule.total is set to `steps`
  AdamWConfig adamw;
  double grad_clip = 1.0;     // max global gradient norm; <= 0 = no clipping
  // Per invocation (may change on resume).
  int64_t save_every = 0;     // checkpoint every N steps (0 = only at the end)
  int64_t val_every = 0;      // validation loss every N steps (0 = only at the end); needs validation data
  int64_t val_batches = 0;    // validation batches per evaluation (0 = all of the data)
  int64_t log_every = 1;      // log line every N steps (always the last)
  int64_t stop_after = 0;     // stop (saving) after this many steps of this invocation (0 = never)
  std::vector<std::string> train_paths, val_paths;  // recorded in the checkpoint
  int64_t ranks = 1;          // processes training together (set by the Trainer; saved when > 1)

  // The settings a resumed run must keep (as JSON, in checkpoints).
  nlohmann::json run_settings() const;
  // Restores the run settings from a checkpoint (keeps this invocation's per-run fields).
  void apply_run_settings(const nlohmann::json& j);
};

// The options saved in the checkpoint of the run in `run_dir` (without loading the tensors).
TrainOptions saved_options(const std::string& run_dir);

// One step's report: the JSON Lines record is built from it.
struct StepReport {
  int64_t step = 0;           // steps completed, from 1
  int64_t steps = 0;          // of the whole run
  double loss = 0;            // mean over the micro-batches
  std::optional<double> moe_aux;  // MoE models: the mean load-balancing loss (in `loss` times moe.aux_loss_coef)
  double lr = 0;
  double grad_norm = 0;       // before clipping
  double tokens_per_s = 0;    // this step
  double elapsed = 0;         // seconds of training (over resumed runs)
  std::optional<double> val_loss;
  std::string json_line;      // the record as written to log.jsonl (no newline)
};

struct TrainSummary {
  int64_t step = 0, steps = 0, steps_this_run = 0;
  uint64_t tokens = 0;
  double last_loss = 0, elapsed = 0, tokens_per_s = 0;  // tokens_per_s: this invocation's average
  std::optional<double> val_loss;
  bool interrupted = false;   // stop flag or stop_after
  std::string run_dir;
};

// Gradients of one micro-batch: accumulates d(grad_scale * loss)/dparams into `grads` and
// returns the loss (before grad_scale) and its parts. The default runs Transformer::train_step.
using StepFunction = std::function<TrainStepResult(Transformer& model, const Batch& batch,
                                                   const ParameterTensors& grads, float grad_scale, Rng& rng)>;
StepFunction transformer_step();

class Trainer {
 public:
  // A new run of `weights` (made writable) in `run_dir`: refuses a directory that already
  // holds a checkpoint, creates it otherwise. `train` and `val` (may be null) must outlive
  // the trainer. Checks the data's vocabulary against the model.
  Trainer(ModelWeights weights, const TrainOptions& opts, const std::string& run_dir, std::string tokenizer_json,
          const TokenData* train, const TokenData* val);
  // Continues the run saved in `run_dir` (its checkpoint): the run settings come from the
  // checkpoint; `opts` provides the per-invocation fields and may raise `steps`.
  static std::unique_ptr<Trainer> resume(const std::string& run_dir, const TrainOptions& opts,
                                         const TokenData* train, const TokenData* val);

  void set_step_function(StepFunction f) { step_fn_ = std::move(f); }

  // Trains until options().steps, a set stop flag (checked between steps) or stop_after,
  // saving on the way and at the end. `on_step` sees every logged step.
  // A non-finite loss or gradient norm stops with a Runtime error, without saving.
  TrainSummary run(const std::function<void(const StepReport&)>& on_step = {},
                   const std::atomic<bool>* stop = nullptr);

  // Writes the checkpoint and the plain model (both atomic).
  void save();
  // Mean validation loss over the validation data (per counted token; loss-weighted when the
  // model has loss weights), or nullopt without it.
  std::optional<double> validate();

  const TrainOptions& options() const { return opts_; }
  const TrainState& state() const { return state_; }
  const Transformer& model() const { return *model_; }
  const std::string& run_dir() const { return run_dir_; }
  std::string checkpoint_path() const { return run_dir_ + "/" + kCheckpointFile; }
  std::string model_path() const { return run_dir_ + "/" + kModelFile; }
  int64_t last_saved_step() const { return last_saved_; }

 private:
  Trainer() = default;
  void init(ModelWeights weights, const TokenData* train, const TokenData* val);
  void open_log(bool truncate_after_step);

  TrainOptions opts_;
  std::string run_dir_, tokenizer_json_;
  std::unique_ptr<Transformer> model_;
  AdamW adamw_;
  Tensor grads_;  // [arena_floats]
  ParameterTensors grad_views_;
  Rng rng_;
  std::unique_ptr<DataLoader> train_loader_, val_loader_;
  TrainState state_;
  StepFunction step_fn_;
  std::FILE* log_ = nullptr;  // rank 0 only
  int64_t last_saved_ = -1;
  int rank_ = 0, ranks_ = 1;  // this process's place in a data-parallel run

 public:
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
};

}  // namespace lm::train

namespace lm::train {

// "1h02m", "3m07s", "12s" for progress and summaries.
std::string format_duration(double seconds);
// The one-line progress display (no newline, no terminal codes):
// "step 120/2000  loss 2.3456  lr 1.00e-03  25.1k tok/s  ETA 1m23s"
std::string progress_line(const StepReport& r, double eta_seconds);
// A few lines for the end of a run (each ending with a newline).
std::string summary_text(const TrainSummary& s);

}  // namespace lm::train
