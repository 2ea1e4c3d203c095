#include "convert/inference_weights.h"

#include <cstdio>
#include <map>
#include <memory>

#include "convert/convert.h"
#include "core/error.h"
#include "core/quant.h"
#include "io/gguf.h"
#include "io/metadata_keys.h"
#include "io/safetensors.h"
#include "tokenizer/gguf_vocab.h"

namespace lm::convert {

bool is_gguf_file(const std::string& path) {
  if (path == "-") return false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  uint8_t magic[4] = {};
  const size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return GGUFFile::has_magic(magic, n);
}

namespace {

std::optional<WeightType> kept_type(GGMLType t) {
  switch (t) {
    case GGMLType::F16: return WeightType::F16;
    case GGMLType::BF16: return WeightType::BF16;
    case GGMLType::Q8_0: return WeightType::Q8_0;
    case GGMLType::Q4_0: return WeightType::Q4_0;
    case GGMLType::Q4_K: return WeightType::Q4_K;
    case GGMLType::Q6_K: return WeightType::Q6_K;
    case GGMLType::F32: break;
  }
  return std::nullopt;
}

ModelWeights load_gguf(const std::string& path, const std::vector<std::string>& sets) {
  ConvertOptions opts;
  opts.input = path;
  opts.from = "gguf";
  opts.to = "lmkit";
  opts.sets = sets;
  const Plan plan = plan_conversion(opts);
  if (!plan.config) fail_data(cat(quote(path), ": no model config in the GGUF file"));
  auto gguf = std::make_shared<GGUFFile>(GGUFFile::open(path));
  std::map<std::string, const GGUFTensorInfo*> by_name;
  for (const GGUFTensorInfo& t : gguf->tensors()) by_name[t.name] = &t;
  std::map<std::string, const Node*> nodes;
  for (const Node& n : plan.graph.nodes) nodes[n.name] = &n;

  const ParameterLayout layout(*plan.config);
  std::vector<StoredTensor> stored;
  for (const ParamInfo& p : layout.tensors()) {
    auto it = nodes.find(p.name);
    if (it == nodes.end()) fail_data(cat(quote(path), ": missing tensor ", quote(p.name)));
    const Node& n = *it->second;
    // A matrix taken from one GGUF tensor with nothing done to it but decoding stays as stored.
    bool as_stored = param_is_matrix(p.kind) && n.from.size() == 1 && by_name.count(n.from[0].name);
    for (const std::string& op : n.ops) as_stored = as_stored && op.rfind("dequantize", 0) == 0;
    if (as_stored) {
      const GGUFTensorInfo& t = *by_name[n.from[0].name];
      if (auto type = kept_type(t.type); type && t.shape() == p.shape) {
        stored.push_back({*type, Tensor::view(DType::U8, {static_cast<int64_t>(t.nbytes)}, gguf->data(t), gguf)});
        continue;
      }
    }
    Tensor f = n.load();
    stored.push_back({WeightType::F32, f.dtype() == DType::F32 ? f : f.cast(DType::F32)});
  }
  ModelWeights w = ModelWeights::from_stored(*plan.config, std::move(stored), quote(path));
  if (!plan.source.tokenizer_json.empty()) w.set_tokenizer_json(plan.source.tokenizer_json);
  return w;
}

}  // namespace

ModelWeights load_inference_weights(const std::string& path, const std::vector<std::string>& sets) {
  if (is_gguf_file(path)) return load_gguf(path, sets);
  if (!sets.empty()) fail_usage("--set applies to GGUF files here; an lmkit checkpoint carries its config");
  return ModelWeights::load_typed(path);
}

void write_quantized_checkpoint(const Plan& plan, const std::string& output) {
  if (!plan.config) fail_usage(cat("--cast ", plan.cast, ": needs the model config (--config)"));
  std::map<std::string, const Node*> nodes;
  for (const Node& n : plan.graph.nodes) nodes[n.name] = &n;
  const ParameterLayout layout(*plan.config);
  std::vector<StoredTensor> f32;
  for (const ParamInfo& p : layout.tensors()) {
    auto it = nodes.find(p.name);
    if (it == nodes.end()) fail_data(cat(plan.source.display, ": missing tensor ", quote(p.name)));
    Tensor t = it->second->load();
    f32.push_back({WeightType::F32, t.dtype() == DType::F32 ? t : t.cast(DType::F32)});
  }
  const ModelWeights w = ModelWeights::from_stored(*plan.config, std::move(f32), plan.source.display);
  SafeTensorsWriter out = w.cast(*weight_type_from_name(plan.cast)).writer(plan.source.tokenizer_json);
  // The vocabulary travels as it does in an f32 lmkit checkpoint (output_metadata).
  if (!plan.vocab.empty()) out.set_metadata(kVocabMetadataKey, gguf_vocab_to_json(plan.vocab));
  out.write_file(output);
}

}  // namespace lm::convert
