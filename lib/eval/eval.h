// Streamed evaluation of a model on token input: mean cross-entropy ignoring PAD (loss-weighted
// when the model carries per-token-id loss weights),
// perplexity, bits per token and per byte, and soma V1's SIGReg term and mean embedding.
//
// Windows. Each record of the input (a document or a chunk of one) is cut into windows of
// T input tokens that predict the next token: a record of n tokens gives the windows
// [0, T), [T, 2T), ... with targets shifted by one, so every token but the record's first
// is a target exactly once (the token at a window boundary is the last target of one
// window and the first input of the next). The last window of a record is padded to T
// with PAD inputs whose targets are ignored. Positions are the stream's (record start +
// offset; soma's global byte offsets), PAD slots take the position after the last token.
// A record of at most T tokens is exactly soma V1's sequence (token_ids padded, targets
// shifted with PAD appended, pos_ids), so `lm-tokenize --max-seq-len T` input evaluates
// as soma's ModelRunner does. Windows are evaluated in batches of B (the last may be smaller).
//
// materium models (conditions or block-wise positions, docs/materium.md): every record is
// one window, whole (a record longer than T, or one not starting at position 0, is a Data
// error naming it), its positions computed by the model, and its condition values the next
// line of the conditions file (a record of one token has no target but still takes its line).
//
// Memory is bounded by one input chunk plus the model's activations for [B, T] (and, with
// EvalOptions::hidden, the hidden states kept for the output: windows x T x C floats).
// Shape letters: B batch (windows), T window length, V vocab, C dim.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/tokstream.h"
#include "model/conditions_file.h"
#include "model/transformer.h"

namespace lm {

struct EvalOptions {
  int64_t batch = 8;        // B: windows per forward pass
  int64_t seq = 0;          // T: window length; 0 = the model's max_seq_len
  int64_t max_windows = 0;  // stop after this many windows; 0 = all
  bool embedding = false;   // compute the mean embedding (always on with SIGReg)
  uint64_t sigreg_seed = 0; // SIGReg noise [C, S] = Rng(seed).normal(), the same for every batch
  // Image features per record (--vision, docs/llama4.md §8), or null: text only. Each window
  // takes the features of its record's image places among its input tokens; a record's
  // features must all land on input places (a place on the record's last token, which is
  // only a target, or past its end is a Data error), unless max_windows cut the input short.
  const VisionFile* vision = nullptr;
  DType compute_dtype = DType::F32;  // evaluate_files: the matmuls' operands (Transformer::set_compute_dtype)
  std::string tokenizer;  // evaluate_files: --tokenizer FILE for the byte counts (eval/checkpoint_tokenizer.h)
  bool hidden = false;      // keep every window's final-norm output (EvalResult::hidden)
};

struct EvalResult {
  int64_t seq = 0, batch = 0;
  int64_t tokens = 0;    // targets counted (not PAD)
  int64_t ignored = 0;   // PAD targets in windows (padding and PAD tokens in the input)
  int64_t windows = 0, batches = 0, records = 0;
  double loss_sum = 0;   // nats over the counted targets
  // A model with per-token-id loss weights (config loss_weights): loss() is the weighted
  // mean sum w[t] ce / sum w[t], as in training; loss_sum and bits per byte stay unweighted.
  bool loss_weighted = false;
  double weighted_loss_sum = 0;  // sum of w[t] * ce over the counted targets
  double weight_sum = 0;         // sum of w[t] over the counted targets
  int64_t non_unit_weight_ids = 0, zero_weight_ids = 0;  // ids whose weight is not 1, is 0
  int64_t bytes = -1;    // bytes the counted targets decode to; -1 = unknown
  bool sigreg_enabled = false;
  double sigreg = 0;              // SIGReg statistic, mean over batches (soma's running mean)
  double sigreg_coefficient = 0;  // loss = ce + coefficient * sigreg
  std::vector<float> embedding;   // [C] mean final-norm output over batches (soma), empty unless asked
  // With EvalOptions::hidden: per window (in input order) the final-norm output of its T
  // token positions (materium's return_hidden_states without the condition positions), the
  // window's input tokens (padding included) and how many of them are the record's.
  std::vector<float> hidden;          // [windows, T, C]
  std::vector<int32_t> hidden_tokens; // [windows, T]
  std::vector<int32_t> hidden_lengths;// [windows]
  int64_t dim = 0;                    // C
  double seconds = 0;

  double unweighted_loss() const { return tokens ? loss_sum / static_cast<double>(tokens) : 0; }
  double loss() const {
    if (!loss_weighted) return unweighted_loss();
    return weight_sum > 0 ? weighted_loss_sum / weight_sum : 0;
  }
  double perplexity() const;
  double bits_per_token() const;
  std::optional<double> bits_per_byte() const;  // when bytes > 0
  double total_loss() const { return loss() + (sigreg_enabled ? sigreg_coefficient * sigreg : 0); }
};

class Evaluator {
 public:
  // byte_lengths [V]: bytes per token id (token_byte_lengths), or empty when unknown.
  Evaluator(Transformer& model, const EvalOptions& opts, std::vector<int32_t> byte_lengths = {});

  // Feeds one chunk of the input (TokenReader::next). Returns false once max_windows is reached.
  bool add(const TokenChunk& chunk);
  // Evaluates what is left and returns the totals.
  EvalResult finish();

  // Progress: called after each batch.
  std::function<void(const EvalResult&)> on_batch;
  // materium with conditions: the values of each record, one line per record (required
  // then; a Usage error at the first record without it). Set before the first add().
  ConditionsReader* conditions = nullptr;

 private:
  void emit_window(const uint32_t* tokens, int64_t n, uint64_t start, int64_t record_offset);
  void take_vision(const uint32_t* tokens, int64_t inputs, int64_t record_offset);
  void emit_record();  // materium: the current record as one window, with its conditions
  void flush_record();
  void run_batch();

  Transformer& model_;
  EvalOptions opts_;
  int64_t T_ = 0, V_ = 0, C_ = 0;
  int32_t pad_ = -1, filler_ = 0;
  std::vector<int32_t> byte_len_;
  // the current record
  std::vector<uint32_t> cur_;
  uint64_t cur_start_ = 0;
  bool in_record_ = false;
  int64_t rec_index_ = 0;   // the current record's index in the input (stream order, from 0)
  int64_t rec_offset_ = 0;  // the record offset of cur_[0]
  int64_t rec_used_ = 0;    // image features of the record taken by its windows so far
  // the batch's image features: [B] rows and their places (window-relative)
  std::vector<VisionRow> vision_rows_;
  std::vector<std::vector<int64_t>> vision_places_;
  // the batch being filled: tokens, targets [B, T] (-1 = ignored), pos [B, T]
  std::vector<int32_t> tokens_, targets_, safe_targets_;
  std::vector<int64_t> pos_;
  std::vector<int32_t> lengths_;  // [B] the record's tokens among each window's inputs
  int64_t filled_ = 0;
  std::vector<float> losses_;
  std::vector<float> noise_;           // [C, S]
  std::vector<double> emb_mean_;       // [C]
  std::vector<float> emb_batch_;       // [C]
  EvalResult r_;
  double t0_ = 0;
  bool whole_records_ = false;              // materium
  int64_t rec_length_ = 0;                  // whole records: the current record's tokens so far
  std::string row_limit_;                   // whole records: what bounds a record ("--seq 8")
  std::unique_ptr<ConditionBatch> conds_;   // [B] the batch's rows' values (with conditions)
  std::unique_ptr<ConditionBatch> scratch_; // [1] the values of a record that gives no window
};

// Reads every chunk of `reader` into an Evaluator.
EvalResult evaluate(Transformer& model, TokenReader& reader, const EvalOptions& opts,
                    std::vector<int32_t> byte_lengths = {});

// lm-eval-loss's evaluation: the checkpoint at `model_path` (Data error for non-finite
// weights, Unsupported for features lm-eval-loss cannot run) on `inputs` ("-" = stdin), read
// in order and streamed, each checked against the model's tokenizer
// (require_tokens_for_model). With `byte_lengths`, bytes per token come from the model's
// tokenizer when this build has it (bits per byte). `on_batch` (may be empty) is the
// progress hook. Data error when no window has a target. `vision_path` (may be empty): a
// --vision file of image features per record (VisionFile; Data error when it holds records the
// input does not have). A model with vision_dim > 0 runs without one as text only.
// `conditions`: the conditions file (JSON Lines) of a model with conditions, one line per
// record of all the inputs together; "" without (a Usage error for a model with conditions,
// and for a file given to a model without).
EvalResult evaluate_files(const std::string& model_path, const std::vector<std::string>& inputs,
                          TokenInputFormat format, const EvalOptions& opts, bool byte_lengths,
                          const std::function<void(const EvalResult&)>& on_batch = {},
                          const std::string& vision_path = {}, const std::string& conditions = "");

// The hidden states of `r` (EvalOptions::hidden) as safetensors, written atomically:
// "hidden_states" F32 [windows, T, C], "tokens" I32 [windows, T], "lengths" I32 [windows].
void save_hidden_states(const std::string& path, const EvalResult& r);

// Whether a loss passes `--fail-above X`: a loss above X fails, and so does a loss that is
// not a number at all (NaN or infinite: a broken model never passes a threshold).
bool loss_within(double loss, double threshold);

}  // namespace lm
