// llama2.c checkpoints: v0 write/read (tied and untied), v1 and v2 read, and every corrupt class;
// the container (io/llama2c.h) with the conversion's config mapping and names (lib/convert).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "convert/config_io.h"
#include "convert/names.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/llama2c.h"
#include "io/stream.h"
#include "model/params.h"

namespace lm {
namespace {

ModelConfig tiny(bool tied) {
  ModelConfig c;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = 11;
  c.hidden_dim = 12;
  c.max_seq_len = 5;
  c.tie_embeddings = tied;
  return c;
}

// Every tensor of `c` filled with a distinct ramp, by lmkit name.
std::map<std::string, Tensor> weights(const ModelConfig& c) {
  std::map<std::string, Tensor> w;
  float v = 0;
  const ParameterLayout layout(c);
  for (const ParamInfo& p : layout.tensors()) {
    Tensor t = Tensor::zeros(DType::F32, p.shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<float>()[i] = (v += 0.25f);
    w[p.name] = t;
  }
  return w;
}

std::vector<uint8_t> write_v0(const ModelConfig& c, const std::map<std::string, Tensor>& w) {
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  write_llama2c_v0(*sink, convert::llama2c_header(c),
                   [&](const std::string& array, int64_t layer) { return w.at(convert::llama2c_tensor_name(array, layer)); });
  return bytes;
}

std::string parse_error(std::vector<uint8_t> bytes) {
  try {
    Llama2cFile::parse(MappedFile::from_bytes(std::move(bytes), "t.bin"));
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(Llama2c, V0RoundTripTiedAndUntied) {
  for (bool tied : {true, false}) {
    const ModelConfig c = tiny(tied);
    const auto w = weights(c);
    const std::vector<uint8_t> bytes = write_v0(c, w);
    int32_t header[7];
    std::memcpy(header, bytes.data(), 28);
    EXPECT_EQ(header[5], tied ? 11 : -11);  // the sign says whether wcls is stored
    const int64_t HS = 4;
    const uint64_t floats = ParameterLayout(c).num_parameters() + 2 * c.max_seq_len * HS / 2;
    EXPECT_EQ(bytes.size(), 28 + 4 * floats);

    const Llama2cFile f = Llama2cFile::parse(MappedFile::from_bytes(bytes, "mem"));
    EXPECT_EQ(f.header().version, 0);
    EXPECT_EQ(f.header().shared_classifier, tied);
    const ModelConfig back = convert::config_from_llama2c(f.header());
    EXPECT_EQ(back.dim, 8);
    EXPECT_EQ(back.kv_heads(), 1);
    EXPECT_EQ(back.ffn_hidden(), 12);
    EXPECT_EQ(back.tie_embeddings, tied);
    EXPECT_EQ(back.max_seq_len, 5);
    EXPECT_EQ(f.entries().size(), w.size());
    for (const auto& e : f.entries()) {
      const std::string name = convert::llama2c_tensor_name(e.array, e.layer);
      const Tensor got = f.get(e);
      const Tensor& want = w.at(name);
      ASSERT_EQ(got.shape(), want.shape()) << name;
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << name;
    }
    EXPECT_EQ(write_v0(back, w), bytes);  // rewriting what was read gives the same bytes
  }
}

// A v1 or v2 file assembled by hand in export.py's order.
std::vector<uint8_t> write_v12(int version, const ModelConfig& c, const std::map<std::string, Tensor>& w, int32_t group) {
  std::vector<uint8_t> b(256, 0);
  const uint32_t magic = 0x616b3432;
  std::memcpy(b.data(), &magic, 4);
  std::memcpy(b.data() + 4, &version, 4);
  const int32_t p[7] = {8, 12, 2, 2, 1, 11, 5};
  std::memcpy(b.data() + 8, p, sizeof p);
  b[36] = c.tie_embeddings ? 1 : 0;
  if (version == 2) std::memcpy(b.data() + 37, &group, 4);
  auto f32 = [&](const Tensor& t) { b.insert(b.end(), (const uint8_t*)t.raw(), (const uint8_t*)t.raw() + t.nbytes()); };
  auto q8 = [&](const Tensor& t) {  // int8 = round(x / s) with s = 1/16: exact for the ramps below
    for (int64_t i = 0; i < t.numel(); ++i) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(t.data<float>()[i] * 16)));
    for (int64_t g = 0; g < t.numel() / group; ++g) {
      const float s = 1.0f / 16;
      b.insert(b.end(), (const uint8_t*)&s, (const uint8_t*)&s + 4);
    }
  };
  auto put = [&](const Tensor& t, bool q) {
    if (q)
      q8(t);
    else
      f32(t);
  };
  auto layers = [&](const char* rest, bool q) {
    for (int l = 0; l < 2; ++l) put(w.at("layers." + std::to_string(l) + "." + rest), q);
  };
  layers("attention_norm.weight", false);
  layers("ffn_norm.weight", false);
  f32(w.at("norm.weight"));
  const bool q = version == 2;
  put(w.at("tok_embeddings.weight"), q);
  for (const char* r : {"attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
                        "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight"})
    layers(r, q);
  if (!c.tie_embeddings) put(w.at("output.weight"), q);
  return b;
}

TEST(Llama2c, ReadsV1AndV2) {
  for (int version : {1, 2}) {
    const ModelConfig c = tiny(false);
    auto w = weights(c);
    for (auto& [name, t] : w)  // small multiples of 1/16 so Q8 with scale 1/16 is exact
      for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<float>()[i] = static_cast<float>((i * 7 + static_cast<int64_t>(name.size())) % 200 - 100) / 16;
    const Llama2cFile f = Llama2cFile::parse(MappedFile::from_bytes(write_v12(version, c, w, 4), "mem"));
    EXPECT_EQ(f.header().version, version);
    EXPECT_FALSE(f.header().shared_classifier);
    EXPECT_EQ(f.entries().size(), w.size());
    for (const auto& e : f.entries()) {
      const Tensor got = f.get(e);
      const std::string name = convert::llama2c_tensor_name(e.array, e.layer);
      EXPECT_EQ(std::memcmp(got.raw(), w.at(name).raw(), got.nbytes()), 0) << "v" << version << " " << name;
    }
  }
}

TEST(Llama2c, RejectsEveryMalformation) {
  const ModelConfig c = tiny(true);
  const auto good = write_v0(c, weights(c));
  auto patched = [&](int field, int32_t value) {
    auto b = good;
    std::memcpy(b.data() + 4 * field, &value, 4);
    return b;
  };
  auto cut = good;
  cut.resize(cut.size() - 4);
  auto extra = good;
  extra.push_back(0);
  auto v1 = write_v12(1, tiny(false), weights(tiny(false)), 4);
  auto v1_bad_version = v1;
  v1_bad_version[4] = 7;
  auto v1_bad_shared = v1;
  v1_bad_shared[36] = 5;
  auto v1_negative_vocab = v1;
  const int32_t neg = -11;
  std::memcpy(v1_negative_vocab.data() + 28, &neg, 4);
  auto v2_bad_group = write_v12(2, tiny(false), weights(tiny(false)), 4);
  const int32_t group = 5;
  std::memcpy(v2_bad_group.data() + 37, &group, 4);
  auto v1_short = v1;
  v1_short.resize(100);
  struct Case {
    std::vector<uint8_t> bytes;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{1, 2, 3}, "too short for the 28-byte header"},
      {cut, "truncated llama2.c v0 checkpoint"},
      {extra, "1 trailing bytes"},
      {patched(0, 0), "dim is 0"},
      {patched(3, 3), "not a multiple of n_heads 3"},
      {patched(4, 3), "not a multiple of n_kv_heads 3"},
      {patched(6, -1), "seq_len is -1"},
      {patched(0, 6), "head size 3 is odd"},
      {patched(0, 1024), "truncated llama2.c v0 checkpoint: the header implies"},
      {patched(0, 1 << 30), "the header implies at least 47244640284 bytes (to the end of token_embedding_table)"},
      {patched(2, 0x7d4c7b01), "truncated"},  // 2^31 layers: refused before an entry per layer is made
      {v1_bad_version, "unknown llama2.c version 7"},
      {v1_bad_shared, "shared_classifier byte is 5"},
      {v1_negative_vocab, "must be positive"},
      {v2_bad_group, "not a multiple of group_size 5"},
      {v1_short, "truncated llama2.c header"},
  };
  for (const auto& k : cases) {
    const std::string err = parse_error(k.bytes);
    EXPECT_NE(err.find(k.expect), std::string::npos) << "expected '" << k.expect << "', got '" << err << "'";
    EXPECT_NE(err.find("t.bin"), std::string::npos) << err;
  }
}

TEST(Llama2c, V0RefusesWhatItCannotStore) {
  ModelConfig c = tiny(true);
  EXPECT_TRUE(convert::llama2c_unsupported(c).empty());
  c.norm_eps = 1e-6;
  c.attn_bias = true;
  const auto why = convert::llama2c_unsupported(c);
  ASSERT_EQ(why.size(), 2u);
  try {
    convert::llama2c_header(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("attention biases"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("norm_eps"), std::string::npos) << e.hint();
  }
}

TEST(Llama2c, WriterRefusesAHeaderTheReaderWould) {
  Llama2cHeader h = convert::llama2c_header(tiny(true));
  h.n_heads = 3;  // dim 8 is not a multiple of 3
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  try {
    write_llama2c_v0(*sink, h, [](const std::string&, int64_t) { return Tensor(); });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("not a multiple of n_heads 3"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(bytes.empty());
}

TEST(Llama2c, ArraysByLayer) {
  const Llama2cFile f = Llama2cFile::parse(MappedFile::from_bytes(write_v0(tiny(false), weights(tiny(false))), "mem"));
  std::vector<std::string> got;
  for (const auto& e : f.entries()) got.push_back(e.array + "/" + std::to_string(e.layer));
  EXPECT_EQ(got.front(), "token_embedding_table/-1");
  EXPECT_EQ(got[1], "rms_att_weight/0");
  EXPECT_EQ(got[2], "rms_att_weight/1");
  EXPECT_EQ(got.back(), "wcls/-1");
  EXPECT_EQ(convert::llama2c_tensor_name("wq", 1), "layers.1.attention.wq.weight");
  EXPECT_EQ(convert::llama2c_tensor_name("rms_final_weight", -1), "norm.weight");
  EXPECT_THROW(convert::llama2c_tensor_name("freq_cis", -1), Error);
}

TEST(Llama2c, PlausibleHeaderProbe) {
  const ModelConfig c = tiny(true);
  const auto good = write_v0(c, weights(c));
  EXPECT_TRUE(Llama2cFile::plausible_v0_header(good.data(), good.size()));
  const uint8_t junk[28] = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_FALSE(Llama2cFile::plausible_v0_header(junk, sizeof junk));
  EXPECT_FALSE(Llama2cFile::has_magic(good.data(), good.size()));
}

}  // namespace
}  // namespace lm
