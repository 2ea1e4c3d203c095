#include "train/checkpoint.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/metadata_keys.h"
#include "io/safetensors.h"
#include "model/loss_weights.h"
#include "tokenizer/byte_v1.h"

namespace lm::train {

using nlohmann::json;

json rng_state_to_json(const Rng::State& s) {
  uint32_t spare_bits;
  std::memcpy(&spare_bits, &s.spare, sizeof spare_bits);
  return json{{"s", json::array({s.s[0], s.s[1], s.s[2], s.s[3]})}, {"spare_bits", spare_bits},
              {"has_spare", s.has_spare}};
}

Rng::State rng_state_from_json(const json& j) {
  Rng::State s{};
  try {
    const json& words = j.at("s");
    if (!words.is_array() || words.size() != 4) fail_data("rng state: 's' must hold 4 words");
    for (size_t i = 0; i < 4; ++i) s.s[i] = words[i].get<uint64_t>();
    const uint32_t bits = j.at("spare_bits").get<uint32_t>();
    std::memcpy(&s.spare, &bits, sizeof bits);
    s.has_spare = j.at("has_spare").get<bool>();
  } catch (const json::exception& e) {
    fail_data(cat("rng state: ", e.what()));
  }
  return s;
}

namespace {

json state_to_json(const TrainState& st) {
  json j = json{{"version", kCheckpointVersion},
                {"step", st.step},
                {"tokens", st.tokens},
                {"elapsed", st.elapsed},
                {"rng", rng_state_to_json(st.rng)},
                {"data", {{"rng", rng_state_to_json(st.data.rng)}, {"cursor", st.data.cursor}, {"epoch", st.data.epoch}}},
                {"settings", st.settings}};
  if (!st.data_fingerprints.empty()) {
    json prints = json::array();
    for (const DataFingerprint& f : st.data_fingerprints) prints.push_back(fingerprint_to_json(f));
    j["data_fingerprints"] = prints;
  }
  if (!st.rank_rngs.empty()) {
    json ranks = json::array();
    for (const Rng::State& r : st.rank_rngs) ranks.push_back(rng_state_to_json(r));
    j["rank_rngs"] = ranks;
  }
  return j;
}

TrainState state_from_json(const std::string& text, const std::string& where) {
  TrainState st;
  try {
    const json j = json::parse(text);
    const int version = j.at("version").get<int>();
    if (version != kCheckpointVersion)
      fail_data(cat(where, ": training state version ", version, ", expected ", kCheckpointVersion));
    st.step = j.at("step").get<int64_t>();
    st.tokens = j.at("tokens").get<uint64_t>();
    st.elapsed = j.at("elapsed").get<double>();
    st.rng = rng_state_from_json(j.at("rng"));
    const json& d = j.at("data");
    st.data.rng = rng_state_from_json(d.at("rng"));
    st.data.cursor = d.at("cursor").get<uint64_t>();
    st.data.epoch = d.at("epoch").get<uint64_t>();
    st.settings = j.at("settings");
    if (j.contains("data_fingerprints"))
      for (const json& f : j.at("data_fingerprints")) st.data_fingerprints.push_back(fingerprint_from_json(f));
    if (j.contains("rank_rngs"))
      for (const json& r : j.at("rank_rngs")) st.rank_rngs.push_back(rng_state_from_json(r));
    if (st.step < 0) fail_data(cat(where, ": negative step ", st.step));
  } catch (const json::exception& e) {
    fail_data(cat(where, ": bad training state (lmkit.train): ", e.what()));
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(where, 0) == 0) throw;
    fail_data(cat(where, ": ", e.what()));
  }
  return st;
}

}  // namespace

void save_checkpoint(const std::string& path, const ModelWeights& weights, const AdamW& optimizer,
                     const TrainState& state, const std::string& tokenizer_json) {
  SafeTensorsWriter w = weights.writer(tokenizer_json);
  w.set_metadata(kTrainStateMetadataKey, state_to_json(state).dump());
  for (const ParamInfo& p : weights.layout().tensors()) {
    w.add("optimizer.m." + p.name, Tensor::view(DType::F32, p.shape, optimizer.m() + p.offset, nullptr));
    w.add("optimizer.v." + p.name, Tensor::view(DType::F32, p.shape, optimizer.v() + p.offset, nullptr));
  }
  w.write_file(path);
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  const std::string where = quote(path);
  const auto train_meta = file.metadata_value(kTrainStateMetadataKey);
  const auto config_meta = file.metadata_value(kConfigMetadataKey);
  if (!train_meta || !config_meta)
    fail(ErrorKind::Data, cat(where, ": not a training checkpoint (no ", !config_meta ? kConfigMetadataKey : kTrainStateMetadataKey,
                              " metadata)"),
         "a plain model is fine-tuned by giving it as the config input instead of --resume");
  ModelConfig cfg = config_from_json(*config_meta, path);
  validate(cfg, path);

  LoadedCheckpoint out;
  out.state = state_from_json(*train_meta, where);
  out.tokenizer_json = file.metadata_value(kTokenizerMetadataKey).value_or("");
  InitOptions zero;
  zero.std = 0;
  out.weights = ModelWeights::random(cfg, 0, zero);
  const ParameterLayout& layout = out.weights.layout();
  out.m = Tensor::zeros(DType::F32, {layout.arena_floats()});
  out.v = Tensor::zeros(DType::F32, {layout.arena_floats()});
  float* params = out.weights.arena();
  size_t expected = 0;
  auto copy = [&](const std::string& name, const ParamInfo& p, float* dst) {
    const TensorInfo* info = file.find(name);
    if (!info) fail_data(cat(where, ": missing tensor ", quote(name)));
    if (info->shape != p.shape)
      fail_data(cat(where, ": tensor ", quote(name), ": got shape ", shape_str(info->shape), ", expected ",
                    shape_str(p.shape)));
    if (info->dtype != DType::F32) fail_data(cat(where, ": tensor ", quote(name), ": expected dtype F32"));
    const Tensor t = file.get(name).to_f32();
    std::memcpy(dst + p.offset, t.data<float>(), static_cast<size_t>(p.numel) * sizeof(float));
    ++expected;
  };
  for (const ParamInfo& p : layout.tensors()) {
    copy(p.name, p, params);
    copy("optimizer.m." + p.name, p, out.m.data_mut<float>());
    copy("optimizer.v." + p.name, p, out.v.data_mut<float>());
  }
  if (cfg.loss_weights) {
    out.weights.set_loss_weights(loss_weights_from_checkpoint(file, cfg.vocab_size, where), where);
    ++expected;
  }
  if (file.tensors().size() != expected)
    fail_data(cat(where, ": ", file.tensors().size() - expected, " unexpected tensors for this config"));
  return out;
}

TokenizerSpec default_tokenizer_spec(const ModelConfig& cfg) {
  const TokenizerSpec byte = byte_v1::spec();
  if (cfg.vocab_size == byte.vocab_size && cfg.pad_id == byte.pad_id && cfg.eos_id == byte.eos_id) return byte;
  TokenizerSpec raw;
  raw.kind = TokenizerKind::Raw;
  raw.vocab_size = static_cast<uint32_t>(cfg.vocab_size);
  return raw;
}

}  // namespace lm::train
