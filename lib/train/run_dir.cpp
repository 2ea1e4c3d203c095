#include "train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "core/error.h"
#include "train/checkpoint.h"

namespace lm::train {

namespace fs = std::filesystem;

namespace {
// The pid in a lock file ("" when it cannot be read yet).
std::string holder_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string pid(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}
}  // namespace

RunLock RunLock::acquire(const std::string& dir) {
  const std::string path = dir + "/" + kLockFile;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail_io("cannot open the lock file", path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string pid = holder_pid(fd);
    // The holder writes its pid right after locking; on a loaded machine it may be
    // descheduled in between, so wait up to a second before calling it unknown.
    for (int i = 0; i < 200 && pid.empty(); ++i) {
      ::usleep(5000);
      pid = holder_pid(fd);
    }
    ::close(fd);
    if (err != EWOULDBLOCK) {
      errno = err;
      fail_io("cannot lock", path);
    }
    fail(ErrorKind::Runtime,
         cat(quote(dir), " is in use by another lm-train (pid ", pid.empty() ? std::string("unknown") : pid, ")"),
         "wait for it to finish, or choose another run directory");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    ::close(fd);
    fail_io("cannot write", path);
  }
  RunLock lock;
  lock.fd_ = fd;
  return lock;
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor drops the lock
}

RunLock& RunLock::operator=(RunLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

std::string run_marker(const std::string& dir) {
  std::error_code ec;
  for (const char* name : {kCheckpointFile, kModelFile, kLogFile})
    if (fs::exists(dir + "/" + name, ec)) return name;
  return "";
}

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    for (const char* file : {kCheckpointFile, kModelFile, kLogFile}) {
      const std::string prefix = cat(".", file, ".");
      if (name.size() == prefix.size() + 6 && name.compare(0, prefix.size(), prefix) == 0) {
        fs::remove(entry.path(), ec);
        break;
      }
    }
  }
}

}  // namespace lm::train
