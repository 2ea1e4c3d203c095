// Data-parallel training across processes: the few collective operations lm-train needs,
// over MPI. A process started by an MPI launcher (mpirun, srun) joins the job as one rank;
// any other process, and every process of a build without MPI (CMake LMKIT_MPI=OFF), is a
// world of one rank and never calls MPI. Only distributed.cpp includes mpi.h.
//
// Every collective must be called by every rank in the same order (the trainer's control
// flow is the same on every rank: the data, the reduced losses and the stop decision are).
// Errors never leave a rank behind: work that may fail on some ranks only (a save, rank 0's
// log) runs inside run_together, so every rank throws the same error at the same point and
// every rank ends through distributed_finish, with one error line (rank 0's) and the
// error's exit code, never MPI_Abort.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/rng.h"

namespace lm::train {

// The rank an MPI launcher gave this process, from its environment (0 without one): known
// before distributed_init, so a program can let rank 0 alone report its usage errors.
int launched_rank();
// Joins the MPI job when this process was started by an MPI launcher (the environment says
// so); does nothing otherwise. Call once, before any other function here. Throws Runtime
// when MPI_Init fails, or when this build has no MPI and the launcher started several
// processes (each would train alone and write the same run).
void distributed_init();
// Leaves the job (MPI_Finalize; nothing without one). Every rank reaches it with the same
// outcome (see above). Returns `code`.
int distributed_finish(int code);

int world_rank();  // 0 in a single process
int world_size();  // 1 in a single process
inline bool is_root() { return world_rank() == 0; }

// In-place sums over all ranks (every rank gets the same result).
void allreduce_sum(float* data, int64_t n);
void allreduce_sum(double* data, int64_t n);

// Rank 0 receives every rank's state in rank order; the other ranks get an empty vector.
std::vector<Rng::State> gather_rng_states(const Rng::State& mine);

// Runs `f` on every rank, then agrees on the outcome: when it threw on any rank, it throws
// on every rank. Rank 0 rethrows its own error or, when only other ranks failed, the first
// failed rank's error prefixed with "rank R: " (so rank 0 alone can report every error);
// the other ranks rethrow theirs or throw a Runtime error naming the failed rank.
// In a single process it just runs `f`.
void run_together(const std::function<void()>& f);

}  // namespace lm::train
