#include "generate/session.h"
#include "convert/inference_weights.h"

#include <deque>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/checkpoint_tokenizer.h"
#include "eval/model_tokenizer.h"
#include "io/tokstream.h"
#include "model/conditions_file.h"
#include "model/finite.h"
#include "model/params.h"

namespace lm {

std::optional<CompletionFormat> completion_format_from_name(std::string_view name) {
  if (name == "text") return CompletionFormat::Text;
  if (name == "tokens") return CompletionFormat::Tokens;
  if (name == "ids") return CompletionFormat::Ids;
  return std::nullopt;
}

GenerateSession::GenerateSession(const std::string& model_path, bool copy_weights, const std::string& tokenizer_file,
                                 bool panels)
    : source_(quote(model_path)) {
  ModelWeights weights = convert::load_inference_weights(model_path);
  // Decode reads every weight once per token; a private copy sits on transparent huge pages,
  // the file's page cache mostly on 4 KiB ones (9 to 17% slower decode on stories110m).
  if (copy_weights) weights.make_writable();
  require_finite(weights, source_);
  // Decode's products (and prompts') from panels: batched decode at about 1.6x (f32), 1.3x
  // (bf16), 2.5-3.3x (the block types) the row-dot tiles' speed, each sequence's numbers its
  // own at any batch; without them half the memory.
  if (panels) weights.add_panels();
  model_ = std::make_unique<Transformer>(std::move(weights));
  require_supported(model_->config(), program_capabilities(), "lm-generate");
  spec_ = model_tokenizer_spec(model_->weights(), source_);
  tokenizer_ = find_checkpoint_tokenizer(model_path, spec_, tokenizer_file, source_);
}

GenerateSession::~GenerateSession() = default;

Tokenizer& GenerateSession::need_tokenizer(const std::string& why) {
  if (!tokenizer_) fail_no_tokenizer(spec_, source_ + " (" + why + ")");
  return *tokenizer_;
}

void GenerateSession::run(const SessionOptions& o, ByteSink& out, const std::function<void()>& flush,
                          const std::function<void(const nlohmann::json&)>& on_json) {
  model_->set_compute_dtype(o.compute_dtype);
  model_->set_kv_dtype(o.kv_dtype.value_or(model_->weights_kv_dtype()));
  const ModelConfig& cfg = model_->config();
  const bool stream_text = o.format == CompletionFormat::Text && !o.json;
  if (stream_text) need_tokenizer("text output; try --format ids or tokens");
  std::unique_ptr<PromptReader> reader;
  if (o.prompts.empty()) {
    reader = std::make_unique<PromptReader>(o.input, o.input_format, static_cast<uint32_t>(cfg.vocab_size));
    if (reader->token_reader()) require_tokens_for_model(spec_, cfg.vocab_size, *reader->token_reader());
  }
  std::unique_ptr<TokenStreamWriter> writer;
  if (o.format == CompletionFormat::Tokens) writer = std::make_unique<TokenStreamWriter>(out, spec_);
  auto write = [&](std::string_view s) {
    out.write(s.data(), s.size());
    if (flush) flush();
  };

  std::optional<VisionFile> vision;
  if (!o.vision.empty()) {
    vision = VisionFile::open(o.vision, cfg);
    if (!reader && vision->records() > static_cast<int64_t>(o.prompts.size()))
      fail_data(cat(quote(o.vision), ": image features for record ", vision->records() - 1, " (prompt ", vision->records(), "), but ",
                    o.prompts.size(), o.prompts.size() == 1 ? " prompt is" : " prompts are", " given"));
  }
  std::unique_ptr<ConditionsReader> conds;
  std::unique_ptr<ConditionBatch> cond_row;
  if (!o.conditions.empty()) {
    if (cfg.conditions.empty()) fail_usage("--conditions: the model has no conditions");
    if (o.conditions == "-" && o.prompts.empty() && o.input == "-")
      fail_usage("stdin ('-') given as the prompt input and as --conditions");
    conds = std::make_unique<ConditionsReader>(o.conditions, cfg);
    cond_row = std::make_unique<ConditionBatch>(cfg, 1);
  }
  if (o.batch < 1) fail_usage(cat("--batch must be >= 1, got ", o.batch));
  if (o.batch > 1 && o.compute_dtype != DType::F32)
    fail_usage("--batch above 1 needs --dtype f32: bf16 compute multiplies the rows of a step together "
               "(one GEMM), so a completion would depend on what runs beside it");
  BatchGenerator gen(*model_, tokenizer_.get(), &spec_, o.batch);
  // The prompts in flight, in input order. The first one's text streams straight out; the
  // others' (echo included) waits in their slot's buffer until every earlier one is written.
  struct InFlight {
    size_t index;
    int64_t slot;
    uint64_t record_end;  // token input: the record's end position
  };
  std::deque<InFlight> inflight;
  std::vector<std::string> held(static_cast<size_t>(o.batch));
  auto front_slot = [&] { return inflight.empty() ? int64_t{-1} : inflight.front().slot; };
  auto emit = [&](int64_t slot, std::string_view s) {
    if (slot == front_slot())
      write(s);
    else
      held[static_cast<size_t>(slot)].append(s);
  };
  // Writes every finished completion at the front, and the held text of the next one.
  auto drain = [&] {
    while (!inflight.empty() && gen.done(inflight.front().slot)) {
      const InFlight f = inflight.front();
      const Completion c = gen.finish(f.slot);  // hands out the held-back bytes (to the front: written)
      if (stream_text) write("\n");
      if (o.format == CompletionFormat::Ids) {
        std::string line;
        for (size_t k = 0; k < c.tokens.size(); ++k) line += (k ? " " : "") + std::to_string(c.tokens[k]);
        write(line + "\n");
      } else if (writer) {
        const std::vector<uint32_t> ids(c.tokens.begin(), c.tokens.end());
        writer->write_record(ids.data(), ids.size(), f.record_end);
      }
      if (o.json && on_json) {
        nlohmann::json j{{"prompt", f.index},
                         {"prompt_tokens", c.prompt_tokens},
                         {"tokens", static_cast<int64_t>(c.tokens.size())},
                         {"generated", c.generated},
                         {"stop_reason", c.stop_reason},
                         {"time_to_first_token_s", c.time_to_first_token},
                         {"seconds", c.seconds},
                         {"tokens_per_second", c.tokens_per_second()},
                         {"decode_tokens_per_second", c.decode_tokens_per_second()},
                         {"seed", o.seed + f.index},
                         {"token_ids", c.tokens}};
        if (tokenizer_) j["text"] = c.text;
        if (o.generate.logprobs >= 0) {
          auto entry = [&](const TokenLogprob& t) {
            nlohmann::json e{{"id", t.id}, {"logprob", t.logprob}};
            if (tokenizer_) {
              std::vector<uint8_t> b;
              const auto u = static_cast<uint32_t>(t.id);
              tokenizer_->decode(&u, 1, b);
              e["text"] = std::string(b.begin(), b.end());
            }
            return e;
          };
          nlohmann::json lp = nlohmann::json::array();
          for (const StepLogprobs& s : c.logprobs) {
            nlohmann::json step = entry(s.chosen);
            nlohmann::json top = nlohmann::json::array();
            for (const TokenLogprob& t : s.top) top.push_back(entry(t));
            step["top"] = std::move(top);
            lp.push_back(std::move(step));
          }
          j["logprobs"] = std::move(lp);
        }
        on_json(j);
      }
      inflight.pop_front();
      if (!inflight.empty()) {
        std::string& h = held[static_cast<size_t>(inflight.front().slot)];
        if (!h.empty()) write(h);
        h.clear();
      }
    }
  };
  size_t count = 0;
  Prompt p;
  size_t prompts = 0;
  bool more = true;
  for (size_t i = 0;;) {
    // Fill the free slots with waiting prompts (each prefilled alone as it starts).
    int64_t slot;
    while (more && (slot = gen.free_slot()) >= 0) {
      if (reader ? !reader->next(p) : i >= o.prompts.size()) {
        more = false;
        break;
      }
      ++prompts;
      if (conds && !conds->next(*cond_row, 0))
        fail(ErrorKind::Data, cat(conds->name(), ": ", conds->lines(), conds->lines() == 1 ? " line" : " lines", " for more prompts"),
                  "the conditions file has one line per prompt");
      if (!reader) p = Prompt{o.prompts[i], {}, false, 0};
      if (!p.is_tokens) p.tokens = encode_prompt(need_tokenizer("text prompts; give token input instead"), p.text);
      inflight.push_back({i, slot, p.start + p.tokens.size()});
      held[static_cast<size_t>(slot)].clear();
      if (o.echo && stream_text) {
        if (p.is_tokens) {
          std::vector<uint8_t> b;
          const std::vector<uint32_t> ids(p.tokens.begin(), p.tokens.end());
          tokenizer_->decode(ids.data(), ids.size(), b);
          emit(slot, std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
        } else {
          emit(slot, p.text);
        }
      }
      const VisionRow row = vision ? vision->row(static_cast<int64_t>(i)) : VisionRow{};
      count = i + 1;
      std::function<void(std::string_view)> on_text;
      if (stream_text) on_text = [&emit, slot](std::string_view s) { emit(slot, s); };
      gen.start(slot, p.tokens, o.generate, o.seed + i, std::move(on_text), "prompt " + std::to_string(i + 1),
                cond_row.get(), row.count > 0 ? &row : nullptr);
      ++i;
      drain();
    }
    if (inflight.empty()) break;
    gen.step();
    drain();
  }
  if (vision && vision->records() > static_cast<int64_t>(count))
    fail_data(cat(quote(o.vision), ": image features for record ", vision->records() - 1, " (prompt ", vision->records(), "), but the input has ",
                  count, count == 1 ? " prompt" : " prompts"));
  if (conds) conds->expect_records(static_cast<int64_t>(prompts));
  if (writer) writer->finish();
  else out.finish();
}

}  // namespace lm
