#include "io/stream.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lm {

size_t ByteSource::read_full(void* buf, size_t n) {
  size_t got = 0;
  auto* p = static_cast<uint8_t*>(buf);
  while (got < n) {
    const size_t k = read_some(p + got, n - got);
    if (k == 0) break;
    got += k;
  }
  return got;
}

bool is_zstd_magic(const uint8_t* p, size_t n) {
  return n >= 4 && p[0] == 0x28 && p[1] == 0xB5 && p[2] == 0x2F && p[3] == 0xFD;
}

namespace {

// ---- The registry of live temporary paths, and the fatal-signal handler that removes them ----
//
// Plain static slots, each holding its path inline, so the handler reads no memory that another
// thread could free. A slot is 0 (free), 1 (being filled), 2 (a live file) or 3 (a live
// directory, removed with the files in it). More live paths than slots are not registered: the
// next writer's stale-file pass removes those after a crash.
constexpr int kTempSlots = 128;
struct TempSlot {
  std::atomic<int> state{0};
  char path[PATH_MAX];
};
TempSlot g_temp_slots[kTempSlots];
std::atomic<int> g_commit_depth{0};    // open CommitSections
std::atomic<int> g_pending_signal{0};  // a fatal signal that came during one (lock-free: read in a handler)
static_assert(std::atomic<int>::is_always_lock_free);
// The signal thread (take_termination_signals): held while a temporary path is created and
// registered, and taken for good by the thread that ends the process, so no path is left
// created but unregistered.
std::mutex g_registry_mutex;
std::atomic<bool> g_signal_thread{false};  // termination signals are taken by the signal thread
// A fatal signal is removing the temporary paths to end the process: set before the removal
// starts, so a path registered meanwhile (by a thread the handler does not stop) is removed by
// its registrar (register_temp), and a failure that follows waits (wait_if_ending_by_signal).
std::atomic<bool> g_ending{false};
static_assert(std::atomic<bool>::is_always_lock_free);
// Threads between creating a temporary path and registering it (FatalSignalsHeld). A fatal
// signal's handler does not take the registry mutex (it may run in any thread), so it waits for
// them instead: otherwise it could end the process between another thread's mkdtemp and that
// thread's registration, leaving the new directory behind.
std::atomic<int> g_registering{0};

// Removes the files directly inside `dir`, then `dir`. Async-signal-safe (raw getdents64).
void remove_dir_and_files(const char* dir) {
  for (int pass = 0; pass < 3; ++pass) {
    const int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    alignas(8) char buf[2048];
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        const char* rec = buf + off;
        unsigned short reclen;
        std::memcpy(&reclen, rec + 16, sizeof reclen);  // d_ino (8), d_off (8), d_reclen, d_type, d_name
        const char* name = rec + 19;
        if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))) ::unlinkat(fd, name, 0);
        off += reclen;
      }
    }
    ::close(fd);
    if (::rmdir(dir) == 0 || errno != ENOTEMPTY) return;
  }
}

extern "C" void on_fatal_signal(int sig) {
  // Stored before the depth is read, as CommitSection does the reverse: a section that opens in
  // another thread meanwhile sees the signal and ends the process itself, before any rename.
  g_pending_signal.store(sig);
  if (g_commit_depth.load() > 0) return;  // a set of renames is under way: the last CommitSection ends us
  g_ending.store(true);
  // A registration under way in another thread (this one holds the signal back while it
  // registers) ends soon, and removes its own path once it sees g_ending.
  while (g_registering.load() > 0) {
    const timespec pause{0, 20000};
    ::nanosleep(&pause, nullptr);
  }
  remove_temp_files_now();
  ::raise(sig);  // SA_RESETHAND restored the default action: it ends the process once we return
}

// Outside a signal handler: removes the temporary paths (none can be half registered: the
// registry stays locked) and ends the process by `sig`.
[[noreturn]] void remove_temp_files_and_end(int sig) {
  g_ending.store(true);     // before any path goes: a thread it makes fail waits (wait_if_ending_by_signal)
  g_registry_mutex.lock();  // never unlocked: the process ends
  remove_temp_files_now();
  end_by_signal(sig);
}

constexpr int kTerminationSignals[] = {SIGINT, SIGTERM, SIGHUP};
sigset_t g_taken;    // the termination signals the thread waits for
sigset_t g_ignored;  // those of them the program started with ignored
std::atomic<std::atomic<bool>*> g_stop_flag{nullptr};  // stop_on_termination_signal's
std::atomic<int> g_stop_signal{0};

void signal_thread_main() {
  ::pthread_setname_np(::pthread_self(), "lm-signals");  // what ps -L and the tests see
  for (;;) {
    int sig = 0;
    if (::sigwait(&g_taken, &sig) != 0) continue;
    std::atomic<bool>* stop = g_stop_flag.load();
    // SIGINT and SIGTERM stop a program that asked, even one started with them ignored (a
    // shell's background job): stopping after a step loses nothing.
    if (sigismember(&g_ignored, sig) && !(stop && sig != SIGHUP)) continue;
    if (stop && sig != SIGHUP) {
      int none = 0;
      if (g_stop_signal.compare_exchange_strong(none, sig)) {  // the first: the program stops itself
        stop->store(true);
        continue;
      }
    }
    // As on_fatal_signal, but the interrupted code is another thread's, still running: the
    // pending signal is stored before the depth is read, as CommitSection does the reverse,
    // so one of the two sees the other and the process never ends inside a set of renames.
    g_pending_signal.store(sig);
    if (g_commit_depth.load() == 0) remove_temp_files_and_end(sig);
  }
}

void install_signal_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXFSZ}) {
      if (g_signal_thread.load() && sig != SIGPIPE && sig != SIGXFSZ) continue;  // the signal thread's
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) != 0) continue;
      if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue;  // the program's own choice
      struct sigaction sa {};
      sa.sa_handler = on_fatal_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESETHAND | SA_RESTART;
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

// Holds back the fatal signals the handler catches for its lifetime (a signal that comes
// meanwhile is delivered when it ends): a temporary file is created and registered as one
// step, or a signal between the two would end the process with the file unregistered.
class FatalSignalsHeld {
 public:
  FatalSignalsHeld() : lock_(g_registry_mutex) {
    install_signal_handlers();
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXFSZ}) sigaddset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
    // Counted before g_ending is read, as the handler stores g_ending before it reads the count:
    // either this sees the ending (and creates nothing) or the handler waits for this.
    g_registering.fetch_add(1);
    if (g_ending.load()) {
      g_registering.fetch_sub(1);
      lock_.unlock();              // the signal thread's ending takes the mutex
      wait_if_ending_by_signal();  // never returns
    }
  }
  ~FatalSignalsHeld() {
    g_registering.fetch_sub(1);  // before a held-back signal can run its handler here
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  FatalSignalsHeld(const FatalSignalsHeld&) = delete;
  FatalSignalsHeld& operator=(const FatalSignalsHeld&) = delete;

 private:
  std::unique_lock<std::mutex> lock_;  // the signal thread waits: it would end the process
  sigset_t old_;
};

// Registers `path`; returns its slot, or -1 when it cannot be held.
int register_temp(const std::string& path, bool is_dir) {
  if (path.size() >= PATH_MAX) return -1;
  install_signal_handlers();
  for (int i = 0; i < kTempSlots; ++i) {
    int expected = 0;
    if (!g_temp_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_temp_slots[i].path, path.c_str(), path.size() + 1);
    g_temp_slots[i].state.store(is_dir ? 3 : 2);
    // The ender stores g_ending before it reads the slots, this the reverse: one of the two
    // sees the other. (SIGPIPE/SIGXFSZ sent to the process can run their handler in another
    // thread while this one goes on creating files.)
    if (g_ending.load()) {
      if (is_dir)
        remove_dir_and_files(path.c_str());
      else
        ::unlink(path.c_str());
      g_temp_slots[i].state.store(0);
      return -1;  // what the caller writes there now fails, and waits to be ended
    }
    return i;
  }
  return -1;
}

void unregister_temp(int slot) {
  if (slot >= 0) g_temp_slots[slot].state.store(0);
}

// "a1b2c3d4": FNV-1a of the host name, so files of writers on other hosts (a shared file
// system) are told apart from this host's dead ones.
const std::string& host_tag() {
  static const std::string tag = [] {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    uint32_t h = 2166136261u;
    for (const char* p = name; *p; ++p) h = (h ^ static_cast<uint8_t>(*p)) * 16777619u;
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", h);
    return std::string(hex);
  }();
  return tag;
}

// The writer of a temporary name ".<base>.lmkit-<pid>-<host>-XXXXXX", or false when `name` is
// not one.
bool parse_temp_name(const std::string& name, long* pid, std::string* host) {
  if (name.empty() || name[0] != '.') return false;
  const size_t at = name.rfind(".lmkit-");
  if (at == std::string::npos || at == 0) return false;
  const std::string rest = name.substr(at + 7);  // "<pid>-<host>-XXXXXX"
  const size_t dash1 = rest.find('-');
  if (dash1 == std::string::npos || dash1 == 0 || dash1 > 10) return false;
  for (size_t i = 0; i < dash1; ++i)
    if (rest[i] < '0' || rest[i] > '9') return false;
  if (rest.size() != dash1 + 1 + 8 + 1 + 6 || rest[dash1 + 9] != '-') return false;
  *pid = std::strtol(rest.substr(0, dash1).c_str(), nullptr, 10);
  *host = rest.substr(dash1 + 1, 8);
  return true;
}

bool process_alive(long pid) {
  if (pid <= 0) return true;  // not ours to judge
  if (pid == static_cast<long>(::getpid())) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

std::string dir_of_path(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

class FdSource final : public ByteSource {
 public:
  FdSource(int fd, std::string name, bool owned) : fd_(fd), name_(std::move(name)), owned_(owned) {}
  ~FdSource() override {
    if (owned_) ::close(fd_);
  }
  size_t read_some(void* buf, size_t n) override {
    for (;;) {
      const ssize_t k = ::read(fd_, buf, n);
      if (k >= 0) return static_cast<size_t>(k);
      if (errno != EINTR) fail_io("cannot read", name_);
    }
  }
  const std::string& name() const override { return name_; }

 private:
  int fd_;
  std::string name_;
  bool owned_;
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size, std::string name) : data_(data), size_(size), name_(std::move(name)) {}
  size_t read_some(void* buf, size_t n) override {
    const size_t k = std::min(n, size_ - pos_);
    if (k == 0) return 0;  // data_ may be null for an empty buffer
    std::memcpy(buf, data_ + pos_, k);
    pos_ += k;
    return k;
  }
  const std::string& name() const override { return name_; }

 private:
  const uint8_t* data_;
  size_t size_, pos_ = 0;
  std::string name_;
};

// Replays bytes already peeked from `inner` before reading on.
class PrefixedSource final : public ByteSource {
 public:
  PrefixedSource(std::vector<uint8_t> prefix, std::unique_ptr<ByteSource> inner)
      : prefix_(std::move(prefix)), inner_(std::move(inner)) {}
  size_t read_some(void* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      const size_t k = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, k);
      pos_ += k;
      return k;
    }
    return inner_->read_some(buf, n);
  }
  const std::string& name() const override { return inner_->name(); }

 private:
  std::vector<uint8_t> prefix_;
  size_t pos_ = 0;
  std::unique_ptr<ByteSource> inner_;
};

class ZstdSource final : public ByteSource {
 public:
  explicit ZstdSource(std::unique_ptr<ByteSource> inner) : inner_(std::move(inner)), in_buf_(ZSTD_DStreamInSize()) {
    ds_ = ZSTD_createDStream();
    if (!ds_) fail(ErrorKind::Runtime, "out of memory creating a zstd decoder");
  }
  ~ZstdSource() override { ZSTD_freeDStream(ds_); }

  size_t read_some(void* buf, size_t n) override {
    if (n == 0) return 0;
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (in_.pos == in_.size) {
        const size_t k = inner_->read_some(in_buf_.data(), in_buf_.size());
        if (k == 0) {
          if (frame_open_) fail_data(cat(quote(name()), ": truncated zstd stream"));
          return 0;
        }
        in_ = ZSTD_inBuffer{in_buf_.data(), k, 0};
      }
      const size_t ret = ZSTD_decompressStream(ds_, &out, &in_);
      if (ZSTD_isError(ret)) fail_data(cat(quote(name()), ": corrupt zstd stream: ", ZSTD_getErrorName(ret)));
      frame_open_ = ret != 0;  // 0 means a frame just ended; concatenated frames are fine
    }
    return out.pos;
  }
  const std::string& name() const override { return inner_->name(); }

 private:
  std::unique_ptr<ByteSource> inner_;
  std::vector<uint8_t> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  ZSTD_DStream* ds_;
  bool frame_open_ = false;
};

class FileSink final : public ByteSink {
 public:
  explicit FileSink(const std::string& path) : path_(path) {
    buf_.reserve(kBufSize);
    if (path == "-") {
      fd_ = STDOUT_FILENO;
      return;
    }
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) fail(ErrorKind::Io, cat("cannot write ", quote(path), ": is a directory"));
    if (exists && !S_ISREG(st.st_mode)) {
      // A device, FIFO or socket (/dev/null, a named pipe): written in place. Renaming a
      // temporary file over it would replace the device node with a regular file.
      fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd_ < 0) fail_io("cannot open", path);
      in_place_ = true;
      return;
    }
    remove_stale_temp_files(dir_of_path(path));
    std::string templ = temp_prefix_for(path) + "XXXXXX";
    const FatalSignalsHeld held;  // until the file is registered
    fd_ = ::mkostemp(templ.data(), O_CLOEXEC);
    if (fd_ < 0) fail_io("cannot create a temporary file for", path);
    tmp_ = templ;
    slot_ = register_temp(tmp_, false);
    ::fchmod(fd_, 0644 & ~current_umask());
  }
  ~FileSink() override {
    if (in_place_ && fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) {
      if (fd_ >= 0) ::close(fd_);
      ::unlink(tmp_.c_str());
      unregister_temp(slot_);
    }
  }
  void write(const void* data, size_t n) override {
    if (buf_.size() + n > kBufSize) {
      flush();
      if (n >= kBufSize) {
        write_fd(data, n);
        return;
      }
    }
    buf_.insert(buf_.end(), static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n);
  }
  void finish() override {
    flush();
    if (in_place_) {
      const int fd = fd_;
      fd_ = -1;
      if (::close(fd) != 0) fail_io("cannot write", path_);
      return;
    }
    if (tmp_.empty()) return;  // stdout
    // On disk before the rename makes it the file: a power loss then leaves the old file or the
    // new one, not a new name over missing data.
    if (::fdatasync(fd_) != 0 && errno != EINVAL) fail_io("cannot write", path_);
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail_io("cannot write", path_);
    }
    fd_ = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail_io("cannot rename the temporary file to", path_);
    tmp_.clear();
    unregister_temp(slot_);
  }

 private:
  static constexpr size_t kBufSize = 1 << 20;
  static mode_t current_umask() {
    const mode_t m = ::umask(0);
    ::umask(m);
    return m;
  }
  void flush() {
    if (!buf_.empty()) write_fd(buf_.data(), buf_.size());
    buf_.clear();
  }
  void write_fd(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t k = ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        fail_io("cannot write", display_name_out());
      }
      p += k;
      n -= static_cast<size_t>(k);
    }
  }
  std::string display_name_out() const { return path_ == "-" ? "<stdout>" : path_; }

  std::string path_, tmp_;
  int fd_ = -1;
  int slot_ = -1;          // of tmp_ in the registry
  bool in_place_ = false;  // a non-regular file, written directly
  std::vector<uint8_t> buf_;
};

class ZstdSink final : public ByteSink {
 public:
  ZstdSink(std::unique_ptr<ByteSink> inner, int level) : inner_(std::move(inner)), out_buf_(ZSTD_CStreamOutSize()) {
    cs_ = ZSTD_createCCtx();
    if (!cs_) fail(ErrorKind::Runtime, "out of memory creating a zstd encoder");
    ZSTD_CCtx_setParameter(cs_, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cs_, ZSTD_c_checksumFlag, 1);
  }
  ~ZstdSink() override { ZSTD_freeCCtx(cs_); }
  void write(const void* data, size_t n) override {
    ZSTD_inBuffer in{data, n, 0};
    while (in.pos < in.size) pump(&in, ZSTD_e_continue);
  }
  void finish() override {
    ZSTD_inBuffer in{nullptr, 0, 0};
    while (pump(&in, ZSTD_e_end) != 0) {
    }
    inner_->finish();
  }

 private:
  size_t pump(ZSTD_inBuffer* in, ZSTD_EndDirective mode) {
    ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
    const size_t ret = ZSTD_compressStream2(cs_, &out, in, mode);
    if (ZSTD_isError(ret)) fail(ErrorKind::Runtime, cat("zstd compression failed: ", ZSTD_getErrorName(ret)));
    if (out.pos) inner_->write(out_buf_.data(), out.pos);
    return ret;
  }
  std::unique_ptr<ByteSink> inner_;
  std::vector<uint8_t> out_buf_;
  ZSTD_CCtx* cs_;
};

class MemorySink final : public ByteSink {
 public:
  explicit MemorySink(std::vector<uint8_t>* out) : out_(out) {}
  void write(const void* data, size_t n) override {
    out_->insert(out_->end(), static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n);
  }
  void finish() override {}

 private:
  std::vector<uint8_t>* out_;
};

}  // namespace

std::unique_ptr<ByteSource> open_raw_input(const std::string& path) {
  if (path == "-") return std::make_unique<FdSource>(STDIN_FILENO, display_name(path), false);
  struct stat st {};
  return std::make_unique<FdSource>(open_for_reading(path, st), path, true);
}

std::unique_ptr<ByteSource> open_input(const std::string& path) { return auto_decompress(open_raw_input(path)); }

std::unique_ptr<ByteSource> auto_decompress(std::unique_ptr<ByteSource> raw) {
  std::vector<uint8_t> head(4);
  head.resize(raw->read_full(head.data(), head.size()));
  const bool zstd = is_zstd_magic(head.data(), head.size());
  auto src = std::make_unique<PrefixedSource>(std::move(head), std::move(raw));
  if (zstd) return std::make_unique<ZstdSource>(std::move(src));
  return src;
}

std::unique_ptr<ByteSource> prefixed_source(std::vector<uint8_t> prefix, std::unique_ptr<ByteSource> inner) {
  return std::make_unique<PrefixedSource>(std::move(prefix), std::move(inner));
}

std::unique_ptr<ByteSource> memory_source(const uint8_t* data, size_t size, std::string name) {
  return std::make_unique<MemorySource>(data, size, std::move(name));
}

std::unique_ptr<ByteSink> open_output(const std::string& path) { return std::make_unique<FileSink>(path); }

std::string read_text_file(const std::string& path) {
  auto in = open_raw_input(path);
  std::string text;
  char buf[1 << 16];
  while (const size_t n = in->read_some(buf, sizeof buf)) text.append(buf, n);
  return text;
}

std::string temp_prefix_for(const std::string& target) {
  const std::string path = strip_trailing_slashes(target);
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.size() > 200) base.resize(200);  // room for the suffix within NAME_MAX
  return cat(dir, ".", base, ".lmkit-", static_cast<long>(::getpid()), "-", host_tag(), "-");
}

void remove_stale_temp_files(const std::string& given) {
  const std::string dir = given.empty() ? "." : given;
  static std::mutex mu;
  static std::set<std::string> done;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!done.insert(dir).second) return;
  }
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::pair<std::string, bool>> stale;
  while (const dirent* e = ::readdir(d)) {
    long pid;
    std::string host;
    if (!parse_temp_name(e->d_name, &pid, &host) || host != host_tag() || process_alive(pid)) continue;
    stale.emplace_back(e->d_name, e->d_type == DT_DIR);
  }
  ::closedir(d);
  for (const auto& [name, is_dir] : stale) {
    const std::string p = dir == "." ? name : (dir.back() == '/' ? dir + name : dir + "/" + name);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode))
      remove_dir_and_files(p.c_str());
    else
      ::unlink(p.c_str());
  }
}

TempDir::TempDir(const std::string& target, const char* what) {
  const std::string t = strip_trailing_slashes(target);
  remove_stale_temp_files(dir_of_path(t));
  std::string templ = temp_prefix_for(t) + "XXXXXX";
  const FatalSignalsHeld held;  // until the directory is registered
  if (!::mkdtemp(templ.data())) fail_io(what, t);
  path_ = templ;
  slot_ = register_temp(path_, true);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  remove_dir_and_files(path_.c_str());
  unregister_temp(slot_);
}

void TempDir::release() {
  unregister_temp(slot_);
  slot_ = -1;
  path_.clear();
}

CommitSection::CommitSection() {
  // The signal thread may have read the depth as 0 just before: it is ending the process, so
  // no rename may start. (A nested section leaves a deferred signal to the outermost.)
  if (g_commit_depth.fetch_add(1) != 0) return;
  if (const int sig = g_pending_signal.load(); sig != 0) remove_temp_files_and_end(sig);
}

CommitSection::~CommitSection() {
  if (g_commit_depth.fetch_sub(1) != 1) return;
  if (const int sig = g_pending_signal.load(); sig != 0) remove_temp_files_and_end(sig);
}

void take_termination_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigemptyset(&g_taken);
    sigemptyset(&g_ignored);
    for (int sig : kTerminationSignals) {
      sigaddset(&g_taken, sig);
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN)
        sigaddset(&g_ignored, sig);  // Linux keeps a blocked signal even if ignored: the thread drops it
    }
    // Blocked here, so in every thread started from now on; then one thread waits for them.
    ::pthread_sigmask(SIG_BLOCK, &g_taken, nullptr);
    g_signal_thread.store(true);
    std::thread(signal_thread_main).detach();
  });
}

void stop_on_termination_signal(std::atomic<bool>* flag) {
  take_termination_signals();
  g_stop_flag.store(flag);
}

int termination_signal_received() { return g_stop_signal.load(); }

void wait_if_ending_by_signal() {
  if (!g_ending.load()) return;
  for (;;) ::pause();  // the thread that is ending the process ends this one too
}

void end_by_signal(int sig) {
  std::signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);  // this thread, unblocked, default action: the process ends here
  std::_Exit(128 + sig);
}

void remove_temp_files_now() {
  for (TempSlot& s : g_temp_slots)
    if (s.state.load() == 2) ::unlink(s.path);
  for (TempSlot& s : g_temp_slots)
    if (s.state.load() == 3) remove_dir_and_files(s.path);
}

std::unique_ptr<ByteSink> zstd_sink(std::unique_ptr<ByteSink> inner, int level) {
  return std::make_unique<ZstdSink>(std::move(inner), level);
}

std::unique_ptr<ByteSink> memory_sink(std::vector<uint8_t>* out) { return std::make_unique<MemorySink>(out); }

}  // namespace lm
