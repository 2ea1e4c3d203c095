#include "model/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace lm {

KVCache::KVCache(const ModelConfig& cfg, int64_t batch, int64_t capacity)
    : B_(batch), S_(capacity > 0 ? capacity : cfg.max_seq_len), KV_(cfg.kv_heads() * cfg.head_size()) {
  if (B_ <= 0) fail_usage(cat("KV cache batch size must be positive, got ", B_));
  if (S_ <= 0) fail_usage(cat("KV cache capacity must be positive, got ", S_));
  store_ = Tensor::zeros(DType::F32, {cfg.n_layers, 2, B_, S_, KV_});
  doc_start_.assign(static_cast<size_t>(B_), 0);
  vision_used_.assign(static_cast<size_t>(B_), 0);
  blockwise_.assign(static_cast<size_t>(B_), BlockwiseState{});
}

void KVCache::reset() {
  len_ = 0;
  cond_len_ = 0;
  std::fill(doc_start_.begin(), doc_start_.end(), 0);
  std::fill(vision_used_.begin(), vision_used_.end(), 0);
  std::fill(blockwise_.begin(), blockwise_.end(), BlockwiseState{});
}

}  // namespace lm
