// The KV cache for incremental decode: per layer, the keys (after QK-norm and RoPE) and
// values of every position so far, stored for the NKV kv heads only (GQA-aware), with
// room for `capacity` positions (max_seq_len by default). Also remembers, per batch row,
// the slot where the current document began (doc_mask) and what its tokens say about
// materium's block-wise span, how many of its first positions are conditions (K: set by the
// prefill that put them there), and how many image features its image_token_id places have
// taken (vision inputs). Chunked layers (attn_chunk_size) keep every slot too: their spans,
// not the cache, restrict them to the current chunk. Shape letters: L layers, B batch,
// S capacity, NKV kv heads, HS head size.
//
// The keys and values are stored in f32 (the default: exactly what the layers computed), or
// rounded to bf16 or f16 (half the bytes that every decode step reads back, as llama.cpp's
// f16 cache and a PyTorch bf16 model's): attention widens them to f32 as it reads them.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/positions.h"

namespace lm {

class KVCache {
 public:
  KVCache() = default;
  // capacity <= 0 means cfg.max_seq_len. dtype: F32, BF16 or F16 (Usage error otherwise).
  KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity = 0, DType dtype = DType::F32);

  int64_t batch() const { return B_; }
  int64_t capacity() const { return S_; }
  int64_t length() const { return len_; }  // positions filled, the same for every row
  size_t bytes() const { return store_.nbytes(); }
  DType dtype() const { return store_.dtype(); }

  // Forgets every position (the memory stays).
  void reset();

  // Layer l's keys and values, [B, S, NKV*HS] each, in the cache's type.
  CachedKV layer(int64_t l) const { return {base(l, 0), base(l, 1), dtype()}; }
  // Row b's slots [slot, slot + n) of layer l := k, v [n, NKV*HS], rounded to the cache's type
  // (to nearest even). Data error (fail_overflow) when a finite value rounds to an infinity
  // (f16: beyond 65504): the cache keeps finite numbers only.
  void store(int64_t l, int64_t b, int64_t slot, const float* k, const float* v, int64_t n);
  // Features [f0, f0 + count) of row b's slot `slot` := k, v [count], as store, for a caller on
  // a thread of a parallel region: no exception; false when a value overflowed, and then the
  // caller ends with fail_overflow(l) once the region is over.
  bool store_features(int64_t l, int64_t b, int64_t slot, int64_t f0, int64_t count, const float* k, const float* v);
  [[noreturn]] void fail_overflow(int64_t l) const;
  // Row b's slots [0, n) of layer l widened to f32: k, v [n, NKV*HS].
  void widen(int64_t l, int64_t b, int64_t n, float* k, float* v) const;
  int64_t* doc_start() { return doc_start_.data(); }       // [B]
  int64_t* vision_used() { return vision_used_.data(); }   // [B]
  BlockwiseState* blockwise() { return blockwise_.data(); }  // [B]
  // The condition positions at the start of every row (0 until a prefill with conditions).
  int64_t cond_len() const { return cond_len_; }
  void set_cond_len(int64_t k) { cond_len_ = k; }
  // Marks n more positions as filled (the model calls this after writing them).
  void advance(int64_t n) { len_ += n; }

 private:
  // Where layer `layer`'s keys (which = 0) or values (1) start, in bytes.
  size_t offset(int64_t layer, int64_t which) const {
    return static_cast<size_t>((layer * 2 + which) * B_ * S_ * KV_) * dtype_size(dtype());
  }
  bool put(int64_t layer, int64_t first, int64_t count, const float* k, const float* v);  // elements of a layer's
  const void* base(int64_t layer, int64_t which) const {
    return static_cast<const unsigned char*>(store_.raw()) + offset(layer, which);
  }
  int64_t B_ = 0, S_ = 0, KV_ = 0, len_ = 0, cond_len_ = 0;
  Tensor store_;  // [L, 2, B, S, NKV*HS]
  std::vector<int64_t> doc_start_;
  std::vector<BlockwiseState> blockwise_;
  std::vector<int64_t> vision_used_;
};

}  // namespace lm
