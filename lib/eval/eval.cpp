#include "eval/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "model/loss.h"
#include "model/loss_weights.h"
#include "model/sigreg.h"

namespace lm {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double EvalResult::perplexity() const { return std::exp(loss()); }
double EvalResult::bits_per_token() const { return loss() / std::log(2.0); }
std::optional<double> EvalResult::bits_per_byte() const {
  if (bytes <= 0) return std::nullopt;
  return loss_sum / std::log(2.0) / static_cast<double>(bytes);
}

Evaluator::Evaluator(Transformer& model, const EvalOptions& opts, std::vector<int32_t> byte_lengths)
    : model_(model), opts_(opts), byte_len_(std::move(byte_lengths)) {
  const ModelConfig& c = model.config();
  T_ = opts.seq > 0 ? opts.seq : c.max_seq_len;
  V_ = c.vocab_size;
  C_ = c.dim;
  if (opts.batch < 1) fail_usage(cat("batch must be at least 1, got ", opts.batch));
  if (T_ > c.max_seq_len) fail_usage(cat("window of ", T_, " tokens exceeds max_seq_len (", c.max_seq_len, ")"));
  if (T_ < 1) fail_usage(cat("window length must be at least 1, got ", T_));
  if (!byte_len_.empty() && static_cast<int64_t>(byte_len_.size()) != V_)
    fail(ErrorKind::Runtime, "internal: byte length table does not match the vocabulary");
  pad_ = static_cast<int32_t>(c.pad_id);
  filler_ = c.pad_id >= 0 ? static_cast<int32_t>(c.pad_id) : c.eos_id >= 0 ? static_cast<int32_t>(c.eos_id) : 0;
  const size_t BT = static_cast<size_t>(opts.batch * T_);
  tokens_.resize(BT);
  targets_.resize(BT);
  safe_targets_.resize(BT);
  pos_.resize(BT);
  losses_.resize(BT);
  if (opts.vision) {
    vision_rows_.resize(static_cast<size_t>(opts.batch));
    vision_places_.resize(static_cast<size_t>(opts.batch));
  }
  lengths_.resize(static_cast<size_t>(opts.batch));
  r_.seq = T_;
  r_.batch = opts.batch;
  r_.bytes = byte_len_.empty() ? -1 : 0;
  r_.sigreg_enabled = c.sigreg.enabled;
  r_.loss_weighted = model.weights().loss_weights() != nullptr;
  if (r_.loss_weighted) {
    const LossWeightStats st = loss_weight_stats(model.weights().loss_weights(), V_);
    r_.non_unit_weight_ids = st.non_unit;
    r_.zero_weight_ids = st.zero;
  }
  r_.sigreg_coefficient = c.sigreg.coefficient;
  if (c.sigreg.enabled) {
    noise_.resize(static_cast<size_t>(C_ * c.sigreg.slices));
    Rng rng(opts.sigreg_seed);
    sigreg_draw_noise(noise_.data(), rng, C_, c.sigreg.slices);
  }
  if (opts.embedding || c.sigreg.enabled) {
    emb_mean_.assign(static_cast<size_t>(C_), 0.0);
    emb_batch_.resize(static_cast<size_t>(C_));
  }
  whole_records_ = c.is_materium();
  if (!c.conditions.empty()) {
    conds_ = std::make_unique<ConditionBatch>(c, opts.batch);
    scratch_ = std::make_unique<ConditionBatch>(c, 1);
  }
  if (whole_records_) {  // a row is the condition positions and one whole record: K + T <= max_seq_len
    const int64_t K = scratch_ ? scratch_->positions() : 0;
    if (opts.seq > 0 && opts.seq + K > c.max_seq_len)
      fail_usage(cat("--seq ", opts.seq, " plus the ", K, " condition positions exceeds the model's max_seq_len (",
                     c.max_seq_len, ")"));
    if (opts.seq <= 0 && K > 0) T_ = r_.seq = c.max_seq_len - K;
    row_limit_ = opts.seq > 0 ? cat("--seq ", T_)
                 : K > 0      ? cat("the ", T_, " a row holds (max_seq_len ", c.max_seq_len, " less ", K, " condition positions)")
                              : cat("max_seq_len ", T_);
  }
  r_.dim = C_;
  t0_ = now_s();
}

bool Evaluator::add(const TokenChunk& chunk) {
  if (opts_.max_windows > 0 && r_.windows >= opts_.max_windows) return false;
  if (chunk.first || !in_record_) {
    flush_record();
    cur_.clear();
    cur_start_ = chunk.start;
    in_record_ = true;
    rec_index_ = r_.records;
    rec_offset_ = 0;
    rec_used_ = 0;
    rec_length_ = 0;
  }
  if (whole_records_) {  // one window per record, emitted when it ends
    if (chunk.first && chunk.start != 0)
      fail_data(cat("record ", r_.records, " starts at position ", chunk.start,
                    " (a chunk of a longer document): a materium row is one whole record"));
    // A record too long for a row is counted to its end (the message gives its length), not kept.
    rec_length_ += static_cast<int64_t>(chunk.tokens.size());
    if (rec_length_ <= T_) cur_.insert(cur_.end(), chunk.tokens.begin(), chunk.tokens.end());
    if (chunk.last && rec_length_ > T_)
      fail_data(cat("record ", r_.records, " has ", rec_length_, " tokens, more than ", row_limit_,
                    ": a materium row is one whole record"));
    if (chunk.last) {
      emit_record();
      ++r_.records;
    }
    return !(opts_.max_windows > 0 && r_.windows >= opts_.max_windows);
  }
  cur_.insert(cur_.end(), chunk.tokens.begin(), chunk.tokens.end());
  // Full windows: T inputs and the next token as the last target.
  size_t off = 0;
  while (cur_.size() - off >= static_cast<size_t>(T_) + 1) {
    if (opts_.max_windows > 0 && r_.windows >= opts_.max_windows) break;
    emit_window(cur_.data() + off, T_ + 1, cur_start_ + off, rec_offset_ + static_cast<int64_t>(off));
    off += static_cast<size_t>(T_);
  }
  cur_.erase(cur_.begin(), cur_.begin() + static_cast<std::ptrdiff_t>(off));
  cur_start_ += off;
  rec_offset_ += static_cast<int64_t>(off);
  if (chunk.last) {
    flush_record();
    ++r_.records;
  }
  return !(opts_.max_windows > 0 && r_.windows >= opts_.max_windows);
}

void Evaluator::emit_record() {
  const bool window = cur_.size() >= 2;
  if (conds_) {
    if (!conditions)
      fail(ErrorKind::Usage, cat("the model has conditions (", condition_names(model_.config()),
                                 "): give their values with --conditions FILE"));
    ConditionBatch& to = window ? *conds_ : *scratch_;
    if (!conditions->next(to, window ? filled_ : 0))
      fail(ErrorKind::Data, cat(conditions->name(), ": ", conditions->lines(), conditions->lines() == 1 ? " line" : " lines",
                    " for more records"),
                "the conditions file has one line per record of its token stream");
  }
  if (window) emit_window(cur_.data(), static_cast<int64_t>(cur_.size()), 0, 0);
  cur_.clear();
  in_record_ = false;
}

void Evaluator::flush_record() {
  const bool cut_short = opts_.max_windows > 0 && r_.windows >= opts_.max_windows;
  if (in_record_ && cur_.size() >= 2 && !cut_short)
    emit_window(cur_.data(), static_cast<int64_t>(cur_.size()), cur_start_, rec_offset_);
  if (in_record_ && opts_.vision && !(opts_.max_windows > 0 && r_.windows >= opts_.max_windows)) {
    // Every feature of the record must have met its place among the windows' inputs.
    const VisionRow row = opts_.vision->row(rec_index_);
    if (rec_used_ != row.count)
      fail(ErrorKind::Data,
           cat("record ", rec_index_, ": ", row.count, " image features, but only ", rec_used_,
               " of them fall on input tokens of the record"),
           "an image place must be a token of the record other than its last (which is only a target)");
  }
  cur_.clear();
  in_record_ = false;
}

// The image features of one window: the record's places among its inputs [offset, offset + inputs).
void Evaluator::take_vision(const uint32_t* tok, int64_t inputs, int64_t offset) {
  VisionRow& out = vision_rows_[static_cast<size_t>(filled_)];
  std::vector<int64_t>& places = vision_places_[static_cast<size_t>(filled_)];
  out = VisionRow{};
  places.clear();
  const VisionRow row = opts_.vision->row(rec_index_);
  const ModelConfig& c = model_.config();
  const int64_t Dv = c.vision_dim;
  if (c.image_token_id >= 0) {
    int64_t k = 0;
    for (int64_t t = 0; t < inputs; ++t) k += tok[t] == static_cast<uint32_t>(c.image_token_id);
    if (rec_used_ + k > row.count)
      fail_data(cat("record ", rec_index_, ": more image tokens (image_token_id ", c.image_token_id, ") than its ",
                    row.count, " image features"));
    out.features = row.count ? row.features + rec_used_ * Dv : nullptr;
    out.count = k;
    rec_used_ += k;
    return;
  }
  for (int64_t k = 0; k < row.count; ++k) {
    const int64_t p = row.places[k];
    if (p < offset || p >= offset + inputs) continue;
    if (places.empty()) out.features = row.features + k * Dv;
    places.push_back(p - offset);
  }
  out.count = static_cast<int64_t>(places.size());
  out.places = places.empty() ? nullptr : places.data();
  rec_used_ += out.count;
}

// n tokens (2 <= n <= T + 1): inputs tokens[0, min(n, T)), targets tokens[1, n), the rest padded.
void Evaluator::emit_window(const uint32_t* tok, int64_t n, uint64_t start, int64_t record_offset) {
  const int64_t off = filled_ * T_;
  int32_t* x = tokens_.data() + off;
  int32_t* y = targets_.data() + off;
  int64_t* p = pos_.data() + off;
  const int64_t inputs = std::min(n, T_);
  if (opts_.vision) take_vision(tok, inputs, record_offset);
  lengths_[static_cast<size_t>(filled_)] = static_cast<int32_t>(inputs);
  for (int64_t t = 0; t < T_; ++t) {
    if (t < inputs) {
      x[t] = static_cast<int32_t>(tok[t]);
      p[t] = static_cast<int64_t>(start) + t;
    } else {
      x[t] = filler_;
      p[t] = static_cast<int64_t>(start) + inputs;
    }
    y[t] = t + 1 < n ? static_cast<int32_t>(tok[t + 1]) : -1;
    if (y[t] == pad_ && pad_ >= 0) y[t] = -1;
    if (y[t] < 0) ++r_.ignored;
  }
  ++r_.windows;
  if (++filled_ == opts_.batch) run_batch();
}

void Evaluator::run_batch() {
  if (filled_ == 0) return;
  const int64_t B = filled_, N = B * T_;
  filled_ = 0;
  const float* logits;
  if (whole_records_) {  // the model computes the positions; the rows' conditions
    std::unique_ptr<ConditionBatch> part;
    if (conds_ && B < conds_->batch()) {
      std::vector<int64_t> rows(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) rows[static_cast<size_t>(b)] = b;
      part = std::make_unique<ConditionBatch>(conds_->gather(rows));
    }
    logits = model_.forward(tokens_.data(), nullptr, B, T_, part ? part.get() : conds_.get(), opts_.vision ? vision_rows_.data() : nullptr);
  } else {
    logits = model_.forward(tokens_.data(), pos_.data(), B, T_, nullptr, opts_.vision ? vision_rows_.data() : nullptr);
  }
  if (opts_.hidden) {
    const float* h = model_.hidden();
    r_.hidden.insert(r_.hidden.end(), h, h + N * C_);
    r_.hidden_tokens.insert(r_.hidden_tokens.end(), tokens_.begin(), tokens_.begin() + N);
    r_.hidden_lengths.insert(r_.hidden_lengths.end(), lengths_.begin(), lengths_.begin() + B);
  }
  // Ignored slots (-1) are scored against token 0 and then skipped.
  for (int64_t i = 0; i < N; ++i) safe_targets_[i] = std::max(targets_[i], 0);
  crossentropy_forward(losses_.data(), logits, safe_targets_.data(), N, V_, -1);
  const float* lw = model_.weights().loss_weights();
  double sum = 0, wsum = 0, weight = 0;
  int64_t count = 0, bytes = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int32_t y = targets_[static_cast<size_t>(i)];
    if (y < 0) continue;
    sum += losses_[static_cast<size_t>(i)];
    if (lw) {
      wsum += static_cast<double>(lw[y]) * losses_[static_cast<size_t>(i)];
      weight += lw[y];
    }
    ++count;
    if (!byte_len_.empty()) bytes += byte_len_[static_cast<size_t>(y)];
  }
  r_.loss_sum += sum;
  r_.weighted_loss_sum += wsum;
  r_.weight_sum += weight;
  r_.tokens += count;
  if (r_.bytes >= 0) r_.bytes += bytes;
  ++r_.batches;
  const double k = static_cast<double>(r_.batches);
  if (!emb_mean_.empty()) {
    const ModelConfig& c = model_.config();
    const float* lnf = model_.activations().lnf;  // [N, C] final-norm output, what the classifier reads
    if (c.sigreg.enabled) r_.sigreg += (sigreg_value(lnf, noise_.data(), N, C_, c.sigreg) - r_.sigreg) / k;
    mean_embedding(emb_batch_.data(), lnf, N, C_);
    for (int64_t i = 0; i < C_; ++i) emb_mean_[i] += (emb_batch_[i] - emb_mean_[i]) / k;  // soma's running mean
  }
  r_.seconds = now_s() - t0_;
  if (on_batch) on_batch(r_);
}

EvalResult Evaluator::finish() {
  flush_record();
  run_batch();
  if (!emb_mean_.empty() && (opts_.embedding || r_.sigreg_enabled))
    r_.embedding.assign(emb_mean_.begin(), emb_mean_.end());
  r_.seconds = now_s() - t0_;
  return r_;
}

EvalResult evaluate(Transformer& model, TokenReader& reader, const EvalOptions& opts,
                    std::vector<int32_t> byte_lengths) {
  Evaluator ev(model, opts, std::move(byte_lengths));
  TokenChunk chunk;
  while (reader.next(chunk))
    if (!ev.add(chunk)) break;
  return ev.finish();
}

}  // namespace lm
