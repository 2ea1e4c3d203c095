// The metadata keys of an lmkit checkpoint, in a safetensors file's __metadata__ and a GGUF
// file's key/values alike. Each value is JSON text.
#pragma once

namespace lm {

// The model config (model/config.h, config_to_json).
inline constexpr const char* kConfigMetadataKey = "lmkit.config";
// The tokenizer spec (tokenizer/spec_json.h, spec_to_json).
inline constexpr const char* kTokenizerMetadataKey = "lmkit.tokenizer";
// A training checkpoint's state: step, data position, options (train/checkpoint.h).
inline constexpr const char* kTrainStateMetadataKey = "lmkit.train";

}  // namespace lm
