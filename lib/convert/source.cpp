#include "convert/source.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/checkpoint_dir.h"
#include "io/container.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "convert/config_io.h"
#include "convert/input_nodes.h"
#include "convert/meta_shards.h"
#include "io/metadata_keys.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/spec_json.h"

namespace lm::convert {

std::shared_ptr<const int> open_fd(const std::string& path, bool regular) {
  if (!regular) return nullptr;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;  // the mapping still works
  return std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
}

Node input_node(const std::string& name, DType dtype, const Shape& shape, std::function<Tensor()> load) {
  Node n;
  n.name = name;
  n.dtype = dtype;
  n.shape = shape;
  n.from.push_back({name, dtype, shape});
  n.load = std::move(load);
  return n;
}

void read_in_place(Node& n, std::shared_ptr<const int> fd, uint64_t file_offset) {
  n.mapped = true;
  n.fd = std::move(fd);
  n.file_offset = file_offset;
  n.release = [load = n.load] {
    const Tensor v = load();
    drop_mapped_pages(v.raw(), v.nbytes());
  };
}

namespace {

using json = nlohmann::json;

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_regular(const std::string& p) {
  struct stat st {};
  return p != "-" && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}
std::string dir_of(const std::string& p) {
  if (p == "-") return ".";
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
}
std::string join(const std::string& dir, const std::string& name) { return dir == "." ? name : dir + "/" + name; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void add_safetensors_nodes(Source& src, std::shared_ptr<SafeTensorsFile> st, bool mapped, const std::string& path) {
  const auto fd = open_fd(path, mapped);
  for (const TensorInfo& t : st->tensors()) {
    Node n = input_node(t.name, t.dtype, t.shape, [st, name = t.name] { return st->get(name); });
    if (mapped) read_in_place(n, fd, st->data_offset() + t.begin);
    src.graph.nodes.push_back(std::move(n));
  }
}

void open_safetensors(Source& src, std::shared_ptr<MappedFile> file, bool mapped, const std::string& path) {
  auto st = std::make_shared<SafeTensorsFile>(SafeTensorsFile::parse(std::move(file)));
  src.container = "safetensors";
  src.metadata = st->metadata();
  add_safetensors_nodes(src, st, mapped, path);
}

void open_sharded(Source& src, const std::string& index_path) {
  const json j = parse_json_strict(read_text_file(index_path), quote(index_path) + ": ");
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail_data(cat(quote(index_path), ": no \"weight_map\" object (expected a sharded safetensors index)"));
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensors listed for it
  std::vector<std::string> shard_order;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) fail_data(cat(quote(index_path), ": weight_map entry ", quote(tensor), " is not a file name"));
    const std::string f = shard.get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      fail_data(cat(quote(index_path), ": weight_map entry ", quote(tensor), ": shard ", quote(f), " is not a plain file name"));
    if (!by_shard.count(f)) shard_order.push_back(f);
    by_shard[f].push_back(tensor);
  }
  if (shard_order.empty()) fail_data(cat(quote(index_path), ": empty weight_map"));
  std::sort(shard_order.begin(), shard_order.end());
  const std::string dir = dir_of(index_path);
  bool torch = false;
  for (size_t i = 0; i < shard_order.size(); ++i) {
    const std::string path = join(dir, shard_order[i]);
    std::set<std::string> listed(by_shard[shard_order[i]].begin(), by_shard[shard_order[i]].end());
    auto file = MappedFile::open(path);
    if (sniff_container(file->data(), file->size()) == Container::Torch) {
      torch = true;
      // pytorch_model-0000N-of-0000M.bin: the same index over torch.save shards.
      Source shard;
      open_torch(shard, file, true, path);
      std::set<std::string> held;
      for (const Node& n : shard.graph.nodes) held.insert(n.name);
      for (const std::string& t : listed)
        if (!held.count(t))
          fail_data(cat(quote(index_path), ": tensor ", quote(t), " is listed in shard ", quote(shard_order[i]), " but not in it"));
      for (const std::string& t : held)
        if (!listed.count(t))
          fail_data(cat(quote(path), ": tensor ", quote(t), " is not listed for this shard in ", quote(index_path)));
      for (Node& n : shard.graph.nodes) src.graph.nodes.push_back(std::move(n));
      continue;
    }
    auto st = std::make_shared<SafeTensorsFile>(SafeTensorsFile::parse(std::move(file)));
    for (const std::string& t : listed)
      if (!st->contains(t))
        fail_data(cat(quote(index_path), ": tensor ", quote(t), " is listed in shard ", quote(shard_order[i]), " but not in it"));
    for (const TensorInfo& t : st->tensors())
      if (!listed.count(t.name))
        fail_data(cat(quote(path), ": tensor ", quote(t.name), " is not listed for this shard in ", quote(index_path)));
    if (i == 0) src.metadata = st->metadata();
    add_safetensors_nodes(src, st, true, path);
  }
  src.container = cat(torch ? "PyTorch (torch.save)" : "safetensors", ", ", shard_order.size(), " shard", shard_order.size() == 1 ? "" : "s");
}

void open_gguf(Source& src, std::shared_ptr<MappedFile> file, bool mapped, const std::string& path) {
  auto g = std::make_shared<GGUFFile>(GGUFFile::parse(std::move(file)));
  const auto fd = open_fd(path, mapped);
  src.container = cat("GGUF v", g->version());
  src.container_layout = Layout::GGUF;
  for (size_t i = 0; i < g->tensors().size(); ++i) {
    const GGUFTensorInfo& t = g->tensors()[i];
    const DType dtype = t.type == GGMLType::F16 ? DType::F16 : t.type == GGMLType::BF16 ? DType::BF16 : DType::F32;
    Node n = input_node(t.name, dtype, t.shape(), [g, i] { return g->get(g->tensors()[i]); });
    const bool quantized = t.type == GGMLType::Q8_0 || t.type == GGMLType::Q4_0 || t.type == GGMLType::Q4_K ||
                           t.type == GGMLType::Q6_K;
    if (quantized) {
      n.ops.push_back(cat("dequantize ", ggml_type_name(t.type)));
      // Decoded, not copied: only the pages the decoding read are dropped.
      if (mapped) n.release = [g, i] { drop_mapped_pages(g->data(g->tensors()[i]), g->tensors()[i].nbytes); };
    } else if (mapped) {
      read_in_place(n, fd, g->data_offset() + t.offset);
    }
    src.graph.nodes.push_back(std::move(n));
  }
  // Older Mixtral files hold one tensor per expert (blk.N.ffn_gate.E.weight): stacked as the
  // newer ffn_*_exps are.
  stack_experts(src.graph, R"(^(blk\.\d+\.ffn_(gate|up|down))\.(\d+)\.weight$)", 3, "$1_exps.weight");
  // rope_freqs.weight: llama3 RoPE scaling as per-frequency divisors; lmkit keeps it in the config.
  std::optional<std::vector<float>> rope_factors;
  for (auto it = src.graph.nodes.begin(); it != src.graph.nodes.end(); ++it) {
    if (it->name != "rope_freqs.weight") continue;
    if (it->shape.size() != 1) fail_data(cat(quote(src.display), ": rope_freqs.weight is not a vector"));
    const Tensor t = it->load();
    const Tensor f = t.dtype() == DType::F32 ? t : cast_tensor(t, DType::F32);
    rope_factors.emplace(f.data<float>(), f.data<float>() + f.numel());
    src.graph.dropped.insert(src.graph.dropped.end(), it->from.begin(), it->from.end());
    src.graph.nodes.erase(it);
    break;
  }
  if (gguf_has_lmkit_config(*g)) {
    src.config_text = g->find(kConfigMetadataKey)->s;
    src.config = config_from_json(src.config_text, cat(src.display, " (GGUF key ", kConfigMetadataKey, ")"));
    src.config_origin = cat("GGUF key ", kConfigMetadataKey);
    if (rope_factors) check_gguf_rope_factors(*src.config, *rope_factors, src.display);
    else if (src.config->rope_scaling.type == RopeScalingType::Llama3)
      fail_data(cat(quote(src.display), ": the config (lmkit.config) has llama3 RoPE scaling, but there is no rope_freqs.weight"));
  } else {
    src.config_assignments = gguf_config_assignments(*g, rope_factors ? &*rope_factors : nullptr, &src.notes);
    src.config_origin = cat("GGUF ", g->find("general.architecture")->s, ".* keys and tensor shapes");
  }
  if (const GGUFValue* t = g->find(kTokenizerMetadataKey); t && t->type == GGUFValue::String) src.tokenizer_json = t->s;
  try {
    src.tokenizer = tokenizer_from_gguf(*g, src.display);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Unsupported) throw;
    src.tokenizer_error = e.what();  // the weights are still usable with token ids
  }
}

void open_llama2c(Source& src, std::shared_ptr<MappedFile> file, bool mapped, const std::string& path) {
  auto f = std::make_shared<Llama2cFile>(Llama2cFile::parse(std::move(file)));
  const auto fd = open_fd(path, mapped);
  src.container = cat("llama2.c v", f->header().version);
  src.container_layout = Layout::Llama2c;
  for (size_t i = 0; i < f->entries().size(); ++i) {
    const Llama2cFile::Entry& e = f->entries()[i];
    Node n = input_node(llama2c_tensor_name(e.array, e.layer), DType::F32, e.shape, [f, i] { return f->get(f->entries()[i]); });
    if (e.q8) n.ops.push_back("dequantize Q8_0 groups");
    else if (mapped) read_in_place(n, fd, e.offset);
    src.graph.nodes.push_back(std::move(n));
  }
  src.config = config_from_llama2c(f->header());
  src.config_origin = cat("llama2.c v", f->header().version, " header");
}

// The checkpoint file inside a directory: a sharded index, else the only safetensors/GGUF/bin file.
std::string checkpoint_in_dir(const std::string& dir) {
  if (exists(join(dir, kShardIndexName))) return join(dir, kShardIndexName);
  for (const char* n : kSingleWeightNames)
    if (exists(join(dir, n))) return join(dir, n);
  std::vector<std::string> found;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (ends_with(n, ".safetensors") || ends_with(n, ".gguf") || ends_with(n, ".index.json")) found.push_back(n);
    }
    ::closedir(d);
  }
  if (found.empty())  // PyTorch files only where nothing else is: HF directories often hold both
    if (DIR* d = ::opendir(dir.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (ends_with(n, ".pth") || ends_with(n, ".pt") || ends_with(n, ".bin")) found.push_back(n);
      }
      ::closedir(d);
    }
  if (found.size() == 1) return join(dir, found[0]);
  if (found.empty())
    fail_data(cat(quote(dir), ": no checkpoint in this directory (no *.safetensors, *.gguf, index.json, *.pth, *.pt or *.bin)"));
  std::sort(found.begin(), found.end());
  std::string list;
  for (const auto& n : found) list += (list.empty() ? "" : ", ") + n;
  fail(ErrorKind::Usage, cat(quote(dir), ": several checkpoints in this directory (", list, ")"), "name the file");
}

}  // namespace

Source open_source(const std::string& given, std::optional<Layout> forced) {
  Source src;
  src.path = given;
  std::string path = given;
  std::vector<std::string> meta_shards;
  if (given != "-" && is_dir(given)) {
    meta_shards = meta_shards_in_dir(given);  // consolidated.00 .. NN: one model, merged
    if (meta_shards.empty()) path = checkpoint_in_dir(given);
  }
  src.display = display_name(path);
  src.dir = dir_of(path);
  if (!meta_shards.empty()) {
    open_meta_shards(src, given, meta_shards);
  } else if (ends_with(path, ".index.json")) {
    open_sharded(src, path);
  } else {
    const bool mapped = is_regular(path);
    std::shared_ptr<MappedFile> file = MappedFile::open(path);
    const Container kind = forced == Layout::GGUF      ? Container::GGUF
                           : forced == Layout::Llama2c ? Container::Llama2c
                                                       : sniff_container(file->data(), file->size());
    switch (kind) {
      case Container::GGUF: open_gguf(src, file, mapped, path); break;
      case Container::Llama2c: open_llama2c(src, file, mapped, path); break;
      case Container::Safetensors: open_safetensors(src, file, mapped, path); break;
      case Container::Torch: open_torch(src, file, mapped, path); break;
      case Container::Json:
        fail(ErrorKind::Data, cat(quote(src.display), ": a JSON file, not a checkpoint"),
             "a sharded checkpoint is read through its index, named *.index.json");
      case Container::Unknown:
        fail_data(cat(quote(src.display), ": not a checkpoint lmkit reads (", file->size(),
                      " bytes; not safetensors, PyTorch, GGUF or llama2.c): truncated or another format"));
    }
  }
  if (!src.config) {
    if (auto meta = src.metadata.find(kConfigMetadataKey); meta != src.metadata.end()) {
      src.config = config_from_json(meta->second, src.display + " (metadata " + kConfigMetadataKey + ")");
      src.config_origin = std::string("metadata ") + kConfigMetadataKey;
    }
  }
  if (auto tok = src.metadata.find(kTokenizerMetadataKey); tok != src.metadata.end()) src.tokenizer_json = tok->second;
  if (auto v = src.metadata.find(kVocabMetadataKey); v != src.metadata.end())
    src.tokenizer = tokenizer_from_vocab_json(v->second, cat(src.display, " (metadata ", kVocabMetadataKey, ")"));
  // Checked here, so that a bad one is refused with its source named, not copied into the output.
  if (!src.tokenizer_json.empty()) {
    const TokenizerSpec spec = spec_from_json(src.tokenizer_json, quote(src.display));
    if (src.tokenizer) require_same_tokenizer(spec, src.tokenizer->spec(), cat(quote(src.display), " (its vocabulary)"));
  } else if (src.tokenizer) {
    src.tokenizer_json = spec_to_json(src.tokenizer->spec());
  }
  return src;
}

}  // namespace lm::convert
