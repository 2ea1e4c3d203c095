// The nodes of a conversion's input tensors, one way for every container reader (source.cpp's
// safetensors, GGUF and llama2.c files, meta_shards.cpp's torch.save files).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "convert/rules.h"

namespace lm::convert {

// A second descriptor on a regular input file, for plain copies by pread (null when the input
// is not a regular file, or cannot be opened again: the mapping still works).
std::shared_ptr<const int> open_fd(const std::string& path, bool regular);

// One input tensor as stored: its name, type and shape, `load` giving its bytes.
Node input_node(const std::string& name, DType dtype, const Shape& shape, std::function<Tensor()> load);

// `n`'s bytes lie unchanged at `file_offset` of the mapped regular input file `fd` reads (null:
// no second descriptor): the writer copies them by pread (or from the mapping), then drops the
// mapped pages load() views.
void read_in_place(Node& n, std::shared_ptr<const int> fd, uint64_t file_offset);

}  // namespace lm::convert
