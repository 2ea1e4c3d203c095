// Finding the tokenizer of a checkpoint for text in and out (lm-generate, lm-eval-loss):
//
//   1. the file given with --tokenizer; it must be the checkpoint's tokenizer when the
//      checkpoint names one (a Data error otherwise), and names it when the checkpoint does not;
//   2. the tokenizer the checkpoint carries: a GGUF file's vocabulary, an lmkit checkpoint's
//      lmkit.vocab metadata (docs/tokenizers.md, "GGUF");
//   3. the copy kept in the tokenizer store when the checkpoint's tokens were made
//      (tokenizer/registry.h);
//   4. byte-v1, which needs no file.
#pragma once

#include <memory>
#include <string>

#include "io/tokstream.h"
#include "tokenizer/tokenizer.h"

namespace lm {

// The tokenizer of the checkpoint at `path` whose spec (model_tokenizer_spec) is `spec`, or null
// when none is at hand (then a raw spec stays raw). With a `given` file on a raw checkpoint,
// `spec` becomes the file's. Errors name `source`.
std::shared_ptr<Tokenizer> find_checkpoint_tokenizer(const std::string& path, TokenizerSpec& spec, const std::string& given,
                                                     const std::string& source);

// The error for text with a checkpoint whose tokenizer is not at hand (Unsupported for a raw
// checkpoint, Usage with the --tokenizer hint for one that names a tokenizer).
[[noreturn]] void fail_no_tokenizer(const TokenizerSpec& spec, const std::string& source);

}  // namespace lm
