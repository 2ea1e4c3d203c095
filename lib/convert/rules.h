// The rule engine of lm-convert-checkpoint: a checkpoint is a list of lazy tensor nodes
// (name, dtype, shape, and how to produce the bytes), and every conversion is a sequence of
// generic rules applied to that list: rename, drop, transpose, split, fuse, the RoPE q/k row
// permutation, and cast. Named layouts (names.h) are nothing but generated rule lists, and
// users give the same rules on the command line or in a JSON file for layouts nobody named.
//
// Nodes are lazy: applying rules only computes names, shapes and dtypes (so --dry-run and
// config inference are free); the bytes are produced one tensor at a time when written.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace lm::convert {

// A tensor of the input as it was found: for --dry-run's "source -> target" lines.
struct SourceRef {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
};

struct Node {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::vector<SourceRef> from;      // the input tensors this one is made of
  std::vector<std::string> ops;     // what was done to them, e.g. "transpose", "rope q to half-split"
  std::function<Tensor()> load;     // the bytes: a zero-copy view when nothing changed them
  std::function<void()> release;    // drops the input's mapped pages once written (may be empty)
  bool mapped = false;              // load() is a view into a file mapping (written in chunks, then dropped)
  // The bytes as they lie in the input file, when nothing changed them: written with pread() into a
  // reused buffer, which touches no mapped page at all (the cheapest copy; fd < 0 = not available).
  std::shared_ptr<const int> fd;
  uint64_t file_offset = 0;
};

struct Graph {
  std::vector<Node> nodes;
  std::vector<SourceRef> dropped;   // input tensors removed by drop rules
};

struct Rule {
  enum class Kind { Rename, Drop, Transpose, Split, Fuse, RopeToHalf, RopeToInterleaved, Cast };
  Kind kind = Kind::Rename;
  std::string pattern;              // Rename/Split/Fuse: a regex; Drop/Transpose/Rope*: a glob
  std::string replacement;          // Rename: REPL with \1 or $1 groups; Fuse: the fused name
  std::vector<std::string> parts;   // Split: the part names; Fuse: the 2nd.. input names (templates)
  std::vector<int64_t> sizes;       // Split: explicit part sizes along dim (0 = from the config or equal)
  int dim = 0;                      // Split/Fuse
  std::string heads;                // Rope*: "q" (n_heads), "k" (n_kv_heads) or a number
  std::string stack;                // Transpose: "" (2-D or 3-D as they are), or "experts" (moe.n_experts) or a
                                    // number E: a 2-D [E*R, C] tensor is first viewed as [E, R, C]
  DType dtype = DType::F32;         // Cast
  std::string arg;                  // the rule as written (messages, --show-rules)

  const char* option() const;       // "rename", "drop", ... (the CLI option without dashes)
};

// One rule from its option name ("rename", "drop", "transpose", "split", "fuse",
// "rope-to-half", "rope-to-interleaved", "cast") and argument, e.g. ("split",
// "layers\.(\d+)\.attention\.wqkv\.weight=layers.\1.attention.wq.weight,...@0").
// Malformed rules are Usage errors that quote the rule.
Rule parse_rule(const std::string& option, const std::string& arg);
// A rules file: a JSON array of one-key objects in the CLI's own syntax, applied in order:
//   [{"rename": "^transformer\\.=model."}, {"drop": "*.inv_freq"}, {"transpose": "*.kernel"}]
// Unknown keys, duplicate keys and non-string values are errors naming the file.
std::vector<Rule> parse_rules_file(const std::string& path);
std::vector<Rule> parse_rules_json(const std::string& text, const std::string& source);
// The rules as a rules file (the inverse of parse_rules_json).
std::string rules_to_json(const std::vector<Rule>& rules);

// Applies one rule to every node it matches. `cfg` (may be null) gives head counts for the
// RoPE permutation and part sizes for splits into lmkit parameters. Errors name the rule and
// the tensor: a split whose sizes do not fit, a fuse with a missing partner, two tensors
// renamed to one name, a permutation whose head count does not divide the rows, a cast of a
// non-float tensor.
void apply_rule(Graph& g, const Rule& rule, const ModelConfig* cfg);
void apply_rules(Graph& g, const std::vector<Rule>& rules, const ModelConfig* cfg);

// Stacks per-expert tensors into one [E, ...] tensor (older GGUF Mixtral files, Hugging Face
// Mixtral): every node whose name fully matches the regex `pattern` joins the stack named
// format(match, `target`) ($n groups), at the index its group `expert_group` gives. The experts
// of a stack must be 0..E-1, of one shape and dtype; a Data error names the stack otherwise.
void stack_experts(Graph& g, const std::string& pattern, size_t expert_group, const std::string& target);
// The inverse: every [E, ...] node whose name fully matches `pattern` becomes E nodes named
// format(match, `target`) with {e} replaced by the expert's index, in order.
void unstack_experts(Graph& g, const std::string& pattern, const std::string& target);

// Casts every node to `dtype` (F32, F16 or BF16; round to nearest even). `skip_1d` keeps
// vectors (norm weights, biases) in F32, as llama.cpp expects in GGUF files.
void cast_all(Graph& g, DType dtype, bool skip_1d);

bool glob_match(const std::string& pattern, const std::string& name);
// Maps a read-only view's file pages in bulk before a pass over it: far cheaper than one fault
// per page inside a copy (MADV_POPULATE_READ; a no-op where unsupported).
void populate_pages(const void* p, size_t n);
// Returns the mapped pages of [p, p + n) to the kernel (whole pages inside the range only): a
// streaming conversion then keeps about one chunk of the input resident, not the whole model.
void drop_mapped_pages(const void* p, size_t n);
bool is_float(DType t);

// ---- The tensor transforms the rules use (plain, on materialized tensors) ----
Tensor transpose_2d(const Tensor& t);                                      // [R, C] -> [C, R]
Tensor transpose_stacked(const Tensor& t, int64_t E);                      // [E, R, C] (or [E*R, C]) -> [E, C, R]
// Reorders rows within each of `heads` blocks of dim 0: Meta's interleaved RoPE pairs
// (2i, 2i+1) to the half-split layout (i, i + HS/2) of Hugging Face (to_half), or back.
Tensor rope_permute_rows(const Tensor& t, int64_t heads, bool to_half);
std::vector<Tensor> split_tensor(const Tensor& t, int dim, const std::vector<int64_t>& sizes);
Tensor fuse_tensors(const std::vector<Tensor>& parts, int dim);
Tensor cast_tensor(const Tensor& t, DType dtype);

}  // namespace lm::convert
