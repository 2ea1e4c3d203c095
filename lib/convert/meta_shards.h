// PyTorch checkpoints (torch.save's zip format, io/torch_pth.h) as conversion sources, and Meta's
// model-parallel checkpoints: a directory of consolidated.00 .. consolidated.NN (.pth or
// .safetensors) with params.json, each shard holding a slice of every split tensor. The shards
// are merged back into one tensor per name by Meta's rules (docs/checkpoint-format.md, "Meta's
// sharded checkpoints"; docs/llama4.md §12), lazily: a merged tensor is assembled when written.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "convert/source.h"

namespace lm {
class MappedFile;
}

namespace lm::convert {

// Adds the tensors of a torch.save checkpoint to `src` (views into the mapping; `mapped` = a
// regular file, read by pread when written).
void open_torch(Source& src, std::shared_ptr<MappedFile> file, bool mapped, const std::string& path);

// The shard files of `dir` (consolidated.NN.pth / .safetensors) in shard order when there are
// two or more; empty otherwise. A gap in the numbering or a shard in both forms is an error.
std::vector<std::string> meta_shards_in_dir(const std::string& dir);

// Opens the shards and merges them (params.json in `dir` gives the head counts and sizes the
// rules need). Errors name the directory, the shard and the tensor.
void open_meta_shards(Source& src, const std::string& dir, const std::vector<std::string>& shards);

}  // namespace lm::convert
