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
// log.jsonl (one JSON object per logged step), and .lock: its writer holds an exclusive
// lock on it for the whole run (run_dir.h).
//
// Nothing non-finite is saved: before every save the parameters and AdamW moments are
// checked, and a periodic checkpoint is written only once the next step's loss, computed
// with its weights, is known to be finite. A run whose loss, gradient norm or weights stop
// being finite ends with a Runtime error naming the last good checkpoint it kept (finite
// weights that gave a finite loss).
// A resumed run refuses training data whose content changed since the run started (each
// stream's fingerprint is in the checkpoint) unless allowed, and then notes it in the log.
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
#include "train/run_dir.h"
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
  DType compute_dtype = DType::F32;  // the matmuls' operands, F32 or BF16 (Transformer::set_compute_dtype)
  // materium (docs/materium.md): the probability that a condition is dropped (no positions)
  // for all of an optimizer step's batches, drawn per step and condition from (seed, step), so
  // a resumed run and every rank draw the same. 0 = never.
  double condition_dropout = 0;
  // materium: one conditions file (JSON Lines) per training / validation stream, same order.
  std::vector<std::string> train_conditions, val_conditions;
  // Vision models (docs/llama4.md §8): one --vision file (safetensors, record.{i}) per training
  // / validation stream, same order; records counted from 0 in each stream.
  std::vector<std::string> train_vision, val_vision;
  // Per invocation (may change on resume).
  int64_t save_every = 0;     // checkpoint every N steps (0 = only at the end)
  int64_t val_every = 0;      // validation loss every N steps (0 = only at the end); needs validation data
  int64_t val_batches = 0;    // validation batches per evaluation (0 = all of the data)
  int64_t log_every = 1;      // log line every N steps (always the last)
  int64_t stop_after = 0;     // stop (saving) after this many steps of this invocation (0 = never)
  std::vector<std::string> train_paths, val_paths;  // recorded in the checkpoint
  bool allow_data_change = false;  // resume: accept training data whose fingerprint changed
  bool checkpointing = false;      // activation (gradient) checkpointing: less memory, the same bits
  int64_t ranks = 1;          // processes training together (set by the Trainer; saved when > 1)

  // Usage errors (named as lm-train's options) for values no run can use: counts out of
  // range, a learning rate, clip or AdamW setting that is NaN, infinite or out of its range
  // (validate(LrSchedule), validate(AdamWConfig)). Every program that trains calls it.
  void validate() const;

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
  double eta = 0;             // seconds to the last step at this invocation's mean step time
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

// What lm-train is asked for: a new run of a model, or the continuation of a run.
struct TrainRequest {
  std::string resume;             // a run directory to continue; empty: a new run
  // A new run:
  std::string model;              // preset name, config JSON, or a checkpoint to fine-tune
  std::vector<std::string> sets;  // config overrides, KEY=VALUE
  std::string config_format = "auto";  // of a config JSON file (--config-format)
  std::string loss_weights;       // per-token-id loss weights file (model/loss_weights.h), or ""
  std::string run_dir;            // the run directory to create
  int64_t seq = 0;                // 0: the model's max_seq_len
  std::optional<double> min_lr;   // default: lr / 10
  // Both: the run's options (a resumed run takes only the per-invocation fields, the data
  // paths when given, and `steps` when >= 0).
  TrainOptions opts;
};

class Trainer {
 public:
  // Everything lm-train does before training: the model (a preset or config made random
  // with the seed, or a checkpoint's weights, with loss weights), the tokenizer spec the
  // checkpoints carry (the training data's, else the model's, else the config's default),
  // the token data (owned by the trainer), and the run directory, locked. Collective under
  // MPI: an error on any rank is thrown on every rank (distributed.h).
  static std::unique_ptr<Trainer> create(const TrainRequest& req);

  // A new run of `weights` (made writable) in `run_dir`: refuses a directory that already
  // holds a run (run_marker) or that another process has locked, creates and locks it
  // otherwise. `train` and `val` (may be null) must outlive the trainer. Checks the data's
  // vocabulary against the model and the weights' finiteness.
  Trainer(ModelWeights weights, const TrainOptions& opts, const std::string& run_dir, std::string tokenizer_json,
          const TokenData* train, const TokenData* val);
  // Continues the run saved in `run_dir` (its checkpoint), locked: the run settings come
  // from the checkpoint; `opts` provides the per-invocation fields and may raise `steps`.
  // Refuses training data whose fingerprint differs from the run's unless
  // opts.allow_data_change (then warnings() and the log say so).
  static std::unique_ptr<Trainer> resume(const std::string& run_dir, const TrainOptions& opts,
                                         const TokenData* train, const TokenData* val);
  // The same with the run directory's lock already taken (rank 0; an empty lock elsewhere).
  static std::unique_ptr<Trainer> resume(RunLock lock, const std::string& run_dir, const TrainOptions& opts,
                                         const TokenData* train, const TokenData* val);

  void set_step_function(StepFunction f) { step_fn_ = std::move(f); }

  // Trains until options().steps, a set stop flag (checked between steps) or stop_after,
  // saving on the way and at the end. `on_step` sees every logged step (rank 0).
  // A non-finite loss or gradient norm stops with a Runtime error, without saving; so do
  // non-finite weights or moments at a save.
  TrainSummary run(const std::function<void(const StepReport&)>& on_step = {},
                   const std::atomic<bool>* stop = nullptr);

  // Writes the checkpoint and the plain model (both atomic), after checking that the
  // weights and moments are finite (Runtime error otherwise, nothing written). Collective.
  void save();
  // Mean validation loss over the validation data (per counted token; loss-weighted when the
  // model has loss weights), or nullopt without it. Collective.
  std::optional<double> validate();

  const TrainOptions& options() const { return opts_; }
  const TrainState& state() const { return state_; }
  const Transformer& model() const { return *model_; }
  const std::string& run_dir() const { return run_dir_; }
  std::string checkpoint_path() const { return run_dir_ + "/" + kCheckpointFile; }
  std::string model_path() const { return run_dir_ + "/" + kModelFile; }
  int64_t last_saved_step() const { return last_saved_; }
  // Things the user should know that are not errors (a data change allowed on resume).
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  Trainer() = default;
  void init(ModelWeights weights, const TokenData* train, const TokenData* val, const std::string& source);
  void open_log(bool truncate_after_step, const std::string& note);
  // A new run: locks and checks the run directory, sets the model up, creates the directory
  // (rank 0) and opens the log. `source` names the weights in messages.
  void start(ModelWeights weights, const TokenData* train, const TokenData* val, const std::string& source);
  void write_log(const StepReport& r, const std::function<void(const StepReport&)>& on_step);  // rank 0, agreed
  TrainState snapshot() const;           // what a checkpoint of this step holds (collective)
  void commit(const TrainState& s);      // writes it (rank 0, agreed), after checking finiteness
  void check_finite_state(int64_t step) const;
  [[noreturn]] void stop_training(const std::string& what) const;

  TrainOptions opts_;
  std::string run_dir_, tokenizer_json_;
  std::unique_ptr<Transformer> model_;
  AdamW adamw_;
  Tensor grads_;  // [arena_floats]
  ParameterTensors grad_views_;
  Rng rng_;
  std::unique_ptr<DataLoader> train_loader_, val_loader_;
  // materium: every record's condition values (train, validation), or null without conditions.
  std::unique_ptr<ConditionBatch> train_conds_, val_conds_;
  // Rows of `b` take their records' values from `table` (nothing without conditions); the
  // conditions in `dropped` have no positions in this batch.
  void attach_conditions(Batch& b, const ConditionBatch* table, const std::vector<uint8_t>& dropped) const;
  std::vector<uint8_t> dropped_conditions(int64_t step) const;  // this step's draw of condition_dropout
  // Vision models: the --vision files of the training / validation streams, or null.
  struct VisionSet;
  std::unique_ptr<VisionSet> train_vision_, val_vision_;
  // Rows of `b` (sequential windows of records) take the features of their records' image
  // places that fall in their windows (nothing without --vision).
  void attach_vision(Batch& b, const VisionSet* set) const;
  TrainState state_;
  StepFunction step_fn_;
  std::FILE* log_ = nullptr;  // rank 0 only
  int64_t last_saved_ = -1;
  std::optional<TrainState> pending_;  // a due checkpoint waiting for the next step's loss
  int rank_ = 0, ranks_ = 1;  // this process's place in a data-parallel run
  RunLock lock_;              // rank 0
  std::unique_ptr<TokenData> own_train_, own_val_;  // create()'s data
  std::vector<std::string> warnings_;

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
std::string progress_line(const StepReport& r);
// A few lines for the end of a run (each ending with a newline).
std::string summary_text(const TrainSummary& s);

}  // namespace lm::train
