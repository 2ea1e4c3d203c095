// What programs print about failures, built in the library: the one-line error format,
// whose mistake a bad config is (load_user_config), and the non-finite weight check.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/finite.h"
#include "model/params.h"
#include "model/presets.h"
#include "model/user_config.h"

namespace lm {
namespace {

namespace fs = std::filesystem;

TEST(ErrorLine, HintJoinsTheSameLine) {
  EXPECT_EQ(error_line("lm-x", "cannot open 'a': No such file or directory"),
            "lm-x: error: cannot open 'a': No such file or directory");
  EXPECT_EQ(error_line("lm-x", "unknown key 'nope'", "did you mean 'name'?"),
            "lm-x: error: unknown key 'nope'; did you mean 'name'?");
}

TEST(ErrorLine, ControlCharactersAreEscaped) {
  EXPECT_EQ(one_line("a\nb\rc\x1b[31md\x7f\te"), "a\\nb\\rc\\x1b[31md\\x7f\te");
  EXPECT_EQ(one_line("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 stays as it is
  const std::string line = error_line("lm-x", "cannot open 'x\ny'", "two\nlines");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line, "lm-x: error: cannot open 'x\\ny'; two\\nlines");
}

// A scratch directory, removed at the end of the test.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() /
          ("lmkit_msg_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string path = (dir / name).string();
    std::ofstream(path) << text;
    return path;
  }
};

ErrorKind kind_of(const std::string& input, const std::vector<std::string>& sets) {
  try {
    load_user_config(input, sets);
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << input << " loaded without an error";
  return ErrorKind::Runtime;
}

TEST(UserConfig, TheUsersWordsAreUsageErrorsAFilesContentIsData) {
  Scratch s;
  const std::string good = s.write("good.json", config_to_json(preset("tiny")));
  ModelConfig broken = preset("tiny");
  broken.dim = -1;
  const std::string bad = s.write("bad.json", config_to_json(broken));
  EXPECT_EQ(kind_of("tiny", {"dim=-1"}), ErrorKind::Usage);
  EXPECT_EQ(kind_of("tiny", {"nope=1"}), ErrorKind::Usage);
  EXPECT_EQ(kind_of("no-such-preset", {}), ErrorKind::Usage);
  EXPECT_EQ(kind_of(good, {"dim=-1"}), ErrorKind::Usage);
  EXPECT_EQ(kind_of(bad, {}), ErrorKind::Data);
  EXPECT_EQ(kind_of(bad, {"n_layers=1"}), ErrorKind::Data);  // the file was bad before the override
  EXPECT_EQ(kind_of((s.dir / "none.json").string(), {}), ErrorKind::Io);
  EXPECT_EQ(load_user_config(good, {"n_layers=3"}).config.n_layers, 3);
  // the message is the loader's, whoever is to blame
  try {
    load_user_config("tiny", {"dim=-1"});
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "'tiny': dim must be positive, got -1");
  }
}

TEST(NonFinite, EveryFloatDtypeInPlaceAlignedOrNot) {
  const float values[] = {1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()};
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    const size_t es = dtype_size(dt);
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1024}, int64_t{3000}}) {
      for (int bad = 0; bad < 4; ++bad) {
        std::vector<uint8_t> bytes(static_cast<size_t>(n) * es + 1);
        uint8_t* p = bytes.data() + 1;  // unaligned on purpose, as in a mapped file
        auto put = [&](int64_t i, float f) {
          uint8_t* q = p + static_cast<size_t>(i) * es;
          if (dt == DType::F32) std::memcpy(q, &f, 4);
          if (dt == DType::F64) {
            const double d = f;
            std::memcpy(q, &d, 8);
          }
          if (dt == DType::F16 || dt == DType::BF16) {
            const uint16_t h = dt == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
            std::memcpy(q, &h, 2);
          }
        };
        for (int64_t i = 0; i < n; ++i) put(i, 0.5f * static_cast<float>(i % 100) - 20);  // finite, some large
        const int64_t at = n - 1 - (n / 3);
        if (bad > 0) put(at, values[bad]);
        const Tensor t = Tensor::view(dt, {n}, p, nullptr);
        EXPECT_EQ(first_non_finite(t), bad > 0 ? at : -1) << dtype_name(dt) << " n=" << n << " bad=" << bad;
      }
    }
  }
  const int32_t ints[] = {0x7f800000, -1};
  EXPECT_EQ(first_non_finite(Tensor::view(DType::I32, {2}, ints, nullptr)), -1);  // not floats
  // the largest finite values are finite
  const float big[] = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
  EXPECT_EQ(first_non_finite(Tensor::view(DType::F32, {2}, big, nullptr)), -1);
}

TEST(NonFinite, ModelWeightsAndCheckpointFilesNameTheTensor) {
  Scratch s;
  ModelConfig cfg = preset("tiny");
  cfg.dim = 32;
  cfg.n_heads = 2;
  cfg.n_layers = 2;
  cfg.hidden_dim = 64;
  ModelWeights w = ModelWeights::random(cfg, 1);
  EXPECT_FALSE(first_non_finite(w).has_value());
  const std::string clean = (s.dir / "clean.safetensors").string();
  w.save(clean);
  EXPECT_FALSE(first_non_finite(SafeTensorsFile::open(clean)).has_value());

  const auto& table = w.layout().tensors();
  size_t pick = 0;
  while (table[pick].name.find("layers.1.") != 0) ++pick;
  w.arena()[table[pick].offset + 3] = -std::numeric_limits<float>::infinity();
  const auto bad = first_non_finite(w);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->tensor, table[pick].name);
  EXPECT_EQ(bad->index, 3);
  EXPECT_EQ(bad->describe(), "tensor '" + table[pick].name + "' holds -inf at element 3");
  const std::string dirty = (s.dir / "dirty.safetensors").string();
  w.save(dirty);
  const auto in_file = first_non_finite(SafeTensorsFile::open(dirty));
  ASSERT_TRUE(in_file.has_value());
  EXPECT_EQ(in_file->describe(), bad->describe());
}

}  // namespace
}  // namespace lm
