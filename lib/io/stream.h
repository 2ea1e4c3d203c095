// Sequential byte streams: inputs that may be pipes (stdin, "-") and may be
// zstd-compressed (detected by magic), and outputs that are atomic for files
// (temp file in the target directory, renamed on commit) or go to stdout.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lm {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes; returns 0 only at end of stream.
  virtual size_t read_some(void* buf, size_t n) = 0;
  // Reads exactly n bytes, or fewer only at end of stream; returns the count read.
  size_t read_full(void* buf, size_t n);
  virtual const std::string& name() const = 0;  // for messages
};

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, size_t n) = 0;
  // Completes the stream (flush, end compression frame, rename a temp file). Without it,
  // a file output is discarded on destruction.
  virtual void finish() = 0;
};

// An unbuffered reader over a file descriptor ("-" = stdin). Throws Io errors naming the path.
std::unique_ptr<ByteSource> open_raw_input(const std::string& path);
// Like open_raw_input, but transparently decompresses when the stream starts with the zstd magic.
std::unique_ptr<ByteSource> open_input(const std::string& path);
// Peeks at the first bytes of `src` and wraps it in a zstd decoder when they are the zstd magic.
std::unique_ptr<ByteSource> auto_decompress(std::unique_ptr<ByteSource> src);
// Replays `prefix` (bytes already peeked from `inner`), then reads on from `inner`.
std::unique_ptr<ByteSource> prefixed_source(std::vector<uint8_t> prefix, std::unique_ptr<ByteSource> inner);
// Wraps an in-memory buffer (tests and fuzzers).
std::unique_ptr<ByteSource> memory_source(const uint8_t* data, size_t size, std::string name);

// A file output written to a temporary file beside `path` (temp_path_for) and renamed to
// `path` by finish(); "-" = stdout; a device or FIFO is written in place. The temporary file is
// removed when the sink is destroyed unfinished, and on a fatal signal (see below).
std::unique_ptr<ByteSink> open_output(const std::string& path);
// Compresses everything written into one zstd frame on `inner`. level 1..19 (default 3).
std::unique_ptr<ByteSink> zstd_sink(std::unique_ptr<ByteSink> inner, int level);
// Appends to a vector (tests).
std::unique_ptr<ByteSink> memory_sink(std::vector<uint8_t>* out);

bool is_zstd_magic(const uint8_t* p, size_t n);

// Passes bytes through to `inner`, counting them (a producer that writes the wrong amount is caught).
class CountingSink final : public ByteSink {
 public:
  explicit CountingSink(ByteSink& inner) : inner_(inner) {}
  void write(const void* data, size_t n) override {
    inner_.write(data, n);
    count += n;
  }
  void finish() override {}
  uint64_t count = 0;

 private:
  ByteSink& inner_;
};

// The whole of a (small) file as text: a config or rules file, an index. "-" reads stdin.
std::string read_text_file(const std::string& path);

// ---- Temporary files and directories ----
//
// Every temporary path lmkit writes is named "<dir>/.<name>.lmkit-<pid>-<host>-XXXXXX" (<host> a
// hash of the host name), and is registered while it lives: a fatal signal (SIGINT, SIGTERM,
// SIGHUP, SIGPIPE, SIGXFSZ, when the program left it at its default action) removes every
// registered path before the process ends by that signal. After a kill -9 or a crash, the next
// lmkit writer in that directory removes what writers of this host that are no longer running
// left there (a live process's files are never touched).

// The temporary name for `path` ("<dir>/.<base>.lmkit-<pid>-<host>-", mkstemp's XXXXXX to follow).
std::string temp_prefix_for(const std::string& path);
// Removes the temporary files and directories of dead lmkit writers of this host in `dir`
// (once per directory and process; errors are ignored).
void remove_stale_temp_files(const std::string& dir);

// A temporary directory beside `target` (".<target's name>.lmkit-..."), registered for removal
// on a signal and removed with its files on destruction unless released (after it was renamed).
// Failing to create it is an Io error "<what> '<target>': <why>".
class TempDir {
 public:
  explicit TempDir(const std::string& target, const char* what = "cannot create a temporary directory for");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // The directory has been renamed into place or emptied and removed: forget it.
  void release();

 private:
  std::string path_;
  int slot_ = -1;
};

// While one exists, a fatal signal waits: the handler (or the signal thread) records it, and the last
// CommitSection to end removes the temporary files and ends the process by that signal. For the
// few renames that move a set of files into place, so a signal cannot cut the set in two.
class CommitSection {
 public:
  CommitSection();
  ~CommitSection();
  CommitSection(const CommitSection&) = delete;
  CommitSection& operator=(const CommitSection&) = delete;
};

// Removes every registered temporary path now. Async-signal-safe: for programs that install
// their own signal handlers and end the process from one.
void remove_temp_files_now();

// ---- Termination signals (SIGINT, SIGTERM, SIGHUP) on a thread of their own ----
//
// Every program calls take_termination_signals() first, before it starts any thread: the
// signals are blocked in the calling thread, so in every thread started afterwards, and one
// thread waits for them (sigwait) and does what the fatal-signal handler would (remove the
// temporary paths, wait for a CommitSection, end the process by the signal). Why not a
// handler: a handler's frame goes where the interrupted thread's stack pointer points, and
// oneDNN 2.6's JIT sgemm kernels point it into the heap while they run (oneDNN issue #4845,
// fixed upstream in 2026 by PR #4855; Debian ships 2.6.3): a SIGINT during a GEMM wrote the
// frame over malloc's lists, and lm-train aborted ("corrupted double-linked list") while
// saving after the signal. A signal the program started with ignored stays ignored.
void take_termination_signals();
// From now on the first SIGINT or SIGTERM sets *flag instead of ending the process (even if
// the program started with it ignored); a second ends it. For lm-train: stop after the step,
// save, then end_by_signal(termination_signal_received()).
void stop_on_termination_signal(std::atomic<bool>* flag);
// The signal that set the flag, or 0.
int termination_signal_received();
// Ends the process by `sig` with its default action (from any thread, whatever its mask).
[[noreturn]] void end_by_signal(int sig);

}  // namespace lm
