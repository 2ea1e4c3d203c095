// PyTorch checkpoints written by torch.save (the zip format of torch >= 1.6: `.pth`, `.pt`, `.bin`):
// a zip archive (io/zip.h) holding `<archive>/data.pkl`, a pickle of the state dict, and one
// entry `<archive>/data/<key>` per storage. The pickle is read by a restricted interpreter that
// knows exactly the opcodes and the handful of globals a state dict uses (OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.*Storage) and refuses everything
// else: no pickled code ever runs. Tensors are views into the mapped storages (a strided one is
// copied out when read). Linear in the file's size; memory bounded by the pickle's size.
// docs/checkpoint-format.md, "PyTorch checkpoints".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lm {

class MappedFile;
class ZipArchive;

struct TorchTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::vector<int64_t> stride;  // in elements
  std::string storage;          // the storage's key (its zip entry is <archive>/data/<key>)
  uint64_t offset = 0;          // byte offset of element 0 in the file
  bool contiguous = true;       // row-major with no gaps: the bytes are [offset, offset + nbytes)
};

class TorchCheckpoint {
 public:
  // A zip archive (torch.save since 1.6); the legacy format before it is not read.
  static bool has_magic(const uint8_t* p, size_t n);
  static TorchCheckpoint open(const std::string& path);
  // Data errors name the file (and the tensor or the pickle byte); Unsupported for a dtype or a
  // construct lmkit does not read.
  static TorchCheckpoint parse(std::shared_ptr<MappedFile> file);

  const std::string& path() const;
  const std::vector<TorchTensorInfo>& tensors() const { return tensors_; }  // in the pickle's order
  const TorchTensorInfo* find(const std::string& name) const;
  // A zero-copy view for a contiguous tensor, an owning copy for a strided one.
  Tensor get(const TorchTensorInfo& t) const;
  Tensor get(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TorchTensorInfo> tensors_;
  std::vector<uint32_t> by_name_;
};

}  // namespace lm
