#include <cmath>
#include <cstring>
#include <memory>
#include <optional>

#include "convert/inference_weights.h"
#include "core/error.h"
#include "eval/checkpoint_tokenizer.h"
#include "eval/eval.h"
#include "eval/model_tokenizer.h"
#include "model/finite.h"
#include "io/safetensors.h"
#include "model/conditions_file.h"
#include "model/params.h"

namespace lm {

EvalResult evaluate_files(const std::string& model_path, const std::vector<std::string>& inputs,
                          TokenInputFormat format, const EvalOptions& opts, bool byte_lengths,
                          const std::function<void(const EvalResult&)>& on_batch, const std::string& vision_path,
                          const std::string& conditions) {
  ModelWeights weights = convert::load_inference_weights(model_path);
  require_finite(weights, quote(model_path));
  Transformer model(std::move(weights));
  require_supported(model.config(), program_capabilities(), "lm-eval-loss");
  model.set_compute_dtype(opts.compute_dtype);
  const ModelConfig& cfg = model.config();
  TokenizerSpec spec = model_tokenizer_spec(model.weights(), quote(model_path));
  std::vector<int32_t> byte_len;
  // The tokenizer tells the bytes of the text (bits per byte); without one they are unknown.
  const auto tokenizer = find_checkpoint_tokenizer(model_path, spec, opts.tokenizer, quote(model_path));
  if (tokenizer && byte_lengths) byte_len = token_byte_lengths(*tokenizer, cfg.vocab_size);
  std::optional<VisionFile> vision;
  EvalOptions o = opts;
  if (!vision_path.empty()) {
    vision = VisionFile::open(vision_path, cfg);
    o.vision = &*vision;
  }
  std::unique_ptr<ConditionsReader> cond_reader;
  if (!conditions.empty()) {
    if (cfg.conditions.empty()) fail_usage("--conditions: the model has no conditions");
    cond_reader = std::make_unique<ConditionsReader>(conditions, cfg);
  } else if (!cfg.conditions.empty()) {
    fail(ErrorKind::Usage, cat("the model has conditions (", condition_names(cfg), "): give their values with --conditions FILE"),
         "one JSON Lines line per record (docs/materium.md)");
  }
  Evaluator ev(model, o, byte_len);
  ev.on_batch = on_batch;
  ev.conditions = cond_reader.get();
  TokenReadOptions ro;
  ro.format = format;
  ro.vocab_size = static_cast<uint32_t>(cfg.vocab_size);
  TokenChunk chunk;
  bool more = true;
  for (const std::string& in : inputs) {
    auto reader = open_token_reader(in, ro);
    require_tokens_for_model(spec, cfg.vocab_size, *reader);
    while (more && reader->next(chunk)) more = ev.add(chunk);
    if (!more) break;
  }
  EvalResult r = ev.finish();
  if (vision && more && vision->records() > r.records)
    fail_data(cat(quote(vision_path), ": image features for record ", vision->records() - 1, ", but the input has ",
                  r.records, r.records == 1 ? " record" : " records"));
  if (cond_reader && more) cond_reader->expect_records(r.records);  // the whole input was read
  if (r.tokens == 0) fail_data("no tokens to evaluate: the input has no record of two or more tokens");
  return r;
}

void save_hidden_states(const std::string& path, const EvalResult& r) {
  const int64_t W = static_cast<int64_t>(r.hidden_lengths.size());
  if (W == 0) fail_data("no hidden states to write: no window was evaluated");
  const int64_t T = r.seq, C = r.dim;
  Tensor h = Tensor::zeros(DType::F32, {W, T, C});
  std::memcpy(h.data_mut<float>(), r.hidden.data(), r.hidden.size() * sizeof(float));
  Tensor tok = Tensor::zeros(DType::I32, {W, T});
  std::memcpy(tok.data_mut<int32_t>(), r.hidden_tokens.data(), r.hidden_tokens.size() * sizeof(int32_t));
  Tensor len = Tensor::zeros(DType::I32, {W});
  std::memcpy(len.data_mut<int32_t>(), r.hidden_lengths.data(), r.hidden_lengths.size() * sizeof(int32_t));
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("lmkit.what", "final-norm output of every token position of every evaluated window, in input order "
                               "(materium's return_hidden_states without the condition positions); tokens: the window's "
                               "inputs, padding included; lengths: how many of them are the record's");
  w.add("hidden_states", h);
  w.add("tokens", tok);
  w.add("lengths", len);
  w.write_file(path);
}

bool loss_within(double loss, double threshold) { return std::isfinite(loss) && loss <= threshold; }

}  // namespace lm
