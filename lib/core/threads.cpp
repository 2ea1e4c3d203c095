#include "core/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "core/blas.h"

namespace lm {

namespace {
int g_threads = 0;
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return omp_get_num_procs();
}

void set_threads(int n) {
  if (n <= 0) n = available_cores();
  g_threads = n;
  omp_set_num_threads(n);
  blas_set_threads(n);
}

int thread_count() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

namespace {

// A thread's remaining share [lo, hi) packed in one word, so that the owner taking from the
// front and a thief taking from the back agree through one compare-and-swap.
struct alignas(64) Share {
  std::atomic<uint64_t> range{0};
};
uint64_t pack(int64_t lo, int64_t hi) { return static_cast<uint64_t>(lo) << 32 | static_cast<uint64_t>(hi); }
int64_t share_lo(uint64_t r) { return static_cast<int64_t>(r >> 32); }
int64_t share_hi(uint64_t r) { return static_cast<int64_t>(r & 0xffffffffu); }

}  // namespace

void parallel_chunks(int64_t n, int64_t chunk, void (*fn)(void* ctx, int64_t lo, int64_t hi), void* ctx) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads <= 1 || n <= chunk || n >= (int64_t{1} << 31)) {
    for (int64_t lo = 0; lo < n; lo += chunk) fn(ctx, lo, std::min(n, lo + chunk));
    return;
  }
  // Shares are set before the team starts (no barrier inside): should the team be smaller
  // than asked for, the shares nobody owns are taken by the stealing loop. They live in this
  // call's frame (decode makes dozens of calls a token; no allocation for up to
  // kFrameShares threads), so callers on different user threads never share them.
  constexpr int kFrameShares = 16;
  Share frame_shares[kFrameShares];
  const std::unique_ptr<Share[]> heap_shares(threads > kFrameShares ? new Share[static_cast<size_t>(threads)]
                                                                    : nullptr);
  Share* const shares = heap_shares ? heap_shares.get() : frame_shares;
  for (int t = 0; t < threads; ++t) shares[t].range.store(pack(n * t / threads, n * (t + 1) / threads));
  // Pieces shrink to an eighth of `chunk` as a share runs out, so the threads finish close
  // together: the last piece in flight is what the others wait for at the closing barrier.
  const int64_t min_piece = std::max<int64_t>(1, chunk / 8);
  auto piece = [&](int64_t left) { return std::clamp(left / 4, min_piece, chunk); };
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    // Own share, front to back.
    for (uint64_t r = shares[t].range.load(std::memory_order_relaxed);;) {
      const int64_t lo = share_lo(r), hi = share_hi(r);
      if (lo >= hi) break;
      const int64_t end = std::min(hi, lo + piece(hi - lo));
      if (!shares[t].range.compare_exchange_weak(r, pack(end, hi), std::memory_order_relaxed)) continue;
      fn(ctx, lo, end);
      r = shares[t].range.load(std::memory_order_relaxed);
    }
    // Then the back of whichever share has the most left, until none has any.
    for (;;) {
      int victim = -1;
      int64_t most = 0;
      for (int u = 0; u < threads; ++u) {
        const uint64_t r = shares[u].range.load(std::memory_order_relaxed);
        if (share_hi(r) - share_lo(r) > most) most = share_hi(r) - share_lo(r), victim = u;
      }
      if (victim < 0) break;
      uint64_t r = shares[victim].range.load(std::memory_order_relaxed);
      const int64_t lo = share_lo(r), hi = share_hi(r);
      if (lo >= hi) continue;
      const int64_t begin = std::max(lo, hi - piece(hi - lo));
      if (!shares[victim].range.compare_exchange_weak(r, pack(lo, begin), std::memory_order_relaxed)) continue;
      fn(ctx, begin, hi);
    }
  }
}

}  // namespace lm
