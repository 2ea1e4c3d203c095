// One thread pool for everything: OpenBLAS's OpenMP build runs on the same OpenMP
// runtime as lmkit's own parallel loops, so setting the OpenMP thread count sets both.
#pragma once

namespace lm {

int available_cores();           // cores this process may run on (affinity-aware)
void set_threads(int n);         // n <= 0 means available_cores()
int thread_count();              // what set_threads last established

// Elementwise and per-row kernels run serially below this many elements: a parallel region
// costs a fork/join barrier, which on a busy machine (a worker descheduled) can cost far more
// than the work, and batch-1 decode calls dozens of such kernels per token on C-sized rows.
inline constexpr long kParallelMinWork = 1 << 14;

}  // namespace lm
