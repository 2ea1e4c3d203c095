#include "train/data.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "train/token_file.h"

namespace lm::train {

using nlohmann::json;

namespace {

// FNV-1a 64, continued from `h`.
uint64_t fnv1a(uint64_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

uint32_t load_token(const uint8_t* p, uint32_t width) {
  if (width == 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

json fingerprint_to_json(const DataFingerprint& f) {
  char hex[19];
  std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(f.hash));
  return json{{"source", f.source}, {"bytes", f.bytes}, {"hash", hex}};
}

DataFingerprint fingerprint_from_json(const json& j) {
  DataFingerprint f;
  try {
    f.source = j.at("source").get<std::string>();
    f.bytes = json_integer<uint64_t>(j.at("bytes"));
    const std::string hex = j.at("hash").get<std::string>();
    size_t used = 0;
    f.hash = std::stoull(hex, &used, 16);
    if (used != hex.size() || hex.size() != 18) fail_data(cat("data fingerprint: bad hash ", quote(hex)));
  } catch (const json::exception& e) {
    fail_data(cat("data fingerprint: ", e.what()));
  } catch (const std::logic_error&) {  // stoull
    fail_data("data fingerprint: bad hash");
  }
  return f;
}

DataFingerprint fingerprint_bytes(const uint8_t* data, uint64_t size, std::string source,
                                  const std::function<void(uint64_t, uint64_t)>& after_block) {
  constexpr uint64_t kEnds = 64 << 10, kBlock = 4 << 10, kBlocks = 64;
  DataFingerprint f;
  f.source = std::move(source);
  f.bytes = size;
  uint64_t h = 0xcbf29ce484222325ull;
  auto hash = [&](uint64_t begin, uint64_t n) {
    h = fnv1a(h, data + begin, static_cast<size_t>(n));
    if (after_block) after_block(begin, begin + n);
  };
  hash(0, std::min(size, kEnds));
  if (size > kEnds) {
    const uint64_t tail = std::min(kEnds, size - kEnds);
    for (uint64_t b = 1; b <= kBlocks; ++b) {  // blocks between the two ends, evenly spaced
      const uint64_t at = kEnds + (size - kEnds - tail) * b / (kBlocks + 1);
      hash(at, std::min(kBlock, size - at));
    }
    hash(size - tail, tail);
  }
  f.hash = h;
  return f;
}

uint32_t TokenData::at(const Record& r, int64_t i) const {
  return load_token(r.data + static_cast<size_t>(i) * r.width, r.width);
}

uint32_t TokenData::at(int64_t i) const {
  const auto it = std::upper_bound(records_.begin(), records_.end(), i,
                                   [](int64_t v, const Record& r) { return v < r.begin; });
  const Record& r = *(it - 1);
  return at(r, i - r.begin);
}

void TokenData::read(int64_t begin, int64_t n, int32_t* out) const {
  auto it = std::upper_bound(records_.begin(), records_.end(), begin,
                             [](int64_t v, const Record& r) { return v < r.begin; }) - 1;
  int64_t off = begin - it->begin;
  while (n > 0) {
    const Record& r = *it++;
    const int64_t k = std::min(n, r.size - off);
    const uint8_t* p = r.data + static_cast<size_t>(off) * r.width;
    if (r.width == 2) {
      for (int64_t t = 0; t < k; ++t) out[t] = static_cast<int32_t>(load_token(p + 2 * t, 2));
    } else {
      for (int64_t t = 0; t < k; ++t) out[t] = static_cast<int32_t>(load_token(p + 4 * t, 4));
    }
    out += k;
    n -= k;
    off = 0;
  }
}

void TokenData::note_max(const uint32_t* tokens, size_t n, int64_t first_index) {
  if (n == 0) return;
  const uint32_t m = *std::max_element(tokens, tokens + n);
  if (max_token_index_ >= 0 && m <= max_token_) return;
  max_token_ = m;
  max_token_index_ = first_index + (std::find(tokens, tokens + n, m) - tokens);
}

void TokenData::append(const uint32_t* tokens, size_t n, uint64_t start) {
  if (n == 0) return;
  auto copy = std::make_shared<std::vector<uint32_t>>(tokens, tokens + n);
  note_max(tokens, n, size_);
  append_view(reinterpret_cast<const uint8_t*>(copy->data()), 4, n, start, copy);
}

void TokenData::append_view(const uint8_t* data, uint32_t width, size_t n, uint64_t start,
                            std::shared_ptr<const void> owner) {
  if (n == 0) return;
  records_.push_back({size_, static_cast<int64_t>(n), start, data, width});
  size_ += static_cast<int64_t>(n);
  if (owner && (storage_.empty() || storage_.back() != owner)) storage_.push_back(std::move(owner));
}

void TokenData::extend_last(size_t n) {
  records_.back().size += static_cast<int64_t>(n);
  size_ += static_cast<int64_t>(n);
}

TokenData load_tokens(const std::vector<std::string>& paths, const TokenReadOptions& opts) {
  TokenData data;
  bool have_spec = false, used_stdin = false;
  for (const std::string& path : paths) {
    if (path == "-") {
      if (used_stdin) fail_usage("stdin ('-') given as an input twice");
      used_stdin = true;
    }
    const std::shared_ptr<const TokenFile> file = TokenFile::open(path);
    TokenReadOptions ro = opts;
    ro.decompressed = file->decompressed();
    // The reader checks the whole input once (records, padding, vocabulary) and tells where
    // each chunk's tokens are; the records then point into the mapping.
    auto reader = open_token_reader(memory_source(file->data(), file->size(), file->name()), ro);
    if (!have_spec) {
      data.spec = reader->spec();
      have_spec = true;
    } else {
      require_same_tokenizer(data.spec, reader->spec(), quote(reader->name()));
    }
    data.sources.push_back(reader->name());
    const size_t records_before = data.records().size();
    const uint32_t width = reader->token_width();
    TokenChunk chunk;
    size_t released = 0;        // bytes of the mapping handed back to the kernel
    bool open_record = false;   // the last record continues in the next chunk
    while (reader->next(chunk)) {
      data.note_max(chunk.tokens.data(), chunk.tokens.size(), data.size());
      const uint8_t* at = file->data() + chunk.offset;
      if (open_record && !chunk.first) {
        data.extend_last(chunk.tokens.size());
      } else {
        const size_t before = data.records().size();
        data.append_view(at, width, chunk.tokens.size(), chunk.start, file);
        open_record = data.records().size() > before;  // empty records are dropped
      }
      if (chunk.last) open_record = false;
      if (chunk.offset >= released + (size_t{8} << 20)) {  // keep the pages read so far out of this process
        file->release(released, chunk.offset);
        released = chunk.offset;
      }
    }
    // A page touched may map a whole large folio of the file (up to 2 MiB): each block goes
    // back at once, with its neighbourhood.
    constexpr uint64_t kFolio = uint64_t{2} << 20;
    data.fingerprints.push_back(fingerprint_bytes(file->data(), file->size(), path, [&](uint64_t begin, uint64_t end) {
      file->release(begin > kFolio ? begin - kFolio : 0, end + kFolio);
    }));
    file->release(0, file->size());
    data.source_records.push_back(static_cast<int64_t>(data.records().size() - records_before));
  }
  return data;
}

void check_vocab(const TokenData& data, int64_t vocab, const std::string& what) {
  if (data.spec.vocab_size != 0) {
    if (static_cast<int64_t>(data.spec.vocab_size) != vocab)
      fail_data(cat(what, ": vocabulary mismatch: the tokens are ", data.spec.describe(), ", the model has vocab_size ",
                    vocab));
    return;
  }
  if (data.max_token_index() >= 0 && static_cast<int64_t>(data.max_token()) >= vocab)
    fail_data(cat(what, ": token ", data.max_token(), " at index ", data.max_token_index(),
                  " is outside the model's vocabulary (", vocab, ")"));
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
  const auto& records = data->records();
  record_windows_.assign(records.size() + 1, 0);
  for (size_t r = 0; r < records.size(); ++r) {
    const int64_t size = records[r].size;
    record_windows_[r + 1] = record_windows_[r] + static_cast<uint64_t>((size + T - 1) / T);
  }
  // Every record's last window ends with a PAD target (soma V1's targets end with PAD).
  if (pad < 0)
    fail(ErrorKind::Usage, "sequential sampling pads each record's end with PAD, but the model has no pad_id",
         "set one with --set pad_id=N, or use --sample random");
}

void DataLoader::require_whole_records() {
  if (mode_ != SampleMode::Sequential)
    fail(ErrorKind::Usage, "a model with conditions or block-wise positions trains on whole records",
         "use --sample sequential (a random window has no record and may start inside one)");
  const auto& records = data_->records();
  for (size_t r = 0; r < records.size(); ++r) {
    if (records[r].size > T_)
      fail_data(cat("record ", r, " has ", records[r].size, " tokens, more than --seq ", T_,
                    ": a materium row is one whole record"));
    if (records[r].start != 0)
      fail_data(cat("record ", r, " starts at position ", records[r].start,
                    " (a chunk of a longer document): a materium row is one whole record"));
  }
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
  out.records.resize(has_pos ? static_cast<size_t>(out.B) : 0);
  out.has_conditions = false;
  out.has_vision = false;
}

void DataLoader::fill_span(int64_t row, int64_t begin, Batch& out) const {
  span_.resize(static_cast<size_t>(T_ + 1));
  data_->read(begin, T_ + 1, span_.data());
  std::copy(span_.begin(), span_.end() - 1, out.inputs.begin() + row * T_);
  std::copy(span_.begin() + 1, span_.end(), out.targets.begin() + row * T_);
}

void DataLoader::fill_window(int64_t row, uint64_t window, Batch& out) const {
  const auto it = std::upper_bound(record_windows_.begin(), record_windows_.end(), window);
  const size_t r = static_cast<size_t>(it - record_windows_.begin()) - 1;
  const TokenData::Record& rec = data_->records()[r];
  out.records[static_cast<size_t>(row)] = static_cast<int64_t>(r);
  const int64_t off = static_cast<int64_t>(window - record_windows_[r]) * T_;
  int32_t* x = out.inputs.data() + row * T_;
  int32_t* y = out.targets.data() + row * T_;
  int64_t* p = out.pos.data() + row * T_;
  // Padding sits at the position after the record's data (soma V1: PAD shares the EOS position).
  const uint64_t pad_pos = rec.start + static_cast<uint64_t>(rec.size);
  for (int64_t t = 0; t < T_; ++t) {
    const int64_t i = off + t;
    x[t] = i < rec.size ? static_cast<int32_t>(data_->at(rec, i)) : pad_;
    y[t] = i + 1 < rec.size ? static_cast<int32_t>(data_->at(rec, i + 1)) : pad_;
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
