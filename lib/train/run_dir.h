// A run directory's guards: one writer at a time, no run overwritten, no temporary files
// left from a killed save.
#pragma once

#include <string>

namespace lm::train {

inline constexpr const char* kLockFile = ".lock";  // in a run directory

// An exclusive lock on a run directory (flock on DIR/.lock) held for the whole run: two
// processes never write one run. The file holds the holder's pid, for the message the
// next one gets. The kernel drops the lock when the holder ends, however it ends (kill -9
// too), so the file left behind is harmless.
class RunLock {
 public:
  RunLock() = default;
  // Locks `dir` (which must exist). Runtime error naming the holder's pid when another
  // process (or another lock in this one) holds it; Io errors otherwise.
  static RunLock acquire(const std::string& dir);
  ~RunLock();
  RunLock(RunLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RunLock& operator=(RunLock&& o) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// The file that shows `dir` already holds a run (its checkpoint, model or log, even a log
// alone: a run that died before its first save), or "" when it holds none.
std::string run_marker(const std::string& dir);

// Removes the temporary files that a save killed midway leaves in `dir` (".<file>.XXXXXX"
// beside the checkpoint, the model and the log). Only with the lock held: then no other
// process is writing them.
void remove_stale_temporaries(const std::string& dir);

}  // namespace lm::train
