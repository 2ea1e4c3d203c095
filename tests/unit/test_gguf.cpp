// GGUF: writer/reader round trip, Q8_0, and one hand-made corrupt file per failure class.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/stream.h"

namespace lm {
namespace {

// A little-endian GGUF byte builder for hand-made files.
struct Bytes {
  std::vector<uint8_t> b;
  template <class T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

// Header + one u32 kv + one F32 [4] tensor, with hooks to break each part.
struct Spec {
  uint32_t version = 3;
  uint64_t n_tensors = 1, n_kv = 1;
  std::string key = "general.alignment";
  uint32_t value_type = 4;  // u32
  uint32_t value = 32;
  std::string name = "t";
  uint32_t n_dims = 1;
  uint64_t dim0 = 4;
  uint32_t type = 0;
  uint64_t offset = 0;
  size_t data = 16;
};

std::vector<uint8_t> build(const Spec& s) {
  Bytes x;
  x.b = {'G', 'G', 'U', 'F'};
  x.put(s.version).put(s.n_tensors).put(s.n_kv);
  x.str(s.key).put(s.value_type).put(s.value);
  x.str(s.name).put(s.n_dims);
  for (uint32_t d = 0; d < s.n_dims; ++d) x.put<uint64_t>(d == 0 ? s.dim0 : 1);
  x.put(s.type).put(s.offset);
  x.pad(32).zeros(s.data);
  return x.b;
}

std::string parse_error(std::vector<uint8_t> bytes) {
  try {
    GGUFFile::parse(MappedFile::from_bytes(std::move(bytes), "t.gguf"));
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(GGUF, WriteThenReadRoundTrip) {
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str("llama"));
  w.set("llama.block_count", GGUFValue::u32(2));
  w.set("llama.rope.freq_base", GGUFValue::f32(10000.0f));
  w.set("flag", GGUFValue::boolean(true));
  GGUFValue arr;
  arr.type = GGUFValue::Array;
  arr.elem = GGUFValue::String;
  arr.array = {GGUFValue::str("a"), GGUFValue::str("bc")};
  w.set("tokenizer.ggml.tokens", arr);
  w.set("llama.block_count", GGUFValue::u32(3));  // replaces
  std::vector<float> m(2 * 64);
  for (size_t i = 0; i < m.size(); ++i) m[i] = std::sin(0.1f * i);
  w.add_tensor("m", GGMLType::F32, {2, 64}, [&](ByteSink& s) { s.write(m.data(), m.size() * 4); });
  w.add_tensor("q", GGMLType::Q8_0, {2, 64}, [&](ByteSink& s) {
    std::vector<uint8_t> q(ggml_nbytes(GGMLType::Q8_0, {2, 64}));
    quantize_q8_0(m.data(), 128, q.data());
    s.write(q.data(), q.size());
  });
  w.add_tensor("h", GGMLType::F16, {3}, [](ByteSink& s) {
    const uint16_t v[3] = {0x3c00, 0x4000, 0x4200};
    s.write(v, sizeof v);
  });
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  w.write(*sink);

  const GGUFFile g = GGUFFile::parse(MappedFile::from_bytes(bytes, "mem"));
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 5u);
  EXPECT_EQ(g.find("llama.block_count")->as_int("k"), 3);
  EXPECT_EQ(g.find("general.architecture")->as_string("k"), "llama");
  EXPECT_FLOAT_EQ(g.find("llama.rope.freq_base")->as_float("k"), 10000.0f);
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->array.size(), 2u);
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->array[1].s, "bc");
  ASSERT_EQ(g.tensors().size(), 3u);
  EXPECT_EQ(g.tensors()[0].dims, (std::vector<uint64_t>{64, 2}));  // ggml order
  EXPECT_EQ(g.tensors()[0].shape(), (Shape{2, 64}));
  EXPECT_EQ(g.tensors()[1].offset % 32, 0u);
  const Tensor t = g.get(g.tensors()[0]);
  EXPECT_EQ(std::memcmp(t.raw(), m.data(), 512), 0);
  const Tensor q = g.get(g.tensors()[1]);  // dequantized
  EXPECT_EQ(q.dtype(), DType::F32);
  for (int i = 0; i < 128; ++i) EXPECT_NEAR(q.data<float>()[i], m[i], 1.0f / 127) << i;
  EXPECT_EQ(g.get(g.tensors()[2]).dtype(), DType::F16);
}

TEST(GGUF, Q8RoundTripIsWithinHalfAStep) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = (i % 7 - 3) * 0.37f + (i == 40 ? 5.0f : 0.0f);
  std::vector<uint8_t> q(2 * kQ8BlockBytes);
  quantize_q8_0(x.data(), 64, q.data());
  std::vector<float> y(64);
  dequantize_q8_0(q.data(), 64, y.data());
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    for (int j = 0; j < 32; ++j) EXPECT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), amax / 127 * 0.51f);
  }
  std::vector<float> zeros(32, 0.0f);  // an all-zero block has scale 0, no NaN
  quantize_q8_0(zeros.data(), 32, q.data());
  dequantize_q8_0(q.data(), 32, y.data());
  EXPECT_EQ(y[0], 0.0f);
}

TEST(GGUF, AcceptsTheHandMadeBaseline) { EXPECT_EQ(parse_error(build(Spec{})), ""); }

TEST(GGUF, RejectsEveryMalformation) {
  struct Case {
    std::vector<uint8_t> bytes;
    std::string expect;
  };
  auto with = [](auto f) {
    Spec s;
    f(s);
    return build(s);
  };
  std::vector<uint8_t> cut = build(Spec{});
  cut.resize(70);  // inside the first tensor's dimensions
  std::vector<uint8_t> trailing = build(Spec{});
  trailing.resize(trailing.size() + 64, 0);
  std::vector<uint8_t> bad_magic = build(Spec{});
  bad_magic[0] = 'X';
  const std::vector<Case> cases = {
      {{'G', 'G'}, "no 'GGUF' magic"},
      {bad_magic, "no 'GGUF' magic"},
      {with([](Spec& s) { s.version = 1; }), "version 1 is not supported"},
      {with([](Spec& s) { s.version = 4; }), "unknown GGUF version 4"},
      {cut, "truncated"},
      {with([](Spec& s) { s.n_kv = uint64_t(1) << 60; }), "larger than the file can hold"},
      {with([](Spec& s) { s.n_tensors = uint64_t(1) << 60; }), "larger than the file can hold"},
      {with([](Spec& s) { s.value_type = 99; }), "unknown value type 99"},
      {with([](Spec& s) { s.value_type = 5; }), "general.alignment has type i32, expected u32"},
      {with([](Spec& s) { s.value = 0; }), "not a power of two"},
      {with([](Spec& s) { s.value = 48; }), "not a power of two"},
      {with([](Spec& s) { s.n_dims = 0; }), "0 dimensions"},
      {with([](Spec& s) { s.n_dims = 5; }), "5 dimensions"},
      {with([](Spec& s) { s.type = 77; }), "unknown ggml type 77"},
      {with([](Spec& s) { s.type = 13; }), "ggml type Q5_K is not supported"},
      {with([](Spec& s) { s.type = 8; }), "not a multiple of the Q8_0 block size"},
      {with([](Spec& s) { s.offset = 32; }), "data offset 32, expected 0"},
      {with([](Spec& s) { s.name = std::string(64, 'n'); }), "the limit is 63"},
      {with([](Spec& s) { s.data = 8; }), "truncated: tensors need 16 data bytes"},
      {trailing, "trailing bytes"},
      {with([](Spec& s) { s.dim0 = uint64_t(1) << 62; }), "overflows"},
      {with([](Spec& s) { s.key = ""; }), "is empty"},
  };
  for (const auto& c : cases) {
    const std::string err = parse_error(c.bytes);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << err << "'";
    if (!err.empty()) {
      EXPECT_NE(err.find("t.gguf"), std::string::npos) << err;
    }
  }
}

TEST(GGUF, RejectsDuplicatesBadBoolsAndNestedArrays) {
  auto file = [](const std::function<void(Bytes&)>& kvs, uint64_t n_kv, bool two_tensors = false) {
    Bytes x;
    x.b = {'G', 'G', 'U', 'F'};
    x.put<uint32_t>(3).put<uint64_t>(two_tensors ? 2 : 0).put<uint64_t>(n_kv);
    kvs(x);
    if (two_tensors)
      for (int i = 0; i < 2; ++i) x.str("t").put<uint32_t>(1).put<uint64_t>(8).put<uint32_t>(0).put<uint64_t>(i * 32);
    x.pad(32);
    if (two_tensors) x.zeros(64);
    return x.b;
  };
  EXPECT_NE(parse_error(file([](Bytes& x) { x.str("a").put<uint32_t>(4).put<uint32_t>(1).str("a").put<uint32_t>(4).put<uint32_t>(2); }, 2))
                .find("duplicate key 'a'"),
            std::string::npos);
  EXPECT_NE(parse_error(file([](Bytes& x) { x.str("b").put<uint32_t>(7).put<uint8_t>(2); }, 1)).find("bool value 2"),
            std::string::npos);
  EXPECT_NE(parse_error(file([](Bytes& x) { x.str("c").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(0); }, 1))
                .find("arrays of arrays"),
            std::string::npos);
  EXPECT_NE(parse_error(file([](Bytes& x) { x.str("d").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1'000'000); }, 1))
                .find("larger than the file"),
            std::string::npos);
  EXPECT_NE(parse_error(file([](Bytes& x) { x.str("s").put<uint32_t>(8).put<uint64_t>(1'000'000); }, 1)).find("truncated"),
            std::string::npos);
  EXPECT_NE(parse_error(file([](Bytes&) {}, 0, true)).find("duplicate tensor 't'"), std::string::npos);
}

TEST(GGUF, WriterRejectsWhatReadersRefuse) {
  GGUFWriter w;
  auto nothing = [](ByteSink&) {};
  EXPECT_THROW(w.add_tensor(std::string(64, 'x'), GGMLType::F32, {4}, nothing), Error);
  EXPECT_THROW(w.add_tensor("q", GGMLType::Q8_0, {2, 48}, nothing), Error);  // 48 % 32
  EXPECT_THROW(w.add_tensor("five", GGMLType::F32, {1, 1, 1, 1, 1}, nothing), Error);
  w.add_tensor("a", GGMLType::F32, {4}, nothing);
  EXPECT_THROW(w.add_tensor("a", GGMLType::F32, {4}, nothing), Error);
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  EXPECT_THROW(w.write(*sink), Error);  // 'a' produced 0 bytes, not 16
}

}  // namespace
}  // namespace lm
