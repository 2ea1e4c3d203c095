// A checkpoint directory: the weights as one safetensors file, or as shards listed by
// model.safetensors.index.json (Hugging Face's layout), and the layout's config file beside them
// (config.json and generation_config.json, params.json). Written as one set: a reader of the directory sees the checkpoint
// that was there before or the new one, never a mix, whatever kills the writer when.
//
// A new directory is built beside its target and renamed into place (a failed write leaves
// nothing). Into an existing directory the new files are written in a temporary directory inside
// it, then moved in so that one rename or unlink is the moment the new checkpoint wins for every
// reader (the index for lmkit, which prefers it; model.safetensors for transformers, which prefers
// that): an old shard the new set would overwrite is first given another name (a hard link) and
// the old index pointed at it. After the switch, what is left of the old checkpoint goes: its index
// and the shards it listed, model.safetensors, consolidated.safetensors, the config files the new
// set writes, and shards of crashed writers no index lists. Other files (tokenizers, READMEs, a
// config file of another layout) stay.
//
// The config files are renamed in right after the switch, inside the same signal-deferring
// section, so only a kill -9 or a power loss in those microseconds leaves the new weights beside
// the old config files. lmkit's readers then still see one checkpoint (its weights carry their
// own config as metadata, lmkit.config; only generation_config.json's eos ids are read from the
// file); transformers would pair the new weights with the old config.json. Making that switch
// one rename too would mean swapping the whole directory (a new inode under the user's shell and
// other programs' open handles, and files they add meanwhile to move back): a new directory is
// the way to a set no crash can mix for every reader.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lm {

inline constexpr const char* kShardIndexName = "model.safetensors.index.json";
// The weight files a reader of a directory takes, in the order it prefers them; the first two
// and the index's shards are what a new checkpoint written there replaces.
inline constexpr const char* kSingleWeightNames[] = {"model.safetensors", "consolidated.safetensors",
                                                     "consolidated.00.safetensors"};
// "model-00001-of-00003.safetensors" for i = 0, n = 3.
std::string shard_file_name(size_t i, size_t n);

struct CheckpointDirFiles {
  // One weight file: its name (e.g. "model.safetensors") and how to write it to a path.
  std::string single_name;
  std::function<void(const std::string& path)> write_single;
  // Or shards, in order (used when single_name is empty): the tensors each holds (for the index).
  struct Shard {
    std::vector<std::string> tensors;
    std::function<void(const std::string& path)> write;
  };
  std::vector<Shard> shards;
  uint64_t total_size = 0;  // the index's metadata.total_size: bytes of tensor data
  // The layout's config files (name, text): config.json and generation_config.json, params.json.
  std::vector<std::pair<std::string, std::string>> config_files;
};

// Writes `files` into directory `dir` (created when absent) as one set; returns the paths of the
// files of the new checkpoint. Io errors name the path.
std::vector<std::string> write_checkpoint_dir(const std::string& dir, const CheckpointDirFiles& files);

}  // namespace lm
