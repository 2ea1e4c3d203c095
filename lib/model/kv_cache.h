// The KV cache for incremental decode: per layer, the keys (after QK-norm and RoPE) and
// values of every position so far, stored for the NKV kv heads only (GQA-aware), with
// room for `capacity` positions (max_seq_len by default). Also remembers, per batch row,
// the slot where the current document began (doc_mask) and what its tokens say about
// materium's block-wise span, how many of its first positions are conditions (K: set by the
// prefill that put them there), and how many image features its image_token_id places have
// taken (vision inputs). Chunked layers (attn_chunk_size) keep every slot too: their spans,
// not the cache, restrict them to the current chunk. Shape letters: L layers, B batch,
// S capacity, NKV kv heads, HS head size.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/positions.h"

namespace lm {

class KVCache {
 public:
  KVCache() = default;
  // capacity <= 0 means cfg.max_seq_len.
  KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity = 0);

  int64_t batch() const { return B_; }
  int64_t capacity() const { return S_; }
  int64_t length() const { return len_; }  // positions filled, the same for every row
  size_t bytes() const { return store_.nbytes(); }

  // Forgets every position (the memory stays).
  void reset();

  float* keys(int64_t layer) { return base(layer, 0); }    // [B, S, NKV*HS]
  float* values(int64_t layer) { return base(layer, 1); }  // [B, S, NKV*HS]
  int64_t* doc_start() { return doc_start_.data(); }       // [B]
  int64_t* vision_used() { return vision_used_.data(); }   // [B]
  BlockwiseState* blockwise() { return blockwise_.data(); }  // [B]
  // The condition positions at the start of every row (0 until a prefill with conditions).
  int64_t cond_len() const { return cond_len_; }
  void set_cond_len(int64_t k) { cond_len_ = k; }
  // Marks n more positions as filled (the model calls this after writing them).
  void advance(int64_t n) { len_ += n; }

 private:
  float* base(int64_t layer, int64_t which) {
    return store_.data_mut<float>() + ((layer * 2 + which) * B_ * S_) * KV_;
  }
  int64_t B_ = 0, S_ = 0, KV_ = 0, len_ = 0, cond_len_ = 0;
  Tensor store_;  // [L, 2, B, S, NKV*HS]
  std::vector<int64_t> doc_start_;
  std::vector<BlockwiseState> blockwise_;
  std::vector<int64_t> vision_used_;
};

}  // namespace lm
