// The weights lm-generate, lm-eval-loss and lm-bench run: an lmkit checkpoint with its
// matrices in their stored types (f32, f16, bf16, q8_0, q4_0: lmkit.weight_types), or a
// GGUF file read directly, its f16/bf16/q8_0/q4_0 matrices kept as llama.cpp wrote them
// (ggml's blocks are core/quant.h's) and the rest widened to f32.
#pragma once

#include <string>
#include <vector>

#include "model/params.h"

namespace lm::convert {

// True when the file starts with GGUF's magic.
bool is_gguf_file(const std::string& path);

// `sets`: --set overrides applied to a GGUF file's config (lmkit checkpoints: none allowed here).
ModelWeights load_inference_weights(const std::string& path, const std::vector<std::string>& sets = {});

// lm-convert-checkpoint --cast q8_0|q4_0 to an lmkit checkpoint: the plan's matrices
// quantized (ggml's reference quantizers), the rest f32, types in lmkit.weight_types.
struct Plan;
void write_quantized_checkpoint(const Plan& plan, const std::string& output);

}  // namespace lm::convert
