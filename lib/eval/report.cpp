#include "eval/report.h"

#include <cstring>

#include "core/error.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace lm {

nlohmann::json eval_report_json(const EvalResult& r) {
  nlohmann::json j;
  j["loss"] = r.loss();
  j["perplexity"] = r.perplexity();
  j["bits_per_token"] = r.bits_per_token();
  const auto bpb = r.bits_per_byte();
  j["bits_per_byte"] = bpb ? nlohmann::json(*bpb) : nlohmann::json(nullptr);
  j["bytes"] = r.bytes >= 0 ? nlohmann::json(r.bytes) : nlohmann::json(nullptr);
  j["tokens"] = r.tokens;
  j["ignored"] = r.ignored;
  j["windows"] = r.windows;
  j["batches"] = r.batches;
  j["records"] = r.records;
  j["seq"] = r.seq;
  j["batch"] = r.batch;
  if (r.sigreg_enabled)
    j["sigreg"] = {{"value", r.sigreg},
                   {"coefficient", r.sigreg_coefficient},
                   {"term", r.sigreg_coefficient * r.sigreg},
                   {"total_loss", r.total_loss()}};
  else
    j["sigreg"] = nullptr;
  if (r.loss_weighted)
    j["loss_weights"] = {{"weighted", true},
                         {"unweighted_loss", r.unweighted_loss()},
                         {"weight_sum", r.weight_sum},
                         {"non_unit_ids", r.non_unit_weight_ids},
                         {"zero_ids", r.zero_weight_ids}};
  else
    j["loss_weights"] = nullptr;
  j["seconds"] = r.seconds;
  j["tokens_per_second"] = r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0.0;
  return j;
}

std::string eval_report_text(const EvalResult& r) {
  char buf[512];
  std::string s;
  std::snprintf(buf, sizeof buf, "loss        %.6f nats/token\nperplexity  %.4f\nbits/token  %.6f\n", r.loss(),
                r.perplexity(), r.bits_per_token());
  s += buf;
  if (r.loss_weighted) {
    std::snprintf(buf, sizeof buf,
                  "weighted    the loss above is loss-weighted (%lld ids weigh other than 1, %lld weigh 0); "
                  "unweighted %.6f\n",
                  static_cast<long long>(r.non_unit_weight_ids), static_cast<long long>(r.zero_weight_ids),
                  r.unweighted_loss());
    s += buf;
  }
  if (const auto bpb = r.bits_per_byte()) {
    std::snprintf(buf, sizeof buf, "bits/byte   %.6f (%lld bytes)\n", *bpb, static_cast<long long>(r.bytes));
    s += buf;
  } else {
    s += "bits/byte   unknown (give --bytes N)\n";
  }
  if (r.sigreg_enabled) {
    std::snprintf(buf, sizeof buf, "sigreg      %.6f (x %g = %.6f; loss + sigreg = %.6f)\n", r.sigreg,
                  r.sigreg_coefficient, r.sigreg_coefficient * r.sigreg, r.total_loss());
    s += buf;
  }
  std::snprintf(buf, sizeof buf,
                "tokens      %lld (%lld ignored) in %lld windows of %lld, %lld batches, %lld records\n"
                "time        %.3f s (%.0f tokens/s)\n",
                static_cast<long long>(r.tokens), static_cast<long long>(r.ignored), static_cast<long long>(r.windows),
                static_cast<long long>(r.seq), static_cast<long long>(r.batches), static_cast<long long>(r.records),
                r.seconds, r.seconds > 0 ? r.tokens / r.seconds : 0.0);
  s += buf;
  return s;
}

void save_embedding(const std::string& path, const EvalResult& r) {
  if (r.embedding.empty()) fail(ErrorKind::Runtime, "internal: no embedding was computed");
  const int64_t C = static_cast<int64_t>(r.embedding.size());
  Tensor t = Tensor::zeros(DType::F32, {C});
  std::memcpy(t.data_mut<float>(), r.embedding.data(), static_cast<size_t>(C) * sizeof(float));
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("lmkit.what", "mean embedding: final-norm output averaged over each batch's windows and positions, "
                               "then over batches (soma V1 compute_loss)");
  w.set_metadata("lmkit.batches", std::to_string(r.batches));
  w.add("embedding", t);
  w.write_file(path);
}

}  // namespace lm
