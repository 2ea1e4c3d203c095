#include "convert/convert.h"
#include "convert/inference_weights.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "convert/config_io.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/regex.h"
#include "io/checkpoint_dir.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "model/config_infer.h"
#include "model/loss_weights.h"
#include "model/params.h"
#include "tokenizer/gguf_vocab.h"
#include "version.h"

namespace lm::convert {

namespace {

// --cast to one of ggml's block types (written as such to GGUF and lmkit checkpoints).
bool is_block_cast(const std::string& cast) { return cast == "q8_0" || cast == "q4_0" || cast == "q4_K" || cast == "q6_K"; }

using json = nlohmann::json;

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir == ".") return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool named(Layout l) { return l != Layout::Raw; }
bool soma_like(Layout l) { return l == Layout::Soma || l == Layout::SomaTorch; }

// The name `lmkit_name` has in `layout` (via the table), or "" when it has none there.
std::string name_in_layout(const std::string& lmkit_name, Layout layout) {
  static const Regex layer(R"(layers\.(\d{1,9})\.(.*))");  // more digits are no layer of any model
  Regex::Match m;
  std::string templ = lmkit_name;
  int64_t l = -1;
  if (layer.full_match(lmkit_name, &m)) {
    l = std::stoll(m.group(1));
    templ = "layers.{L}." + m.group(2);
  }
  for (const NameRow& row : name_table())
    if (templ == row.lmkit) {
      const NameEntry e = name_in(row, layout);
      return e.name ? expand(e.name, l) : "";
    }
  return "";
}

// Every node against the config's tensor table (lmkit names): shapes, float dtypes, and
// nothing unmapped or missing unless allowed.
void check_against_config(Graph& g, const ModelConfig& cfg, Layout from, bool allow_unmapped,
                          std::vector<std::string>& notes) {
  const ParameterLayout layout(cfg);
  std::set<std::string> present;
  std::vector<std::string> unmapped, unmapped_desc;
  std::vector<Node> keep;
  // Per-token loss weights (lm-train --loss-weights) are no parameter, but travel with them.
  const Shape loss_weights_shape{cfg.vocab_size};
  for (Node& n : g.nodes) {
    const ParamInfo* p = layout.find(n.name);
    const Shape* want = p ? &p->shape : cfg.loss_weights && n.name == kLossWeightsTensor ? &loss_weights_shape : nullptr;
    if (!want) {
      unmapped.push_back(n.name);
      const std::string src = n.from.empty() ? n.name : n.from[0].name;
      unmapped_desc.push_back(src == n.name ? quote(n.name) : cat(quote(src), " (as ", quote(n.name), ")"));
      if (allow_unmapped) {
        g.dropped.insert(g.dropped.end(), n.from.begin(), n.from.end());
        continue;
      }
    } else {
      const std::string src = n.from.empty() || n.from[0].name == n.name ? "" : cat(" (from ", quote(n.from[0].name), ")");
      if (n.shape != *want)
        fail_data(cat("shape mismatch: tensor ", quote(n.name), src, ": got ", shape_str(n.shape), ", expected ",
                      shape_str(*want), " for the config"));
      if (!is_float(n.dtype))
        fail_data(cat("wrong dtype: tensor ", quote(n.name), src, ": got ", dtype_name(n.dtype), ", expected F32, F16 or BF16"));
      present.insert(n.name);
    }
    keep.push_back(std::move(n));
  }
  g.nodes = std::move(keep);
  if (!unmapped.empty()) {
    std::string list;
    for (size_t i = 0; i < unmapped_desc.size() && i < 4; ++i) list += (i ? ", " : "") + unmapped_desc[i];
    if (unmapped_desc.size() > 4) list += cat(" and ", unmapped_desc.size() - 4, " more");
    if (!allow_unmapped)
      fail(ErrorKind::Data,
           cat(unmapped.size(), " unmapped tensor", unmapped.size() == 1 ? "" : "s", " (not one of the config's tensors after layout ",
               quote(layout_name(from)), " and the rules): ", list),
           "map them with --rename, remove them with --drop GLOB, or pass --allow-unmapped to drop them");
    notes.push_back(cat("dropped ", unmapped.size(), " unmapped tensor", unmapped.size() == 1 ? "" : "s", ": ", list));
  }
  std::vector<std::string> missing;
  for (const ParamInfo& p : layout.tensors())
    if (!present.count(p.name)) missing.push_back(p.name);
  if (cfg.loss_weights && !present.count(kLossWeightsTensor)) missing.push_back(kLossWeightsTensor);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 4; ++i) {
      const std::string there = named(from) && from != Layout::Lmkit ? name_in_layout(missing[i], from) : "";
      list += (i ? ", " : "") + quote(missing[i]) + (there.empty() || there == missing[i] ? "" : cat(" (", quote(there), ")"));
    }
    if (missing.size() > 4) list += cat(" and ", missing.size() - 4, " more");
    if (!allow_unmapped)
      fail(ErrorKind::Data, cat(missing.size(), " missing tensor", missing.size() == 1 ? "" : "s", ": ", list),
           "the config (" + cfg.name + ") expects them; check --config/--set, or pass --allow-unmapped");
    notes.push_back(cat(missing.size(), " tensor", missing.size() == 1 ? "" : "s", " missing from the output: ", list));
  }
}

// materium's own state_dict (docs/materium.md, "Checkpoint tensors") beside lmkit's names: the
// mask embeddings are stored [1, 1, C] (viewed as lmkit's [C]), and each formula condition
// repeats the token embedding as cond_proj_layers.{name}.atom_embedder.weight, and the tied
// classifier as output.weight (each dropped once its bytes are checked equal to
// tok_embeddings.weight: a different table is another model).
void import_materium_state_dict(Graph& g, const ModelConfig& cfg, std::vector<std::string>& notes) {
  const int64_t C = cfg.dim;
  std::set<std::string> masks, embedders;
  for (const ConditionConfig& c : cfg.conditions) {
    masks.insert("condition_mask_embeddings." + c.name);
    if (c.proj_layer_type == ProjLayerType::Formula) embedders.insert("cond_proj_layers." + c.name + ".atom_embedder.weight");
  }
  if (cfg.tie_embeddings) embedders.insert("output.weight");  // materium ties output.weight to the same table
  const Node* tok = nullptr;
  for (const Node& n : g.nodes)
    if (n.name == "tok_embeddings.weight") tok = &n;
  for (const Node& n : g.nodes) {  // checked before any node moves
    if (!embedders.count(n.name)) continue;
    if (!tok) fail_data(cat("tensor ", quote(n.name), " repeats tok_embeddings.weight, which the checkpoint does not have"));
    const Tensor a = n.load().to_f32(), b = tok->load().to_f32();
    if (a.shape() != b.shape() || std::memcmp(a.raw(), b.raw(), a.nbytes()) != 0)
      fail_data(cat("tensor ", quote(n.name), " ", shape_str(n.shape), " differs from tok_embeddings.weight ",
                    shape_str(tok->shape), n.name == "output.weight" ? ": the config ties the classifier to the embedding"
                                                                     : ": materium's formula condition embeds elements with the token embedding"));
  }
  int reshaped = 0, dropped = 0;
  std::vector<Node> keep;
  for (Node& n : g.nodes) {
    if (masks.count(n.name) && n.shape == Shape{1, 1, C}) {
      auto load = n.load;
      n.load = [load, C] {
        auto t = std::make_shared<Tensor>(load());
        return Tensor::view(t->dtype(), {C}, t->raw(), t);
      };
      n.shape = {C};
      n.ops.push_back("view [1, 1, C] as [C]");
      ++reshaped;
    } else if (embedders.count(n.name)) {
      g.dropped.insert(g.dropped.end(), n.from.begin(), n.from.end());
      ++dropped;
      continue;
    }
    keep.push_back(std::move(n));
  }
  g.nodes = std::move(keep);
  if (reshaped > 0)
    notes.push_back(cat("viewed ", reshaped, " materium mask embedding", reshaped == 1 ? "" : "s", " [1, 1, ", C, "] as [", C, "]"));
  if (dropped > 0)
    notes.push_back(cat("dropped ", dropped, " cop", dropped == 1 ? "y" : "ies",
                        " of tok_embeddings.weight (materium's atom_embedder and tied output tables, checked equal)"));
}

// The config a conversion runs with (or nullopt for raw -> raw without one).
void resolve_config(Plan& plan, const ConvertOptions& opts) {
  Source& src = plan.source;
  const bool needs = named(plan.from) || named(plan.to);
  std::optional<ModelConfig> cfg;
  std::string origin;
  // The generation_config.json taken with the config, and the config file it sits beside.
  std::string generation, generation_of = "the model config";
  if (!opts.config.empty()) {
    std::string read_as;
    cfg = load_config_arg(opts.config, opts.config_format, &read_as);
    origin = "--config " + opts.config;
    // A Hugging Face config file (config.json given by path): its generation_config.json
    // beside it, as for a Hugging Face directory.
    if (read_as == "hf") {
      const size_t slash = opts.config.rfind('/');
      generation = join(slash == std::string::npos ? "." : opts.config.substr(0, slash + 1), "generation_config.json");
      generation_of = opts.config;
    }
  } else if (src.config) {
    cfg = src.config;
    origin = src.config_origin;
  } else if (needs && src.path != "-") {
    const std::string hf = join(src.dir, "config.json"), params = join(src.dir, "params.json");
    if (exists(hf)) {
      cfg = config_from_hf_json(read_text_file(hf), hf);
      origin = hf;
    } else if (exists(params)) {
      cfg = config_from_params_json(read_text_file(params), params);
      origin = params;
    }
  }
  // A Hugging Face checkpoint's generation_config.json: the ids generation ends at
  // (transformers' GenerationConfig), whether the config came from config.json or the
  // weights' lmkit.config (a directory lmkit wrote, edited since).
  if (cfg && opts.config.empty() && (plan.from == Layout::HF || plan.from == Layout::HFLlama4) && src.path != "-") {
    generation = join(src.dir, "generation_config.json");
    generation_of = "config.json";
  }
  if (!exists(generation)) generation.clear();  // (beside a config: only when it is there)
  if (opts.generation_config == "none") {
    generation.clear();
  } else if (!opts.generation_config.empty()) {
    if (!needs)  // raw -> raw writes the input's metadata as it was
      fail_usage(cat("--generation-config: a conversion from raw to raw keeps the input's config as it is; "
                     "its eos ids have nowhere to go (name a layout with --to)"));
    generation = opts.generation_config;  // named: must be there
  }
  auto apply_generation = [&] {
    if (generation.empty()) return;
    apply_hf_generation_config(*cfg, read_text_file(generation), generation, &plan.notes, generation_of);
    origin += " and " + generation;
  };
  if (cfg) {
    apply_generation();  // before --set, which has the last word
    apply_overrides(*cfg, opts.sets);
    if (cfg->vocab_size == 0) {  // params.json's vocab_size -1: the embedding rows tell
      Graph probe = src.graph;
      apply_rules(probe, import_rules(plan.from), nullptr);
      for (const Node& n : probe.nodes)
        if (n.name == "tok_embeddings.weight" && n.shape.size() == 2) cfg->vocab_size = n.shape[0];
    }
  } else if (needs) {
    Graph probe = src.graph;
    apply_rules(probe, import_rules(plan.from), nullptr);
    std::vector<std::string> sets = src.config_assignments;
    sets.insert(sets.end(), opts.sets.begin(), opts.sets.end());
    std::map<std::string, Shape> shapes;
    for (const Node& n : probe.nodes) shapes.emplace(n.name, n.shape);
    cfg = infer_config(shapes, sets, src.display).config;
    origin = src.config_assignments.empty() ? "inferred from the tensor shapes" : src.config_origin;
    if (!generation.empty()) {
      apply_generation();
      apply_overrides(*cfg, opts.sets);  // --set keeps the last word here too
    }
  }
  if (!cfg) return;
  validate(*cfg, origin);
  if (!cfg->conditions.empty() && plan.to != Layout::Lmkit)
    fail(ErrorKind::Unsupported,
         cat("layout ", quote(layout_name(plan.to)), " has no place for condition embeddings (",
             cfg->conditions.size(), " condition", cfg->conditions.size() == 1 ? "" : "s", ")"),
         "convert a materium model --to lmkit (docs/materium.md)");
  require_supported(*cfg, Capabilities::all(), "lm-convert-checkpoint");
  plan.config = cfg;
  plan.config_origin = origin;
  // Keep the input's own config text when it says the same: round trips stay byte-exact.
  plan.config_json = config_to_json(*cfg);
  std::string original;
  if (auto m = src.metadata.find(kConfigMetadataKey); m != src.metadata.end()) original = m->second;
  if (!src.config_text.empty()) original = src.config_text;
  // src.config is what `original` parsed to when the source was opened: compared, not parsed again.
  if (!original.empty() && src.config && *src.config == *cfg) plan.config_json = original;
}

json shape_json(const Shape& s) { return json(s); }

}  // namespace

uint64_t parse_size(const std::string& text) {
  static const Regex re(R"(\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(i?)B?\s*)", /*ignore_case=*/true);
  Regex::Match m;
  if (!re.full_match(text, &m))
    fail(ErrorKind::Usage, cat("bad size ", quote(text)), "e.g. 5GB, 500MB, 2GiB or a number of bytes");
  const double v = std::strtod(m.group(1).c_str(), nullptr);  // digits only: inf at worst, refused below
  const char unit = m.group(2).empty() ? ' ' : static_cast<char>(std::toupper(m.group(2)[0]));
  const double base = m.group(3).empty() ? 1000.0 : 1024.0;
  const int power = unit == 'K' ? 1 : unit == 'M' ? 2 : unit == 'G' ? 3 : unit == 'T' ? 4 : 0;
  const double bytes = v * std::pow(base, power);
  if (bytes < 1 || bytes > 1e18) fail_usage(cat("size ", quote(text), " is out of range"));
  return static_cast<uint64_t>(bytes);
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, ++u;
  std::ostringstream s;
  s.precision(u == 0 ? 0 : 3);
  s << v << " " << units[u];
  return s.str();
}

Plan plan_conversion(const ConvertOptions& opts) {
  Plan plan;
  std::optional<Layout> forced;
  if (opts.from != "auto") {
    plan.from = parse_layout(opts.from);
    if (plan.from == Layout::GGUF || plan.from == Layout::Llama2c) forced = plan.from;
  }
  plan.to = parse_layout(opts.to);
  plan.cast = opts.cast;
  plan.shard_size = opts.shard_size;
  if (!opts.cast.empty() && opts.cast != "f32" && opts.cast != "f16" && opts.cast != "bf16" && !is_block_cast(opts.cast))
    fail(ErrorKind::Usage, cat("bad --cast ", quote(opts.cast)), "expected f32, f16, bf16, q8_0, q4_0, q4_K or q6_K");
  if (is_block_cast(opts.cast) && plan.to != Layout::GGUF && plan.to != Layout::Lmkit)
    fail_usage(cat("--cast ", opts.cast, " writes GGUF (--to gguf) or an lmkit checkpoint (--to lmkit)"));
  if (is_block_cast(opts.cast) && plan.to == Layout::Lmkit && opts.shard_size > 0)
    fail_usage(cat("--cast ", opts.cast, ": a quantized lmkit checkpoint is written as one file"));
  if (plan.to == Layout::Llama2c && !opts.cast.empty() && opts.cast != "f32")
    fail_usage(cat("--cast ", opts.cast, ": a llama2.c v0 checkpoint holds fp32 only"));

  plan.source = open_source(opts.input, forced);
  Source& src = plan.source;
  if (src.container_layout && opts.from == "auto") {
    plan.from = *src.container_layout;
  } else if (src.container_layout && plan.from != *src.container_layout && plan.from != Layout::Raw) {
    fail(ErrorKind::Usage, cat(quote(src.display), " is a ", src.container, " file: its layout is ",
                               layout_name(*src.container_layout), ", not ", layout_name(plan.from)));
  } else if (!src.container_layout && (plan.from == Layout::GGUF || plan.from == Layout::Llama2c)) {
    fail(ErrorKind::Usage, cat(quote(src.display), " is a ", src.container, " file, not ", layout_name(plan.from)));
  } else if (opts.from == "auto") {
    std::vector<std::string> names;
    for (const Node& n : src.graph.nodes) names.push_back(n.name);
    const auto detected = detect_layout(names, src.metadata.count(kConfigMetadataKey) > 0);
    if (!detected)
      fail(ErrorKind::Usage, cat("cannot tell the layout of ", quote(src.display), ": no tensor name is one a known layout uses"),
           "give --from LAYOUT (" + layout_names() + "); --from raw keeps the names for your own rules");
    plan.from = *detected;
  }

  resolve_config(plan, opts);
  plan.notes.insert(plan.notes.end(), src.notes.begin(), src.notes.end());
  const ModelConfig* cfg = plan.config ? &*plan.config : nullptr;
  // A Llama 4 model's Hugging Face names are llama4_text's (no q/k permutation, feed_forward).
  if (cfg && is_llama4_config(*cfg)) {
    if (plan.from == Layout::HF) plan.from = Layout::HFLlama4;
    if (plan.to == Layout::HF) plan.to = Layout::HFLlama4;
  }
  Graph& g = plan.graph;
  g = src.graph;

  // Hugging Face Mixtral holds one tensor per expert: stacked into lmkit's [E, out, in].
  if (plan.from == Layout::HF)
    stack_experts(g, R"(^model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$)", 2,
                  "layers.$1.feed_forward.experts.$3.weight");
  apply_rules(g, import_rules(plan.from), cfg);
  // What the layout's own rules dropped that users should know of: a vision encoder, routing statistics.
  for (const char* prefix : {"vision_embeddings.", "vision_model."}) {
    const auto n = std::count_if(g.dropped.begin(), g.dropped.end(), [&](const SourceRef& r) { return r.name.rfind(prefix, 0) == 0; });
    if (n > 0)
      plan.notes.push_back(cat("dropped the vision encoder (", n, " tensor", n == 1 ? "" : "s", " ", prefix,
                               "*): lmkit takes image features as input (--vision)"));
  }
  {
    const auto n = std::count_if(g.dropped.begin(), g.dropped.end(), [](const SourceRef& r) {
      return r.name.find("_gate_stats_3E") != std::string::npos || r.name.find("expert_activation_DE") != std::string::npos;
    });
    if (n > 0) plan.notes.push_back(cat("dropped ", n, " routing statistics tensor", n == 1 ? "" : "s", " (not weights)"));
  }
  if (cfg && !cfg->conditions.empty()) import_materium_state_dict(g, *cfg, plan.notes);
  if (soma_like(plan.from) && cfg && cfg->tie_embeddings) {
    // soma has no tied classifier: a tied model's predictor is a copy of the embedding.
    std::erase_if(g.nodes, [&](const Node& n) {
      if (n.name != "output.weight") return false;
      g.dropped.insert(g.dropped.end(), n.from.begin(), n.from.end());
      return true;
    });
  }
  const bool check_before_user = !named(plan.to) && named(plan.from);
  if (check_before_user && cfg) check_against_config(g, *cfg, plan.from, opts.allow_unmapped, plan.notes);
  apply_rules(g, opts.rules, cfg);
  if (named(plan.to) && cfg) check_against_config(g, *cfg, plan.from, opts.allow_unmapped, plan.notes);

  if (cfg && cfg->loss_weights && named(plan.to) && plan.to != Layout::Lmkit) {
    // Only an lmkit checkpoint has a place for them; the config written says so too.
    std::erase_if(g.nodes, [&](const Node& n) {
      if (n.name != kLossWeightsTensor) return false;
      g.dropped.insert(g.dropped.end(), n.from.begin(), n.from.end());
      return true;
    });
    plan.config->loss_weights = false;
    plan.config_json = config_to_json(*plan.config);
    plan.notes.push_back(cat("dropped ", quote(kLossWeightsTensor), ": layout ", layout_name(plan.to),
                             " has no place for per-token loss weights"));
  }
  if (plan.to == Layout::GGUF) {
    const auto why = gguf_unsupported(*cfg);
    if (!why.empty())
      fail_unsupported(gguf_architecture(*cfg) == "llama4" ? "GGUF (llama4, as llama.cpp runs it) cannot hold " : "GGUF (llama) cannot hold ",
                       why);
  }
  if (plan.to == Layout::Llama2c) {
    const auto why = llama2c_unsupported(*cfg);
    if (!why.empty()) fail_unsupported("a llama2.c v0 checkpoint cannot hold ", why);
  }
  if (soma_like(plan.to) && cfg && cfg->tie_embeddings) {
    for (const Node& n : g.nodes)
      if (n.name == "tok_embeddings.weight") {
        Node copy = n;
        copy.name = "output.weight";
        copy.ops.push_back("copy of the tied embedding");
        g.nodes.push_back(std::move(copy));
        plan.notes.push_back(cat("layout ", layout_name(plan.to), " has no tied classifier: predictor.weight is the embedding"));
        break;
      }
  }
  if (named(plan.to)) {
    // Names the target cannot hold fail here rather than being written under lmkit's names.
    const bool own_names = plan.to == Layout::Lmkit || plan.to == Layout::Meta || plan.to == Layout::Llama2c;
    static const Regex stacked_experts(R"(layers\.\d+\.feed_forward\.experts\.w[123]\.weight)");
    for (const Node& n : g.nodes) {
      if (own_names) break;
      // Stacked experts: Mixtral's are split per expert below, Llama 4's fused by the layout's export rules.
      if ((plan.to == Layout::HF || plan.to == Layout::HFLlama4) && stacked_experts.full_match(n.name)) continue;
      if (name_in_layout(n.name, plan.to).empty() && !name_in_layout(n.name, Layout::Lmkit).empty())
        fail(ErrorKind::Unsupported, cat("layout ", quote(layout_name(plan.to)), " has no name for tensor ", quote(n.name)),
             "it cannot hold this model's config (" + (cfg ? std::string(name_of(cfg->ffn_type)) + ", " + name_of(cfg->norm_type) : std::string("?")) + ")");
    }
  }
  if (named(plan.to) && cfg) {
    // lmkit's order (embedding, layer by layer, final norm, classifier): GGUF files, llama2.c and
    // shards then hold whole layers in order.
    const ParameterLayout order(*cfg);
    std::map<std::string, size_t> rank;
    for (size_t i = 0; i < order.tensors().size(); ++i) rank[order.tensors()[i].name] = i;
    std::stable_sort(g.nodes.begin(), g.nodes.end(), [&](const Node& a, const Node& b) {
      const auto ra = rank.find(a.name), rb = rank.find(b.name);
      return (ra == rank.end() ? rank.size() : ra->second) < (rb == rank.end() ? rank.size() : rb->second);
    });
  }
  apply_rules(g, export_rules(plan.to), cfg);
  if (plan.to == Layout::HF)
    unstack_experts(g, R"(^layers\.(\d+)\.feed_forward\.experts\.(w[123])\.weight$)",
                    "model.layers.$1.block_sparse_moe.experts.{e}.$2.weight");

  if (!opts.cast.empty() && !is_block_cast(opts.cast)) {
    const DType t = opts.cast == "f16" ? DType::F16 : opts.cast == "bf16" ? DType::BF16 : DType::F32;
    cast_all(g, t, plan.to == Layout::GGUF);
  }
  if (plan.to == Layout::GGUF || plan.to == Layout::Llama2c)
    for (const Node& n : g.nodes)
      if (!is_float(n.dtype))
        fail_data(cat("wrong dtype: tensor ", quote(n.name), " is ", dtype_name(n.dtype), ", ", layout_name(plan.to),
                      " holds F32, F16 or BF16"));
  plan_vocabulary(plan, opts.tokenizer);
  return plan;
}

bool is_directory_output(const Plan& plan, const std::string& output) {
  if (plan.to == Layout::GGUF || plan.to == Layout::Llama2c) return false;
  return plan.shard_size > 0 || (!output.empty() && output.back() == '/') || (output != "-" && is_dir(output));
}

namespace {

// Writes one node's bytes, then hands its input pages back. A view into the input mapping goes
// out in chunks, each mapped in bulk before it is copied and dropped after: resident memory stays
// at about one chunk, and the copy runs without a page fault per page.
void produce(const Node& n, ByteSink& sink) {
  const Tensor t = n.load();
  if (t.dtype() != n.dtype || t.shape() != n.shape)
    fail(ErrorKind::Runtime, cat("internal: tensor ", quote(n.name), " produced ", dtype_name(t.dtype()), " ",
                                 shape_str(t.shape()), ", planned ", dtype_name(n.dtype), " ", shape_str(n.shape)));
  const auto* p = static_cast<const uint8_t*>(t.raw());
  const size_t bytes = t.nbytes();
  constexpr size_t kChunk = size_t(16) << 20;
  if (n.fd) {  // untouched input bytes: pread into one reused buffer, as cp does
    static std::vector<uint8_t> buf(kChunk);
    for (size_t off = 0; off < bytes;) {
      const size_t want = std::min(kChunk, bytes - off);
      const ssize_t got = ::pread(*n.fd, buf.data(), want, static_cast<off_t>(n.file_offset + off));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail_io("cannot read tensor", n.from.empty() ? n.name : n.from[0].name);
      if (got == 0) fail_data(cat("tensor ", quote(n.name), ": the input file ended early (changed while converting?)"));
      sink.write(buf.data(), static_cast<size_t>(got));
      off += static_cast<size_t>(got);
    }
  } else if (!n.mapped) {
    sink.write(p, bytes);
  } else {
    for (size_t off = 0; off < bytes; off += kChunk) {
      const size_t len = std::min(kChunk, bytes - off);
      populate_pages(p + off, len);
      sink.write(p + off, len);
      drop_mapped_pages(p + off, len);
    }
  }
  if (n.release) n.release();
}

std::map<std::string, std::string> output_metadata(const Plan& plan) {
  std::map<std::string, std::string> meta;
  if (plan.from == Layout::Raw && plan.to == Layout::Raw) return plan.source.metadata;
  for (const auto& [k, v] : plan.source.metadata)
    if (k.rfind("lmkit.", 0) != 0) meta[k] = v;
  meta["format"] = plan.to == Layout::Flax ? "flax" : "pt";
  if (plan.config) meta[kConfigMetadataKey] = plan.config_json;
  if (!plan.source.tokenizer_json.empty()) meta[kTokenizerMetadataKey] = plan.source.tokenizer_json;
  if (!plan.vocab.empty() && plan.to == Layout::Lmkit) meta[kVocabMetadataKey] = gguf_vocab_to_json(plan.vocab);
  return meta;
}

void write_safetensors(const Plan& plan, const std::vector<const Node*>& nodes, const std::string& path) {
  SafeTensorsWriter w;
  for (const auto& [k, v] : output_metadata(plan)) w.set_metadata(k, v);
  for (const Node* n : nodes) w.add_lazy(n->name, n->dtype, n->shape, [n](ByteSink& s) { produce(*n, s); });
  w.write_file(path);
}

std::vector<std::string> write_directory(const Plan& plan, const std::string& output) {
  CheckpointDirFiles files;
  // The target's own config file, made first: a config it cannot express fails before any write.
  if (plan.config && (plan.to == Layout::HF || plan.to == Layout::HFLlama4)) {
    DType t = plan.graph.nodes.empty() ? DType::F32 : plan.graph.nodes[0].dtype;
    files.config_files = {
        {"config.json", config_to_hf_json(*plan.config, t == DType::F16 ? "float16" : t == DType::BF16 ? "bfloat16" : "float32")},
        {"generation_config.json", generation_config_to_hf_json(*plan.config)}};
  } else if (plan.config && plan.to == Layout::Meta) {
    files.config_files = {{"params.json", config_to_params_json(*plan.config)}};
  }
  std::vector<std::vector<const Node*>> shards(1);
  uint64_t in_shard = 0;
  for (const Node& n : plan.graph.nodes) {
    const uint64_t bytes = static_cast<uint64_t>(shape_numel(n.shape)) * dtype_size(n.dtype);
    if (plan.shard_size > 0 && in_shard > 0 && in_shard + bytes > plan.shard_size) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&n);
    in_shard += bytes;
    files.total_size += bytes;
  }
  if (plan.shard_size == 0) {
    files.single_name = plan.to == Layout::Meta ? "consolidated.safetensors" : "model.safetensors";
    files.write_single = [&](const std::string& path) { write_safetensors(plan, shards[0], path); };
  } else {
    for (const auto& nodes : shards) {
      CheckpointDirFiles::Shard s;
      for (const Node* n : nodes) s.tensors.push_back(n->name);
      s.write = [&plan, &nodes](const std::string& path) { write_safetensors(plan, nodes, path); };
      files.shards.push_back(std::move(s));
    }
  }
  return write_checkpoint_dir(output, files);
}

void write_gguf(const Plan& plan, const std::string& path) {
  // --cast to a block type: every matrix whose rows are a whole number of blocks (others stay).
  std::optional<GGMLType> block_type;
  if (plan.cast == "q8_0") block_type = GGMLType::Q8_0;
  if (plan.cast == "q4_0") block_type = GGMLType::Q4_0;
  if (plan.cast == "q4_K") block_type = GGMLType::Q4_K;
  if (plan.cast == "q6_K") block_type = GGMLType::Q6_K;
  const int64_t block = block_type ? weight_type_block(*weight_type_from_name(plan.cast)) : 1;
  GGUFWriter w;
  std::map<GGMLType, int> count2d;
  std::vector<std::pair<const Node*, GGMLType>> entries;
  for (const Node& n : plan.graph.nodes) {
    GGMLType type = n.dtype == DType::F16 ? GGMLType::F16 : n.dtype == DType::BF16 ? GGMLType::BF16 : GGMLType::F32;
    if (block_type && n.shape.size() >= 2 && n.shape.back() % block == 0) type = *block_type;
    if (n.shape.size() >= 2) ++count2d[type];
    entries.emplace_back(&n, type);
  }
  GGMLType main = GGMLType::F32;
  int best = -1;
  for (const auto& [t, c] : count2d)
    if (c > best) best = c, main = t;
  // llama.cpp's llama_ftype numbers (MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q4_K_S 14, MOSTLY_Q6_K 18).
  const uint32_t file_type = main == GGMLType::F16    ? 1
                             : main == GGMLType::Q4_0 ? 2
                             : main == GGMLType::Q8_0 ? 7
                             : main == GGMLType::Q4_K ? 14
                             : main == GGMLType::Q6_K ? 18
                             : main == GGMLType::BF16 ? 32
                                                      : 0;
  const bool quantized = main == GGMLType::Q8_0 || main == GGMLType::Q4_0 || main == GGMLType::Q4_K || main == GGMLType::Q6_K;
  set_gguf_metadata(w, *plan.config, plan.config_json, file_type, quantized, plan.source.tokenizer_json);
  for (const auto& [key, value] : plan.vocab) w.set(key, value);
  if (plan.config->rope_scaling.type == RopeScalingType::Llama3) {
    // llama.cpp takes llama3 RoPE scaling from this tensor (convert_hf_to_gguf.py writes it first).
    const std::vector<float> factors = gguf_rope_factors(*plan.config);
    w.add_tensor("rope_freqs.weight", GGMLType::F32, {static_cast<int64_t>(factors.size())}, [factors](ByteSink& s) {
      s.write(factors.data(), factors.size() * sizeof(float));
    });
  }
  for (const auto& entry : entries) {
    const Node* n = entry.first;  // (not a structured binding: clang 14 cannot capture those)
    const GGMLType type = entry.second;
    if (block_type && type == *block_type)
      w.add_tensor(n->name, type, n->shape, [n, type, &plan](ByteSink& s) {
        Tensor t = n->load();
        const Tensor f = t.dtype() == DType::F32 ? t : cast_tensor(t, DType::F32);
        std::vector<uint8_t> q(ggml_nbytes(type, n->shape));
        quantize_row(*weight_type_from_name(plan.cast), f.data<float>(), f.numel(), q.data());
        s.write(q.data(), q.size());
        if (n->release) n->release();
      });
    else
      w.add_tensor(n->name, type, n->shape, [n](ByteSink& s) { produce(*n, s); });
  }
  auto sink = open_output(path);
  w.write(*sink);
  sink->finish();
}

void write_llama2c(const Plan& plan, const std::string& path) {
  std::map<std::string, const Node*> by_name;
  for (const Node& n : plan.graph.nodes) by_name[n.name] = &n;
  const Llama2cHeader header = llama2c_header(*plan.config);
  std::function<void()> pending;
  auto sink = open_output(path);
  write_llama2c_v0(*sink, header, [&](const std::string& array, int64_t layer) {
    if (pending) pending();
    pending = nullptr;
    const std::string name = llama2c_tensor_name(array, layer);
    const auto it = by_name.find(name);
    if (it == by_name.end()) fail_data(cat("missing tensor ", quote(name), " for the llama2.c checkpoint"));
    pending = it->second->release;
    return it->second->load();
  });
  if (pending) pending();
  sink->finish();
}

}  // namespace

std::vector<std::string> write_plan(const Plan& plan, const std::string& output) {
  if (is_directory_output(plan, output)) {
    if (output == "-") fail_usage("a sharded checkpoint is a directory: it cannot go to stdout");
    return write_directory(plan, output);
  }
  if ((plan.to == Layout::GGUF || plan.to == Layout::Llama2c) && plan.shard_size > 0)
    fail_usage(cat("--shard-size: ", layout_name(plan.to), " is written as one file"));
  if (plan.to == Layout::GGUF)
    write_gguf(plan, output);
  else if (plan.to == Layout::Llama2c)
    write_llama2c(plan, output);
  else if (is_block_cast(plan.cast))
    write_quantized_checkpoint(plan, output);  // convert/inference_weights.h
  else {
    std::vector<const Node*> nodes;
    for (const Node& n : plan.graph.nodes) nodes.push_back(&n);
    write_safetensors(plan, nodes, output);
  }
  return {output == "-" ? "<stdout>" : output};
}

std::string plan_text(const Plan& plan) {
  std::ostringstream out;
  out << "# " << plan.source.display << " (" << plan.source.container << ", layout " << layout_name(plan.from) << ") -> layout "
      << layout_name(plan.to) << "; config: " << (plan.config ? plan.config_origin : std::string("none")) << "\n";
  auto ref = [](const SourceRef& r) { return cat(r.name, " ", shape_str(r.shape), " ", dtype_name(r.dtype)); };
  for (const Node& n : plan.graph.nodes) {
    std::string from;
    for (size_t i = 0; i < n.from.size(); ++i) from += (i ? " + " : "") + ref(n.from[i]);
    out << from << " -> " << n.name << " " << shape_str(n.shape) << " " << dtype_name(n.dtype);
    if (!n.ops.empty()) {
      out << " (";
      for (size_t i = 0; i < n.ops.size(); ++i) out << (i ? ", " : "") << n.ops[i];
      out << ")";
    }
    out << "\n";
  }
  for (const SourceRef& r : plan.graph.dropped) out << ref(r) << " -> (dropped)\n";
  return out.str();
}

std::string plan_json(const Plan& plan) {
  json j;
  j["lmkit_version"] = kVersion;
  j["input"] = plan.source.display;
  j["container"] = plan.source.container;
  j["from"] = layout_name(plan.from);
  j["to"] = layout_name(plan.to);
  j["config_origin"] = plan.config ? json(plan.config_origin) : json(nullptr);
  j["config"] = plan.config ? json::parse(config_to_json(*plan.config)) : json(nullptr);
  auto ref = [](const SourceRef& r) { return json{{"name", r.name}, {"dtype", dtype_name(r.dtype)}, {"shape", shape_json(r.shape)}}; };
  json tensors = json::array();
  for (const Node& n : plan.graph.nodes) {
    json from = json::array();
    for (const auto& r : n.from) from.push_back(ref(r));
    tensors.push_back({{"from", from}, {"name", n.name}, {"dtype", dtype_name(n.dtype)}, {"shape", shape_json(n.shape)}, {"ops", n.ops}});
  }
  j["tensors"] = tensors;
  json dropped = json::array();
  for (const auto& r : plan.graph.dropped) dropped.push_back(ref(r));
  j["dropped"] = dropped;
  j["notes"] = plan.notes;
  return j.dump(2) + "\n";
}

std::string list_text(const Source& src) {
  std::ostringstream out;
  uint64_t total = 0;
  size_t width = 0;
  for (const Node& n : src.graph.nodes) {
    total += static_cast<uint64_t>(shape_numel(n.shape)) * dtype_size(n.dtype);
    width = std::max(width, n.name.size());
  }
  std::vector<std::string> names;
  for (const Node& n : src.graph.nodes) names.push_back(n.name);
  const auto layout = src.container_layout ? src.container_layout : detect_layout(names, src.metadata.count(kConfigMetadataKey) > 0);
  out << "# " << src.display << ": " << src.container << ", layout " << (layout ? layout_name(*layout) : "unknown") << ", "
      << src.graph.nodes.size() << " tensors, " << human_bytes(total) << "\n";
  for (const Node& n : src.graph.nodes) {
    std::string dtype = dtype_name(n.dtype).data();
    for (const auto& op : n.ops)
      if (op.rfind("dequantize", 0) == 0) dtype += " (from Q8_0)";
    out << n.name << std::string(width - n.name.size() + 2, ' ') << dtype << "  " << shape_str(n.shape) << "\n";
  }
  return out.str();
}

std::string list_json(const Source& src) {
  json j;
  j["lmkit_version"] = kVersion;
  j["input"] = src.display;
  j["container"] = src.container;
  std::vector<std::string> names;
  for (const Node& n : src.graph.nodes) names.push_back(n.name);
  const auto layout = src.container_layout ? src.container_layout : detect_layout(names, src.metadata.count(kConfigMetadataKey) > 0);
  j["layout"] = layout ? json(layout_name(*layout)) : json(nullptr);
  j["metadata"] = src.metadata;
  json tensors = json::array();
  for (const Node& n : src.graph.nodes) {
    json t = {{"name", n.name}, {"dtype", dtype_name(n.dtype)}, {"shape", shape_json(n.shape)}};
    for (const auto& op : n.ops)
      if (op.rfind("dequantize", 0) == 0) t["stored_as"] = "Q8_0";
    tensors.push_back(t);
  }
  j["tensors"] = tensors;
  return j.dump(2) + "\n";
}

std::string show_rules(const std::string& from, const std::string& to, const std::vector<Rule>& user) {
  if (from == "auto") fail_usage("--show-rules needs --from LAYOUT");
  std::vector<Rule> all = import_rules(parse_layout(from));
  all.insert(all.end(), user.begin(), user.end());
  const std::vector<Rule> out = export_rules(parse_layout(to));
  all.insert(all.end(), out.begin(), out.end());
  return rules_to_json(all);
}

}  // namespace lm::convert
