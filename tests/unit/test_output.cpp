// Writers' safety: temporary names, the registry of live temporary paths and the fatal-signal
// handler, stale files of dead writers, checkpoint directories written as a set, and telling
// checkpoint containers apart by content.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "convert/source.h"
#include "io/checkpoint_dir.h"
#include "io/container.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/stream.h"

namespace lm {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("lmkit_output_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> entries(const fs::path& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// This host's tag in temporary names.
std::string host_tag() {
  std::smatch m;
  const std::string p = temp_prefix_for("x");
  EXPECT_TRUE(std::regex_match(p, m, std::regex(R"(\.x\.lmkit-\d+-([0-9a-f]{8})-)"))) << p;
  return m[1];
}

// The pid of a process that has ended.
long dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

TEST(Output, TemporaryNamesCarryThePidAndTheHost) {
  const std::string pid = std::to_string(::getpid());
  EXPECT_TRUE(std::regex_match(temp_prefix_for("dir/x.safetensors"),
                               std::regex(R"(dir/\.x\.safetensors\.lmkit-)" + pid + R"(-[0-9a-f]{8}-)")));
  EXPECT_TRUE(std::regex_match(temp_prefix_for("x"), std::regex(R"(\.x\.lmkit-)" + pid + R"(-[0-9a-f]{8}-)")));
  EXPECT_TRUE(std::regex_match(temp_prefix_for("a/out/"), std::regex(R"(a/\.out\.lmkit-)" + pid + R"(-[0-9a-f]{8}-)")));
  EXPECT_TRUE(std::regex_match(temp_prefix_for("/x"), std::regex(R"(/\.x\.lmkit-.*)")));
}

TEST(Output, AnUnfinishedOutputLeavesNothing) {
  const fs::path d = fresh_dir("unfinished");
  {
    auto s = open_output((d / "o").string());
    s->write("abc", 3);
    ASSERT_EQ(entries(d).size(), 1u);
    EXPECT_EQ(entries(d)[0].rfind(".o.lmkit-", 0), 0u);
  }
  EXPECT_TRUE(entries(d).empty());
  {
    auto s = open_output((d / "o").string());
    s->write("abc", 3);
    s->finish();
  }
  EXPECT_EQ(entries(d), std::vector<std::string>{"o"});
  EXPECT_EQ(read(d / "o"), "abc");
}

TEST(Output, TempDirIsRemovedWithItsFilesUnlessReleased) {
  const fs::path d = fresh_dir("tempdir");
  std::string kept;
  {
    TempDir t((d / "out").string());
    write(fs::path(t.path()) / "f", "x");
    EXPECT_EQ(entries(d).size(), 1u);
  }
  EXPECT_TRUE(entries(d).empty());
  {
    TempDir t((d / "out").string());
    kept = t.path();
    t.release();
  }
  EXPECT_TRUE(fs::is_directory(kept));
  try {
    TempDir t((d / "no" / "such" / "out").string(), "cannot create directory");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot create directory '" + (d / "no/such/out").string() + "': No such file or directory");
  }
}

TEST(Output, AFatalSignalInAnotherThreadLeavesNoPathHalfRegistered) {
  // The handler runs in whichever thread takes the signal (here the idle main thread) while
  // another creates temporary paths: one it has created and not yet registered must not outlive
  // the process. (Before the handler waited for registrations, about 1 in 270 conversions sent
  // SIGPIPE left their staging directory; this loop left a path within the first 30 trials.)
  const fs::path d = fresh_dir("registering");
  int signalled = 0;
  constexpr int kTrials = 60;
  for (int trial = 0; trial < kTrials; ++trial) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::thread([&d] {
        for (unsigned i = 0;; ++i) {
          if (i % 2) {
            TempDir stage((d / "stage").string());
          } else {
            auto out = open_output((d / "out").string());
            out->write("x", 1);
          }
        }
      }).detach();
      for (;;) ::pause();
    }
    ::usleep(1000 + 300 * (trial % 11));
    ::kill(pid, SIGPIPE);
    int status = 0;
    ::waitpid(pid, &status, 0);
    signalled += WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE;
    const std::vector<std::string> left = entries(d);
    ASSERT_TRUE(left.empty()) << "trial " << trial << " left " << left[0];
  }
  EXPECT_EQ(signalled, kTrials);
}

TEST(Output, StaleTemporaryFilesOfDeadWritersOfThisHostGo) {
  const fs::path d = fresh_dir("stale");
  const std::string host = host_tag(), dead = std::to_string(dead_pid()), live = std::to_string(::getpid());
  write(d / (".a.safetensors.lmkit-" + dead + "-" + host + "-Ab12Cd"), "x");
  fs::create_directory(d / (".dir.lmkit-" + dead + "-" + host + "-Ef34Gh"));
  write(d / (".dir.lmkit-" + dead + "-" + host + "-Ef34Gh") / "model.safetensors", "x");
  const std::vector<std::string> kept = {
      ".b.lmkit-" + live + "-" + host + "-Ij56Kl",      // a live writer's
      ".c.lmkit-" + dead + "-0badc0de-Mn78Op",           // another host's
      ".d.lmkit-" + dead + "-" + host + "-Qr90",         // not a name lmkit makes
      ".e.tmp",
      "f.lmkit-" + dead + "-" + host + "-St12Uv",       // not hidden
  };
  for (const auto& k : kept) write(d / k, "x");
  remove_stale_temp_files(d.string());
  std::vector<std::string> want = kept;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(entries(d), want);
}

// Death tests run "threadsafe": the child re-executes the test, so the directory both look at is
// made by the parent and named to the child in the environment.
class OutputDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  static fs::path shared_dir(const std::string& name) {
    const std::string var = "LMKIT_TEST_OUTPUT_DIR_" + name;
    if (const char* d = std::getenv(var.c_str())) return d;
    const fs::path d = fresh_dir(name);
    ::setenv(var.c_str(), d.c_str(), 1);
    return d;
  }
};

TEST_F(OutputDeathTest, AFatalSignalRemovesTheTemporaryFilesAndEndsTheProcessByIt) {
  const fs::path d = shared_dir("signal");
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) {
    EXPECT_EXIT(
        {
          ::signal(sig, SIG_DFL);  // (a shell's background job ignores SIGINT)
          auto s = open_output((d / "o").string());
          s->write("abc", 3);
          TempDir t((d / "set").string());
          write(fs::path(t.path()) / "model-00001-of-00002.safetensors", "x");
          ::raise(sig);
          std::_Exit(0);
        },
        ::testing::KilledBySignal(sig), "");
    EXPECT_TRUE(entries(d).empty()) << "signal " << sig;
  }
}

TEST_F(OutputDeathTest, ASignalDuringACommitSectionWaitsForItsEnd) {
  const fs::path d = shared_dir("commit");
  EXPECT_EXIT(
      {
        ::signal(SIGTERM, SIG_DFL);
        auto s = open_output((d / "o").string());
        {
          CommitSection commit;
          ::raise(SIGTERM);
          write(d / "renamed-after-the-signal", "x");  // the section runs to its end
        }
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGTERM), "");
  EXPECT_EQ(entries(d), std::vector<std::string>{"renamed-after-the-signal"});
}

extern "C" void exit_seven(int) {
  remove_temp_files_now();
  ::_exit(7);
}

TEST_F(OutputDeathTest, AProgramsOwnHandlerIsLeftInPlaceAndCanRemoveTheFiles) {
  const fs::path d = shared_dir("own_handler");
  EXPECT_EXIT(
      {
        ::signal(SIGTERM, exit_seven);
        auto s = open_output((d / "o").string());
        ::raise(SIGTERM);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(7), "");
  EXPECT_TRUE(entries(d).empty());
}

// ---- checkpoint directories ----

// Files whose "weights" are text, so the set logic is seen without safetensors.
CheckpointDirFiles text_files(const std::string& tag, size_t shards) {
  CheckpointDirFiles f;
  if (shards == 0) {
    f.single_name = "model.safetensors";
    f.write_single = [tag](const std::string& path) { write(path, tag); };
  }
  for (size_t i = 0; i < shards; ++i)
    f.shards.push_back({{cat("t", i)}, [tag, i](const std::string& path) { write(path, cat(tag, i)); }});
  f.total_size = 10;
  f.config_files = {{"config.json", tag}, {"generation_config.json", "g" + tag}};
  return f;
}

TEST(CheckpointDir, ShardNames) {
  EXPECT_EQ(shard_file_name(0, 3), "model-00001-of-00003.safetensors");
  EXPECT_EQ(shard_file_name(11, 12), "model-00012-of-00012.safetensors");
}

TEST(CheckpointDir, ReplacesTheCheckpointThereWholeAndKeepsOtherFiles) {
  const fs::path d = fresh_dir("dir") / "ck";
  write_checkpoint_dir(d.string(), text_files("a", 2));
  EXPECT_EQ(entries(d), (std::vector<std::string>{"config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                                                  "model-00002-of-00002.safetensors", "model.safetensors.index.json"}));
  EXPECT_NE(read(d / kShardIndexName).find("\"t1\": \"model-00002-of-00002.safetensors\""), std::string::npos);
  write(d / "tokenizer.json", "{}");
  write(d / "model-00007-of-00009.old.safetensors", "a crashed writer's");
  // The same shard names: the old shards are moved aside, then gone.
  const auto written = write_checkpoint_dir(d.string() + "/", text_files("b", 2));
  EXPECT_EQ(written.size(), 5u);
  EXPECT_EQ(entries(d), (std::vector<std::string>{"config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                                                  "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                                                  "tokenizer.json"}));
  EXPECT_EQ(read(d / "model-00002-of-00002.safetensors"), "b1");
  EXPECT_EQ(read(d / "config.json"), "b");
  EXPECT_EQ(read(d / "generation_config.json"), "gb");
  // One file: the index and the shards go.
  write_checkpoint_dir(d.string(), text_files("c", 0));
  EXPECT_EQ(entries(d), (std::vector<std::string>{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}));
  EXPECT_EQ(read(d / "model.safetensors"), "c");
}

TEST(CheckpointDir, AFailedWriteLeavesTheOldCheckpointOrNothing) {
  const fs::path top = fresh_dir("failed");
  CheckpointDirFiles bad = text_files("b", 3);
  bad.shards[2].write = [](const std::string&) { fail_data("disk full (simulated)"); };
  // A new directory: nothing is left.
  EXPECT_THROW(write_checkpoint_dir((top / "new").string(), bad), Error);
  EXPECT_TRUE(entries(top).empty());
  // An existing one keeps its checkpoint, byte for byte.
  write_checkpoint_dir((top / "ck").string(), text_files("a", 3));
  const std::vector<std::string> before = entries(top / "ck");
  EXPECT_THROW(write_checkpoint_dir((top / "ck").string(), bad), Error);
  EXPECT_EQ(entries(top / "ck"), before);
  EXPECT_EQ(read(top / "ck" / "model-00003-of-00003.safetensors"), "a2");
  EXPECT_EQ(entries(top), std::vector<std::string>{"ck"});
  // A file where the directory should be.
  write(top / "file", "x");
  EXPECT_THROW(write_checkpoint_dir((top / "file").string(), text_files("a", 1)), Error);
}

// An index lmkit's reader refuses describes no checkpoint: a writer into its directory replaces
// it and does not act on the names it gives (nlohmann's plain parse kept the last of a repeated
// key, and took any depth; the writer then removed what that reading listed).
TEST(CheckpointDir, AnOldIndexTheReaderRefusesListsNothingToRemove) {
  const fs::path d = fresh_dir("refused_index") / "ck";
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::pair<std::string, std::string> cases[] = {
      {"{\"weight_map\": {\"t0\": \"model-00001-of-00002.safetensors\", \"t0\": \"keep.safetensors\"}}",
       "duplicate key 'weight_map.t0'"},
      {"{\"metadata\": " + deep + ", \"weight_map\": {\"t0\": \"keep.safetensors\"}}", "JSON nested deeper than 512 levels"},
  };
  for (const auto& [index, refusal] : cases) {
    write_checkpoint_dir(d.string(), text_files("a", 2));
    write(d / kShardIndexName, index);
    write(d / "keep.safetensors", "not a shard of this checkpoint");
    try {
      convert::open_source(d.string());
      ADD_FAILURE() << "the reader took an index with " << refusal;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data);
      EXPECT_EQ(std::string(e.what()), "'" + (d / kShardIndexName).string() + "': " + refusal);
    }
    write_checkpoint_dir(d.string(), text_files("b", 2));
    EXPECT_EQ(entries(d), (std::vector<std::string>{"config.json", "generation_config.json", "keep.safetensors", "model-00001-of-00002.safetensors",
                                                    "model-00002-of-00002.safetensors", "model.safetensors.index.json"}));
    EXPECT_EQ(read(d / "keep.safetensors"), "not a shard of this checkpoint");
    EXPECT_EQ(read(d / "model-00001-of-00002.safetensors"), "b0");
    fs::remove(d / "keep.safetensors");
  }
}

// ---- containers ----

std::vector<uint8_t> gguf_bytes() {
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str("llama"));
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  w.write(*sink);
  return bytes;
}

TEST(Container, ToldByContent) {
  const auto gguf = gguf_bytes();
  EXPECT_EQ(sniff_container(gguf.data(), gguf.size()), Container::GGUF);
  const uint8_t v1[8] = {0x32, 0x34, 0x6b, 0x61, 1, 0, 0, 0};
  EXPECT_EQ(sniff_container(v1, sizeof v1), Container::Llama2c);
  int32_t v0[7] = {64, 172, 123, 4, 4, 32000, 256};  // 123 layers: '{' at byte 8
  EXPECT_EQ(sniff_container(reinterpret_cast<const uint8_t*>(v0), sizeof v0), Container::Llama2c);
  std::vector<uint8_t> st(8, 0);
  st[0] = 2;
  st.push_back('{');
  st.push_back('}');
  EXPECT_EQ(sniff_container(st.data(), st.size()), Container::Safetensors);
  const std::string json = "{\"dim\": 8}";
  EXPECT_EQ(sniff_container(reinterpret_cast<const uint8_t*>(json.data()), json.size()), Container::Json);
  const uint8_t junk[4] = {1, 2, 3, 4};
  EXPECT_EQ(sniff_container(junk, sizeof junk), Container::Unknown);
}

TEST(Container, TheSafetensorsReaderSaysWhatElseItWasGiven) {
  auto error_of = [](std::vector<uint8_t> bytes, const std::string& name) {
    try {
      SafeTensorsFile::parse(MappedFile::from_bytes(std::move(bytes), name));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of(gguf_bytes(), "dir/m.gguf"),
            "'dir/m.gguf': a GGUF checkpoint, not an lmkit one (safetensors): convert it with "
            "'lm-convert-checkpoint dir/m.gguf dir/m.safetensors'");
  int32_t v0[7] = {64, 172, 2, 4, 4, 32000, 256};
  const auto* p = reinterpret_cast<const uint8_t*>(v0);
  EXPECT_EQ(error_of(std::vector<uint8_t>(p, p + sizeof v0), "<stdin>"),
            "'<stdin>': a llama2.c checkpoint, not an lmkit one (safetensors): convert it with "
            "'lm-convert-checkpoint - out.safetensors'");
}

}  // namespace
}  // namespace lm
