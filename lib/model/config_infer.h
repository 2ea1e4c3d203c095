// The config of a checkpoint: the JSON in its safetensors metadata ("lmkit.config"), or, when
// absent, what the Meta-style tensor names and shapes tell (formats.md §4), with a record of
// which fields were inferred, which were set by --set, and which are plain defaults.
//
// One inference serves every program: lm-inspect-config and the models read a safetensors
// file's shapes through config_from_checkpoint; lm-convert-checkpoint hands infer_config the
// shapes of any container after its layout's renames.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/metadata_keys.h"
#include "model/config.h"

namespace lm {

class SafeTensorsFile;

struct CheckpointConfig {
  ModelConfig config;
  bool from_metadata = false;            // read from the "lmkit.config" metadata
  std::vector<std::string> inferred;     // keys read off tensor names and shapes
  std::vector<std::string> overridden;   // keys given with --set
  std::vector<std::string> assumed;      // keys nothing in the file determines: defaults
};

// The config lmkit-named tensors imply (`shapes`: name -> shape), plus `overrides` (--set
// KEY=VALUE, or a GGUF file's keys as such) applied last. Data errors name `source` (and the
// tensor). Shapes alone cannot tell n_heads from head_dim: they come from a q_norm weight ([HS])
// when present, else from the overrides (n_heads=N or head_dim=N), else inference fails with
// that hint. An override that contradicts the tensor shapes (e.g. dim) is an error. Every layer
// is checked against the shapes layer 0 implies.
//
// Names (Meta's, with Llama 4's stacked experts): tok_embeddings.weight [V, C];
// layers.L.attention.{wq [NH*HS, C], wk and wv [NKV*HS, C], wo [C, NH*HS]}.weight (+ .bias);
// layers.L.attention.{q_norm,k_norm}.weight [HS]; layers.L.{attention_norm,ffn_norm}.weight [C]
// (+ .bias: LayerNorm); dense layers.L.feed_forward.{w1 [F, C], w2 [C, F], w3 [F, C] (SwiGLU)};
// MoE layers.L.feed_forward.router.weight [E, C], .experts.{w1 [E, F, C], w2 [E, C, F],
// w3 [E, F, C]}.weight and .shared_expert.{w1,w2,w3}.weight like a dense FFN; norm.weight [C];
// output.weight [V, C] (absent: tied) (+ .bias); loss_weights [V].
CheckpointConfig infer_config(const std::map<std::string, Shape>& shapes, const std::vector<std::string>& overrides,
                              const std::string& source);

// The metadata's config when the file has one (overrides applied), else infer_config over the
// file's tensors.
CheckpointConfig config_from_checkpoint(const SafeTensorsFile& file, const std::vector<std::string>& overrides);

}  // namespace lm
