// Which checkpoint container a file holds, told by its first bytes (never by its name): for
// readers that take several, and for readers of one that want to say what else they were given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lm {

enum class Container { Safetensors, GGUF, Llama2c, Torch, Json, Unknown };

// GGUF and llama2.c v1/v2 by their magic; PyTorch (torch.save's zip) by a zip's first header; safetensors by a '{' after the 8-byte header length;
// JSON text by a leading '{'; llama2.c v0 (no magic) by a plausible header.
Container sniff_container(const uint8_t* p, size_t n);
const char* container_name(Container c);  // "safetensors", "GGUF", "llama2.c", "PyTorch", "JSON", "unknown"

// For a program that reads lmkit checkpoints (safetensors): a Data error naming what the file
// `name` ("<stdin>" for stdin) holds instead and the command that converts it, when it holds a
// GGUF, llama2.c or PyTorch checkpoint.
void refuse_other_checkpoint(const uint8_t* p, size_t n, const std::string& name);

}  // namespace lm
