// A tensor is a dtype, a shape and a pointer into storage that it keeps alive:
// either an owning 64-byte-aligned buffer or a read-only view into a mapped file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lm {

using Shape = std::vector<int64_t>;

// Product of dims with overflow checks; throws a Data error naming `what` on overflow or negative dims.
int64_t shape_numel(const Shape& shape, const std::string& what = "tensor");
std::string shape_str(const Shape& shape);  // "[2, 3]"

class Tensor {
 public:
  Tensor() = default;

  // Owning, zero-filled, 64-byte aligned.
  static Tensor zeros(DType dtype, Shape shape);
  // Read-only view of `data`; `owner` keeps the memory alive (e.g. a MappedFile).
  static Tensor view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t ndim() const { return shape_.size(); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool writable() const { return writable_; }
  bool defined() const { return data_ != nullptr || numel_ == 0; }

  const void* raw() const { return data_; }
  void* raw_mut();  // throws if the tensor is a read-only view

  template <class T>
  const T* data() const { return static_cast<const T*>(data_); }
  template <class T>
  T* data_mut() { return static_cast<T*>(raw_mut()); }

  // A float32 copy (or this tensor itself when already an aligned f32 tensor).
  Tensor to_f32() const;
  // A copy converted to `dtype` (f32/f16/bf16 only; round to nearest even).
  Tensor cast(DType dtype) const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  int64_t numel_ = 0;
  void* data_ = nullptr;
  bool writable_ = false;
  std::shared_ptr<const void> owner_;
};

}  // namespace lm
