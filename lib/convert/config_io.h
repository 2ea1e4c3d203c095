// Model configs in the conventions of other ecosystems, to and from lmkit's ModelConfig:
// Hugging Face config.json, Meta params.json, GGUF llama.* metadata and the llama.2c header.
//
// Each keyed format has one table (config_io.cpp) of rows: the outside key, the lmkit field it
// carries, its type, the value an absent key means, and the transform each way. The reader and
// the writer of a format both walk that table, so a key is spelled once.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace lm {
class GGUFFile;
class GGUFWriter;
struct Llama2cHeader;
}  // namespace lm

namespace lm::convert {

// Hugging Face LlamaConfig (config.json). Unknown keys are ignored (HF configs carry many);
// a non-Llama model_type or hidden_act, or a missing size, is an error naming `source`.
ModelConfig config_from_hf_json(const std::string& text, const std::string& source);
// Hugging Face generation_config.json (beside config.json) into `c`, read with config.json's
// special-token rows: its eos_token_id ids (one or a list) are added to `c`'s (eos_id, then
// extra_eos_ids); a bos_token_id or pad_token_id that differs from the config's (named
// `config_name` in the message) is an error. Its other keys (sampling defaults) are not the
// model's: named in `notes` (may be null).
void apply_hf_generation_config(ModelConfig& c, const std::string& text, const std::string& source,
                                std::vector<std::string>* notes, const std::string& config_name = "config.json");
// The generation_config.json a Hugging Face directory carries beside config.json, as
// transformers writes it (keys sorted, indent 2): bos_token_id, eos_token_id (a list when `c`
// has extra_eos_ids) and pad_token_id, those `c` has; "{}" when it has none.
std::string generation_config_to_hf_json(const ModelConfig& c);
// What a Hugging Face Llama config cannot express about `cfg` (empty = writable).
std::vector<std::string> hf_unsupported(const ModelConfig& cfg);
// Throws Unsupported naming the first field a Hugging Face Llama cannot express; an invalid
// config is a Data error (validate()), as it is for config_to_params_json.
std::string config_to_hf_json(const ModelConfig& cfg, const std::string& torch_dtype);

// A config with a Llama 4 feature (MoE, NoPE layers, chunked attention, temperature tuning,
// vision inputs, weightless QK-norm): Meta's and Hugging Face's Llama 4 conventions carry it
// (Llama 4's params.json, llama4_text's config.json and names), GGUF's llama does not.
bool is_llama4_config(const ModelConfig& cfg);
// Mixtral's experts (every layer, softmax over the selected logits, no shared expert) on an
// otherwise plain Llama: Hugging Face's MixtralForCausalLM (model_type "mixtral"), GGUF's llama.
bool is_mixtral(const ModelConfig& cfg);

// Meta params.json. vocab_size -1 is returned as 0 (take it from the embedding rows).
ModelConfig config_from_params_json(const std::string& text, const std::string& source);
std::vector<std::string> params_unsupported(const ModelConfig& cfg);
std::string config_to_params_json(const ModelConfig& cfg);

// --config: a preset name, a JSON file in lmkit's, Hugging Face's or Meta's convention or a
// seed's own (docs/seed-configs.md; told apart by its keys, or named by `format`: "auto",
// "lmkit", "hf", "meta" or a seed format's name), or a safetensors checkpoint (its
// lmkit.config, or what its shapes say). A named format with a preset or checkpoint is a
// Usage error.
// `convention` (may be null) is set to what was read: "preset", "checkpoint", "lmkit", "hf",
// "meta" or the seed format's name.
ModelConfig load_config_arg(const std::string& arg, const std::string& format = "auto", std::string* convention = nullptr);
// The convention of a config JSON text: "lmkit", "hf" or "meta".
std::string config_convention(const std::string& text, const std::string& source);

// GGUF (llama.cpp's architectures llama and llama4): the exact config when the file carries
// lmkit.config, else --set style assignments from the llama.* / llama4.* keys (the config
// inference, model/config_infer.h, does the rest from the tensors and checks the keys against
// them). llama with expert_count > 0 is Mixtral's MoE (softmax, every layer, no shared expert);
// llama4 adds what llama.cpp hard-codes for it (chunks of 8192, NoPE every 4th layer,
// temperature tuning 8192/0.1, QK-norm unless 128 experts), each reported in `notes`.
// `rope_factors` (may be null): the file's rope_freqs.weight, matched to a known llama3 scaling.
bool gguf_has_lmkit_config(const GGUFFile& f);
std::vector<std::string> gguf_config_assignments(const GGUFFile& f, const std::vector<float>* rope_factors = nullptr,
                                                 std::vector<std::string>* notes = nullptr);
// The GGUF architecture `cfg` is written as: "llama4" for Llama 4 features (Llama 4's MoE
// included), "llama" for the rest (Mixtral-style MoE included).
std::string gguf_architecture(const ModelConfig& cfg);
// rope_freqs.weight [HS/2] for a llama3-scaled config: llama.cpp divides each frequency by it.
std::vector<float> gguf_rope_factors(const ModelConfig& cfg);
// A Data error when `factors` (a file's rope_freqs) are not `cfg`'s scaling.
void check_gguf_rope_factors(const ModelConfig& cfg, const std::vector<float>& factors, const std::string& source);
// What GGUF cannot express about `cfg` in its architecture (empty = writable). llama4: also any
// config llama.cpp would run differently from lmkit (its hard-coded values above).
std::vector<std::string> gguf_unsupported(const ModelConfig& cfg);
// general.* / llama.* / tokenizer.ggml.* keys for `cfg`, plus lmkit.config (and lmkit.tokenizer
// when not empty) so a round trip through GGUF restores the exact config.
void set_gguf_metadata(GGUFWriter& w, const ModelConfig& cfg, const std::string& config_json, uint32_t file_type, bool quantized,
                       const std::string& tokenizer_json);

// llama2.c: the config a header implies (what the file cannot store takes run.c's fixed values:
// RMSNorm eps 1e-5, RoPE theta 10000, HS = dim / n_heads, BOS 1, EOS 2), and the v0 header for
// `cfg` (an Unsupported error naming what v0 cannot store, see llama2c_unsupported).
ModelConfig config_from_llama2c(const Llama2cHeader& h);
Llama2cHeader llama2c_header(const ModelConfig& cfg);
std::vector<std::string> llama2c_unsupported(const ModelConfig& cfg);

// "first problem" with the others in a hint, as an Unsupported error.
[[noreturn]] void fail_unsupported(const std::string& what, const std::vector<std::string>& why);

}  // namespace lm::convert
