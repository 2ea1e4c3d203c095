#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "io/metadata_keys.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "model/user_config.h"
#include "model/finite.h"
#include "model/loss_weights.h"
#include "model/conditions_file.h"
#include "model/vision.h"
#include "tokenizer/spec_json.h"
#include "train/distributed.h"

namespace lm::train {

using nlohmann::json;
namespace fs = std::filesystem;

json TrainOptions::run_settings() const {
  json j = json{{"steps", steps},
                {"batch", batch},
                {"seq", seq},
                {"grad_accum", grad_accum},
                {"seed", seed},
                {"sample", sample_mode_name(sample)},
                {"lr", schedule.lr},
                {"min_lr", schedule.min_lr},
                {"warmup", schedule.warmup},
                {"decay", decay_kind_name(schedule.decay)},
                {"beta1", adamw.beta1},
                {"beta2", adamw.beta2},
                {"eps", adamw.eps},
                {"weight_decay", adamw.weight_decay},
                {"decay_embeddings", adamw.decay_embeddings},
                {"grad_clip", grad_clip},
                {"train", train_paths},
                {"val", val_paths}};
  if (ranks > 1) j["ranks"] = ranks;  // single-process checkpoints stay as they were
  if (compute_dtype == DType::BF16) j["dtype"] = "bf16";  // so do f32 ones
  if (condition_dropout > 0) j["condition_dropout"] = condition_dropout;  // materium only: others stay as they were
  if (!train_conditions.empty()) j["train_conditions"] = train_conditions;
  if (!val_conditions.empty()) j["val_conditions"] = val_conditions;
  if (!train_vision.empty()) j["train_vision"] = train_vision;  // vision models only
  if (!val_vision.empty()) j["val_vision"] = val_vision;
  return j;
}

void TrainOptions::apply_run_settings(const json& j) {
  try {
    steps = json_integer<int64_t>(j.at("steps"));
    batch = json_integer<int64_t>(j.at("batch"));
    seq = json_integer<int64_t>(j.at("seq"));
    grad_accum = json_integer<int64_t>(j.at("grad_accum"));
    seed = json_integer<uint64_t>(j.at("seed"));
    const auto mode = sample_mode_from_name(j.at("sample").get<std::string>());
    if (!mode) fail_data("unknown sample mode");
    sample = *mode;
    schedule.lr = j.at("lr").get<double>();
    schedule.min_lr = j.at("min_lr").get<double>();
    schedule.warmup = json_integer<int64_t>(j.at("warmup"));
    const auto decay = decay_kind_from_name(j.at("decay").get<std::string>());
    if (!decay) fail_data("unknown decay kind");
    schedule.decay = *decay;
    adamw.beta1 = j.at("beta1").get<double>();
    adamw.beta2 = j.at("beta2").get<double>();
    adamw.eps = j.at("eps").get<double>();
    adamw.weight_decay = j.at("weight_decay").get<double>();
    adamw.decay_embeddings = j.at("decay_embeddings").get<bool>();
    grad_clip = j.at("grad_clip").get<double>();
    if (train_paths.empty()) train_paths = j.at("train").get<std::vector<std::string>>();
    if (val_paths.empty()) val_paths = j.at("val").get<std::vector<std::string>>();
    ranks = j.contains("ranks") ? json_integer<int64_t>(j.at("ranks")) : 1;
    const std::string dtype = j.value("dtype", std::string("f32"));
    if (dtype != "f32" && dtype != "bf16") fail_data(cat("unknown compute dtype ", quote(dtype)));
    compute_dtype = dtype == "bf16" ? DType::BF16 : DType::F32;
    condition_dropout = j.value("condition_dropout", 0.0);
    if (train_conditions.empty()) train_conditions = j.value("train_conditions", std::vector<std::string>{});
    if (val_conditions.empty()) val_conditions = j.value("val_conditions", std::vector<std::string>{});
    if (train_vision.empty()) train_vision = j.value("train_vision", std::vector<std::string>{});
    if (val_vision.empty()) val_vision = j.value("val_vision", std::vector<std::string>{});
  } catch (const json::exception& e) {
    fail_data(cat("bad run settings in the checkpoint: ", e.what()));
  }
}

// Fails unless `run_dir` holds a run's checkpoint, saying what it is instead.
static void check_resumable(const std::string& run_dir, const std::string& path) {
  if (fs::exists(path)) return;
  std::error_code ec;
  if (fs::exists(run_dir, ec) && !fs::is_directory(run_dir, ec))
    fail(ErrorKind::Usage, cat("cannot resume from ", quote(run_dir), ": not a run directory"),
         "--resume takes the -o DIR of an lm-train run; to fine-tune a checkpoint, give it as CONFIG");
  fail(ErrorKind::Io, cat("cannot resume from ", quote(run_dir), ": no ", kCheckpointFile));
}

TrainOptions saved_options(const std::string& run_dir) {
  const std::string path = run_dir + "/" + kCheckpointFile;
  check_resumable(run_dir, path);
  const auto meta = SafeTensorsFile::open(path).metadata_value(kTrainStateMetadataKey);
  if (!meta) fail_data(cat(quote(path), ": not a training checkpoint (no lmkit.train metadata)"));
  const json j = parse_json_strict(*meta, cat(quote(path), ": bad training state (lmkit.train): "));
  if (!j.is_object() || !j.contains("settings")) fail_data(cat(quote(path), ": bad training state (lmkit.train)"));
  TrainOptions o;
  o.apply_run_settings(j["settings"]);
  return o;
}

void TrainOptions::validate() const {
  if (steps < 0) fail_usage(cat("--steps must be >= 0, got ", steps));
  if (batch < 1) fail_usage(cat("--batch must be >= 1, got ", batch));
  if (seq < 1) fail_usage(cat("--seq must be >= 1, got ", seq));
  if (grad_accum < 1) fail_usage(cat("--grad-accum must be >= 1, got ", grad_accum));
  for (const auto& [name, v] : {std::pair{"--save-every", save_every}, std::pair{"--val-every", val_every},
                                std::pair{"--val-batches", val_batches}, std::pair{"--stop-after", stop_after}})
    if (v < 0) fail_usage(cat(name, " must be >= 0, got ", v));
  if (log_every < 1) fail_usage(cat("--log-every must be >= 1, got ", log_every));
  train::validate(schedule);
  train::validate(adamw);
  if (!(std::isfinite(grad_clip) && grad_clip >= 0))
    fail_usage(cat("--grad-clip must be a finite number >= 0 (0 = off), got ", grad_clip));
  if (!(condition_dropout >= 0 && condition_dropout <= 1))
    fail_usage(cat("--condition-dropout must be a probability in [0, 1], got ", condition_dropout));
  if (!train_conditions.empty() && train_conditions.size() != train_paths.size())
    fail_usage(cat(train_conditions.size(), " --conditions files for ", train_paths.size(),
                   " training streams: give one per stream, in the same order"));
  if (!val_conditions.empty() && val_conditions.size() != val_paths.size())
    fail_usage(cat(val_conditions.size(), " --val-conditions files for ", val_paths.size(),
                   " --val streams: give one per stream, in the same order"));
  if (!train_vision.empty() && train_vision.size() != train_paths.size())
    fail_usage(cat(train_vision.size(), " --vision files for ", train_paths.size(),
                   " training streams: give one per stream, in the same order"));
  if (!val_vision.empty() && val_vision.size() != val_paths.size())
    fail_usage(cat(val_vision.size(), " --val-vision files for ", val_paths.size(),
                   " --val streams: give one per stream, in the same order"));
}

// The --vision files of a set of streams (docs/llama4.md §8), checked whole against the
// streams' records when opened: a run that starts never meets a bad record later.
struct Trainer::VisionSet {
  const TokenData* data = nullptr;
  std::vector<std::string> paths;
  std::vector<VisionFile> files;     // one per stream
  std::vector<int64_t> first_record; // [streams + 1] the stream's first record in data->records()

  VisionSet(const std::vector<std::string>& p, const TokenData& d, const ModelConfig& cfg) : data(&d), paths(p) {
    first_record.push_back(0);
    for (const int64_t n : d.source_records) first_record.push_back(first_record.back() + n);
    const auto& records = d.records();
    for (size_t f = 0; f < paths.size(); ++f) {
      files.push_back(VisionFile::open(paths[f], cfg));
      const VisionFile& file = files.back();
      const std::string name = quote(paths[f]);
      const int64_t n = d.source_records[f];
      if (file.records() > n)
        fail_data(cat(name, ": image features for record ", file.records() - 1, ", but its stream ",
                      quote(d.sources[f]), " has ", n, n == 1 ? " record" : " records"));
      for (int64_t i = 0; i < n; ++i) {
        const VisionRow row = file.row(i);
        const TokenData::Record& rec = records[static_cast<size_t>(first_record[f] + i)];
        if (cfg.image_token_id >= 0) {
          int64_t k = 0;
          for (int64_t t = 0; t < rec.size; ++t) k += d.at(rec, t) == static_cast<uint32_t>(cfg.image_token_id);
          if (k != row.count)
            fail_data(cat(name, ": record ", i, " has ", k, " image tokens (image_token_id ", cfg.image_token_id,
                          ") but ", row.count, " image features (record.", i, ")"));
        } else if (row.count > 0 && row.places[row.count - 1] >= rec.size) {
          fail_data(cat(name, ": record ", i, ": image place ", row.places[row.count - 1], " is past its ", rec.size,
                        " tokens (record.", i, ".places)"));
        }
      }
    }
  }

  // The file and its record of record `r` of the data.
  VisionRow row(int64_t r) const {
    const auto it = std::upper_bound(first_record.begin(), first_record.end(), r);
    const size_t f = static_cast<size_t>(it - first_record.begin()) - 1;
    return files[f].row(r - first_record[f]);
  }
};

namespace {

void make_run_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::Io, cat("cannot create run directory ", quote(dir), ": ", ec.message()));
  if (!fs::is_directory(dir, ec)) fail(ErrorKind::Io, cat("cannot use ", quote(dir), " as run directory: not a directory"));
}

// A new run may not go where a run is (even one that never saved: its log).
void refuse_taken(const std::string& dir) {
  const std::string marker = run_marker(dir);
  if (marker.empty()) return;
  if (marker == kLogFile)
    fail(ErrorKind::Usage, cat(quote(dir), " already holds a training run (a log, no checkpoint)"),
         "remove it, or choose another output directory");
  fail(ErrorKind::Usage, cat(quote(dir), " already holds a training run"),
       cat("continue it with --resume ", dir, ", or choose another output directory"));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr uint64_t kDropoutStream = 0x9e3779b97f4a7c15ull;  // the training RNG's seed is seed ^ this

// Rank 0's dropout stream is the single process's; rank r's seed is offset by r.
uint64_t dropout_seed(uint64_t seed, int rank) {
  return (seed ^ kDropoutStream) + static_cast<uint64_t>(rank) * 0xbf58476d1ce4e5b9ull;
}

// Rows [begin, begin + rows) of `full` (a rank's share of a global batch).
void take_rows(const Batch& full, int64_t begin, int64_t rows, Batch& out) {
  out.B = rows;
  out.T = full.T;
  out.has_pos = full.has_pos;
  const auto first = static_cast<size_t>(begin * full.T), n = static_cast<size_t>(rows * full.T);
  out.inputs.assign(full.inputs.begin() + first, full.inputs.begin() + first + n);
  out.targets.assign(full.targets.begin() + first, full.targets.begin() + first + n);
  if (full.has_pos) out.pos.assign(full.pos.begin() + first, full.pos.begin() + first + n);
  else out.pos.clear();
  out.records.clear();
  if (!full.records.empty()) out.records.assign(full.records.begin() + begin, full.records.begin() + begin + rows);
  out.has_vision = full.has_vision;
  if (full.has_vision) {
    out.vision.assign(full.vision.begin() + begin, full.vision.begin() + begin + rows);
    out.vision_places.assign(full.vision_places.begin() + begin, full.vision_places.begin() + begin + rows);
    for (size_t r = 0; r < out.vision.size(); ++r)
      if (out.vision[r].places) out.vision[r].places = out.vision_places[r].data();
  }
  out.has_conditions = full.has_conditions;
  if (full.has_conditions) {
    std::vector<int64_t> mine(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) mine[static_cast<size_t>(r)] = begin + r;
    out.conditions = full.conditions.gather(mine);
  }
}

// Targets the loss counts (!= pad_id; all when the model has none), each by its loss weight
// (1 when the model has no loss weights `w`).
double counted_targets(const Batch& b, int64_t pad_id, const float* w) {
  double n = 0;
  for (const int32_t t : b.targets)
    if (pad_id < 0 || t != pad_id) n += w ? static_cast<double>(w[t]) : 1.0;
  return n;
}

std::unique_ptr<TokenData> load_data(const std::vector<std::string>& paths) {
  if (paths.empty()) return nullptr;
  return std::make_unique<TokenData>(load_tokens(paths));
}

// "'a.tok' (now 1200 bytes, was 1000)" for the streams whose content differs, or "".
std::string changed_streams(const std::vector<DataFingerprint>& was, const std::vector<DataFingerprint>& now) {
  if (was.size() != now.size())
    return cat(now.size(), " training streams, the run started with ", was.size());
  std::string out;
  for (size_t i = 0; i < now.size(); ++i)
    if (!now[i].same_content(was[i]))
      out += cat(out.empty() ? "" : ", ", quote(now[i].source),
                 now[i].bytes != was[i].bytes ? cat(" (", now[i].bytes, " bytes, was ", was[i].bytes, ")")
                                              : std::string(" (same size, other content)"));
  return out;
}

}  // namespace

std::unique_ptr<Trainer> Trainer::create(const TrainRequest& req) {
  if (req.resume.empty()) {
    if (req.model.empty())
      fail(ErrorKind::Usage, "no model: give a preset, config JSON or checkpoint, or --resume DIR",
           "run 'lm-inspect-config --list-presets' for the presets");
    if (req.run_dir.empty()) fail_usage("no run directory: give -o DIR");
    if (req.opts.allow_data_change) fail_usage("--allow-data-change goes with --resume");
  }
  std::unique_ptr<Trainer> trainer;
  run_together([&] {  // an error on any rank ends every rank, reported once by rank 0
    TrainOptions o = req.opts;
    std::unique_ptr<TokenData> train, val;
    if (!req.resume.empty()) {
      RunLock lock;
      if (world_rank() == 0 && fs::is_directory(req.resume)) lock = RunLock::acquire(req.resume);
      const TrainOptions saved = saved_options(req.resume);  // data paths default to the run's
      if (o.train_paths.empty()) o.train_paths = saved.train_paths;
      if (o.val_paths.empty()) o.val_paths = saved.val_paths;
      if (o.train_conditions.empty()) o.train_conditions = saved.train_conditions;
      if (o.val_conditions.empty()) o.val_conditions = saved.val_conditions;
      if (o.train_vision.empty()) o.train_vision = saved.train_vision;
      if (o.val_vision.empty()) o.val_vision = saved.val_vision;
      train = load_data(o.train_paths);
      val = load_data(o.val_paths);
      trainer = resume(std::move(lock), req.resume, o, train.get(), val.get());
    } else {
      const ConfigInput in = load_user_config(req.model, req.sets, req.config_format);
      // A row holds max_seq_len positions; a model with conditions puts them first (docs/materium.md).
      const int64_t K = in.config.conditions.empty() ? 0 : ConditionBatch(in.config, 1).positions();
      o.seq = req.seq > 0 ? req.seq : std::max<int64_t>(1, in.config.max_seq_len - K);
      o.schedule.min_lr = req.min_lr.value_or(o.schedule.lr / 10);
      o.validate();
      if (world_rank() == 0 && fs::is_directory(req.run_dir)) {  // before the work: a busy or taken directory
        RunLock probe = RunLock::acquire(req.run_dir);
        refuse_taken(req.run_dir);
      }
      train = load_data(o.train_paths);
      val = load_data(o.val_paths);
      for (auto* paths : {&o.train_paths, &o.val_paths, &o.train_conditions, &o.val_conditions, &o.train_vision,
                            &o.val_vision})  // recorded for --resume from anywhere
        for (std::string& p : *paths)
          if (p != "-") p = fs::absolute(p).lexically_normal().string();
      ModelConfig cfg = in.config;
      std::vector<float> weight_vec;
      if (!req.loss_weights.empty()) weight_vec = read_loss_weights(req.loss_weights, cfg.vocab_size);
      const SafeTensorsFile* ckpt = in.file.get();  // the checkpoint input, read once (stdin too)
      if (ckpt) {
        if (!weight_vec.empty()) cfg.loss_weights = ckpt->contains(kLossWeightsTensor);  // replaced below
      } else if (cfg.loss_weights && weight_vec.empty()) {
        fail_usage("the config has loss_weights = true: give the weights with --loss-weights FILE");
      }
      ModelWeights weights = ckpt ? ModelWeights::from_checkpoint(*ckpt, cfg) : ModelWeights::random(cfg, o.seed);
      if (!weight_vec.empty()) weights.set_loss_weights(weight_vec, quote(req.loss_weights));
      std::string tok = weights.tokenizer_json();
      if (train && train->spec.vocab_size != 0) tok = spec_to_json(train->spec);
      if (tok.empty()) tok = spec_to_json(default_tokenizer_spec(in.config));
      trainer = std::unique_ptr<Trainer>(new Trainer());
      trainer->opts_ = o;
      trainer->run_dir_ = req.run_dir;
      trainer->tokenizer_json_ = std::move(tok);
      trainer->start(std::move(weights), train.get(), val.get(), quote(req.model));
    }
    trainer->own_train_ = std::move(train);
    trainer->own_val_ = std::move(val);
  });
  return trainer;
}

Trainer::~Trainer() {
  if (log_) std::fclose(log_);
}

Trainer::Trainer(ModelWeights weights, const TrainOptions& opts, const std::string& run_dir,
                 std::string tokenizer_json, const TokenData* train, const TokenData* val)
    : opts_(opts), run_dir_(run_dir), tokenizer_json_(std::move(tokenizer_json)) {
  start(std::move(weights), train, val, "the model");
}

void Trainer::start(ModelWeights weights, const TokenData* train, const TokenData* val, const std::string& source) {
  if (world_rank() == 0 && fs::is_directory(run_dir_)) {  // held from here: nobody starts a run in between
    lock_ = RunLock::acquire(run_dir_);
    refuse_taken(run_dir_);
  }
  opts_.ranks = world_size();
  state_.settings = opts_.run_settings();
  rng_.reseed(dropout_seed(opts_.seed, world_rank()));
  init(std::move(weights), train, val, source);
  if (train) state_.data_fingerprints = train->fingerprints;
  if (rank_ == 0) {
    make_run_dir(run_dir_);
    if (!lock_.held()) {
      lock_ = RunLock::acquire(run_dir_);
      refuse_taken(run_dir_);  // made by someone else since the first look
    }
    remove_stale_temporaries(run_dir_);
    open_log(false, "");
  }
}

std::unique_ptr<Trainer> Trainer::resume(const std::string& run_dir, const TrainOptions& opts, const TokenData* train,
                                         const TokenData* val) {
  RunLock lock;
  if (world_rank() == 0 && fs::is_directory(run_dir)) lock = RunLock::acquire(run_dir);
  return resume(std::move(lock), run_dir, opts, train, val);
}

std::unique_ptr<Trainer> Trainer::resume(RunLock lock, const std::string& run_dir, const TrainOptions& opts,
                                         const TokenData* train, const TokenData* val) {
  std::unique_ptr<Trainer> t(new Trainer());
  t->run_dir_ = run_dir;
  t->lock_ = std::move(lock);
  const std::string path = t->checkpoint_path();
  check_resumable(run_dir, path);
  if (t->lock_.held()) remove_stale_temporaries(run_dir);
  LoadedCheckpoint ck = load_checkpoint(path);
  t->opts_ = opts;
  t->opts_.apply_run_settings(ck.state.settings);
  if (opts.steps >= 0) t->opts_.steps = opts.steps;
  if (t->opts_.steps < ck.state.step)
    fail_usage(cat("--steps ", t->opts_.steps, " is below the checkpoint's step ", ck.state.step));
  const int64_t ranks = t->opts_.ranks;
  if (ranks != world_size())
    fail(ErrorKind::Usage,
         cat("the run in ", quote(run_dir), " trains on ", ranks, ranks == 1 ? " process" : " processes", ", not ",
             world_size()),
         ranks > 1 ? cat("resume it with mpirun -np ", ranks, " lm-train --resume ", run_dir)
                   : cat("resume it without mpirun: lm-train --resume ", run_dir));
  if (ck.state.rank_rngs.size() + 1 != static_cast<size_t>(ranks))
    fail_data(cat(quote(path), ": ", ck.state.rank_rngs.size(), " saved rank generators for ", ranks, " ranks"));
  for (const Tensor* moments : {&ck.m, &ck.v})
    if (first_non_finite(*moments) >= 0)
      fail_data(cat(quote(path), ": the optimizer state holds non-finite values"));
  std::string note;
  if (train && !ck.state.data_fingerprints.empty()) {
    const std::string changed = changed_streams(ck.state.data_fingerprints, train->fingerprints);
    if (!changed.empty() && !opts.allow_data_change)
      fail(ErrorKind::Data, cat("the training data changed since the run started: ", changed),
           "give the run's data, or --allow-data-change to continue on this data (the run is then no longer "
           "reproducible)");
    if (!changed.empty()) note = cat("the training data changed since the run started: ", changed);
  }
  t->state_ = ck.state;
  t->state_.settings = t->opts_.run_settings();
  if (train) t->state_.data_fingerprints = train->fingerprints;
  t->tokenizer_json_ = ck.tokenizer_json;
  const LoaderState saved_data = ck.state.data;
  t->init(std::move(ck.weights), train, val, quote(path));
  t->state_.data = saved_data;
  std::memcpy(t->adamw_.m(), ck.m.data<float>(), ck.m.nbytes());
  std::memcpy(t->adamw_.v(), ck.v.data<float>(), ck.v.nbytes());
  t->rng_.set_state(world_rank() == 0 ? t->state_.rng : t->state_.rank_rngs[static_cast<size_t>(world_rank() - 1)]);
  const auto& w = t->state_.data.rng.s;
  const bool fresh_data = w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0;  // saved before any data was used
  if (t->train_loader_ && !fresh_data) t->train_loader_->set_state(t->state_.data);
  t->last_saved_ = t->state_.step;
  if (!note.empty()) t->warnings_.push_back(note + "; continuing (--allow-data-change)");
  if (t->rank_ == 0) t->open_log(true, note);
  return t;
}

void Trainer::init(ModelWeights weights, const TokenData* train, const TokenData* val, const std::string& source) {
  opts_.validate();
  opts_.schedule.total = opts_.steps;
  rank_ = world_rank();
  ranks_ = world_size();
  weights.make_writable();
  require_finite(weights, source);
  const ModelConfig cfg = weights.config();
  if (opts_.seq > cfg.max_seq_len)
    fail_usage(cat("sequence length ", opts_.seq, " exceeds the model's max_seq_len (", cfg.max_seq_len, ")"));
  require_supported(cfg, program_capabilities(), "lm-train");
  if (cfg.vision_dim <= 0) {
    if (!opts_.train_vision.empty() || !opts_.val_vision.empty())
      fail_usage("--vision: the model has no vision_dim (image features)");
  } else {
    // Trained text only, vision_projection would stay untrained without a word: features are required.
    if (train && opts_.train_vision.empty())
      fail(ErrorKind::Usage, cat("the model takes image features (vision_dim = ", cfg.vision_dim,
                                 "): give them with --vision FILE"),
           "one safetensors file per training stream (docs/llama4.md)");
    if (val && opts_.val_vision.empty())
      fail(ErrorKind::Usage, cat("the model takes image features (vision_dim = ", cfg.vision_dim,
                                 "): give the validation features with --val-vision FILE"));
    if (opts_.sample != SampleMode::Sequential && (train || val))
      fail(ErrorKind::Usage, "a vision model trains on records (image features are per record)",
           "use --sample sequential (a random window has no record and may start inside one)");
    if (train) train_vision_ = std::make_unique<VisionSet>(opts_.train_vision, *train, cfg);
    if (val) val_vision_ = std::make_unique<VisionSet>(opts_.val_vision, *val, cfg);
  }
  if (cfg.is_materium()) {
    const int64_t K = ConditionBatch(cfg, 1).positions();
    if (opts_.seq + K > cfg.max_seq_len)
      fail_usage(cat("--seq ", opts_.seq, " plus the ", K, " condition positions exceeds the model's max_seq_len (",
                     cfg.max_seq_len, ")"));
  }
  if (cfg.conditions.empty()) {
    if (!opts_.train_conditions.empty() || !opts_.val_conditions.empty())
      fail_usage("--conditions: the model has no conditions");
    if (opts_.condition_dropout > 0) fail_usage("--condition-dropout: the model has no conditions");
  } else {
    if (train && opts_.train_conditions.empty())
      fail(ErrorKind::Usage, cat("the model has conditions (", condition_names(cfg), "): give their values with --conditions FILE"),
           "one JSON Lines file per training stream (docs/materium.md)");
    if (val && opts_.val_conditions.empty())
      fail(ErrorKind::Usage, cat("the model has conditions (", condition_names(cfg),
                                 "): give the validation values with --val-conditions FILE"));
    if (train) train_conds_ = std::make_unique<ConditionBatch>(read_conditions(opts_.train_conditions, train->source_records, cfg));
    if (val) val_conds_ = std::make_unique<ConditionBatch>(read_conditions(opts_.val_conditions, val->source_records, cfg));
  }
  model_ = std::make_unique<Transformer>(std::move(weights));
  model_->set_gradient_checkpointing(opts_.checkpointing);
  model_->set_compute_dtype(opts_.compute_dtype);
  model_->set_row_parallel(Transformer::row_parallel_pays(cfg));
  const ParameterLayout& layout = model_->weights().layout();
  adamw_ = AdamW(layout, opts_.adamw);
  grads_ = Tensor::zeros(DType::F32, {layout.arena_floats()});
  grad_views_ = layout.bind(grads_.data_mut<float>());
  step_fn_ = transformer_step();
  const int32_t pad = static_cast<int32_t>(cfg.pad_id);
  if (train) {
    check_vocab(*train, cfg.vocab_size, "training data");
    // Every rank draws the global micro-batch (ranks x batch rows) and trains on its rows.
    train_loader_ = std::make_unique<DataLoader>(train, opts_.sample, opts_.batch * ranks_, opts_.seq, opts_.seed,
                                                 pad, "training data");
    if (cfg.is_materium()) train_loader_->require_whole_records();
  } else if (opts_.steps > state_.step) {
    fail(ErrorKind::Usage, "no training data", "give one or more token streams, or --steps 0 for an initial checkpoint");
  }
  if (val) {
    check_vocab(*val, cfg.vocab_size, "validation data");
    val_loader_ = std::make_unique<DataLoader>(val, opts_.sample, opts_.batch * ranks_, opts_.seq, opts_.seed, pad,
                                               "validation data");
    if (cfg.is_materium()) val_loader_->require_whole_records();
  }
  if (train_loader_) state_.data = train_loader_->state();
}

void Trainer::open_log(bool truncate_after_step, const std::string& note) {
  const std::string path = run_dir_ + "/" + kLogFile;
  if (truncate_after_step) {  // drop records of steps after the checkpoint (a run that died before saving)
    std::string kept;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      json j;
      try {
        j = parse_json_strict(line, "");
      } catch (const Error&) {
        continue;  // a torn last line, or not ours: dropped
      }
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= state_.step)
        kept += line + "\n";
    }
    if (!note.empty()) {  // a record without a loss: readers of steps skip it
      nlohmann::ordered_json j;
      j["step"] = state_.step;
      j["note"] = note;
      kept += j.dump() + "\n";
    }
    auto out = open_output(path);  // replaced whole: a kill now leaves the old log or the new one
    out->write(kept.data(), kept.size());
    out->finish();
  }
  log_ = std::fopen(path.c_str(), "a");
  if (!log_) fail_io("cannot write", path);
}

void Trainer::check_finite_state(int64_t step) const {
  const ModelWeights& w = model_->weights();
  if (const auto bad = first_non_finite(w))
    stop_training(cat("weight ", quote(bad->tensor), " is ", bad->value, " after step ", step));
  const int64_t n = adamw_.arena_floats();
  for (const auto& [name, p] : {std::pair{"first", adamw_.m()}, std::pair{"second", adamw_.v()}})
    if (const int64_t at = first_non_finite(Tensor::view(DType::F32, {n}, p, nullptr)); at >= 0)
      stop_training(cat("the AdamW ", name, " moment is ", p[at], " after step ", step));
}

void Trainer::stop_training(const std::string& what) const {
  fail(ErrorKind::Runtime, cat(what, "; training stopped"),
       last_saved_ >= 0 ? cat("the last good checkpoint (step ", last_saved_, ") is kept in ", quote(run_dir_),
                              "; try a lower --lr")
                        : std::string("nothing was saved; try a lower --lr"));
}

TrainState Trainer::snapshot() const {
  TrainState s = state_;
  if (ranks_ > 1) {  // every rank's dropout generator goes into rank 0's checkpoint
    const std::vector<Rng::State> all = gather_rng_states(rng_.state());
    if (rank_ == 0) s.rank_rngs.assign(all.begin() + 1, all.end());
  }
  s.rng = rng_.state();
  if (train_loader_) s.data = train_loader_->state();
  return s;
}

void Trainer::commit(const TrainState& s) {
  run_together([&] {  // rank 0 alone writes: its failure must end every rank
    if (rank_ != 0) return;
    check_finite_state(s.step);
    // The model first: a run killed between the two renames keeps a model at least as new
    // as its checkpoint (a resume rewrites it with the same bits), never a checkpoint without one.
    model_->weights().save(model_path(), tokenizer_json_);
    save_checkpoint(checkpoint_path(), model_->weights(), adamw_, s, tokenizer_json_);
  });
  last_saved_ = s.step;
  pending_.reset();
}

void Trainer::save() { commit(snapshot()); }

void Trainer::write_log(const StepReport& r, const std::function<void(const StepReport&)>& on_step) {
  run_together([&] {
    if (rank_ != 0) return;
    if (std::fprintf(log_, "%s\n", r.json_line.c_str()) < 0 || std::fflush(log_) != 0)
      fail_io("cannot write", run_dir_ + "/" + kLogFile);
    if (on_step) on_step(r);
  });
}

std::optional<double> Trainer::validate() {
  if (!val_loader_) return std::nullopt;
  const int64_t n = opts_.val_batches > 0 ? std::min(opts_.val_batches, val_loader_->eval_batches())
                                          : val_loader_->eval_batches();
  double totals[2] = {0, 0};  // loss sum and weight (loss-weighted when the model has loss weights)
  run_together([&] {
    Batch b, mine;
    const std::vector<uint8_t> none(model_->config().conditions.size(), 0);  // validation keeps every condition
    for (int64_t i = 0; i < n && val_loader_->eval_batch(i, b); ++i) {
      attach_conditions(b, val_conds_.get(), none);
      attach_vision(b, val_vision_.get());
      if (ranks_ > 1) {  // this rank's rows of the global batch (the last batch may leave it none)
        const int64_t begin = rank_ * opts_.batch, rows = std::min(opts_.batch, b.B - begin);
        if (rows <= 0) continue;
        take_rows(b, begin, rows, mine);
      }
      const Batch& x = ranks_ > 1 ? mine : b;
      const bool materium = model_->config().is_materium();  // the model computes its positions
      model_->forward(x.inputs.data(), x.has_pos && !materium ? x.pos.data() : nullptr, x.B, x.T,
                      x.has_conditions ? &x.conditions : nullptr, x.has_vision ? x.vision.data() : nullptr);
      const LossResult r = model_->loss(x.targets.data());
      totals[0] += r.loss * r.weight_sum;
      totals[1] += r.weight_sum;
    }
  });
  allreduce_sum(totals, 2);
  return totals[1] > 0 ? totals[0] / totals[1] : 0.0;
}

void Trainer::attach_conditions(Batch& b, const ConditionBatch* table, const std::vector<uint8_t>& dropped) const {
  b.has_conditions = table != nullptr;
  if (!table) return;
  b.conditions = table->gather(b.records);
  for (size_t i = 0; i < dropped.size(); ++i)
    if (dropped[i]) b.conditions.drop(i);
}

void Trainer::attach_vision(Batch& b, const VisionSet* set) const {
  b.has_vision = set != nullptr;
  if (!set) return;
  const ModelConfig& c = model_->config();
  const int64_t Dv = c.vision_dim;
  b.vision.assign(static_cast<size_t>(b.B), VisionRow{});
  b.vision_places.resize(static_cast<size_t>(b.B));
  for (int64_t r = 0; r < b.B; ++r) {
    VisionRow& out = b.vision[static_cast<size_t>(r)];
    std::vector<int64_t>& places = b.vision_places[static_cast<size_t>(r)];
    places.clear();
    const int64_t record = b.records[static_cast<size_t>(r)];
    const TokenData::Record& rec = set->data->records()[static_cast<size_t>(record)];
    const VisionRow full = set->row(record);
    if (full.count == 0) continue;
    // The row's window: record tokens [off, off + inputs) (sequential windows, then padding).
    const int64_t off = b.pos[static_cast<size_t>(r * b.T)] - static_cast<int64_t>(rec.start);
    const int64_t inputs = std::min(b.T, rec.size - off);
    if (c.image_token_id >= 0) {  // the window takes the features after those of the earlier windows' tokens
      const auto image = static_cast<uint32_t>(c.image_token_id);
      int64_t before = 0, k = 0;
      for (int64_t t = 0; t < off; ++t) before += set->data->at(rec, t) == image;
      for (int64_t t = off; t < off + inputs; ++t) k += set->data->at(rec, t) == image;
      out.features = k ? full.features + before * Dv : nullptr;
      out.count = k;
      continue;
    }
    for (int64_t k = 0; k < full.count; ++k) {
      const int64_t p = full.places[k];
      if (p < off || p >= off + inputs) continue;
      if (places.empty()) out.features = full.features + k * Dv;
      places.push_back(p - off);
    }
    out.count = static_cast<int64_t>(places.size());
    out.places = places.empty() ? nullptr : places.data();
  }
}

std::vector<uint8_t> Trainer::dropped_conditions(int64_t step) const {
  std::vector<uint8_t> out(model_->config().conditions.size(), 0);
  if (opts_.condition_dropout <= 0) return out;
  // A pure function of (seed, step): the same on every rank and after a resume.
  Rng draw(opts_.seed ^ 0x6a09e667f3bcc909ull ^ (static_cast<uint64_t>(step) * 0x9e3779b97f4a7c15ull));
  for (uint8_t& d : out) d = static_cast<double>(draw.uniform()) < opts_.condition_dropout;
  return out;
}

TrainSummary Trainer::run(const std::function<void(const StepReport&)>& on_step, const std::atomic<bool>* stop) {
  TrainSummary sum;
  sum.run_dir = run_dir_;
  const ParameterLayout& layout = model_->weights().layout();
  float* params = model_->weights().arena();
  float* grads = grads_.data_mut<float>();
  const size_t grad_bytes = static_cast<size_t>(layout.arena_floats()) * sizeof(float);
  const double base_elapsed = state_.elapsed;
  const double t0 = now_seconds();
  double train_seconds = 0;
  uint64_t run_tokens = 0;
  const float grad_scale = 1.0f / static_cast<float>(opts_.grad_accum);
  const int64_t pad_id = model_->config().pad_id;
  Batch batch, global;
  StepReport rep;
  rep.steps = opts_.steps;
  bool stop_all = false;  // several ranks: any rank's stop flag, agreed on after each step
  // Gradients accumulate from zero: zeroed here once, then by AdamW's pass of each step
  // (step_and_zero) instead of a single-threaded memset of the arena before each step.
  std::memset(grads, 0, grad_bytes);

  while (state_.step < opts_.steps) {
    const bool stopping = ranks_ > 1 ? stop_all : stop && stop->load();
    if (stopping || (opts_.stop_after > 0 && sum.steps_this_run >= opts_.stop_after)) {
      sum.interrupted = true;
      break;
    }
    const double ts = now_seconds();
    const double lr = opts_.schedule.at(state_.step);
    double loss = 0, moe_aux = 0;
    const std::vector<uint8_t> dropped = dropped_conditions(state_.step);
    run_together([&] {  // local work only (no collective inside): a failure here ends every rank
      for (int64_t k = 0; k < opts_.grad_accum; ++k) {
        if (ranks_ == 1) {
          train_loader_->next(batch);
          attach_conditions(batch, train_conds_.get(), dropped);
          attach_vision(batch, train_vision_.get());
          const TrainStepResult r = step_fn_(*model_, batch, grad_views_, grad_scale, rng_);
          loss += r.loss;
          moe_aux += r.moe_aux;
          continue;
        }
        // This rank's rows, weighted by their share of the global micro-batch's counted targets:
        // the sum over the ranks is the gradient (and loss) of the whole micro-batch.
        train_loader_->next(global);
        attach_conditions(global, train_conds_.get(), dropped);
        attach_vision(global, train_vision_.get());
        take_rows(global, rank_ * opts_.batch, opts_.batch, batch);
        const float* lw = model_->weights().loss_weights();
        const double all = counted_targets(global, pad_id, lw), share =
            all > 0 ? counted_targets(batch, pad_id, lw) / all : 1.0 / ranks_;
        if (share > 0) {
          const TrainStepResult r = step_fn_(*model_, batch, grad_views_, grad_scale * static_cast<float>(share), rng_);
          loss += share * r.loss;
          moe_aux += share * r.moe_aux;
        }
      }
    });
    if (ranks_ > 1) {
      allreduce_sum(grads, layout.arena_floats());
      double totals[3] = {loss, stop && stop->load() ? 1.0 : 0.0, moe_aux};
      allreduce_sum(totals, 3);
      loss = totals[0];
      stop_all = totals[1] > 0;
      moe_aux = totals[2];
    }
    loss /= static_cast<double>(opts_.grad_accum);
    moe_aux /= static_cast<double>(opts_.grad_accum);
    const double norm = grad_global_norm(layout, grads);  // clipping: folded into the AdamW pass below
    if (!std::isfinite(loss) || !std::isfinite(norm))  // the same on every rank: reduced values
      stop_training(cat(!std::isfinite(loss) ? cat("loss is ", loss) : cat("gradient norm is ", norm), " at step ",
                        state_.step + 1));
    if (pending_) commit(*pending_);  // its weights gave a finite loss: a good checkpoint
    adamw_.step_and_zero(params, grads, lr, state_.step + 1, clip_scale(norm, opts_.grad_clip));
    model_->weights_changed();  // bf16 compute: its weight copies are rounded again
    ++state_.step;
    ++sum.steps_this_run;
    const uint64_t step_tokens = static_cast<uint64_t>(opts_.grad_accum * opts_.batch * opts_.seq * ranks_);
    state_.tokens += step_tokens;
    run_tokens += step_tokens;
    const double dt = now_seconds() - ts;
    train_seconds += dt;
    state_.elapsed = base_elapsed + (now_seconds() - t0);
    sum.last_loss = loss;

    rep.step = state_.step;
    rep.loss = loss;
    if (model_->config().moe.n_experts > 0) rep.moe_aux = moe_aux;
    rep.lr = lr;
    rep.grad_norm = norm;
    rep.tokens_per_s = dt > 0 ? static_cast<double>(step_tokens) / dt : 0;
    rep.val_loss.reset();
    const bool last = state_.step == opts_.steps;
    if (val_loader_ && ((opts_.val_every > 0 && state_.step % opts_.val_every == 0) || last)) {
      rep.val_loss = validate();
      sum.val_loss = rep.val_loss;
    }
    rep.elapsed = state_.elapsed;
    rep.eta = (now_seconds() - t0) / static_cast<double>(sum.steps_this_run) * static_cast<double>(opts_.steps - state_.step);
    const bool log_now = rep.val_loss || last || opts_.log_every <= 1 || state_.step % opts_.log_every == 0;
    if (log_now) {
      nlohmann::ordered_json j;
      j["step"] = rep.step;
      j["loss"] = rep.loss;
      if (rep.moe_aux) j["moe_aux"] = *rep.moe_aux;
      j["lr"] = rep.lr;
      j["grad_norm"] = rep.grad_norm;
      j["tokens_per_s"] = std::round(rep.tokens_per_s * 10) / 10;
      j["elapsed"] = std::round(rep.elapsed * 1000) / 1000;
      if (rep.val_loss) j["val_loss"] = *rep.val_loss;
      rep.json_line = j.dump();
    }
    if (log_now) write_log(rep, on_step);
    // A checkpoint of this step is written once the next step's loss with these weights is
    // known to be finite (or at the end): a NaN stop never keeps weights that give NaN.
    if (opts_.save_every > 0 && state_.step % opts_.save_every == 0) pending_ = snapshot();
  }
  if (val_loader_ && !sum.val_loss && sum.steps_this_run == 0) sum.val_loss = validate();
  state_.elapsed = base_elapsed + (now_seconds() - t0);
  if (last_saved_ != state_.step || sum.steps_this_run == 0) save();
  sum.step = state_.step;
  sum.steps = opts_.steps;
  sum.tokens = state_.tokens;
  sum.elapsed = state_.elapsed;
  sum.tokens_per_s = train_seconds > 0 ? static_cast<double>(run_tokens) / train_seconds : 0;
  return sum;
}

}  // namespace lm::train

namespace lm::train {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e9) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", (long long)s);
  return buf;
}

namespace {
std::string rate(double tokens_per_s) {
  char buf[32];
  if (tokens_per_s >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", tokens_per_s / 1e6);
  else if (tokens_per_s >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", tokens_per_s / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", tokens_per_s);
  return buf;
}
}  // namespace

std::string progress_line(const StepReport& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %lld/%lld  loss %.4f  lr %.2e  %s tok/s  ETA %s", (long long)r.step,
                (long long)r.steps, r.loss, r.lr, rate(r.tokens_per_s).c_str(), format_duration(r.eta).c_str());
  std::string s = buf;
  if (r.val_loss) s += cat("  val ", std::to_string(*r.val_loss).substr(0, 6));
  return s;
}

std::string summary_text(const TrainSummary& s) {
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s at step %lld/%lld: %lld steps this run, %s tokens/s, %s of training in total\n",
                s.interrupted ? "stopped" : "done", (long long)s.step, (long long)s.steps,
                (long long)s.steps_this_run, rate(s.tokens_per_s).c_str(), format_duration(s.elapsed).c_str());
  out += buf;
  if (s.steps_this_run > 0) {
    std::snprintf(buf, sizeof buf, "last train loss %.4f", s.last_loss);
    out += buf;
    if (s.val_loss) {
      std::snprintf(buf, sizeof buf, ", val loss %.4f", *s.val_loss);
      out += buf;
    }
    out += "\n";
  } else if (s.val_loss) {
    std::snprintf(buf, sizeof buf, "val loss %.4f\n", *s.val_loss);
    out += buf;
  }
  out += cat("model: ", s.run_dir, "/", kModelFile, "\n");
  if (s.interrupted) out += cat("continue with: lm-train --resume ", s.run_dir, "\n");
  return out;
}

}  // namespace lm::train
