#include "train/distributed.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "core/error.h"

#ifdef LMKIT_HAVE_MPI
#include <mpi.h>
#endif

namespace lm::train {

namespace {
int g_rank = 0, g_size = 1;
#ifdef LMKIT_HAVE_MPI
bool g_joined = false;

// Started by an MPI launcher: Open MPI's mpirun, or a PMI/PMIx launcher such as srun.
bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var)) return true;
  return false;
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail(ErrorKind::Runtime, cat("MPI ", what, " failed (error ", rc, ")"));
}

constexpr int64_t kMaxCount = int64_t{1} << 30;  // MPI counts are ints: large buffers go in pieces

template <class T>
void allreduce_sum_impl(T* data, int64_t n, MPI_Datatype type) {
  for (int64_t off = 0; off < n; off += kMaxCount) {
    const int count = static_cast<int>(std::min(kMaxCount, n - off));
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, count, type, MPI_SUM, MPI_COMM_WORLD), "allreduce");
  }
}
#endif
}  // namespace

int launched_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* rank = std::getenv(var)) return std::atoi(rank);
  return 0;
}

void distributed_init() {
#ifdef LMKIT_HAVE_MPI
  if (g_joined || !launched_by_mpi()) return;
  int provided = 0;  // only the main thread calls MPI; OpenMP threads never do
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    fail(ErrorKind::Runtime, "cannot join the MPI job (MPI_Init failed)");
  g_joined = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#else
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* size = std::getenv(var);
    if (size && std::atoi(size) > 1)
      fail(ErrorKind::Runtime,
           cat("started as one of ", size, " processes (", var, "), but this build of lmkit has no MPI (LMKIT_MPI=OFF)"),
           "rebuild with Open MPI installed (libopenmpi-dev), or run one process");
  }
#endif
}

int distributed_finish(int code) {
#ifdef LMKIT_HAVE_MPI
  if (!g_joined) return code;
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Finalize();
  g_joined = false;
#endif
  return code;
}

int world_rank() { return g_rank; }
int world_size() { return g_size; }

void allreduce_sum(float* data, int64_t n) {
#ifdef LMKIT_HAVE_MPI
  if (g_size > 1) allreduce_sum_impl(data, n, MPI_FLOAT);
#endif
}

void allreduce_sum(double* data, int64_t n) {
#ifdef LMKIT_HAVE_MPI
  if (g_size > 1) allreduce_sum_impl(data, n, MPI_DOUBLE);
#endif
}

std::vector<Rng::State> gather_rng_states(const Rng::State& mine) {
  if (g_size == 1) return {mine};
  std::vector<Rng::State> out;
#ifdef LMKIT_HAVE_MPI
  constexpr int kWords = 6;  // s[4], the spare's bits, has_spare
  uint64_t packed[kWords] = {mine.s[0], mine.s[1], mine.s[2], mine.s[3], 0, mine.has_spare ? 1u : 0u};
  uint32_t spare_bits;
  std::memcpy(&spare_bits, &mine.spare, sizeof spare_bits);
  packed[4] = spare_bits;
  std::vector<uint64_t> all(g_rank == 0 ? static_cast<size_t>(kWords * g_size) : 0);
  check(MPI_Gather(packed, kWords, MPI_UINT64_T, all.data(), kWords, MPI_UINT64_T, 0, MPI_COMM_WORLD), "gather");
  if (g_rank == 0) {
    out.resize(static_cast<size_t>(g_size));
    for (int r = 0; r < g_size; ++r) {
      const uint64_t* w = all.data() + static_cast<size_t>(r) * kWords;
      Rng::State& s = out[static_cast<size_t>(r)];
      for (int i = 0; i < 4; ++i) s.s[static_cast<size_t>(i)] = w[i];
      const auto bits = static_cast<uint32_t>(w[4]);
      std::memcpy(&s.spare, &bits, sizeof bits);
      s.has_spare = w[5] != 0;
    }
  }
#endif
  return out;
}

void run_together(const std::function<void()>& f) {
  if (g_size == 1) {
    f();
    return;
  }
#ifdef LMKIT_HAVE_MPI
  int kind = -1;  // the ErrorKind this rank failed with, -1 = none
  std::string msg, hint;
  std::exception_ptr err;
  try {
    f();
  } catch (const Error& e) {
    kind = static_cast<int>(e.kind());
    msg = e.what();
    hint = e.hint();
    err = std::current_exception();
  } catch (const std::bad_alloc&) {
    kind = static_cast<int>(ErrorKind::Runtime);
    msg = "out of memory";
    err = std::current_exception();
  } catch (const std::exception& e) {
    kind = static_cast<int>(ErrorKind::Runtime);
    msg = cat("internal error: ", e.what());
    err = std::current_exception();
  }
  std::vector<int> kinds(static_cast<size_t>(g_size));
  check(MPI_Allgather(&kind, 1, MPI_INT, kinds.data(), 1, MPI_INT, MPI_COMM_WORLD), "allgather");
  int first = -1;
  for (int r = 0; r < g_size && first < 0; ++r)
    if (kinds[static_cast<size_t>(r)] >= 0) first = r;
  if (first < 0) return;
  const auto first_kind = static_cast<ErrorKind>(kinds[static_cast<size_t>(first)]);
  if (first > 0) {  // rank 0 reports: it needs the failed rank's words
    uint64_t sizes[2] = {msg.size(), hint.size()};
    check(MPI_Bcast(sizes, 2, MPI_UINT64_T, first, MPI_COMM_WORLD), "broadcast");
    msg.resize(sizes[0]);
    hint.resize(sizes[1]);
    check(MPI_Bcast(msg.data(), static_cast<int>(sizes[0]), MPI_CHAR, first, MPI_COMM_WORLD), "broadcast");
    check(MPI_Bcast(hint.data(), static_cast<int>(sizes[1]), MPI_CHAR, first, MPI_COMM_WORLD), "broadcast");
    if (g_rank == 0) throw Error(first_kind, cat("rank ", first, ": ", msg), hint);
  }
  if (err) std::rethrow_exception(err);
  throw Error(first_kind, cat("rank ", first, " failed"));
#endif
}

}  // namespace lm::train
