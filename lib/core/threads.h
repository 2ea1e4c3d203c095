// One thread pool for everything: OpenBLAS's OpenMP build runs on the same OpenMP
// runtime as lmkit's own parallel loops, so setting the OpenMP thread count sets both.
#pragma once

#include <cstdint>

namespace lm {

int available_cores();           // cores this process may run on (affinity-aware)
void set_threads(int n);         // n <= 0 means available_cores()
int thread_count();              // what set_threads last established

// Elementwise and per-row kernels run serially below this many elements (parallel_for): a
// parallel region costs a fork/join barrier, which on a busy machine (a worker descheduled)
// can cost far more than the work, and batch-1 decode calls dozens of such kernels per token
// on C-sized rows.
inline constexpr long kParallelMinWork = 1 << 14;

// fn(i) for i in [0, n): across the threads when `work` (elements touched) reaches
// kParallelMinWork, else on the calling thread without entering OpenMP at all. Even a region
// with if(false) costs about 1.5 us in libgomp (it builds a team of one), and batch-1 decode
// runs a dozen such small kernels per layer.
template <class Fn>
void parallel_for(int64_t n, int64_t work, Fn&& fn) {
  if (work < kParallelMinWork) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// Runs fn(lo, hi) over [0, n) in pieces of at most `chunk` items, in parallel. Each thread
// starts on its own contiguous share (one memory stream, as a static schedule), and a thread
// that finishes early takes chunks from the far end of the share with the most left. For
// memory-bound loops (batch-1 decode streams every weight once per token): a static split
// leaves the faster thread spinning at the barrier whenever its sibling is slowed (a vCPU
// descheduled, an uneven share of the memory bus), and schedule(dynamic) interleaves the
// threads' streams, which costs more than it saves. Every item runs exactly once, on one
// thread; inside a parallel region (or ranges past 2^31) it all runs on the calling thread.
void parallel_chunks(int64_t n, int64_t chunk, void (*fn)(void* ctx, int64_t lo, int64_t hi), void* ctx);
template <class Fn>
void parallel_chunks(int64_t n, int64_t chunk, Fn&& fn) {
  parallel_chunks(
      n, chunk, [](void* f, int64_t lo, int64_t hi) { (*static_cast<Fn*>(f))(lo, hi); }, &fn);
}

// parallel_chunks over [0, n) in pieces of whole groups of `group` items (the last group may
// be short): the blocked row kernel's register tiles are 4 weight rows, and pieces cut
// elsewhere leave remainders that run a slower tile.
template <class Fn>
void parallel_chunks_grouped(int64_t n, int64_t chunk, int64_t group, Fn&& fn) {
  if (group <= 1) return parallel_chunks(n, chunk, [&](int64_t lo, int64_t hi) { fn(lo, hi); });
  parallel_chunks((n + group - 1) / group, chunk / group > 1 ? chunk / group : 1,
                  [&](int64_t lo, int64_t hi) { fn(lo * group, hi * group < n ? hi * group : n); });
}

}  // namespace lm
