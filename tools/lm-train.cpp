// lm-train: train or fine-tune a model on token streams, in a run directory with exact
// resume (lib/train). See man/lm-train.1.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/user_config.h"
#include "model/loss_weights.h"
#include "model/params.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace {

std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  if (g_signal != 0) {  // a second signal: stop now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_signal = sig;
  g_stop.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  lm::train::distributed_init();  // a rank of a data-parallel run when started by mpirun
  lm::cli::Tool tool("lm-train", "Train a model (a preset, config JSON, or a checkpoint to fine-tune) on token streams, "
                                 "writing checkpoints and a JSON Lines log into a run directory.");
  CLI::App& app = tool.app();
  namespace tr = lm::train;
  tr::TrainOptions o;
  std::string input, out_dir, resume, sample = "random", decay = "cosine", loss_weights;
  std::vector<std::string> streams, sets;
  double min_lr = -1;
  int64_t seq = 0;
  bool json = false, no_decay_emb = false;

  std::vector<CLI::Option*> fixed;  // options a resumed run may not change
  fixed.push_back(app.add_option("config", input, "Preset name, config JSON file, or checkpoint to fine-tune"));
  app.add_option("streams", o.train_paths, "Training token streams ('-' = stdin)");
  app.add_option("--val", o.val_paths, "Validation token stream (repeatable)")->type_name("FILE");
  fixed.push_back(app.add_option("-o,--output", out_dir, "Run directory (created; must not hold a run)")->type_name("DIR"));
  app.add_option("--resume", resume, "Continue the run in DIR exactly where its checkpoint left off")->type_name("DIR");
  fixed.push_back(app.add_option("--set", sets, "Override a config field: KEY=VALUE (see lm-inspect-config)")
                      ->type_name("KEY=VALUE")->default_str("")->allow_extra_args(false));
  app.add_option("--steps", o.steps, "Optimizer steps of the whole run; 0 = write the initial checkpoint and exit")
      ->check(CLI::NonNegativeNumber);
  fixed.push_back(app.add_option("--batch", o.batch, "Rows per micro-batch")->check(CLI::PositiveNumber));
  fixed.push_back(app.add_option("--seq", seq, "Tokens per row (default: max_seq_len)")->default_str("")->check(CLI::PositiveNumber));
  fixed.push_back(app.add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")->check(CLI::PositiveNumber));
  fixed.push_back(app.add_option("--seed", o.seed, "Seed of initialisation, data order and dropout"));
  fixed.push_back(app.add_option("--sample", sample, "random (windows anywhere, nanoGPT) or sequential (records in "
                                                     "order with position ids, soma)")->check(CLI::IsMember({"random", "sequential"})));
  fixed.push_back(app.add_option("--lr", o.schedule.lr, "Peak learning rate")->check(CLI::NonNegativeNumber));
  fixed.push_back(app.add_option("--min-lr", min_lr, "Final learning rate of the decay (default: lr / 10)")->default_str(""));
  fixed.push_back(app.add_option("--warmup", o.schedule.warmup, "Linear warmup steps")->check(CLI::NonNegativeNumber));
  fixed.push_back(app.add_option("--decay", decay, "Decay after warmup: cosine, linear or constant")
                      ->check(CLI::IsMember({"cosine", "linear", "constant"})));
  fixed.push_back(app.add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay (matrices only)"));
  fixed.push_back(app.add_flag("--no-decay-embeddings", no_decay_emb, "No weight decay on the token embeddings"));
  fixed.push_back(app.add_option("--beta1", o.adamw.beta1, "AdamW beta1"));
  fixed.push_back(app.add_option("--beta2", o.adamw.beta2, "AdamW beta2"));
  fixed.push_back(app.add_option("--eps", o.adamw.eps, "AdamW epsilon"));
  fixed.push_back(app.add_option("--grad-clip", o.grad_clip, "Clip gradients to this global norm (0 = off)"));
  fixed.push_back(app.add_option("--loss-weights", loss_weights,
                                 "Per-token-id loss weights: a JSON object of token id to weight (others weigh 1) or "
                                 "safetensors with one vocab_size tensor; saved in the checkpoints")
                      ->type_name("FILE"));
  app.add_option("--save-every", o.save_every, "Checkpoint every N steps (0 = only at the end)")->check(CLI::NonNegativeNumber);
  app.add_option("--val-every", o.val_every, "Validation loss every N steps (0 = only at the end)")->check(CLI::NonNegativeNumber);
  app.add_option("--val-batches", o.val_batches, "Validation batches per evaluation (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--log-every", o.log_every, "Log a step every N steps")->check(CLI::PositiveNumber);
  app.add_option("--stop-after", o.stop_after, "Stop (saving) after N steps of this invocation, as if interrupted")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--json", json, "Also print the JSON Lines log to stdout");
  tool.add_threads_option();
  tool.add_quiet_option();
  tool.report = tr::is_root();  // rank 0 reports for every rank
  bool together = false;        // every rank is set up: an error now may leave others waiting

  const int code = tool.run(argc, argv, [&]() -> int {
    CLI::Option* steps_opt = app.get_option("--steps");
    std::unique_ptr<tr::Trainer> trainer;
    lm::train::TokenData train, val;
    tr::run_together([&] {  // an error on any rank ends every rank, reported once by rank 0
      const bool resuming = !resume.empty();
      if (resuming) {
        for (CLI::Option* opt : fixed)
          if (opt->count() > 0)
            lm::fail_usage(lm::cat(opt->get_name(), " cannot be given with --resume (the run keeps its settings)"));
      } else if (input.empty()) {
        lm::fail(lm::ErrorKind::Usage, "no model: give a preset, config JSON or checkpoint, or --resume DIR",
                 "run 'lm-inspect-config --list-presets' for the presets");
      } else if (out_dir.empty()) {
        lm::fail_usage("no run directory: give -o DIR");
      }
      if (resuming) {
        if (steps_opt->count() == 0) o.steps = -1;  // keep the run's
        const tr::TrainOptions saved = tr::saved_options(resume);  // data paths default to the run's
        if (o.train_paths.empty()) o.train_paths = saved.train_paths;
        if (o.val_paths.empty()) o.val_paths = saved.val_paths;
        if (!o.train_paths.empty()) train = tr::load_tokens(o.train_paths);
        if (!o.val_paths.empty()) val = tr::load_tokens(o.val_paths);
        trainer = tr::Trainer::resume(resume, o, o.train_paths.empty() ? nullptr : &train,
                                      o.val_paths.empty() ? nullptr : &val);
      } else {
        const lm::ConfigInput in = lm::load_user_config(input, sets);
        o.sample = *tr::sample_mode_from_name(sample);
        o.schedule.decay = *tr::decay_kind_from_name(decay);
        o.schedule.min_lr = min_lr >= 0 ? min_lr : o.schedule.lr / 10;
        o.adamw.decay_embeddings = !no_decay_emb;
        o.seq = seq > 0 ? seq : in.config.max_seq_len;
        if (!o.train_paths.empty()) train = tr::load_tokens(o.train_paths);
        if (!o.val_paths.empty()) val = tr::load_tokens(o.val_paths);
        for (auto* paths : {&o.train_paths, &o.val_paths})  // recorded for --resume from anywhere
          for (std::string& p : *paths)
            if (p != "-") p = std::filesystem::absolute(p).lexically_normal().string();
        lm::ModelConfig cfg = in.config;
        std::vector<float> weight_vec;
        if (!loss_weights.empty()) weight_vec = lm::read_loss_weights(loss_weights, cfg.vocab_size);
        const lm::SafeTensorsFile* ckpt = in.file.get();  // the checkpoint input, read once
        if (ckpt) {
          if (!weight_vec.empty()) cfg.loss_weights = ckpt->contains(lm::kLossWeightsTensor);  // replaced below
        } else if (cfg.loss_weights && weight_vec.empty()) {
          lm::fail_usage("the config has loss_weights = true: give the weights with --loss-weights FILE");
        }
        lm::ModelWeights weights = ckpt ? lm::ModelWeights::from_checkpoint(*ckpt, cfg) : lm::ModelWeights::random(cfg, o.seed);
        if (!weight_vec.empty()) weights.set_loss_weights(weight_vec, lm::quote(loss_weights));
        std::string tok = weights.tokenizer_json();
        if (!o.train_paths.empty() && train.spec.vocab_size != 0) tok = tr::tokenizer_spec_json(train.spec);
        if (tok.empty()) tok = tr::tokenizer_spec_json(tr::default_tokenizer_spec(in.config));
        trainer = std::make_unique<tr::Trainer>(std::move(weights), o, out_dir, tok,
                                                o.train_paths.empty() ? nullptr : &train,
                                                o.val_paths.empty() ? nullptr : &val);
      }
    });
    together = true;

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const bool progress = !json && tool.quiet == 0 && tr::is_root() && lm::cli::stderr_is_terminal();
    const int64_t start_step = trainer->state().step;
    const auto t0 = std::chrono::steady_clock::now();
    const tr::TrainSummary s = trainer->run(
        [&](const tr::StepReport& r) {
          if (json) std::cout << r.json_line << std::endl;
          if (progress) {
            const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const double eta = spent / static_cast<double>(r.step - start_step) * static_cast<double>(r.steps - r.step);
            std::fprintf(stderr, "\r\033[K%s", tr::progress_line(r, eta).c_str());
          }
        },
        &g_stop);
    if (progress) std::fputs("\r\033[K", stderr);
    if (tool.quiet == 0 && tr::is_root()) std::fputs(tr::summary_text(s).c_str(), stderr);
    if (g_signal != 0) {  // saved: now end the way the signal asked (exit status 128 + signal)
      std::fflush(stdout);
      std::signal(g_signal, SIG_DFL);
      std::raise(g_signal);
    }
    together = false;
    return 0;
  });
  return tr::distributed_finish(code, code != 0 && together);
}
