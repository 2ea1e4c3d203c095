// PyTorch checkpoints (io/torch_pth.h, io/zip.h) and Meta's model-parallel shards
// (convert/meta_shards.h), on the files tests/fixtures/make_meta_pth.py writes with torch.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "convert/names.h"
#include "convert/source.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "fixture_util.h"
#include "io/safetensors.h"
#include "io/torch_pth.h"
#include "io/zip.h"

namespace lm {
namespace {

namespace fs = std::filesystem;
using convert::Graph;
using convert::Node;

fs::path pth(const char* name) { return fixture::dir() / "torch_pth" / name; }

std::vector<uint8_t> bytes_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string parse_error(std::vector<uint8_t> bytes, const std::string& name = "t.pth") {
  try {
    const TorchCheckpoint ck = TorchCheckpoint::parse(MappedFile::from_bytes(std::move(bytes), name));
    for (const TorchTensorInfo& t : ck.tensors()) ck.get(t);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::vector<float> floats(const Tensor& t) {
  const Tensor f = t.to_f32();
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

void expect_dtypes_case(const TorchCheckpoint& ck) {
  ASSERT_EQ(ck.tensors().size(), 8u);
  EXPECT_EQ(ck.tensors()[0].name, "f32");  // the pickle's order
  std::vector<float> a(12);
  for (int i = 0; i < 12; ++i) a[i] = i / 8.0f;
  const Tensor f32 = ck.get("f32");
  EXPECT_EQ(f32.shape(), (Shape{3, 4}));
  EXPECT_EQ(floats(f32), a);
  EXPECT_EQ(floats(ck.get("f32_shared")), a);
  EXPECT_EQ(ck.find("f32_shared")->offset, ck.find("f32")->offset);  // one storage, one place
  const Tensor h = ck.get("f16_offset");
  EXPECT_EQ(h.dtype(), DType::F16);
  EXPECT_EQ(floats(h), (std::vector<float>{4, 5, 6}));
  const Tensor b = ck.get("bf16");
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.shape(), (Shape{2, 3}));
  EXPECT_EQ(floats(b), (std::vector<float>{-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f}));
  const TorchTensorInfo* tr = ck.find("transposed");
  ASSERT_TRUE(tr);
  EXPECT_FALSE(tr->contiguous);
  EXPECT_EQ(tr->stride, (std::vector<int64_t>{1, 4}));
  const Tensor t = ck.get(*tr);
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  std::vector<float> at(12);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) at[r * 3 + c] = a[c * 4 + r];
  EXPECT_EQ(floats(t), at);
  EXPECT_EQ(ck.get("scalar").shape(), Shape{});
  EXPECT_EQ(floats(ck.get("scalar")), std::vector<float>{1.5f});
  EXPECT_EQ(ck.get("empty").shape(), (Shape{0, 3}));
  const Tensor i = ck.get("i64");
  EXPECT_EQ(i.dtype(), DType::I64);
  // Aligned for its type even where the zip entry is not (zip64.pth's are not).
  EXPECT_EQ(reinterpret_cast<uintptr_t>(i.raw()) % alignof(int64_t), 0u);
  EXPECT_EQ(i.data<int64_t>()[2], 2);
}

TEST(TorchPth, ReadsDtypesOffsetsSharedStoragesAndStridedViews) {
  expect_dtypes_case(TorchCheckpoint::open(pth("dtypes.pth").string()));
}

TEST(TorchPth, ReadsZip64Archives) {
  // Every size and offset through the zip64 extra fields and the zip64 end record.
  expect_dtypes_case(TorchCheckpoint::open(pth("zip64.pth").string()));
}

TEST(TorchPth, RefusesWhatIsNotAStateDictInOneLine) {
  const std::map<std::string, std::string> cases = {
      {"legacy.pth", "legacy format (before torch 1.6) is not read"},
      {"list.pth", "holds a list, not a state dict"},
      {"nested.pth", "entry 'model' is a dict, not a tensor"},
      {"code.pth", "refers to posix.system, which a state dict does not use: refused (lmkit runs no pickled code)"},
      {"deflated.pth", "is compressed (method 8)"},
  };
  for (const auto& [file, want] : cases) {
    const std::string got = parse_error(bytes_of(pth(file.c_str())), file);
    EXPECT_NE(got.find(want), std::string::npos) << file << ": " << got;
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
    EXPECT_EQ(got.rfind("'" + file + "'", 0), 0u) << got;  // names the file first
  }
}

TEST(TorchPth, EveryTruncationAndEveryByteFlipEndsInAnError) {
  // No crash, no hang, no exception but lm::Error, whatever byte is cut or changed (ASan builds
  // check the reads too; tests/fuzz/fuzz_torch_pth.cpp goes further).
  const std::vector<uint8_t> good = bytes_of(pth("dtypes.pth"));
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(parse_error(std::move(cut)), "") << n;
  }
  size_t accepted = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> b = good;
    b[i] ^= 0x5a;
    accepted += parse_error(std::move(b)).empty();
  }
  EXPECT_GT(accepted, 0u);  // data bytes and unchecked header fields: still a checkpoint
  EXPECT_LT(accepted, good.size());
}

TEST(TorchPth, PickleErrorsNameTheByte) {
  std::vector<uint8_t> b = bytes_of(pth("dtypes.pth"));
  const ZipArchive zip = ZipArchive::parse(MappedFile::from_bytes(b, "t.pth"));
  const ZipEntry* pkl = zip.find("dtypes/data.pkl");
  ASSERT_TRUE(pkl);
  b[pkl->offset + 2] = 'i';  // INST: a class instantiation, after PROTO 2
  EXPECT_EQ(parse_error(b), "'t.pth': dtypes/data.pkl: byte 2: opcode 0x69 ('i') is not one a state dict uses: refused (lmkit runs no pickled code)");
}

// ---- as a conversion source ----

std::map<std::string, Tensor> tensors_of(const Graph& g) {
  std::map<std::string, Tensor> out;
  for (const Node& n : g.nodes) out[n.name] = n.load();
  return out;
}

void expect_same(const std::map<std::string, Tensor>& got, const fs::path& want_file, const std::string& what) {
  const SafeTensorsFile want = SafeTensorsFile::open(want_file.string());
  EXPECT_EQ(got.size(), want.tensors().size()) << what;
  for (const TensorInfo& t : want.tensors()) {
    const auto it = got.find(t.name);
    if (it == got.end()) {
      ADD_FAILURE() << what << ": missing " << t.name;
      continue;
    }
    const Tensor w = want.get(t.name);
    ASSERT_EQ(it->second.shape(), w.shape()) << what << ": " << t.name;
    ASSERT_EQ(it->second.dtype(), w.dtype()) << what << ": " << t.name;
    EXPECT_EQ(std::memcmp(it->second.raw(), w.raw(), w.nbytes()), 0) << what << ": " << t.name;
  }
}

TEST(MetaShards, Llama4TwoTorchShardsMergeIntoTheSingleShardModel) {
  const ModelConfig cfg = config_from_json(
      *SafeTensorsFile::open((fixture::dir() / "llama4_meta" / "lmkit.safetensors").string()).metadata_value("lmkit.config"), "fixture");
  for (const char* form : {"pth_1", "pth_2"}) {
    convert::Source src = convert::open_source((fixture::dir() / "llama4_meta" / form).string());
    EXPECT_NE(src.container.find("PyTorch"), std::string::npos) << src.container;
    Graph g = src.graph;
    convert::apply_rules(g, convert::import_rules(convert::Layout::Meta), &cfg);
    expect_same(tensors_of(g), fixture::dir() / "llama4_meta" / "lmkit.safetensors", form);
  }
}

TEST(MetaShards, Llama2TwoTorchShardsMergeByMetasRules) {
  convert::Source src = convert::open_source((fixture::dir() / "llama2_meta_pth").string());
  EXPECT_EQ(src.container, "PyTorch (torch.save), Meta's 2 model-parallel shards");
  std::map<std::string, std::string> ops;
  for (const Node& n : src.graph.nodes) ops[n.name] = n.ops.at(0);
  EXPECT_EQ(ops["tok_embeddings.weight"], "merged from 2 shards on dim 1");  // ParallelEmbedding
  EXPECT_EQ(ops["layers.0.attention.wo.weight"], "merged from 2 shards on dim 1");
  EXPECT_EQ(ops["layers.0.feed_forward.w1.weight"], "merged from 2 shards on dim 0");
  EXPECT_EQ(ops["norm.weight"], "replicated in 2 shards");
  expect_same(tensors_of(src.graph), fixture::dir() / "llama2" / "model.safetensors", "llama2");
}

struct TempDir {
  fs::path path;
  TempDir() {
    char templ[] = "/tmp/lmkit_pth_XXXXXX";
    path = ::mkdtemp(templ);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string open_error(const fs::path& p) {
  try {
    convert::Source src = convert::open_source(p.string());
    for (const Node& n : src.graph.nodes) n.load();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(MetaShards, RefusesMissingShardsParamsAndMismatchedSlices) {
  const fs::path from = fixture::dir() / "llama2_meta_pth";
  TempDir t;
  for (const char* f : {"params.json", "consolidated.00.pth", "consolidated.01.pth"}) fs::copy_file(from / f, t.path / f);
  fs::rename(t.path / "consolidated.01.pth", t.path / "consolidated.02.pth");
  EXPECT_NE(open_error(t.path).find("no consolidated.01 (a shard is missing)"), std::string::npos) << open_error(t.path);
  fs::rename(t.path / "consolidated.02.pth", t.path / "consolidated.01.pth");
  fs::remove(t.path / "params.json");
  EXPECT_NE(open_error(t.path).find("no readable params.json"), std::string::npos) << open_error(t.path);
  // A replicated tensor that differs between the shards: refused when read.
  fs::copy_file(from / "params.json", t.path / "params.json");
  fs::copy_file(fixture::dir() / "llama4_meta" / "pth_2" / "consolidated.01.pth", t.path / "consolidated.01.pth",
                fs::copy_options::overwrite_existing);
  EXPECT_NE(open_error(t.path).find("holds"), std::string::npos) << open_error(t.path);
}

}  // namespace
}  // namespace lm
