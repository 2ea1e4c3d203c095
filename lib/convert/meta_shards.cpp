#include "convert/meta_shards.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "convert/config_io.h"
#include "convert/input_nodes.h"
#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/stream.h"
#include "io/torch_pth.h"

namespace lm::convert {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
std::string join(const std::string& dir, const std::string& name) { return dir == "." ? name : dir + "/" + name; }

// How one tensor is divided among Meta's model-parallel ranks (fairscale's layers).
enum class Split {
  Replicated,  // every rank holds all of it (norms, rope.freqs, router_DE)
  Dim,         // ColumnParallel (dim 0), RowParallel (dim 1), experts on their F dim
  Parts,       // fused rows: each rank holds [part 0 slice; part 1 slice; ...] (wqkv, fc1)
  Unknown,     // a name no rule covers: read only if every rank holds the same bytes
};

struct Merge {
  Split how = Split::Replicated;
  int dim = 0;                 // Dim: the dim split (after the view below)
  int64_t experts = 0;         // Dim on a 2-D [E*R, C] expert tensor: viewed as [E, R, C]
  std::vector<int64_t> parts;  // Parts: rows per rank of each part
  std::string op;              // for --dry-run
};

// The rule for `name` (Meta's names: published checkpoints and Transformer.state_dict()), given
// one rank's shape, the number of ranks and the model's sizes (params.json). A tensor whose
// split cannot be told from its name (tok_embeddings: vocab-parallel in Llama 3 and 4, split on
// the model dim in Llama 2; vision_projection) is told by its shape against the config.
Merge merge_rule(const std::string& name, const Shape& s, int64_t n, const ModelConfig& cfg, const std::string& where) {
  const auto is = [&](const char* suffix) { return ends_with(name, suffix); };
  const auto dim = [&](int d) {
    Merge m;
    m.how = Split::Dim;
    m.dim = d;
    m.op = cat("merged from ", n, " shards on dim ", d);
    return m;
  };
  const size_t nd = s.size();
  if (nd <= 1 || is(".router_DE")) return Merge{Split::Replicated, 0, 0, {}, cat("replicated in ", n, " shards")};
  const int64_t C = cfg.dim;
  const auto by_shape = [&](int64_t rows, int64_t cols, const char* what) {
    if (nd == 2 && s[0] * n == rows && s[1] == cols) return dim(0);
    if (nd == 2 && s[0] == rows && s[1] * n == cols) return dim(1);
    fail_data(cat(where, ": tensor ", quote(name), " of ", shape_str(s), " per shard is not a slice of the ", what, " [", rows, ", ",
                  cols, "] params.json gives"));
  };
  if (name == "tok_embeddings.weight") {
    if (nd == 2 && s[1] == C) return dim(0);  // VocabParallelEmbedding (Llama 3, 4)
    if (nd == 2 && s[1] * n == C) return dim(1);  // ParallelEmbedding (Llama 2)
    fail_data(cat(where, ": tensor ", quote(name), " of ", shape_str(s), " per shard: neither dim is a slice of dim ", C));
  }
  if (name == "vision_projection.weight") return by_shape(C, cfg.vision_dim, "vision projection");
  if ((is(".attention.wqkv.weight") || is(".feed_forward.mlp.fc1_weight")) && nd != 2)
    fail_data(cat(where, ": tensor ", quote(name), " of ", shape_str(s), " per shard is not a matrix"));
  if (is(".attention.wqkv.weight")) {
    const int64_t hs = cfg.head_size(), nh = cfg.n_heads, nkv = cfg.kv_heads();
    if (nh % n || nkv % n)
      fail_data(cat(where, ": ", nh, " heads and ", nkv, " KV heads cannot be split among ", n, " shards"));
    Merge m{Split::Parts, 0, 0, {nh / n * hs, nkv / n * hs, nkv / n * hs}, cat("merged from ", n, " shards: q, k, v rows")};
    if (s[0] != (nh + 2 * nkv) / n * hs)
      fail_data(cat(where, ": tensor ", quote(name), " has ", s[0], " rows per shard, params.json's heads give ", (nh + 2 * nkv) / n * hs));
    return m;
  }
  if (is(".feed_forward.mlp.fc1_weight")) {
    if (s[0] % 2) fail_data(cat(where, ": tensor ", quote(name), " has an odd number of rows per shard (", s[0], ")"));
    return Merge{Split::Parts, 0, 0, {s[0] / 2, s[0] / 2}, cat("merged from ", n, " shards: w1, w3 rows")};
  }
  for (const char* col : {".attention.wq.weight", ".attention.wk.weight", ".attention.wv.weight", ".feed_forward.w1.weight",
                          ".feed_forward.w3.weight", ".w_in_shared_FD.weight", ".w_swiglu_FD.weight", ".shared_expert.w1.weight",
                          ".shared_expert.w3.weight"})
    if (is(col)) return dim(0);
  if (name == "output.weight") return dim(0);
  for (const char* row : {".attention.wo.weight", ".feed_forward.w2.weight", ".feed_forward.mlp.fc2_weight",
                          ".w_out_shared_DF.weight", ".shared_expert.w2.weight"})
    if (is(row)) return dim(1);
  for (const char* in : {".experts.moe_w_in_eD_F", ".experts.moe_w_swiglu_eD_F", ".feed_forward.experts.w1", ".feed_forward.experts.w3"})
    if (is(in)) return dim(static_cast<int>(nd) - 1);
  if (is(".experts.moe_w_out_eF_D") || is(".feed_forward.experts.w2")) {
    if (nd == 3) return dim(1);
    const int64_t E = cfg.moe.n_experts;
    if (E <= 0 || s[0] % E)
      fail_data(cat(where, ": tensor ", quote(name), " of ", shape_str(s), " per shard is not ", E, " experts' rows (moe_args.num_experts)"));
    Merge m = dim(1);
    m.experts = E;
    return m;
  }
  return Merge{Split::Unknown, 0, 0, {}, cat("identical in ", n, " shards")};
}

Shape merged_shape(const Merge& m, Shape s, int64_t n) {
  if (m.how == Split::Parts) s[0] *= n;
  if (m.how == Split::Dim) s[m.experts ? 0 : m.dim] *= n;
  return s;
}

// The merged bytes of one tensor from its shards' (equal dtypes and shapes, checked at open).
Tensor merge_tensors(const Merge& m, const std::vector<Tensor>& shards, const Shape& shape, const std::string& name,
                     const std::string& where) {
  const size_t n = shards.size();
  const Shape& s = shards[0].shape();
  if (m.how == Split::Replicated || m.how == Split::Unknown) {
    for (size_t k = 1; k < n; ++k)
      if (std::memcmp(shards[k].raw(), shards[0].raw(), shards[0].nbytes()) != 0)
        fail_data(cat(where, ": tensor ", quote(name), " differs between shard 0 and shard ", k, ": ",
                      m.how == Split::Replicated ? "it should be replicated" : "lmkit does not know how it is split"));
    return shards[0];
  }
  Tensor out = Tensor::zeros(shards[0].dtype(), shape);
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  const size_t es = dtype_size(out.dtype());
  if (m.how == Split::Parts) {
    const size_t row = static_cast<size_t>(s[1]) * es;
    for (size_t j = 0, first = 0; j < m.parts.size(); first += static_cast<size_t>(m.parts[j]), ++j)
      for (size_t k = 0; k < n; ++k) {
        const size_t bytes = static_cast<size_t>(m.parts[j]) * row;
        std::memcpy(dst, static_cast<const uint8_t*>(shards[k].raw()) + first * row, bytes);
        dst += bytes;
      }
    return out;
  }
  // Dim: `outer` blocks of `chunk` bytes per shard, interleaved shard by shard.
  Shape v = s;  // the shard's shape as split (a 2-D expert tensor viewed as [E, R, C])
  if (m.experts) v = {m.experts, s[0] / m.experts, s[1]};
  size_t outer = 1, chunk = es;
  for (int d = 0; d < static_cast<int>(v.size()); ++d) (d < m.dim ? outer : chunk) *= static_cast<size_t>(v[d]);
  for (size_t o = 0; o < outer; ++o)
    for (size_t k = 0; k < n; ++k) {
      std::memcpy(dst, static_cast<const uint8_t*>(shards[k].raw()) + o * chunk, chunk);
      dst += chunk;
    }
  return out;
}

}  // namespace

void open_torch(Source& src, std::shared_ptr<MappedFile> file, bool mapped, const std::string& path) {
  auto ck = std::make_shared<TorchCheckpoint>(TorchCheckpoint::parse(file));
  const auto fd = open_fd(path, mapped);
  src.container = "PyTorch (torch.save)";
  for (const TorchTensorInfo& t : ck->tensors()) {
    const TorchTensorInfo* info = &t;  // owned by *ck, which the closure keeps alive
    Node n = input_node(t.name, t.dtype, t.shape, [ck, info] { return ck->get(*info); });
    if (!t.contiguous) n.ops.push_back("copy of a strided tensor");
    else if (mapped) read_in_place(n, fd, t.offset);
    src.graph.nodes.push_back(std::move(n));
  }
}

std::vector<std::string> meta_shards_in_dir(const std::string& dir) {
  std::map<long, std::string> found;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      static const std::string head = "consolidated.";
      if (n.compare(0, head.size(), head) != 0) continue;
      size_t i = head.size(), digits = 0;
      while (i < n.size() && n[i] >= '0' && n[i] <= '9') ++i, ++digits;
      const std::string ext = n.substr(i);
      if (digits == 0 || digits > 6 || (ext != ".pth" && ext != ".safetensors")) continue;
      const long k = std::stol(n.substr(head.size(), digits));
      if (!found.emplace(k, n).second) {
        ::closedir(d);
        fail_data(cat(quote(dir), ": shard ", k, " is there twice (", found[k], " and ", n, ")"));
      }
    }
    ::closedir(d);
  }
  if (found.size() < 2) return {};
  std::vector<std::string> shards;
  for (const auto& [k, name] : found) {
    if (k != static_cast<long>(shards.size()))
      fail_data(cat(quote(dir), ": Meta shards ", name, " and others, but no consolidated.", shards.size() < 10 ? "0" : "", shards.size(),
                    " (a shard is missing)"));
    shards.push_back(join(dir, name));
  }
  return shards;
}

void open_meta_shards(Source& src, const std::string& dir, const std::vector<std::string>& shards) {
  const int64_t n = static_cast<int64_t>(shards.size());
  const std::string where = quote(dir);
  const std::string params = join(dir, "params.json");
  const std::string params_text = [&] {
    try {
      return read_text_file(params);
    } catch (const Error&) {
      fail_data(cat(where, ": ", n, " Meta shards but no readable params.json: its sizes say how the shards are split"));
    }
  }();
  const ModelConfig cfg = config_from_params_json(params_text, params);

  std::vector<Source> parts;
  for (const std::string& path : shards) {
    parts.push_back(open_source(path));
    if (parts.back().container != parts[0].container)
      fail_data(cat(where, ": ", shards[0], " is ", parts[0].container, ", ", path, " is ", parts.back().container));
  }
  // Every shard holds the same names, with the same dtype and shape each.
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < parts[0].graph.nodes.size(); ++i) index[parts[0].graph.nodes[i].name] = i;
  std::vector<std::vector<const Node*>> by_tensor(parts[0].graph.nodes.size());
  for (size_t k = 0; k < parts.size(); ++k) {
    if (parts[k].graph.nodes.size() != parts[0].graph.nodes.size())
      fail_data(cat(where, ": shard ", k, " holds ", parts[k].graph.nodes.size(), " tensors, shard 0 holds ", parts[0].graph.nodes.size()));
    for (const Node& node : parts[k].graph.nodes) {
      const auto it = index.find(node.name);
      if (it == index.end()) fail_data(cat(where, ": tensor ", quote(node.name), " is in shard ", k, " but not in shard 0"));
      const Node& first = parts[0].graph.nodes[it->second];
      if (node.dtype != first.dtype || node.shape != first.shape)
        fail_data(cat(where, ": tensor ", quote(node.name), " is ", dtype_name(node.dtype), " ", shape_str(node.shape), " in shard ", k,
                      ", ", dtype_name(first.dtype), " ", shape_str(first.shape), " in shard 0"));
      by_tensor[it->second].push_back(&node);
    }
  }
  auto shard_sources = std::make_shared<std::vector<Source>>(std::move(parts));  // keeps every shard's nodes alive
  for (size_t i = 0; i < by_tensor.size(); ++i) {
    const Node& first = (*shard_sources)[0].graph.nodes[i];
    if (by_tensor[i].size() != shards.size())
      fail_data(cat(where, ": tensor ", quote(first.name), " is not in every shard"));
    const Merge m = merge_rule(first.name, first.shape, n, cfg, where);
    Node out;
    out.name = first.name;
    out.dtype = first.dtype;
    out.shape = merged_shape(m, first.shape, n);
    out.from.push_back({first.name, first.dtype, out.shape});
    out.ops.push_back(m.op);
    const std::vector<const Node*> nodes = by_tensor[i];
    const Shape shape = out.shape;
    const std::string name = first.name;
    out.load = [shard_sources, nodes, m, shape, name, where] {
      std::vector<Tensor> ts;
      for (const Node* p : nodes) ts.push_back(p->load());
      return merge_tensors(m, ts, shape, name, where);
    };
    out.release = [shard_sources, nodes] {
      for (const Node* p : nodes)
        if (p->release) p->release();
    };
    src.graph.nodes.push_back(std::move(out));
  }
  src.metadata = (*shard_sources)[0].metadata;
  const bool pth = ends_with(shards[0], ".pth");
  src.container = cat(pth ? "PyTorch (torch.save)" : "safetensors", ", Meta's ", n, " model-parallel shards");
  src.dir = dir;
}

}  // namespace lm::convert
