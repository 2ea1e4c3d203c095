#include "core/tensor.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#include "core/error.h"

namespace lm {

int64_t shape_numel(const Shape& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail_data(cat(what, ": negative dimension in shape ", shape_str(shape)));
    if (__builtin_mul_overflow(n, d, &n))
      fail_data(cat(what, ": shape ", shape_str(shape), " overflows 64-bit element count"));
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  // Large tensors (weights, activations, optimizer state) go on transparent huge pages: a
  // pass over the weights then walks one page table entry per 2 MiB instead of per 4 KiB,
  // which makes batch-1 decode about 10% faster.
  // They are anonymous mappings, whose pages the kernel zeroes when first touched: a tensor
  // used only in part costs only that part (a KV cache sized for max_seq_len holds a short
  // generation's positions; zeroing 16 such caches whole was up to a tenth of a short
  // --batch 16 run).
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t align = t.nbytes() >= kHugePage ? kHugePage : 64;
  const size_t bytes = (t.nbytes() + align - 1) / align * align;
  auto out_of_memory = [&] {
    fail(ErrorKind::Runtime,
         cat("cannot allocate ", bytes, " bytes for a ", shape_str(t.shape_), " ", dtype_name(dtype), " tensor: out of memory"));
  };
  void* p = nullptr;
  if (align == kHugePage) {
    // One huge page more than asked, then the ends cut off: the tensor starts on a 2 MiB
    // boundary, where transparent huge pages can back it.
    void* m = bytes <= SIZE_MAX - kHugePage
                  ? mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                  : MAP_FAILED;
    if (m == MAP_FAILED) out_of_memory();
    const uintptr_t start = reinterpret_cast<uintptr_t>(m), aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
    if (aligned > start) munmap(m, aligned - start);
    if (aligned - start < kHugePage) munmap(reinterpret_cast<void*>(aligned + bytes), kHugePage - (aligned - start));
    p = reinterpret_cast<void*>(aligned);
    madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
    t.owner_ = std::shared_ptr<void>(p, [bytes](void* q) { munmap(q, bytes); });
  } else {
    p = bytes ? std::aligned_alloc(align, bytes) : nullptr;
    if (bytes && !p) out_of_memory();
    if (p) std::memset(p, 0, bytes);
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  }
  t.data_ = p;
  t.writable_ = true;
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  t.data_ = const_cast<void*>(data);  // guarded by writable_ = false
  t.writable_ = false;
  t.owner_ = std::move(owner);
  return t;
}

void* Tensor::raw_mut() {
  if (!writable_) fail(ErrorKind::Runtime, "internal: write access to a read-only tensor view");
  return data_;
}

Tensor Tensor::to_f32() const {
  if (dtype_ == DType::F32 && reinterpret_cast<uintptr_t>(data_) % alignof(float) == 0) return *this;
  return cast(DType::F32);
}

Tensor Tensor::cast(DType dtype) const {
  auto is_float = [](DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; };
  if (!is_float(dtype_) || !is_float(dtype))
    fail(ErrorKind::Unsupported, cat("cannot cast ", dtype_name(dtype_), " to ", dtype_name(dtype)));
  Tensor out = zeros(dtype, shape_);
  const auto* src = static_cast<const unsigned char*>(data_);
  auto* dst = static_cast<unsigned char*>(out.data_);
  if (dtype == dtype_) {
    std::memcpy(dst, src, nbytes());
    return out;
  }
  const size_t in_size = dtype_size(dtype_), out_size = dtype_size(dtype);
  for (int64_t i = 0; i < numel_; ++i) {
    float f;  // memcpy loads: mapped data may be unaligned
    if (dtype_ == DType::F32) {
      std::memcpy(&f, src + i * in_size, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, src + i * in_size, 2);
      f = dtype_ == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    if (dtype == DType::F32) {
      std::memcpy(dst + i * out_size, &f, 4);
    } else {
      const uint16_t h = dtype == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(dst + i * out_size, &h, 2);
    }
  }
  return out;
}

}  // namespace lm
