// lm-train: train or fine-tune a model on token streams, in a run directory with exact
// resume (lib/train). See man/lm-train.1.
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "core/error.h"
#include "io/stream.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace {

std::atomic<bool> g_stop{false};  // set by the first SIGINT or SIGTERM (lm::stop_on_termination_signal)

}  // namespace

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-train", "Train a model (a preset, config JSON, or a checkpoint to fine-tune) on token streams, "
                                 "writing checkpoints and a JSON Lines log into a run directory.");
  CLI::App& app = tool.app();
  namespace tr = lm::train;
  tr::TrainRequest req;
  tr::TrainOptions& o = req.opts;
  std::string sample = "random", decay = "cosine";
  bool json = false, no_decay_emb = false;

  std::vector<CLI::Option*> fixed;  // options a resumed run may not change
  app.add_option("config", req.model, "Preset name, config JSON file, or checkpoint to fine-tune (with --resume: "
                                      "the first stream)");
  app.add_option("streams", o.train_paths, "Training token streams ('-' = stdin)");
  app.add_option("--val", o.val_paths, "Validation token stream (repeatable)")->type_name("FILE");
  app.add_option("--conditions", o.train_conditions, "Condition values of a materium model: one JSON Lines file per "
                                                     "training stream, one line per record (repeatable, same order)")
      ->type_name("FILE");
  app.add_option("--val-conditions", o.val_conditions, "Condition values for each --val stream (repeatable, same order)")
      ->type_name("FILE");
  app.add_option("--vision", o.train_vision, "Image features of a vision model: one safetensors file per training "
                                             "stream, record.{i} [N, vision_dim] for its record i (repeatable, same "
                                             "order; see docs/llama4.md)")
      ->type_name("FILE");
  app.add_option("--val-vision", o.val_vision, "Image features for each --val stream (repeatable, same order)")
      ->type_name("FILE");
  fixed.push_back(app.add_option("--condition-dropout", o.condition_dropout, "Drop each condition for a whole step "
                                                                             "with probability P (classifier-free "
                                                                             "training; materium uses 0.5)")
                      ->type_name("P"));
  app.add_flag("--checkpointing", o.checkpointing, "Activation checkpointing: recompute each layer in the backward "
                                                   "pass (less memory, the same losses bit for bit)");
  fixed.push_back(app.add_option("--config-format", req.config_format, "Format of a config JSON file: auto, lmkit, "
                                                                       "materium, xlstm-jax, mobilellm, soma")
                      ->type_name("FORMAT")
                      ->check(CLI::IsMember({"auto", "lmkit", "materium", "xlstm-jax", "mobilellm", "soma"})));
  fixed.push_back(app.add_option("-o,--output", req.run_dir, "Run directory (created; must not hold a run)")->type_name("DIR"));
  app.add_option("--resume", req.resume, "Continue the run in DIR exactly where its checkpoint left off")->type_name("DIR");
  app.add_flag("--allow-data-change", o.allow_data_change, "With --resume: continue although the training data's "
                                                           "content changed since the run started (noted in the log)");
  fixed.push_back(app.add_option("--set", req.sets, "Override a config field: KEY=VALUE (see lm-inspect-config)")
                      ->type_name("KEY=VALUE")->default_str("")->allow_extra_args(false));
  CLI::Option* steps = app.add_option("--steps", o.steps, "Optimizer steps of the whole run; 0 = write the initial "
                                                          "checkpoint and exit")->check(CLI::NonNegativeNumber);
  fixed.push_back(app.add_option("--batch", o.batch, "Rows per micro-batch")->check(CLI::PositiveNumber));
  fixed.push_back(app.add_option("--seq", req.seq, "Tokens per row (default: max_seq_len, less the condition positions of a model with conditions)")->default_str("")->check(CLI::PositiveNumber));
  fixed.push_back(app.add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")->check(CLI::PositiveNumber));
  fixed.push_back(app.add_option("--seed", o.seed, "Seed of initialisation, data order and dropout"));
  fixed.push_back(app.add_option("--sample", sample, "random (windows anywhere, nanoGPT) or sequential (records in "
                                                     "order with position ids, soma)")->check(CLI::IsMember({"random", "sequential"})));
  fixed.push_back(app.add_option("--lr", o.schedule.lr, "Peak learning rate"));
  fixed.push_back(app.add_option("--min-lr", req.min_lr, "Final learning rate of the decay (default: lr / 10)")->default_str(""));
  fixed.push_back(app.add_option("--warmup", o.schedule.warmup, "Linear warmup steps")->check(CLI::NonNegativeNumber));
  fixed.push_back(app.add_option("--decay", decay, "Decay after warmup: cosine, linear or constant")
                      ->check(CLI::IsMember({"cosine", "linear", "constant"})));
  fixed.push_back(app.add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay (matrices only)"));
  fixed.push_back(app.add_flag("--no-decay-embeddings", no_decay_emb, "No weight decay on the token embeddings"));
  fixed.push_back(app.add_option("--beta1", o.adamw.beta1, "AdamW beta1, in [0, 1)"));
  fixed.push_back(app.add_option("--beta2", o.adamw.beta2, "AdamW beta2, in [0, 1)"));
  fixed.push_back(app.add_option("--eps", o.adamw.eps, "AdamW epsilon (> 0)"));
  fixed.push_back(app.add_option("--grad-clip", o.grad_clip, "Clip gradients to this global norm (0 = off)"));
  fixed.push_back(app.add_option("--loss-weights", req.loss_weights,
                                 "Per-token-id loss weights: a JSON object of token id to weight (others weigh 1) or "
                                 "safetensors with one vocab_size tensor; saved in the checkpoints")
                      ->type_name("FILE"));
  fixed.push_back(tool.add_dtype_option(o.compute_dtype, "Matmul operands: f32, or bf16 (bfloat16 operands, f32 "
                                                        "accumulation; f32 weights, gradients and optimizer state)"));
  app.add_option("--save-every", o.save_every, "Checkpoint every N steps (0 = only at the end)")->check(CLI::NonNegativeNumber);
  app.add_option("--val-every", o.val_every, "Validation loss every N steps (0 = only at the end)")->check(CLI::NonNegativeNumber);
  app.add_option("--val-batches", o.val_batches, "Validation batches per evaluation (0 = all)")->check(CLI::NonNegativeNumber);
  app.add_option("--log-every", o.log_every, "Log a step every N steps")->check(CLI::PositiveNumber);
  app.add_option("--stop-after", o.stop_after, "Stop (saving) after N steps of this invocation, as if interrupted")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--json", json, "Also print the JSON Lines log to stdout");
  tool.add_threads_option();
  tool.add_quiet_option();
  tool.report = tr::launched_rank() == 0;  // rank 0 reports for every rank

  const int code = tool.run(argc, argv, [&]() -> int {
    tr::distributed_init();  // a rank of a data-parallel run when started by mpirun
    if (!req.resume.empty()) {
      if (!req.model.empty()) o.train_paths.insert(o.train_paths.begin(), req.model);  // no CONFIG to resume
      for (CLI::Option* opt : fixed)
        if (opt->count() > 0)
          lm::fail_usage(lm::cat(opt->get_name(), " cannot be given with --resume (the run keeps its settings)"));
      if (steps->count() == 0) o.steps = -1;  // keep the run's
    }
    o.sample = *tr::sample_mode_from_name(sample);
    o.schedule.decay = *tr::decay_kind_from_name(decay);
    o.adamw.decay_embeddings = !no_decay_emb;
    const std::unique_ptr<tr::Trainer> trainer = tr::Trainer::create(req);  // every rank, agreed
    if (tool.quiet == 0 && tr::is_root())
      for (const std::string& w : trainer->warnings()) tool.warn(w);  // one line, a name's newline escaped

    lm::stop_on_termination_signal(&g_stop);  // a second signal ends the run at once
    const bool progress = !json && tool.quiet == 0 && tr::is_root() && lm::cli::stderr_is_terminal();
    const tr::TrainSummary s = trainer->run(
        [&](const tr::StepReport& r) {
          if (json && std::printf("%s\n", r.json_line.c_str()) > 0) std::fflush(stdout);
          if (progress) std::fprintf(stderr, "\r\033[K%s", tr::progress_line(r).c_str());
        },
        &g_stop);
    if (progress) std::fputs("\r\033[K", stderr);
    if (tool.quiet == 0 && tr::is_root()) std::fputs(tr::summary_text(s).c_str(), stderr);
    return 0;
  });
  tr::distributed_finish(code);  // every rank: errors after distributed_init are agreed on
  if (const int sig = lm::termination_signal_received(); sig != 0 && code == 0) {
    std::fflush(stdout);  // saved: now end the way the signal asked (exit status 128 + signal)
    lm::end_by_signal(sig);
  }
  return code;
}
