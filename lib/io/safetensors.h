// safetensors: a u64 header length, a JSON header (name -> dtype, shape, data_offsets;
// optional "__metadata__" string map), then the tensor bytes. Reading maps the file
// and validates everything before handing out zero-copy tensor views (formats.md §1).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lm {

class ByteSink;
class MappedFile;

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the start of the data area
};

class SafeTensorsFile {
 public:
  // Maps `path` ("-" reads stdin to memory) and validates it; throws Data errors naming the file.
  static SafeTensorsFile open(const std::string& path);
  // Validates an already mapped/buffered file.
  static SafeTensorsFile parse(std::shared_ptr<MappedFile> file);

  const std::string& path() const;
  // In data order (ascending offsets).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  // A zero-copy view into the mapping (may be unaligned: use Tensor::to_f32() before math).
  // Throws a Data error "no tensor 'x' in 'file'" when absent.
  Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::optional<std::string> metadata_value(const std::string& key) const;
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::vector<uint32_t> by_name_;  // indices into tensors_, sorted by name
  std::map<std::string, std::string> metadata_;
  uint64_t data_offset_ = 0;
};

// Collects tensors (and metadata), then streams header + data to a sink. Tensors are laid out
// as the reference writer does: by dtype size descending, then by name; header padded with
// spaces to a multiple of 8, so every tensor is naturally aligned.
class SafeTensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // Keeps a reference to the tensor's storage (no copy) until write().
  void add(const std::string& name, const Tensor& tensor);
  // A tensor whose bytes are produced at write time (streaming conversions): `produce`
  // must write exactly numel * dtype_size bytes to the sink.
  void add_lazy(const std::string& name, DType dtype, Shape shape, std::function<void(ByteSink&)> produce);

  void write(ByteSink& sink) const;
  // Atomic for files (temp + rename); "-" = stdout.
  void write_file(const std::string& path) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    Tensor tensor;  // undefined when produce is set
    std::function<void(ByteSink&)> produce;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace lm
