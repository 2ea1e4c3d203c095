#include "model/kv_cache.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/error.h"
#include "core/quant.h"
#include "core/rows.h"

namespace lm {

KVCache::KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity, DType dtype)
    : B_(batch), S_(capacity > 0 ? capacity : cfg.max_seq_len), KV_(cfg.kv_heads() * cfg.head_size()) {
  if (B_ <= 0) fail_usage(cat("KV cache batch size must be positive, got ", B_));
  if (S_ <= 0) fail_usage(cat("KV cache capacity must be positive, got ", S_));
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    fail_usage(cat("a KV cache holds f32, bf16 or f16, not ", dtype_name(dtype)));
  store_ = Tensor::zeros(dtype, {cfg.n_layers, 2, B_, S_, KV_});
  doc_start_.assign(static_cast<size_t>(B_), 0);
  vision_used_.assign(static_cast<size_t>(B_), 0);
  blockwise_.assign(static_cast<size_t>(B_), BlockwiseState{});
}

namespace {

// Whether a finite value of src [n] reaches `limit` in magnitude (the least that rounds to an
// infinity in the cache's type): a pass of vector max first, since nearly every call has none.
bool overflows(const float* src, int64_t n, float limit) {
  float largest = 0;
#pragma omp simd reduction(max : largest)
  for (int64_t i = 0; i < n; ++i) largest = std::max(largest, std::fabs(src[i]));
  if (!(largest >= limit)) return false;
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(src[i]) >= limit && std::isfinite(src[i])) return true;
  return false;
}

}  // namespace

bool KVCache::put(int64_t l, int64_t first, int64_t count, const float* k, const float* v) {
  const DType t = dtype();
  auto* bytes = static_cast<unsigned char*>(store_.raw_mut());
  bool fits = true;
  for (int which = 0; which < 2; ++which) {
    const float* src = which == 0 ? k : v;
    void* dst = bytes + offset(l, which) + static_cast<size_t>(first) * dtype_size(t);
    if (t == DType::F32) {
      std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
    } else if (t == DType::BF16) {
      round_input_bf16(src, count, static_cast<uint16_t*>(dst));
      fits = fits && !overflows(src, count, std::bit_cast<float>(0x7f7f8000u));  // bf16's largest + half its ulp
    } else {
      round_input_f16(src, count, static_cast<uint16_t*>(dst));
      fits = fits && !overflows(src, count, 65520.0f);  // 65504 + half its ulp
    }
  }
  return fits;
}

void KVCache::store(int64_t l, int64_t b, int64_t slot, const float* k, const float* v, int64_t n) {
  if (!put(l, (b * S_ + slot) * KV_, n * KV_, k, v)) fail_overflow(l);
}

bool KVCache::store_features(int64_t l, int64_t b, int64_t slot, int64_t f0, int64_t count, const float* k,
                             const float* v) {
  return put(l, (b * S_ + slot) * KV_ + f0, count, k, v);
}

void KVCache::fail_overflow(int64_t l) const {
  fail_data(cat("a key or value of layer ", l, " is beyond what a ", dtype_name(dtype()),
                " KV cache holds: use an f32 (or bf16) cache"));
}

void KVCache::widen(int64_t l, int64_t b, int64_t n, float* k, float* v) const {
  const DType t = dtype();
  const size_t first = static_cast<size_t>(b * S_ * KV_), count = static_cast<size_t>(n * KV_);
  for (int which = 0; which < 2; ++which) {
    float* dst = which == 0 ? k : v;
    const auto* src = static_cast<const unsigned char*>(base(l, which)) + first * dtype_size(t);
    dequantize_row(t == DType::F32 ? WeightType::F32 : t == DType::BF16 ? WeightType::BF16 : WeightType::F16, src,
                   static_cast<int64_t>(count), dst);
  }
}

void KVCache::reset() {
  len_ = 0;
  cond_len_ = 0;
  std::fill(doc_start_.begin(), doc_start_.end(), 0);
  std::fill(vision_used_.begin(), vision_used_.end(), 0);
  std::fill(blockwise_.begin(), blockwise_.end(), BlockwiseState{});
}

}  // namespace lm
