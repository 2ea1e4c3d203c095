#include <cmath>
#include <memory>

#include "convert/inference_weights.h"
#include "core/error.h"
#include "eval/eval.h"
#include "eval/model_tokenizer.h"
#include "model/finite.h"
#include "model/params.h"

namespace lm {

EvalResult evaluate_files(const std::string& model_path, const std::vector<std::string>& inputs,
                          TokenInputFormat format, const EvalOptions& opts, bool byte_lengths,
                          const std::function<void(const EvalResult&)>& on_batch) {
  ModelWeights weights = convert::load_inference_weights(model_path);
  require_finite(weights, quote(model_path));
  Transformer model(std::move(weights));
  require_supported(model.config(), program_capabilities(), "lm-eval-loss");
  model.set_compute_dtype(opts.compute_dtype);
  const ModelConfig& cfg = model.config();
  const TokenizerSpec spec = model_tokenizer_spec(model.weights(), quote(model_path));
  std::vector<int32_t> byte_len;
  if (spec.kind != TokenizerKind::Raw && byte_lengths) {
    try {
      byte_len = token_byte_lengths(*make_model_tokenizer(spec, quote(model_path)), cfg.vocab_size);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Unsupported) throw;  // no tokenizer in this build: bytes unknown
    }
  }
  Evaluator ev(model, opts, byte_len);
  ev.on_batch = on_batch;
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
  if (r.tokens == 0) fail_data("no tokens to evaluate: the input has no record of two or more tokens");
  return r;
}

bool loss_within(double loss, double threshold) { return std::isfinite(loss) && loss <= threshold; }

}  // namespace lm
