#include "generate/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
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
  cache_ = model.make_cache(1);
  TokenizerSpec raw;
  raw.vocab_size = static_cast<uint32_t>(model.config().vocab_size);
  reserved_ = reserved_ids(model.config(), spec ? *spec : tokenizer ? tokenizer->spec() : raw, tokenizer);
}

Completion Generator::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts, uint64_t seed,
                               const std::function<void(std::string_view)>& on_text, const std::string& what,
                               const ConditionBatch* conditions, const VisionRow* vision) {
  const ModelConfig& c = model_.config();
  const int64_t V = c.vocab_size, S = c.max_seq_len, P = static_cast<int64_t>(prompt.size());
  if (P == 0) fail_data(cat(what, " is empty (and the tokenizer adds no BOS token)"));
  const int64_t K = conditions ? conditions->positions() : 0;
  if (P + K > S)
    fail_data(cat(what, " has ", P, " tokens", K > 0 ? cat(" after ", K, " condition positions") : std::string(),
                  ", more than the model's max_seq_len (", S, ")"));
  if (!opts.stop.empty() && !tok_) fail_usage("stop strings need a tokenizer (the checkpoint names none)");
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

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto since = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };

  Completion out;
  out.prompt_tokens = P;
  out.stop_reason = "length";
  Sampler sampler(opts.sampling, seed);
  cache_.reset();
  std::string pending;              // decoded bytes not yet handed out
  std::vector<size_t> token_end;    // byte end of each emitted token in out.text + pending
  std::vector<uint8_t> bytes;
  size_t emitted = 0;               // bytes of the text handed out
  std::string all;                  // every decoded byte (text + pending)

  if (opts.max_new_tokens == 0) {
    out.seconds = since();
    return out;
  }
  // The prompt pass needs the logits of its last position only (the classifier on one row).
  const float* logits = model_.forward_last(prompt.data(), nullptr, P, cache_, conditions, vision);
  while (true) {
    const int32_t next = sampler.sample(logits, V, reserved_.data());
    ++out.generated;
    if (out.generated == 1) out.time_to_first_token = since();
    if (opts.stop_at_eos && c.eos_id >= 0 && next == c.eos_id) {
      out.stop_reason = "eos";
      break;
    }
    out.tokens.push_back(next);
    bool stopped = false;
    if (tok_) {
      bytes.clear();
      const uint32_t id = static_cast<uint32_t>(next);
      tok_->decode(&id, 1, bytes);  // a token without bytes (EOS kept by --ignore-eos) adds nothing
      all.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      token_end.push_back(all.size());
      // A stop string completed in the new bytes (it may start in earlier, held-back ones)?
      size_t cut = std::string::npos;
      for (const std::string& st : opts.stop) {
        const size_t from = all.size() - bytes.size() >= st.size() ? all.size() - bytes.size() - st.size() + 1 : 0;
        const size_t at = all.find(st, std::max(from, emitted));
        if (at != std::string::npos) cut = std::min(cut, at);
      }
      if (cut != std::string::npos) {
        all.resize(cut);
        while (!out.tokens.empty() && token_end[out.tokens.size() - 1] > cut) out.tokens.pop_back();
        out.stop_reason = "stop";
        stopped = true;
      }
      const size_t ready = stopped ? all.size() : all.size() - held_back(all, opts.stop);
      if (ready > emitted && on_text) on_text(std::string_view(all).substr(emitted, ready - emitted));
      emitted = std::max(emitted, ready);
    }
    if (stopped) break;
    if (out.generated >= opts.max_new_tokens) break;
    if (cache_.length() >= S) {
      out.stop_reason = "max_seq_len";
      break;
    }
    logits = model_.forward(&next, nullptr, 1, cache_, nullptr, vision);
  }
  if (tok_ && emitted < all.size() && on_text) on_text(std::string_view(all).substr(emitted));
  out.text = all;
  out.seconds = since();
  return out;
}

}  // namespace lm
