// lm-eval-loss's report of an EvalResult: one JSON object (stable keys) or text for people.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "eval/eval.h"

namespace lm {

// Keys: loss (mean cross-entropy, nats), perplexity, bits_per_token, bits_per_byte (null when
// the byte count is unknown), bytes (null when unknown), tokens, ignored, windows, batches,
// records, seq, batch, sigreg (null, or {value, coefficient, term, total_loss}), loss_weights
// (null, or {weighted: true, unweighted_loss, weight_sum, non_unit_ids, zero_ids} when the
// model has per-token-id loss weights: then loss, perplexity and bits_per_token are of the
// loss-weighted mean; bits_per_byte stays unweighted), seconds, tokens_per_second.
nlohmann::json eval_report_json(const EvalResult& r);
std::string eval_report_text(const EvalResult& r);

// The mean embedding [C] as safetensors: tensor "embedding" F32 [C], with metadata.
void save_embedding(const std::string& path, const EvalResult& r);

}  // namespace lm
