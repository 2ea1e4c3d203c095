#include "core/threads.h"

#include <omp.h>
#include <sched.h>

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

}  // namespace lm
