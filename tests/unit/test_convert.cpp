// The conversion rule engine, the name table's layouts (every export undone by its import),
// layout detection, config conventions, and planning on the model fixtures.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "convert/config_io.h"
#include "convert/convert.h"
#include "convert/names.h"
#include "convert/rules.h"
#include "convert/source.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/stream.h"
#include "core/error.h"
#include "model/config_formats.h"
#include "model/config_infer.h"
#include "model/params.h"
#include "model/presets.h"

namespace lm::convert {
namespace {

// A node holding `t` itself.
Node node(const std::string& name, const Tensor& t) {
  Node n;
  n.name = name;
  n.dtype = t.dtype();
  n.shape = t.shape();
  n.from.push_back({name, t.dtype(), t.shape()});
  n.load = [t] { return t; };
  return n;
}

Tensor ramp(Shape shape, float start = 0) {
  Tensor t = Tensor::zeros(DType::F32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<float>()[i] = start + static_cast<float>(i);
  return t;
}

std::vector<float> values(const Tensor& t) {
  const Tensor f = cast_tensor(t, DType::F32);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const Node& find(const Graph& g, const std::string& name) {
  for (const Node& n : g.nodes)
    if (n.name == name) return n;
  throw std::runtime_error("no node " + name);
}

// Every tensor of `cfg` under lmkit's names, each with distinct values.
Graph lmkit_graph(const ModelConfig& cfg) {
  Graph g;
  float start = 0;
  const ParameterLayout layout(cfg);
  for (const ParamInfo& p : layout.tensors()) {
    g.nodes.push_back(node(p.name, ramp(p.shape, start)));
    start += 1000;
  }
  return g;
}

ModelConfig small(const std::string& kind) {
  ModelConfig c;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.vocab_size = 10;
  c.hidden_dim = 24;
  if (kind == "gqa") c.n_kv_heads = 2;
  if (kind == "soma") {
    c.norm_type = NormType::LayerNorm;
    c.norm_bias = c.attn_bias = c.ffn_bias = c.output_bias = true;
    c.ffn_type = FfnType::GELU;
  }
  if (kind == "qk") {
    c.qk_norm = true;
    c.head_dim = 8;
    c.attn_bias = true;
    c.n_kv_heads = 1;
    c.tie_embeddings = true;
  }
  return c;
}

TEST(ConvertRules, ParseErrorsQuoteTheRule) {
  EXPECT_NE(error_of([] { parse_rule("rename", "noequals"); }).find("expected REGEX=REPLACEMENT"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("rename", "([=x"); }).find("invalid regular expression"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("split", "a=b"); }).find("at least two parts"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("split", "a=b,c@x"); }).find("after '@'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("split", "a=b:0,c"); }).find("positive number"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("fuse", "a=b"); }).find("at least two inputs"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("rope-to-half", "w=z"); }).find("q (n_heads), k"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("cast", "f64"); }).find("f32, f16 or bf16"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("twist", "x"); }).find("unknown rule 'twist'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rule("drop", ""); }).find("--drop ''"), std::string::npos);
  try {
    parse_rule("rename", "x");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
  }
}

TEST(ConvertRules, RenameDropAndCollisions) {
  Graph g;
  g.nodes = {node("model.layers.3.q", ramp({2})), node("model.layers.12.q", ramp({2})), node("junk.inv_freq", ramp({1}))};
  apply_rule(g, parse_rule("rename", R"(^model\.layers\.(\d+)\.=layers.\1.)"), nullptr);
  apply_rule(g, parse_rule("rename", R"(\.q$=.wq)"), nullptr);
  apply_rule(g, parse_rule("rename", R"(^layers\.(1)2=L$1)"), nullptr);  // $1 works too
  apply_rule(g, parse_rule("drop", "*.inv_freq"), nullptr);
  ASSERT_EQ(g.nodes.size(), 2u);
  EXPECT_EQ(g.nodes[0].name, "layers.3.wq");
  EXPECT_EQ(g.nodes[1].name, "L1.wq");
  ASSERT_EQ(g.dropped.size(), 1u);
  EXPECT_EQ(g.dropped[0].name, "junk.inv_freq");
  const std::string err = error_of([&] { apply_rule(g, parse_rule("rename", ".*=same"), nullptr); });
  EXPECT_NE(err.find("gives two tensors the name 'same'"), std::string::npos) << err;
}

TEST(ConvertRules, TransposeSplitFuse) {
  Graph g;
  g.nodes = {node("w", ramp({2, 3})), node("v", ramp({4}))};
  apply_rule(g, parse_rule("transpose", "w"), nullptr);
  EXPECT_EQ(find(g, "w").shape, (Shape{3, 2}));
  EXPECT_EQ(values(find(g, "w").load()), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_NE(error_of([&] { apply_rule(g, parse_rule("transpose", "v"), nullptr); }).find("needs 2 or 3 dimensions"), std::string::npos);

  Graph s;
  s.nodes = {node("qkv", ramp({6, 2}))};
  apply_rule(s, parse_rule("split", "qkv=a:3,b,c:1"), nullptr);  // b takes what is left
  EXPECT_EQ(find(s, "a").shape, (Shape{3, 2}));
  EXPECT_EQ(find(s, "b").shape, (Shape{2, 2}));
  EXPECT_EQ(values(find(s, "c").load()), (std::vector<float>{10, 11}));
  apply_rule(s, parse_rule("fuse", "a,b,c=qkv"), nullptr);
  ASSERT_EQ(s.nodes.size(), 1u);
  EXPECT_EQ(values(s.nodes[0].load()), values(ramp({6, 2})));

  Graph cols;
  cols.nodes = {node("m", ramp({2, 4}))};
  apply_rule(cols, parse_rule("split", "m=x,y@1"), nullptr);
  EXPECT_EQ(values(find(cols, "y").load()), (std::vector<float>{2, 3, 6, 7}));
  apply_rule(cols, parse_rule("fuse", "x,y=m@1"), nullptr);
  EXPECT_EQ(values(find(cols, "m").load()), values(ramp({2, 4})));

  Graph bad;
  bad.nodes = {node("t", ramp({5, 2})), node("u", ramp({2, 3}))};
  EXPECT_NE(error_of([&] { apply_rule(bad, parse_rule("split", "t=a,b"), nullptr); }).find("not a multiple of 2"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_rule(bad, parse_rule("split", "t=a:2,b:2"), nullptr); }).find("shape mismatch"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_rule(bad, parse_rule("split", "t=a,b@2"), nullptr); }).find("no dimension 2"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_rule(bad, parse_rule("fuse", "t,nope=x"), nullptr); }).find("no partner 'nope'"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_rule(bad, parse_rule("fuse", "t,u=x"), nullptr); }).find("differ outside dimension 0"),
            std::string::npos);
}

#if defined(__SANITIZE_ADDRESS__)
#define LMKIT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LMKIT_TEST_ASAN 1
#endif
#endif

TEST(ConvertRules, AnAllocationThatFailsIsOneMessageWithTheTensorsSize) {
#ifdef LMKIT_TEST_ASAN
  GTEST_SKIP() << "AddressSanitizer aborts on an allocation this size instead of failing it";
#else
  // 2^48 bytes: more than the address space, so it fails whatever the overcommit policy. The
  // data is never read: the output buffer is taken first.
  const float one = 1;
  const Tensor huge = Tensor::view(DType::F32, {int64_t{1} << 24, int64_t{1} << 22}, &one, nullptr);
  EXPECT_EQ(error_of([&] { transpose_2d(huge); }),
            "cannot allocate 281474976710656 bytes for a [4194304, 16777216] F32 tensor: out of memory");
#endif
}

TEST(ConvertRules, SplitTakesPartSizesFromTheConfig) {
  ModelConfig c = small("gqa");  // q: 16 rows, k and v: 8 rows each
  Graph g;
  g.nodes = {node("layers.0.attention.wqkv.weight", ramp({32, 16}))};
  apply_rules(g, import_rules(Layout::Meta), &c);
  EXPECT_EQ(find(g, "layers.0.attention.wq.weight").shape, (Shape{16, 16}));
  EXPECT_EQ(find(g, "layers.0.attention.wk.weight").shape, (Shape{8, 16}));
  EXPECT_EQ(values(find(g, "layers.0.attention.wv.weight").load())[0], 24 * 16);
}

TEST(ConvertRules, RopePermutationPairsAndInverse) {
  Graph g;
  g.nodes = {node("q", ramp({8, 1}))};  // 2 heads of HS = 4: rows 0..7
  apply_rule(g, parse_rule("rope-to-half", "q=2"), nullptr);
  // Within each head, the interleaved pairs (0,1), (2,3) become halves: rows 0, 2, 1, 3.
  EXPECT_EQ(values(g.nodes[0].load()), (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  apply_rule(g, parse_rule("rope-to-interleaved", "q=2"), nullptr);
  EXPECT_EQ(values(g.nodes[0].load()), values(ramp({8, 1})));
  ModelConfig c = small("gqa");
  Graph k;
  k.nodes = {node("k", ramp({8, 2}))};
  apply_rule(k, parse_rule("rope-to-half", "k=k"), &c);  // n_kv_heads = 2 heads of 4
  EXPECT_EQ(values(k.nodes[0].load())[2], 4);  // row 1 of the output is input row 2
  Graph odd;
  odd.nodes = {node("q", ramp({6, 1}))};
  EXPECT_NE(error_of([&] { apply_rule(odd, parse_rule("rope-to-half", "q=2"), nullptr); }).find("not 2 heads of an even size"),
            std::string::npos);
}

TEST(ConvertRules, CastRoundsToNearestEvenAndRefusesIntegers) {
  Tensor t = Tensor::zeros(DType::F32, {3});
  t.data_mut<float>()[0] = 1.0f + 1.0f / 256;        // halfway between two bf16 values: to even (1.0)
  t.data_mut<float>()[1] = 1.0f + 3.0f / 256;        // halfway: to even (1 + 4/256)
  t.data_mut<float>()[2] = 65520.0f;                 // rounds to inf in f16
  const Tensor b = cast_tensor(t, DType::BF16);
  EXPECT_EQ(values(b), (std::vector<float>{1.0f, 1.0f + 4.0f / 256, 65536.0f}));
  EXPECT_TRUE(std::isinf(values(cast_tensor(t, DType::F16))[2]));
  // The vectorized f16 path equals the scalar f32_to_f16 on every class of value.
  const std::vector<float> edge = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65519.99f, 65520.0f, -1e9f, 6.1e-5f, 5.96e-8f,
                                   2.98e-8f, 2.99e-8f, 1e-45f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 3.14159f,
                                   std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::quiet_NaN()};
  Tensor e = Tensor::zeros(DType::F32, {static_cast<int64_t>(edge.size()) * 8});
  for (int64_t i = 0; i < e.numel(); ++i) e.data_mut<float>()[i] = edge[i % edge.size()] * (i % 3 == 0 ? 1.0f : 0.75f);
  const Tensor h = cast_tensor(e, DType::F16);
  for (int64_t i = 0; i < e.numel(); ++i) EXPECT_EQ(h.data<uint16_t>()[i], f32_to_f16(e.data<float>()[i])) << e.data<float>()[i];
  Graph g;
  g.nodes = {node("i", Tensor::zeros(DType::I64, {2}))};
  EXPECT_NE(error_of([&] { cast_all(g, DType::F16, false); }).find("wrong dtype"), std::string::npos);
  Graph v;
  v.nodes = {node("norm", ramp({4})), node("w", ramp({2, 2}))};
  cast_all(v, DType::F16, true);  // GGUF: vectors stay F32
  EXPECT_EQ(find(v, "norm").dtype, DType::F32);
  EXPECT_EQ(find(v, "w").dtype, DType::F16);
}

TEST(ConvertRules, RulesFileRoundTrip) {
  const auto rules = parse_rules_json(R"([{"rename": "^a\\.=b."}, {"drop": "*.x"}, {"split": "m=p,q@1"}, {"cast": "bf16"}])", "r.json");
  ASSERT_EQ(rules.size(), 4u);
  EXPECT_EQ(rules[2].dim, 1);
  const auto again = parse_rules_json(rules_to_json(rules), "again");
  ASSERT_EQ(again.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(again[i].arg, rules[i].arg);
  EXPECT_NE(error_of([] { parse_rules_json(R"([{"drop": "a", "drop": "b"}])", "r.json"); }).find("duplicate key '[0].drop'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_rules_json(R"({"drop": "a"})", "r.json"); }).find("expected an array"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rules_json(R"([{"twist": "a"}])", "r.json"); }).find("rule 1: unknown rule"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rules_json("[", "r.json"); }).find("not valid JSON"), std::string::npos);
}

// Found by fuzzing the rules: each ends with an error, never a hang, a crash or a runaway name.
TEST(ConvertRules, HostileRulesAndNamesEndInErrors) {
  Graph g;
  g.nodes = {node("layers.0.attention.wq.weight", ramp({2, 2}))};
  // Backtracking without end under std::regex; PCRE2 stops at its work limit.
  const std::string slow = "(a*)*[bc]=x";
  g.nodes[0].name = std::string(40, 'a') + "!";
  EXPECT_NE(error_of([&] { apply_rule(g, parse_rule("rename", slow), nullptr); }).find("match limit"), std::string::npos);
  // A rename that doubles the name would reach gigabytes in a few dozen rules.
  g.nodes[0].name = "layers.0.attention.wq.weight";
  std::vector<Rule> doubling(30, parse_rule("rename", "(.*)=$1$1"));
  EXPECT_NE(error_of([&] { apply_rules(g, doubling, nullptr); }).find("makes a tensor name of 7168 bytes (at most 4096)"),
            std::string::npos);
  // A repeat count std::regex overflowed a long on.
  EXPECT_NE(error_of([] { parse_rule("rename", "a{99999999999999999999}=b"); }).find("invalid regular expression"),
            std::string::npos);
  // Names from a file that overflowed std::regex's stack (300 kB) or stoll (a 20-digit layer).
  const std::string huge = "layers." + std::string(300'000, '0') + ".attention.wq.weight";
  EXPECT_NO_THROW(detect_layout({huge, "layers.99999999999999999999.attention.wq.weight", "tok_embeddings.weight"}, false));
  g.nodes[0].name = huge;
  EXPECT_NO_THROW(apply_rules(g, import_rules(Layout::HF), nullptr));
  EXPECT_THROW(parse_size(std::string(400, '9') + "GB"), Error);  // std::stod threw std::out_of_range
}

// Every named layout: exporting lmkit's tensors and importing them back gives every name and
// byte back, and detection recognises the exported names.
TEST(ConvertLayouts, ExportThenImportIsTheIdentity) {
  for (const char* kind : {"plain", "gqa", "soma", "qk"}) {
    const ModelConfig c = small(kind);
    for (const auto& info : layouts()) {
      const Layout l = info.id;
      if (l == Layout::Raw) continue;
      const bool soma = l == Layout::Soma || l == Layout::SomaTorch;
      if (soma && (c.ffn_type == FfnType::SwiGLU || c.qk_norm)) continue;  // no names for w3 / q_norm there
      Graph g = lmkit_graph(c);
      const Graph original = g;
      apply_rules(g, export_rules(l), &c);
      std::vector<std::string> names;
      for (const Node& n : g.nodes) names.push_back(n.name);
      if (l != Layout::Llama2c && l != Layout::Meta) {
        const auto detected = detect_layout(names, l == Layout::Lmkit);
        ASSERT_TRUE(detected.has_value()) << info.name << " " << kind;
        EXPECT_EQ(*detected, l) << info.name << " " << kind;
      }
      apply_rules(g, import_rules(l), &c);
      ASSERT_EQ(g.nodes.size(), original.nodes.size()) << info.name;
      for (const Node& want : original.nodes) {
        const Node& got = find(g, want.name);
        EXPECT_EQ(got.shape, want.shape) << info.name << " " << want.name;
        EXPECT_EQ(values(got.load()), values(want.load())) << info.name << " " << kind << " " << want.name;
      }
    }
  }
}

TEST(ConvertLayouts, HfPermutesQAndKWithTheirOwnHeadCounts) {
  const ModelConfig c = small("gqa");  // NH 4, NKV 2, HS 4
  Graph g = lmkit_graph(c);
  apply_rules(g, export_rules(Layout::HF), &c);
  const auto wq = values(find(g, "model.layers.0.self_attn.q_proj.weight").load());
  const auto wk = values(find(g, "model.layers.0.self_attn.k_proj.weight").load());
  const auto wv = values(find(g, "model.layers.0.self_attn.v_proj.weight").load());
  const float q0 = values(find(lmkit_graph(c), "layers.0.attention.wq.weight").load())[0];
  const float k0 = values(find(lmkit_graph(c), "layers.0.attention.wk.weight").load())[0];
  // HF row h*HS + j*HS/2 + i = Meta row h*HS + 2i + j; row 1 (h 0, j 0, i 1) is Meta row 2.
  EXPECT_EQ(wq[1 * 16], q0 + 2 * 16);
  EXPECT_EQ(wq[5 * 16], q0 + 6 * 16);  // head 1
  EXPECT_EQ(wk[1 * 16], k0 + 2 * 16);
  EXPECT_EQ(wv[1 * 16], values(find(lmkit_graph(c), "layers.0.attention.wv.weight").load())[16]);  // v untouched
}

TEST(ConvertLayouts, MetaHooksAndFlaxSeparators) {
  ModelConfig c = small("plain");
  Graph g;
  g.nodes = {node("layers.0.attention.wqkv.layer_norm_weight", ramp({16})), node("layers.0.feed_forward.mlp.fc1_weight", ramp({48, 16})),
             node("layers.0.feed_forward.mlp.fc2_weight", ramp({16, 24})), node("layers.0.feed_forward.mlp.layer_norm_weight", ramp({16})),
             node("rope.freqs", ramp({2})), node("layers.0.attention.wq._extra_state", ramp({1})),
             node("layers.1.feed_forward.w_gate.weight", ramp({24, 16})), node("layers.1.feed_forward.w_value.weight", ramp({24, 16})),
             node("layers.1.feed_forward.w_out.weight", ramp({16, 24}))};
  apply_rules(g, import_rules(Layout::Meta), &c);
  std::vector<std::string> names;
  for (const Node& n : g.nodes) names.push_back(n.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"layers.0.attention_norm.weight", "layers.0.feed_forward.w1.weight",
                                             "layers.0.feed_forward.w2.weight", "layers.0.feed_forward.w3.weight",
                                             "layers.0.ffn_norm.weight", "layers.1.feed_forward.w1.weight",
                                             "layers.1.feed_forward.w2.weight", "layers.1.feed_forward.w3.weight"}));
  EXPECT_EQ(values(find(g, "layers.0.feed_forward.w3.weight").load())[0], 24 * 16);  // the second half of fc1
  EXPECT_EQ(g.dropped.size(), 2u);

  Graph f;
  f.nodes = {node("params/model/embed_tokens/embedding", ramp({10, 16})), node("params/model/norm/weight", ramp({16}))};
  apply_rules(f, import_rules(Layout::Flax), &c);
  EXPECT_EQ(f.nodes[0].name, "tok_embeddings.weight");
  EXPECT_EQ(f.nodes[1].name, "norm.weight");
}

TEST(ConvertConfig, HuggingFaceAndMetaConventionsRoundTrip) {
  ModelConfig c = preset("llama3-8b");
  c.name = "";
  const ModelConfig hf = config_from_hf_json(config_to_hf_json(c, "bfloat16"), "config.json");
  EXPECT_EQ(hf.dim, c.dim);
  EXPECT_EQ(hf.kv_heads(), c.kv_heads());
  EXPECT_EQ(hf.ffn_hidden(), c.ffn_hidden());
  EXPECT_EQ(hf.rope_scaling, c.rope_scaling);
  EXPECT_EQ(hf.rope_theta, c.rope_theta);
  EXPECT_EQ(hf.tie_embeddings, c.tie_embeddings);
  const ModelConfig meta = config_from_params_json(config_to_params_json(c), "params.json");
  EXPECT_EQ(meta.ffn_hidden(), c.ffn_hidden());
  EXPECT_EQ(meta.rope_scaling, c.rope_scaling);
  EXPECT_EQ(config_convention(config_to_hf_json(c, "float32"), "x"), "hf");
  EXPECT_EQ(config_convention(config_to_params_json(c), "x"), "meta");
  EXPECT_EQ(config_convention(config_to_json(c), "x"), "lmkit");
  const ModelConfig soma = small("soma");
  EXPECT_NE(error_of([&] { config_to_hf_json(soma, "float32"); }).find("no norm_type 'layernorm'"), std::string::npos);
  EXPECT_NE(error_of([] { config_from_hf_json(R"({"model_type": "gpt2"})", "config.json"); }).find("is not a Llama"),
            std::string::npos);
  EXPECT_NE(error_of([] { config_from_hf_json(R"({"model_type": "llama"})", "config.json"); }).find("no 'hidden_size'"),
            std::string::npos);
}

// A config read but not validated (say num_attention_heads 0, from fuzz_config) is refused by
// the writers, which would divide dim by n_heads.
TEST(ConvertConfig, WritersRefuseInvalidConfigs) {
  ModelConfig c = config_from_hf_json(
      R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 176, "num_attention_heads": 0,
          "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 25})",
      "config.json");
  c.hidden_dim = 0;  // Meta's rule, so that params.json has a key for every field
  for (const auto& write : std::vector<std::function<void()>>{[&] { config_to_hf_json(c, "float32"); },
                                                              [&] { config_to_params_json(c); },
                                                              [&] { config_to_seed_json(c, SeedFormat::Soma); }}) {
    try {
      write();
      ADD_FAILURE() << "an invalid config was written";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data);
      EXPECT_NE(std::string(e.what()).find("n_heads"), std::string::npos) << e.what();
    }
  }
}

// Llama 4's params.json keys (llama-models' llama4 ModelArgs), both ways, and its defaults.
TEST(ConvertConfig, MetaLlama4KeysBothWays) {
  const std::string released = R"({"dim": 24, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 64,
    "multiple_of": 8, "ffn_dim_multiplier": 1.3, "norm_eps": 1e-05, "use_scaled_rope": true,
    "attention_chunk_size": 4, "nope_layer_interval": 4, "use_qk_norm": true, "attn_temperature_tuning": true,
    "floor_scale": 3.0, "attn_scale": 0.4, "max_seq_len": 64})";
  const ModelConfig c = config_from_params_json(released, "params.json");
  EXPECT_EQ(c.nope_layer_interval, 4);
  EXPECT_EQ(c.attn_chunk_size, 4);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qk_norm_weight);  // Llama 4's L2Norm
  EXPECT_TRUE(c.attn_temperature_tuning);
  EXPECT_EQ(c.attn_floor_scale, 3.0);
  EXPECT_EQ(c.attn_scale, 0.4);
  EXPECT_EQ(c.rope_theta, 500000);  // Llama 4's default
  EXPECT_EQ(c.rope_scaling, (RopeScaling{RopeScalingType::Llama3, 16, 1, 1, 8192}));
  EXPECT_EQ(config_from_params_json(config_to_params_json(c), "params.json"), c);
  // Llama 3.1's scaling under Llama 4's keys is written out, so it reads back as itself.
  ModelConfig l31 = c;
  l31.rope_scaling = preset("llama3-8b").rope_scaling;
  ASSERT_EQ(l31.rope_scaling.factor, 8);
  EXPECT_EQ(config_from_params_json(config_to_params_json(l31), "params.json"), l31);
  // Llama 3's params keep Llama 3.1's constants.
  ModelConfig l3 = preset("llama3-8b");
  l3.name = "";
  EXPECT_EQ(config_from_params_json(config_to_params_json(l3), "params.json").rope_scaling, l3.rope_scaling);
  EXPECT_EQ(config_to_params_json(l3).find("rope_scaling_factor"), std::string::npos);

  ModelConfig weighted = c;
  weighted.qk_norm_weight = true;
  EXPECT_NE(error_of([&] { config_to_params_json(weighted); }).find("QK-norm weights (qk_norm_weight"), std::string::npos);
  const std::string quantized = released.substr(0, released.size() - 1) + R"(, "quantization_args": {"scheme": "int4"}})";
  EXPECT_NE(error_of([&] { config_from_params_json(quantized, "params.json"); }).find("quantization_args"), std::string::npos);
}

// A config field a format has no key for is refused by that format's writer, never dropped.
// Llama 4's attention is carried by Llama 4's params.json and Hugging Face's llama4_text.
TEST(ConvertConfig, FieldsAFormatCannotCarryAreRefused) {
  struct Case {
    const char* why;   // what llama2.c says
    const char* gguf;  // what GGUF says (llama, or llama4 as llama.cpp runs it)
    void (*set)(ModelConfig&);
    const char* hf;    // what config.json says; nullptr = carried (llama4_text)
    const char* meta;  // what params.json says; nullptr = carried (Llama 4's)
  };
  const Case cases[] = {
      {"NoPE layers (nope_layer_interval)", "nope_layer_interval 2 (llama.cpp's llama4 runs a NoPE layer every 4th)",
       [](ModelConfig& c) { c.nope_layer_interval = 2; }, nullptr, nullptr},
      {"chunked attention (attn_chunk_size)", "attn_chunk_size 8 (llama.cpp's llama4 runs chunks of 8192)",
       [](ModelConfig& c) { c.attn_chunk_size = 8; }, nullptr, nullptr},
      {"attention temperature tuning", "a model without experts (llama.cpp's llama4 requires",
       [](ModelConfig& c) { c.attn_temperature_tuning = true; }, nullptr, nullptr},
      {"image features (vision_dim", "image features (vision_dim",
       [](ModelConfig& c) { c.vision_dim = 12, c.image_token_id = 3; }, "vision_projection", "an image_token_id"},
      {"materium conditions (conditions)", "materium conditions (conditions)",
       [](ModelConfig& c) { c.conditions.push_back({"band_gap", ProjLayerType::Linear, 1, 0, 0}); },
       "materium conditions (conditions)", "materium conditions (conditions)"},
      {"rope_mode 'blockwise'", "rope_mode 'blockwise'", [](ModelConfig& c) { c.rope_mode = RopeMode::Blockwise; },
       "rope_mode 'blockwise'", "rope_mode 'blockwise'"},
      {"mixture of experts", "experts without a shared expert (llama.cpp's llama4 always adds one)",
       [](ModelConfig& c) { c.moe.n_experts = 4; }, "experts without a shared expert", "experts without a shared expert"},
  };
  for (const Case& k : cases) {
    ModelConfig c = small("gqa");
    c.hidden_dim = 0;  // Meta's rule, which params.json can carry
    k.set(c);
    auto has = [&](const std::vector<std::string>& why) {
      return std::any_of(why.begin(), why.end(), [&](const std::string& w) { return w.find(k.why) != std::string::npos; });
    };
    const std::vector<std::string> gguf = gguf_unsupported(c);
    EXPECT_TRUE(std::any_of(gguf.begin(), gguf.end(), [&](const std::string& w) { return w.find(k.gguf) != std::string::npos; }))
        << k.gguf;
    EXPECT_TRUE(has(llama2c_unsupported(c))) << k.why;
    const std::string hf = error_of([&] { config_to_hf_json(c, "float32"); });
    if (!k.hf) {
      EXPECT_EQ(hf, "") << k.why;
      const ModelConfig back = config_from_hf_json(config_to_hf_json(c, "float32"), "config.json");
      EXPECT_EQ(back.nope_layer_interval, c.nope_layer_interval) << k.why;
      EXPECT_EQ(back.attn_chunk_size, c.attn_chunk_size) << k.why;
      EXPECT_EQ(back.attn_temperature_tuning, c.attn_temperature_tuning) << k.why;
      EXPECT_EQ(back.ffn_hidden(), c.ffn_hidden()) << k.why;
    } else {
      EXPECT_NE(hf.find(k.hf), std::string::npos) << k.why << ": " << hf;
    }
    const std::string meta = error_of([&] { config_to_params_json(c); });
    if (!k.meta) {
      EXPECT_EQ(meta, "") << k.why;
      EXPECT_EQ(config_to_json(config_from_params_json(config_to_params_json(c), "params.json")), config_to_json(c)) << k.why;
    } else {
      EXPECT_NE(meta.find(k.meta), std::string::npos) << k.why << ": " << meta;
    }
  }
}

std::map<std::string, Shape> shapes_of(const Graph& g) {
  std::map<std::string, Shape> m;
  for (const Node& n : g.nodes) m.emplace(n.name, n.shape);
  return m;
}

TEST(ConvertConfig, ConventionsAreToldByKeysOnlyTheyHave) {
  EXPECT_EQ(config_convention(R"({"hidden_size": 8})", "x"), "hf");
  EXPECT_EQ(config_convention(R"({"model_type": "llama"})", "x"), "hf");
  EXPECT_EQ(config_convention(R"({"dim": 8, "n_layers": 2, "max_batch_size": 4})", "x"), "meta");
  // a lmkit config with a stray Hugging Face spelling stays lmkit's (to be told its unknown key)
  EXPECT_EQ(config_convention(R"({"dim": 8, "attention_bias": true})", "x"), "lmkit");
  EXPECT_EQ(config_convention(R"({"dim": 8, "rope_theta": 500000})", "x"), "lmkit");
}

TEST(ConvertConfig, HuggingFaceKeysBothWays) {
  ModelConfig c = small("gqa");
  c.name = "";
  c.rope_theta = 500000;
  c.norm_eps = 1e-6;
  c.max_seq_len = 4096;
  c.rope_scaling.type = RopeScalingType::Linear;
  c.rope_scaling.factor = 4;
  c.bos_id = 1;
  c.eos_id = 2;
  c.pad_id = -1;
  c.attn_bias = true;
  EXPECT_EQ(config_from_hf_json(config_to_hf_json(c, "float32"), "config.json"), c);
  // An eos list (Llama 3 Instruct's) is written as a list and read back whole.
  c.extra_eos_ids = {8, 9};
  EXPECT_NE(config_to_hf_json(c, "float32").find("\"eos_token_id\": [\n    2,\n    8,\n    9\n  ]"), std::string::npos);
  EXPECT_EQ(config_from_hf_json(config_to_hf_json(c, "float32"), "config.json"), c);
  // Absent keys take Hugging Face's defaults (rms_norm_eps 1e-6), special tokens none; an eos
  // list gives eos_id and the extra ids (a repeated id once).
  const ModelConfig d = config_from_hf_json(
      R"({"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10,
          "intermediate_size": 24, "eos_token_id": [7, 8, 7, 9]})", "config.json");
  EXPECT_EQ(d.norm_eps, 1e-6);
  EXPECT_EQ(d.bos_id, -1);
  EXPECT_EQ(d.eos_id, 7);
  EXPECT_EQ(d.extra_eos_ids, (std::vector<int64_t>{8, 9}));
  EXPECT_TRUE(d.is_eos(7) && d.is_eos(8) && d.is_eos(9) && !d.is_eos(2) && !d.is_eos(-1));
  EXPECT_EQ(error_of([] {
              config_from_hf_json(R"({"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10,
                                      "intermediate_size": 24, "eos_token_id": [7, "x"]})", "config.json");
            }),
            "'config.json': 'eos_token_id': expected a token id or a list of them, got [7,\"x\"]");
  EXPECT_EQ(d.kv_heads(), 4);
  EXPECT_EQ(error_of([] { config_from_hf_json(R"({"hidden_size": "8"})", "config.json"); }),
            "'config.json': 'hidden_size': expected an integer, got \"8\"");
  EXPECT_NE(error_of([] {
              config_from_hf_json(R"({"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10,
                                      "intermediate_size": 24, "rope_scaling": {"rope_type": "yarn"}})", "config.json");
            }).find("rope_scaling type 'yarn' is not supported"),
            std::string::npos);
}

// generation_config.json beside config.json: its eos ids join config.json's (the first stays
// eos_id), its bos and pad must agree, its sampling defaults are named in a note.
TEST(ConvertConfig, HuggingFaceGenerationConfig) {
  const std::string hf = R"({"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10,
                             "intermediate_size": 24, "bos_token_id": 1, "eos_token_id": 2})";
  ModelConfig c = config_from_hf_json(hf, "config.json");
  std::vector<std::string> notes;
  apply_hf_generation_config(c, R"({"bos_token_id": 1, "eos_token_id": [2, 8, 9], "do_sample": true, "temperature": 0.6,
                                    "top_p": 0.9, "transformers_version": "4.45.0"})", "generation_config.json", &notes);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(c.extra_eos_ids, (std::vector<int64_t>{8, 9}));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "generation_config.json: not carried (sampling is lm-generate's options): do_sample, temperature, top_p");
  // One id; ids config.json lacks (none there: the first becomes eos_id); pad set where none was.
  c = config_from_hf_json(hf, "config.json");
  apply_hf_generation_config(c, R"({"eos_token_id": 9})", "generation_config.json", nullptr);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(c.extra_eos_ids, (std::vector<int64_t>{9}));
  c.eos_id = -1;
  c.extra_eos_ids.clear();
  apply_hf_generation_config(c, R"({"eos_token_id": [8, 9], "pad_token_id": 0})", "generation_config.json", nullptr);
  EXPECT_EQ(c.eos_id, 8);
  EXPECT_EQ(c.extra_eos_ids, (std::vector<int64_t>{9}));
  EXPECT_EQ(c.pad_id, 0);
  // An empty file changes nothing; a bos that differs, or a value no id, is an error.
  const ModelConfig before = c;
  apply_hf_generation_config(c, "{}", "generation_config.json", nullptr);
  EXPECT_EQ(c, before);
  EXPECT_EQ(error_of([&] { apply_hf_generation_config(c, R"({"bos_token_id": 3})", "generation_config.json", nullptr); }),
            "'generation_config.json': bos_token_id 3 differs from config.json's 1");
  EXPECT_EQ(error_of([&] { apply_hf_generation_config(c, R"({"eos_token_id": "</s>"})", "generation_config.json", nullptr); }),
            "'generation_config.json': 'eos_token_id': expected a token id or a list of them, got \"</s>\"");
}

// generation_config.json out: the special ids as transformers writes them (sorted keys, indent
// 2, the eos list as a list), read back into the same ids; ids the model has not are left out.
TEST(ConvertConfig, HuggingFaceGenerationConfigWritten) {
  ModelConfig c = config_from_hf_json(R"({"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
                                          "vocab_size": 10, "intermediate_size": 24, "bos_token_id": 1,
                                          "eos_token_id": [2, 8, 9], "pad_token_id": 0})", "config.json");
  const std::string text = generation_config_to_hf_json(c);
  EXPECT_EQ(text, "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": [\n    2,\n    8,\n    9\n  ],\n  \"pad_token_id\": 0\n}\n");
  ModelConfig back = c;
  back.eos_id = -1;
  back.extra_eos_ids.clear();
  apply_hf_generation_config(back, text, "generation_config.json", nullptr);
  EXPECT_EQ(back, c);
  c.extra_eos_ids.clear();
  c.pad_id = -1;
  EXPECT_EQ(generation_config_to_hf_json(c), "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
  c.bos_id = c.eos_id = -1;
  EXPECT_EQ(generation_config_to_hf_json(c), "{}\n");
  // The config it is checked against is named in the message.
  EXPECT_EQ(error_of([&] { apply_hf_generation_config(c, R"({"bos_token_id": 3})", "g.json", nullptr, "hf/config.json"); }),
            "");
  c.bos_id = 1;
  EXPECT_EQ(error_of([&] { apply_hf_generation_config(c, R"({"bos_token_id": 3})", "g.json", nullptr, "hf/config.json"); }),
            "'g.json': bos_token_id 3 differs from hf/config.json's 1");
}

TEST(ConvertConfig, GgufKeysBothWaysAndCheckedAgainstTheTensors) {
  ModelConfig c = small("gqa");
  c.name = "tiny";
  c.head_dim = 8;  // 4 heads of 8 in a 16-wide model: key_length is written
  c.norm_eps = 1e-5;
  c.rope_theta = 500000;
  c.max_seq_len = 64;
  c.rope_scaling.type = RopeScalingType::Linear;
  c.rope_scaling.factor = 2;
  c.pad_id = 3;
  c.extra_eos_ids = {5, 6};  // written as tokenizer.ggml.eom_token_id 5 and eot_token_id 6
  GGUFWriter w;
  set_gguf_metadata(w, c, "", 0, false, "");
  std::vector<uint8_t> bytes;
  auto sink = memory_sink(&bytes);
  w.write(*sink);
  const GGUFFile f = GGUFFile::parse(MappedFile::from_bytes(bytes, "m.gguf"));
  const std::vector<std::string> sets = gguf_config_assignments(f);  // the llama.* keys, not lmkit.config
  for (const char* want : {"dim=16", "n_layers=2", "n_heads=4", "n_kv_heads=2", "head_dim=8", "hidden_dim=24", "vocab_size=10",
                           "norm_eps=1e-05", "rope_theta=500000.0", "max_seq_len=64", "rope_scaling.type=\"linear\"",
                           "rope_scaling.factor=2.0", "bos_id=1", "eos_id=2", "pad_id=3", "extra_eos_ids=[5,6]", "name=\"tiny\""})
    EXPECT_NE(std::find(sets.begin(), sets.end(), want), sets.end()) << want;
  // With the tensors, the inference takes the keys and checks them.
  Graph g = lmkit_graph(c);
  const ModelConfig got = infer_config(shapes_of(g), sets, "m.gguf").config;
  EXPECT_EQ(got, c);
  {
    const GGUFValue* eom = f.find("tokenizer.ggml.eom_token_id");
    const GGUFValue* eot = f.find("tokenizer.ggml.eot_token_id");
    ASSERT_TRUE(eom && eot);
    EXPECT_EQ(eom->u, 5u);
    EXPECT_EQ(eot->u, 6u);
    // One extra id is eot; three have no key in GGUF.
    ModelConfig one = c;
    one.extra_eos_ids = {6};
    EXPECT_TRUE(gguf_unsupported(one).empty());
    ModelConfig three = c;
    three.extra_eos_ids = {5, 6, 7};
    ASSERT_EQ(gguf_unsupported(three).size(), 1u);
    EXPECT_NE(gguf_unsupported(three)[0].find("3 extra_eos_ids"), std::string::npos);
  }
  std::vector<std::string> wrong = sets;
  wrong.push_back("vocab_size=12");
  EXPECT_EQ(error_of([&] { infer_config(shapes_of(g), wrong, "m.gguf"); }),
            "--set vocab_size contradicts 'm.gguf': the tensors say 10, got 12");
}

// GGUF strings are raw bytes: a key that no JSON could hold, or an lmkit.tokenizer that is not
// JSON, is refused where the file is read, not passed on into the converted checkpoint.
// Found by fuzz_gguf: the head size was dim / n_heads with the file's n_heads of 0 (a division
// by zero, SIGFPE) when llama.attention.value_length or llama.rope.dimension_count was checked.
TEST(ConvertConfig, GgufHeadCountsOfZeroOrNegativeAreNoDivision) {
  for (const int32_t heads : {0, -4}) {
    GGUFWriter w;
    w.set("general.architecture", GGUFValue::str("llama"));
    w.set("llama.embedding_length", GGUFValue::u32(64));
    GGUFValue count;
    count.type = GGUFValue::I32;
    count.i = heads;
    w.set("llama.attention.head_count", count);
    w.set("llama.attention.value_length", GGUFValue::u32(16));
    w.set("llama.rope.dimension_count", GGUFValue::u32(16));
    std::vector<uint8_t> bytes;
    auto sink = memory_sink(&bytes);
    w.write(*sink);
    const GGUFFile f = GGUFFile::parse(MappedFile::from_bytes(bytes, "m.gguf"));
    const std::vector<std::string> set = gguf_config_assignments(f);
    EXPECT_NE(std::find(set.begin(), set.end(), cat("n_heads=", heads)), set.end()) << heads;
  }
}

TEST(ConvertConfig, GgufStringsThatAreNotJsonAreRefused) {
  const ModelConfig c = small("gqa");
  const Graph g = lmkit_graph(c);
  auto gguf = [&](const std::string& key, const std::string& value) {
    GGUFWriter w;
    set_gguf_metadata(w, c, "", 0, false, "");
    w.set(key, GGUFValue::str(value));
    for (const Node& n : g.nodes) {
      const Tensor t = Tensor::zeros(DType::F32, n.shape);
      w.add_tensor(n.name, GGMLType::F32, n.shape, [t](ByteSink& s) { s.write(t.data<uint8_t>(), t.nbytes()); });
    }
    std::vector<uint8_t> bytes;
    auto sink = memory_sink(&bytes);
    w.write(*sink);
    return bytes;
  };
  const std::vector<uint8_t> bad_name = gguf("general.name", "tiny\xff");
  const GGUFFile f = GGUFFile::parse(MappedFile::from_bytes(bad_name, "m.gguf"));
  EXPECT_EQ(error_of([&] { gguf_config_assignments(f); }), "'m.gguf': 'general.name': not valid UTF-8");

  const std::string path = ::testing::TempDir() + "lmkit_convert_bad_tokenizer.gguf";
  const std::vector<uint8_t> bad_tokenizer = gguf("lmkit.tokenizer", "{\"type\": ");
  {
    auto out = open_output(path);
    out->write(bad_tokenizer.data(), bad_tokenizer.size());
    out->finish();
  }
  const std::string e = error_of([&] { open_source(path); });
  EXPECT_EQ(e.rfind(cat(quote(path), ": bad tokenizer metadata (lmkit.tokenizer): not valid JSON"), 0), 0u) << e;
  std::remove(path.c_str());
}

TEST(ConvertConfig, InferFromShapes) {  // the one inference (model/config_infer.h), fed by a graph's shapes
  const ModelConfig c = small("gqa");
  const Graph g = lmkit_graph(c);
  EXPECT_NE(error_of([&] { infer_config(shapes_of(g), {}, "x"); }).find("cannot infer n_heads"), std::string::npos);
  const ModelConfig got = infer_config(shapes_of(g), {"n_heads=4"}, "x").config;
  EXPECT_EQ(got.kv_heads(), 2);
  EXPECT_EQ(got.ffn_hidden(), 24);
  EXPECT_FALSE(got.tie_embeddings);
  const ModelConfig qk = infer_config(shapes_of(lmkit_graph(small("qk"))), {}, "x").config;  // head size from q_norm
  EXPECT_EQ(qk.head_size(), 8);
  EXPECT_TRUE(qk.tie_embeddings);
  EXPECT_TRUE(qk.attn_bias);
}

TEST(ConvertPlan, FixtureToHfAndBack) {
  ConvertOptions o;
  o.input = std::string(LMKIT_SOURCE_DIR) + "/tests/fixtures/llama3/model.safetensors";
  o.to = "hf";
  const Plan p = plan_conversion(o);
  EXPECT_EQ(p.from, Layout::Lmkit);
  EXPECT_EQ(p.graph.nodes.front().name, "model.embed_tokens.weight");  // lmkit order
  const std::string text = plan_text(p);
  EXPECT_NE(text.find("layers.0.attention.wq.weight [48, 48] F32 -> model.layers.0.self_attn.q_proj.weight [48, 48] F32 (rope q to half-split)"),
            std::string::npos)
      << text;
  o.rules = {parse_rule("drop", "layers.1.*")};
  EXPECT_NE(error_of([&] { plan_conversion(o); }).find("missing tensors"), std::string::npos);
  o.allow_unmapped = true;
  EXPECT_NO_THROW(plan_conversion(o));
}

TEST(ConvertPlan, Sizes) {
  EXPECT_EQ(parse_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("500mb"), 500'000'000u);
  EXPECT_EQ(parse_size("1234"), 1234u);
  EXPECT_EQ(parse_size("1.5KB"), 1500u);
  EXPECT_THROW(parse_size("5 parsecs"), Error);
  EXPECT_THROW(parse_size("0"), Error);
}

}  // namespace
}  // namespace lm::convert
