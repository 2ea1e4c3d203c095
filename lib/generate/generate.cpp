#include "generate/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>

#include "core/error.h"
#include "core/threads.h"
#include "io/stream.h"

namespace lm {

namespace {

class TokenCollector final : public RecordSink {
 public:
  explicit TokenCollector(std::vector<int32_t>& out) : out_(out) {}
  void write_record(const uint32_t* tokens, size_t n, uint64_t) override {
    for (size_t i = 0; i < n; ++i) out_.push_back(static_cast<int32_t>(tokens[i]));
  }
  void finish() override {}

 private:
  std::vector<int32_t>& out_;
};

// Length of the longest suffix of `s` that is a proper prefix of some stop string.
size_t held_back(std::string_view s, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const std::string& st : stops)
    for (size_t k = std::min(s.size(), st.size() - 1); k > best; --k)
      if (s.substr(s.size() - k) == std::string_view(st).substr(0, k)) {
        best = k;
        break;
      }
  return best;
}

}  // namespace

StepLogprobs step_logprobs(const float* logits, int64_t V, int32_t chosen, int64_t k) {
  double top = logits[0];
  for (int64_t i = 1; i < V; ++i) top = std::max(top, static_cast<double>(logits[i]));
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(logits[i]) - top);
  const double lse = top + std::log(z);
  StepLogprobs out;
  out.chosen = {chosen, static_cast<double>(logits[chosen]) - lse};
  k = std::min(k, V);
  if (k > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int64_t i = 0; i < k; ++i) {
      const int32_t id = ids[static_cast<size_t>(i)];
      out.top.push_back({id, static_cast<double>(logits[id]) - lse});
    }
  }
  return out;
}

std::vector<int32_t> encode_prompt(Tokenizer& tokenizer, std::string_view text) {
  std::vector<int32_t> ids;
  const int32_t bos = tokenizer.spec().bos_id;
  if (bos >= 0) ids.push_back(bos);
  const size_t first = ids.size();
  auto src = memory_source(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "<prompt>");
  EncodeOptions eo;
  eo.max_seq_len = text.size() + 16;  // tokenizers size buffers by it; records are concatenated anyway
  eo.eos = EosMode::Never;
  EncodeStats stats;
  TokenCollector sink(ids);
  tokenizer.encode_document(*src, eo, sink, stats);
  if (bos >= 0 && ids.size() > first && ids[first] == bos) ids.erase(ids.begin());  // the tokenizer added one
  return ids;
}

std::vector<uint8_t> reserved_ids(const ModelConfig& cfg, const TokenizerSpec& spec, const Tokenizer* tokenizer) {
  const int64_t V = cfg.vocab_size;
  std::vector<uint8_t> reserved(static_cast<size_t>(V), 0);
  const int64_t known = spec.vocab_size > 0 ? std::min<int64_t>(V, spec.vocab_size) : V;
  std::fill(reserved.begin() + known, reserved.end(), 1);
  for (const int64_t pad : {cfg.pad_id, static_cast<int64_t>(spec.pad_id)})
    if (pad >= 0 && pad < V) reserved[static_cast<size_t>(pad)] = 1;
  // An image place needs a feature the completion cannot supply.
  if (cfg.vision_dim > 0 && cfg.image_token_id >= 0 && cfg.image_token_id < V)
    reserved[static_cast<size_t>(cfg.image_token_id)] = 1;
  if (tokenizer) {
    std::vector<uint8_t> bytes;
    for (int64_t i = 0; i < known; ++i) {
      const auto id = static_cast<uint32_t>(i);
      bytes.clear();
      if (tokenizer->decode(&id, 1, bytes) != 1) reserved[static_cast<size_t>(i)] = 1;
    }
  }
  return reserved;
}

Generator::Generator(Transformer& model, const Tokenizer* tokenizer, const TokenizerSpec* spec)
    : model_(model), tok_(tokenizer) {
  TokenizerSpec raw;
  raw.vocab_size = static_cast<uint32_t>(model.config().vocab_size);
  reserved_ = reserved_ids(model.config(), spec ? *spec : tokenizer ? tokenizer->spec() : raw, tokenizer);
}

double CompletionRun::since() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void CompletionRun::begin(Transformer& model, const Tokenizer* tokenizer, const uint8_t* reserved,
                     const std::vector<int32_t>& prompt, const GenerateOptions& opts, uint64_t seed,
                     std::function<void(std::string_view)> on_text, const std::string& what,
                     const ConditionBatch* conditions, const VisionRow* vision) {
  const ModelConfig& c = model.config();
  const int64_t S = c.max_seq_len, P = static_cast<int64_t>(prompt.size());
  if (P == 0) fail_data(cat(what, " is empty (and the tokenizer adds no BOS token)"));
  const int64_t K = conditions ? conditions->positions() : 0;
  if (P + K > S)
    fail_data(cat(what, " has ", P, " tokens", K > 0 ? cat(" after ", K, " condition positions") : std::string(),
                  ", more than the model's max_seq_len (", S, ")"));
  if (!opts.stop.empty() && !tokenizer) fail_usage("stop strings need a tokenizer (the checkpoint names none)");
  for (const std::string& s : opts.stop)
    if (s.empty()) fail_usage("a stop string must not be empty");
  if (opts.max_new_tokens < 0) fail_usage(cat("max new tokens must be >= 0, got ", opts.max_new_tokens));
  // The image places are the prompt's: every feature must meet its place in the prefill.
  const int64_t features = vision ? vision->count : 0;
  if (c.vision_dim > 0 && c.image_token_id >= 0) {
    const int64_t places = std::count(prompt.begin(), prompt.end(), static_cast<int32_t>(c.image_token_id));
    if (places != features)
      fail_data(cat(what, " has ", places, " image places (token ", c.image_token_id, ") but ", features,
                    " image features"));
  } else if (features > 0 && vision->places && vision->places[features - 1] >= P) {
    fail_data(cat(what, ": image place ", vision->places[features - 1], " lies past its ", P, " tokens"));
  }

  t0_ = std::chrono::steady_clock::now();
  model_ = &model;
  tok_ = tokenizer;
  reserved_ = reserved;
  opts_ = opts;
  on_text_ = std::move(on_text);
  vision_ = vision ? *vision : VisionRow{};
  out_ = Completion{};
  out_.prompt_tokens = P;
  out_.stop_reason = "length";
  sampler_ = std::make_unique<Sampler>(opts.sampling, seed);
  for (const int32_t t : prompt) sampler_->accept(t);  // the penalties' window starts with the prompt
  token_end_.clear();
  emitted_ = 0;
  all_.clear();
  next_ = -1;
  done_ = true;
  if (opts.max_new_tokens == 0) return;
  // The cache holds the conditions, the prompt and every token fed back (not the last one).
  const int64_t need = std::min(S, K + P + opts.max_new_tokens);
  if (cache_.batch() != 1 || cache_.capacity() < need) cache_ = model.make_cache(1, need);
  cache_.reset();
  done_ = false;
  // The prompt pass needs the logits of its last position only (the classifier on one row).
  take(model.forward_last(prompt.data(), nullptr, P, cache_, conditions, vision));
}

void CompletionRun::take(const float* logits) {
  choose(logits);
  commit();
}

void CompletionRun::choose(const float* logits) {
  if (done_) fail(ErrorKind::Runtime, "internal: CompletionRun::choose after the sequence is done");
  const int64_t V = model_->config().vocab_size;
  chosen_ = sampler_->sample(logits, V, reserved_);
  if (opts_.logprobs >= 0) chosen_logprobs_ = step_logprobs(logits, V, chosen_, opts_.logprobs);
}

void CompletionRun::commit() {
  if (done_ || chosen_ < 0) fail(ErrorKind::Runtime, "internal: CompletionRun::commit without a chosen token");
  const ModelConfig& c = model_->config();
  const int32_t next = chosen_;
  chosen_ = -1;
  sampler_->accept(next);
  ++out_.generated;
  if (out_.generated == 1) out_.time_to_first_token = since();
  if (opts_.stop_at_eos && c.is_eos(next)) {  // eos_id or one of extra_eos_ids
    out_.stop_reason = "eos";
    done_ = true;
    return;
  }
  out_.tokens.push_back(next);
  if (opts_.logprobs >= 0) out_.logprobs.push_back(std::move(chosen_logprobs_));
  if (tok_) {
    bytes_.clear();
    const uint32_t id = static_cast<uint32_t>(next);
    tok_->decode(&id, 1, bytes_);  // a token without bytes (EOS kept by --ignore-eos) adds nothing
    all_.append(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
    token_end_.push_back(all_.size());
    // A stop string completed in the new bytes (it may start in earlier, held-back ones)?
    size_t cut = std::string::npos;
    for (const std::string& st : opts_.stop) {
      const size_t from = all_.size() - bytes_.size() >= st.size() ? all_.size() - bytes_.size() - st.size() + 1 : 0;
      const size_t at = all_.find(st, std::max(from, emitted_));
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    bool stopped = false;
    if (cut != std::string::npos) {
      all_.resize(cut);
      while (!out_.tokens.empty() && token_end_[out_.tokens.size() - 1] > cut) {
        out_.tokens.pop_back();
        if (!out_.logprobs.empty()) out_.logprobs.pop_back();
      }
      out_.stop_reason = "stop";
      stopped = true;
    }
    const size_t ready = stopped ? all_.size() : all_.size() - held_back(all_, opts_.stop);
    if (ready > emitted_ && on_text_) on_text_(std::string_view(all_).substr(emitted_, ready - emitted_));
    emitted_ = std::max(emitted_, ready);
    if (stopped) {
      done_ = true;
      return;
    }
  }
  if (out_.generated >= opts_.max_new_tokens) {
    done_ = true;
    return;
  }
  if (cache_.length() >= model_->config().max_seq_len) {
    out_.stop_reason = "max_seq_len";
    done_ = true;
    return;
  }
  next_ = next;
}

Completion CompletionRun::finish() {
  if (!done_) fail(ErrorKind::Runtime, "internal: CompletionRun::finish before the sequence is done");
  if (tok_ && emitted_ < all_.size() && on_text_) on_text_(std::string_view(all_).substr(emitted_));
  emitted_ = all_.size();
  out_.text = all_;
  out_.seconds = since();
  return std::move(out_);
}

Completion Generator::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts, uint64_t seed,
                               const std::function<void(std::string_view)>& on_text, const std::string& what,
                               const ConditionBatch* conditions, const VisionRow* vision) {
  seq_.begin(model_, tok_, reserved_.data(), prompt, opts, seed, on_text, what, conditions, vision);
  while (!seq_.done()) {
    const int32_t next = seq_.next_input();
    seq_.take(model_.forward(&next, nullptr, 1, seq_.cache(), nullptr, seq_.vision()));
  }
  return seq_.finish();
}

BatchGenerator::BatchGenerator(Transformer& model, const Tokenizer* tokenizer, const TokenizerSpec* spec,
                               int64_t slots)
    : model_(model), tok_(tokenizer) {
  if (slots < 1) fail_usage(cat("the batch must hold at least one sequence, got ", slots));
  seqs_.resize(static_cast<size_t>(slots));
  busy_.assign(static_cast<size_t>(slots), 0);
  TokenizerSpec raw;
  raw.vocab_size = static_cast<uint32_t>(model.config().vocab_size);
  reserved_ = reserved_ids(model.config(), spec ? *spec : tokenizer ? tokenizer->spec() : raw, tokenizer);
}

int64_t BatchGenerator::free_slot() const {
  for (size_t i = 0; i < busy_.size(); ++i)
    if (!busy_[i]) return static_cast<int64_t>(i);
  return -1;
}

void BatchGenerator::start(int64_t slot, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                           uint64_t seed, std::function<void(std::string_view)> on_text, const std::string& what,
                           const ConditionBatch* conditions, const VisionRow* vision) {
  if (slot < 0 || slot >= slots() || busy_[static_cast<size_t>(slot)])
    fail(ErrorKind::Runtime, cat("internal: BatchGenerator::start on slot ", slot, ", which is not free"));
  seqs_[static_cast<size_t>(slot)].begin(model_, tok_, reserved_.data(), prompt, opts, seed, std::move(on_text), what,
                                         conditions, vision);
  busy_[static_cast<size_t>(slot)] = 1;
}

Completion BatchGenerator::finish(int64_t slot) {
  if (slot < 0 || slot >= slots() || !busy_[static_cast<size_t>(slot)])
    fail(ErrorKind::Runtime, cat("internal: BatchGenerator::finish on slot ", slot, ", which holds no sequence"));
  Completion c = seqs_[static_cast<size_t>(slot)].finish();
  busy_[static_cast<size_t>(slot)] = 0;
  return c;
}

int64_t BatchGenerator::running() const {
  int64_t n = 0;
  for (size_t i = 0; i < seqs_.size(); ++i) n += busy_[i] && !seqs_[i].done();
  return n;
}

void BatchGenerator::step() {
  step_tokens_.clear();
  step_caches_.clear();
  step_slots_.clear();
  for (size_t i = 0; i < seqs_.size(); ++i) {
    if (!busy_[i] || seqs_[i].done()) continue;
    step_tokens_.push_back(seqs_[i].next_input());
    step_caches_.push_back(&seqs_[i].cache());
    step_slots_.push_back(static_cast<int64_t>(i));
  }
  const auto n = static_cast<int64_t>(step_slots_.size());
  if (n == 0) return;
  const int64_t V = model_.config().vocab_size;
  if (n == 1) {  // Generator's step (the fused one-token attention)
    CompletionRun& s = seqs_[static_cast<size_t>(step_slots_[0])];
    s.take(model_.forward(step_tokens_.data(), nullptr, 1, s.cache(), nullptr, s.vision()));
    return;
  }
  const float* logits = model_.forward_steps(step_tokens_.data(), step_caches_.data(), n);
  // The draws on the threads (a sampled step's softmax over the vocabulary was a tenth of a
  // --batch 16 step, run while the other threads waited), errors kept for after the region;
  // then each sequence's output in order.
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  parallel_for(n, n * V, [&](int64_t i) {
    try {
      seqs_[static_cast<size_t>(step_slots_[i])].choose(logits + i * V);
    } catch (...) {
      errors[static_cast<size_t>(i)] = std::current_exception();
    }
  });
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  for (int64_t i = 0; i < n; ++i) seqs_[static_cast<size_t>(step_slots_[i])].commit();
}

}  // namespace lm
