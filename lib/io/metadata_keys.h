// The metadata keys of an lmkit checkpoint, in a safetensors file's __metadata__ and a GGUF
// file's key/values alike. Each value is JSON text.
#pragma once

namespace lm {

// The model config (model/config.h, config_to_json).
inline constexpr const char* kConfigMetadataKey = "lmkit.config";
// The tokenizer spec (tokenizer/spec_json.h, spec_to_json).
inline constexpr const char* kTokenizerMetadataKey = "lmkit.tokenizer";
// The tokenizer itself, as its GGUF vocabulary keys in one JSON object (tokenizer/gguf_vocab.h,
// gguf_vocab_to_json), so that the checkpoint needs no tokenizer file beside it.
inline constexpr const char* kVocabMetadataKey = "lmkit.vocab";
// A training checkpoint's state: step, data position, options (train/checkpoint.h).
inline constexpr const char* kTrainStateMetadataKey = "lmkit.train";

}  // namespace lm
