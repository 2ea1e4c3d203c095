// The machine's floating-point peak per vector ISA, measured rather than looked up: a team of
// threads each runs independent chains of fused multiply-adds on registers only (no loads or
// stores), so the figure is the core's FMA throughput at the clock it runs now, the ceiling a
// GEMM is judged against (lm-bench's MFU), not a BLAS's achieved rate.
#pragma once

#include <cstdint>

#include "core/cpu_features.h"

namespace lm {

struct FmaRun {
  int threads = 0;       // the team that ran (OpenMP may give fewer than asked)
  double flops = 0;      // threads * iterations * chains * isa_floats(isa) * 2
  double seconds = 0;    // wall clock of the whole team
  double gflops() const { return seconds > 0 ? flops / seconds * 1e-9 : 0; }
};

// FMA chains each thread keeps in flight: enough to cover the FMA latency on every pipe
// (4 cycles x 2 pipes on current x86 cores) without spilling a register.
int fma_chains(Isa isa);

// One timed round: `iterations` steps of every chain on each of `threads` threads.
// Throws Unsupported when the CPU lacks `isa`, Usage for threads < 1 or iterations < 1, and
// Runtime when called inside a parallel region (the team could not form).
FmaRun fma_run(Isa isa, int threads, int64_t iterations);

// The best of a few rounds of about 20 ms each, in GFLOP/s (all threads together).
double fma_peak_gflops(Isa isa, int threads);

}  // namespace lm
