// Opening a checkpoint of any container lmkit reads as a graph of lazy tensor nodes:
// safetensors (one file, "-" for stdin, or sharded with model.safetensors.index.json),
// GGUF, and llama2.c (v0, v1, v2). The container is told by content, not by name.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convert/names.h"
#include "convert/rules.h"
#include "model/config.h"

namespace lm {
class Tokenizer;
}

namespace lm::convert {

struct Source {
  std::string path;       // as given
  std::string display;    // for messages ("<stdin>" for "-")
  std::string container;  // "safetensors", "safetensors, 3 shards", "GGUF v3", "llama2.c v0"
  Graph graph;
  std::map<std::string, std::string> metadata;   // safetensors __metadata__ (of the first shard)
  std::optional<ModelConfig> config;             // carried by the file itself
  std::string config_origin;                     // where `config` came from
  std::string config_text;                       // its JSON text as stored (GGUF lmkit.config)
  std::vector<std::string> config_assignments;   // GGUF llama.* keys as --set assignments
  std::string tokenizer_json;                    // lmkit.tokenizer, when present
  // The tokenizer the file carries (a GGUF vocabulary, or lmkit.vocab), null when none; a
  // vocabulary lmkit cannot read leaves it null with the reason in tokenizer_error.
  std::shared_ptr<Tokenizer> tokenizer;
  std::string tokenizer_error;
  std::string dir;                               // the directory holding the checkpoint
  std::optional<Layout> container_layout;        // GGUF and llama2.c fix the layout
  std::vector<std::string> notes;                // what was assumed on reading (printed unless -q)
};

// Opens `path`: a file ("-" = stdin), a model.safetensors.index.json, or a directory holding
// one of those. `forced` (from --from gguf / llama2c) skips the content sniffing. Data errors
// name the file (and the tensor or field).
Source open_source(const std::string& path, std::optional<Layout> forced = std::nullopt);

}  // namespace lm::convert
