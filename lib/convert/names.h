// The one table of tensor names: each of lmkit's tensors (Meta names, PyTorch [out, in]
// orientation, interleaved RoPE) with its name in every layout users have and the transform
// each needs. Every named layout is generated from it as a plain list of generic rules
// (rules.h): renames, transposes, RoPE q/k permutations, plus a few layout-specific extras
// (Meta's load hooks, Flax's separators) that are themselves rules. GGUF files and llama2.c
// arrays are read and written through the same table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "convert/rules.h"

namespace lm::convert {

enum class Layout : uint8_t { Lmkit, Meta, HF, Flax, Soma, SomaTorch, GGUF, Llama2c, Raw };

struct LayoutInfo {
  Layout id;
  const char* name;     // as given to --from / --to
  const char* summary;  // one line for --help and messages
};
const std::vector<LayoutInfo>& layouts();
const char* layout_name(Layout l);
// The layout called `name`; a Usage error "unknown layout 'x'" listing the names otherwise.
Layout parse_layout(const std::string& name);
std::string layout_names();  // "lmkit, meta, hf, ..."

// Transforms a layout applies to a tensor on the way out of lmkit (inverted on the way in).
enum Xform : uint8_t {
  kNone = 0,
  kTranspose = 1,   // stored [in, out] (Flax kernel, soma's canonical linears)
  kRopeQ = 2,       // half-split RoPE rows, n_heads heads
  kRopeK = 4,       // half-split RoPE rows, n_kv_heads heads
  kRopeOne = 8,     // half-split RoPE entries of one head (the [HS] q/k norm weights)
};

struct NameEntry {
  const char* name = nullptr;  // with {L} for the layer index; nullptr = the layout has no such tensor
  uint8_t xform = kNone;
};

struct NameRow {
  const char* lmkit;  // e.g. "layers.{L}.attention.wq.weight"
  NameEntry hf, flax, soma, soma_torch;
  const char* gguf;     // llama.cpp's name (the bytes are lmkit's; only the dims are listed reversed)
  const char* llama2c;  // the run.c array holding it (stacked over layers)
};
const std::vector<NameRow>& name_table();
// The row's entry for `layout` (Lmkit and Meta: the lmkit name itself; Raw: none).
NameEntry name_in(const NameRow& row, Layout layout);
// "layers.{L}.x" with {L} = layer.
std::string expand(const char* templ, int64_t layer);
// The lmkit tensor a llama2.c array's slice holds ("wq", 3 -> "layers.3.attention.wq.weight"; a
// whole array's layer is -1). A Runtime error for an array the table does not know.
std::string llama2c_tensor_name(const std::string& array, int64_t layer);

// The rules taking `layout`'s names to lmkit's (import) and lmkit's to `layout`'s (export).
std::vector<Rule> import_rules(Layout layout);
std::vector<Rule> export_rules(Layout layout);

// The layout whose import rules map the most of `names` (ties: the earlier layout); nullopt
// when none maps any. `has_lmkit_config` tells lmkit (config in metadata) from meta.
std::optional<Layout> detect_layout(const std::vector<std::string>& names, bool has_lmkit_config);

}  // namespace lm::convert
