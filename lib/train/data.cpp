#include "train/data.h"

#include <algorithm>

#include "core/error.h"

namespace lm::train {

TokenData load_tokens(const std::vector<std::string>& paths, const TokenReadOptions& opts) {
  TokenData data;
  bool have_spec = false, used_stdin = false;
  for (const std::string& path : paths) {
    if (path == "-") {
      if (used_stdin) fail_usage("stdin ('-') given as an input twice");
      used_stdin = true;
    }
    auto reader = open_token_reader(path, opts);
    if (!have_spec) {
      data.spec = reader->spec();
      have_spec = true;
    } else {
      require_same_tokenizer(data.spec, reader->spec(), quote(reader->name()));
    }
    data.sources.push_back(reader->name());
    TokenChunk chunk;
    while (reader->next(chunk)) {
      if (chunk.first || data.records.empty())
        data.records.push_back({data.size(), 0, chunk.start});
      data.tokens.insert(data.tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
      data.records.back().size += static_cast<int64_t>(chunk.tokens.size());
    }
  }
  // Records of zero tokens carry nothing to train on.
  std::erase_if(data.records, [](const TokenData::Record& r) { return r.size == 0; });
  return data;
}

void check_vocab(const TokenData& data, int64_t vocab, const std::string& what) {
  if (data.spec.vocab_size != 0) {
    if (static_cast<int64_t>(data.spec.vocab_size) != vocab)
      fail_data(cat(what, ": vocabulary mismatch: the tokens are ", data.spec.describe(), ", the model has vocab_size ",
                    vocab));
    return;
  }
  for (size_t i = 0; i < data.tokens.size(); ++i)
    if (static_cast<int64_t>(data.tokens[i]) >= vocab)
      fail_data(cat(what, ": token ", data.tokens[i], " at index ", i, " is outside the model's vocabulary (",
                    vocab, ")"));
}

const char* sample_mode_name(SampleMode m) { return m == SampleMode::Random ? "random" : "sequential"; }

std::optional<SampleMode> sample_mode_from_name(std::string_view name) {
  if (name == "random") return SampleMode::Random;
  if (name == "sequential") return SampleMode::Sequential;
  return std::nullopt;
}

DataLoader::DataLoader(const TokenData* data, SampleMode mode, int64_t B, int64_t T, uint64_t seed, int32_t pad,
                       const std::string& what)
    : data_(data), mode_(mode), B_(B), T_(T), pad_(pad), rng_(seed) {
  if (B <= 0 || T <= 0) fail_usage(cat("batch and sequence length must be positive, got ", B, " x ", T));
  const int64_t n = data->size();
  if (n == 0) fail_data(cat(what, ": no tokens"));
  if (mode == SampleMode::Random) {
    if (n < T + 1)
      fail_data(cat(what, ": ", n, " tokens are shorter than one window of ", T + 1,
                    " (sequence length + 1 for the targets)"));
    return;
  }
  record_windows_.assign(data->records.size() + 1, 0);
  for (size_t r = 0; r < data->records.size(); ++r) {
    const int64_t size = data->records[r].size;
    record_windows_[r + 1] = record_windows_[r] + static_cast<uint64_t>((size + T - 1) / T);
  }
  // Every record's last window ends with a PAD target (soma V1's targets end with PAD).
  if (pad < 0)
    fail(ErrorKind::Usage, "sequential sampling pads each record's end with PAD, but the model has no pad_id",
         "set one with --set pad_id=N, or use --sample random");
}

void DataLoader::set_state(const LoaderState& s) {
  rng_.set_state(s.rng);
  cursor_ = s.cursor;
  epoch_ = s.epoch;
  if (mode_ == SampleMode::Sequential && cursor_ >= windows())
    fail_data(cat("data position ", cursor_, " is past the end of the data (", windows(),
                  " windows): not the data this run was started with?"));
}

uint64_t DataLoader::windows() const {
  if (mode_ == SampleMode::Sequential) return record_windows_.back();
  return static_cast<uint64_t>(data_->size() - T_);
}

void DataLoader::resize(Batch& out, bool has_pos) const {
  const size_t n = static_cast<size_t>(out.B * out.T);
  out.inputs.resize(n);
  out.targets.resize(n);
  out.has_pos = has_pos;
  out.pos.resize(has_pos ? n : 0);
}

void DataLoader::fill_span(int64_t row, int64_t begin, Batch& out) const {
  const uint32_t* src = data_->tokens.data() + begin;
  int32_t* x = out.inputs.data() + row * T_;
  int32_t* y = out.targets.data() + row * T_;
  for (int64_t t = 0; t < T_; ++t) {
    x[t] = static_cast<int32_t>(src[t]);
    y[t] = static_cast<int32_t>(src[t + 1]);
  }
}

void DataLoader::fill_window(int64_t row, uint64_t window, Batch& out) const {
  const auto it = std::upper_bound(record_windows_.begin(), record_windows_.end(), window);
  const size_t r = static_cast<size_t>(it - record_windows_.begin()) - 1;
  const TokenData::Record& rec = data_->records[r];
  const int64_t off = static_cast<int64_t>(window - record_windows_[r]) * T_;
  const uint32_t* src = data_->tokens.data() + rec.begin;
  int32_t* x = out.inputs.data() + row * T_;
  int32_t* y = out.targets.data() + row * T_;
  int64_t* p = out.pos.data() + row * T_;
  // Padding sits at the position after the record's data (soma V1: PAD shares the EOS position).
  const uint64_t pad_pos = rec.start + static_cast<uint64_t>(rec.size);
  for (int64_t t = 0; t < T_; ++t) {
    const int64_t i = off + t;
    x[t] = i < rec.size ? static_cast<int32_t>(src[i]) : pad_;
    y[t] = i + 1 < rec.size ? static_cast<int32_t>(src[i + 1]) : pad_;
    p[t] = static_cast<int64_t>(i < rec.size ? rec.start + static_cast<uint64_t>(i) : pad_pos);
  }
}

void DataLoader::next(Batch& out) {
  out.B = B_;
  out.T = T_;
  resize(out, mode_ == SampleMode::Sequential);
  for (int64_t b = 0; b < B_; ++b) {
    if (mode_ == SampleMode::Random) {
      fill_span(b, static_cast<int64_t>(rng_.below(static_cast<uint64_t>(data_->size() - T_))), out);
    } else {
      fill_window(b, cursor_, out);
      if (++cursor_ == windows()) {
        cursor_ = 0;
        ++epoch_;
      }
    }
  }
}

int64_t DataLoader::eval_batches() const {
  const uint64_t w = mode_ == SampleMode::Sequential ? windows() : static_cast<uint64_t>((data_->size() - 1) / T_);
  return static_cast<int64_t>((w + static_cast<uint64_t>(B_) - 1) / static_cast<uint64_t>(B_));
}

bool DataLoader::eval_batch(int64_t index, Batch& out) const {
  const int64_t total = mode_ == SampleMode::Sequential ? static_cast<int64_t>(windows()) : (data_->size() - 1) / T_;
  const int64_t first = index * B_;
  if (index < 0 || first >= total) return false;
  out.B = std::min(B_, total - first);
  out.T = T_;
  resize(out, mode_ == SampleMode::Sequential);
  for (int64_t b = 0; b < out.B; ++b) {
    if (mode_ == SampleMode::Random)
      fill_span(b, (first + b) * T_, out);
    else
      fill_window(b, static_cast<uint64_t>(first + b), out);
  }
  return true;
}

}  // namespace lm::train
