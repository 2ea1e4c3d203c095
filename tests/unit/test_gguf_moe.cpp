// GGUF's mixture-of-experts architectures (docs/llama4.md §12 "GGUF"): llama.cpp's llama4
// (ffn_gate_inp, ffn_{gate,up,down}_exps, ffn_*_shexp, llama4.* keys, what llama.cpp hard-codes)
// and Mixtral under llama (expert_count, softmax routing; older files one tensor per expert).
// The fixtures go to GGUF and back bit for bit; the keys alone (lmkit.config removed, as in a
// file llama.cpp's converter wrote) give the same model; a config llama.cpp would run
// differently is refused.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "convert/config_io.h"
#include "convert/convert.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "fixture_util.h"
#include "test_util.h"
#include "io/gguf.h"
#include "io/metadata_keys.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "model/config.h"

namespace lm::convert {
namespace {

namespace fs = std::filesystem;

using test::error_of;

// What llama.cpp's llama4 hard-codes, for a fixture with E != 128 experts.
const std::vector<std::string> kLlamaCppLlama4 = {"attn_chunk_size=8192",      "nope_layer_interval=4", "attn_temperature_tuning=true",
                                                  "attn_floor_scale=8192",     "attn_scale=0.1",        "qk_norm=true",
                                                  "qk_norm_weight=false"};

fs::path tmp(const std::string& name) { return fs::path(::testing::TempDir()) / ("lmkit_gguf_moe_" + name); }

Plan plan(const fs::path& in, const std::string& to, const std::vector<std::string>& sets = {}) {
  ConvertOptions o;
  o.input = in.string();
  o.to = to;
  o.sets = sets;
  return plan_conversion(o);
}

// The graph holds exactly the tensors of `file`, byte for byte.
void expect_same_tensors(const Graph& g, const fs::path& file, const std::string& what) {
  const SafeTensorsFile want = SafeTensorsFile::open(file.string());
  std::set<std::string> names;
  for (const Node& n : g.nodes) {
    names.insert(n.name);
    if (!want.find(n.name)) {
      ADD_FAILURE() << what << ": unexpected " << n.name;
      continue;
    }
    const Tensor got = n.load();
    const Tensor w = want.get(n.name);
    EXPECT_EQ(got.shape(), w.shape()) << what << ": " << n.name;
    ASSERT_EQ(got.nbytes(), w.nbytes()) << what << ": " << n.name;
    EXPECT_EQ(std::memcmp(got.raw(), w.raw(), w.nbytes()), 0) << what << ": " << n.name << " differs";
  }
  for (const TensorInfo& t : want.tensors()) EXPECT_TRUE(names.count(t.name)) << what << ": missing " << t.name;
}

// A copy of a GGUF file as another writer would make it: without lmkit.config and lmkit.tokenizer,
// and (per_expert) with each ffn_*_exps tensor split into one tensor per expert, as older Mixtral
// files hold them.
void rewrite_gguf(const fs::path& in, const fs::path& out, bool per_expert) {
  auto f = std::make_shared<GGUFFile>(GGUFFile::open(in.string()));
  GGUFWriter w;
  for (const auto& [k, v] : f->metadata())
    if (k.rfind("lmkit.", 0) != 0) w.set(k, v);
  for (const GGUFTensorInfo& t : f->tensors()) {
    const std::string suffix = "_exps.weight";
    if (per_expert && t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      ASSERT_EQ(t.type, GGMLType::F32);
      const Shape s = t.shape();  // [E, R, C]
      const uint64_t bytes = t.nbytes / static_cast<uint64_t>(s[0]);
      const std::string stem = t.name.substr(0, t.name.size() - suffix.size());  // blk.N.ffn_gate
      for (int64_t e = 0; e < s[0]; ++e) {
        const uint8_t* p = f->data(t) + bytes * static_cast<uint64_t>(e);
        w.add_tensor(stem + "." + std::to_string(e) + ".weight", t.type, {s[1], s[2]}, [p, bytes](ByteSink& sink) { sink.write(p, bytes); });
      }
      continue;
    }
    const GGUFTensorInfo* info = &t;
    w.add_tensor(t.name, t.type, t.shape(), [f, info](ByteSink& sink) { sink.write(f->data(*info), info->nbytes); });
  }
  auto sink = open_output(out.string());
  w.write(*sink);
  sink->finish();
}

// The fields that describe the function (derived sizes resolved; name and training-only fields aside).
std::string model_of(ModelConfig c) {
  c.name = "";
  c.hidden_dim = c.ffn_hidden();
  c.moe.hidden_dim = c.moe.n_experts > 0 ? c.moe_hidden() : 0;
  c.multiple_of = 256;
  c.ffn_dim_multiplier = 0;
  c.head_dim = 0;
  c.moe.aux_loss_coef = 0;
  c.doc_mask = false;  // an inference file has no documents
  c.dropout = c.attn_dropout = c.emb_dropout = 0;
  return config_to_json(c);
}

bool all_moe(const ModelConfig& c) {
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (!c.is_moe_layer(l)) return false;
  return true;
}

struct Case {
  const char* fixture;  // under tests/fixtures
  std::vector<std::string> sets;
  const char* arch;
};

std::vector<Case> cases() {
  return {
      {"llama4_hf/lmkit.safetensors", kLlamaCppLlama4, "llama4"},
      {"llama4/l4_moe_sigmoid/model.safetensors", kLlamaCppLlama4, "llama4"},
      {"llama4/l4_moe_softmax_top2/model.safetensors", {}, "llama"},  // Mixtral-style
  };
}

TEST(GgufMoE, FixturesRoundTripBitExactAndTheKeysAloneGiveTheModel) {
  for (const Case& k : cases()) {
    SCOPED_TRACE(k.fixture);
    const fs::path in = fixture::dir() / k.fixture;
    const fs::path gguf = tmp("rt.gguf");
    const Plan out = plan(in, "gguf", k.sets);
    write_plan(out, gguf.string());
    const ModelConfig want = *out.config;

    // llama.cpp's names, dims and keys.
    const GGUFFile f = GGUFFile::open(gguf.string());
    EXPECT_EQ(f.find("general.architecture")->s, k.arch);
    const std::string A = std::string(k.arch) + ".";
    EXPECT_EQ(f.find(A + "expert_count")->as_int("E"), want.moe.n_experts);
    EXPECT_EQ(f.find(A + "expert_used_count")->as_int("K"), want.moe.top_k);
    std::map<std::string, std::vector<uint64_t>> dims;
    for (const GGUFTensorInfo& t : f.tensors()) dims[t.name] = t.dims;
    const int64_t l = want.moe.interleave_step - 1;  // the first MoE layer
    const uint64_t C = want.dim, E = want.moe.n_experts, Fe = want.moe_hidden();
    const std::string blk = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(dims[blk + "ffn_gate_inp.weight"], (std::vector<uint64_t>{C, E}));
    EXPECT_EQ(dims[blk + "ffn_gate_exps.weight"], (std::vector<uint64_t>{C, Fe, E}));
    EXPECT_EQ(dims[blk + "ffn_up_exps.weight"], (std::vector<uint64_t>{C, Fe, E}));
    EXPECT_EQ(dims[blk + "ffn_down_exps.weight"], (std::vector<uint64_t>{Fe, C, E}));
    if (std::string(k.arch) == "llama4") {
      EXPECT_EQ(f.find("llama4.expert_feed_forward_length")->as_int("Fe"), want.moe_hidden());
      EXPECT_EQ(f.find("llama4.interleave_moe_layer_step")->as_int("step"), want.moe.interleave_step);
      EXPECT_EQ(f.find("llama4.feed_forward_length")->as_int("F"), want.ffn_hidden());
      EXPECT_EQ(dims[blk + "ffn_gate_shexp.weight"], (std::vector<uint64_t>{C, Fe}));
      EXPECT_EQ(dims[blk + "ffn_down_shexp.weight"], (std::vector<uint64_t>{Fe, C}));
      EXPECT_EQ(f.find("llama.expert_count"), nullptr);
    } else {
      EXPECT_EQ(f.find("llama.feed_forward_length")->as_int("Fe"), want.moe_hidden());
      EXPECT_EQ(dims.count(blk + "ffn_gate_shexp.weight"), 0u);
    }
    EXPECT_EQ(dims.count("rope_freqs.weight"), want.rope_scaling.type == RopeScalingType::Llama3 ? 1u : 0u);

    // Back to lmkit: the same tensors, the same config (lmkit.config).
    const Plan back = plan(gguf, "lmkit");
    expect_same_tensors(back.graph, in, "lmkit.config");
    EXPECT_EQ(config_to_json(*back.config), config_to_json(want));

    // Without lmkit.config (as llama.cpp's converter writes it), and with per-expert tensors.
    for (bool per_expert : {false, true}) {
      SCOPED_TRACE(per_expert ? "per-expert tensors" : "stacked tensors");
      const fs::path bare = tmp("bare.gguf");
      rewrite_gguf(gguf, bare, per_expert);
      const Plan keys = plan(bare, "lmkit");
      expect_same_tensors(keys.graph, in, "keys");
      ModelConfig got = *keys.config;
      if (all_moe(want)) got.hidden_dim = want.hidden_dim;  // unused: no GGUF key carries it
      got.multiple_of = want.multiple_of;
      EXPECT_EQ(model_of(got), model_of(want));
      bool assumed = false;
      for (const std::string& n : keys.notes) assumed = assumed || n.find("llama.cpp hard-codes") != std::string::npos;
      EXPECT_EQ(assumed, std::string(k.arch) == "llama4");
    }
  }
}

TEST(GgufMoE, ConfigsLlamaCppWouldRunDifferentlyAreRefused) {
  // The fixture's own config: chunks of 4, floor 3, scale 0.4.
  const fs::path hf = fixture::dir() / "llama4_hf" / "lmkit.safetensors";
  EXPECT_NE(error_of([&] { plan(hf, "gguf"); }).find("GGUF (llama4, as llama.cpp runs it) cannot hold attn_chunk_size 4 (llama.cpp's "
                                                     "llama4 runs chunks of 8192)"),
            std::string::npos);
  ModelConfig c = *plan(hf, "lmkit", kLlamaCppLlama4).config;
  EXPECT_TRUE(gguf_unsupported(c).empty());
  EXPECT_EQ(gguf_architecture(c), "llama4");
  auto refused = [&](const std::function<void(ModelConfig&)>& change, const std::string& why) {
    ModelConfig d = c;
    change(d);
    const std::vector<std::string> w = gguf_unsupported(d);
    EXPECT_TRUE(std::any_of(w.begin(), w.end(), [&](const std::string& x) { return x.find(why) != std::string::npos; })) << why;
  };
  refused([](ModelConfig& d) { d.moe.n_experts = 128; }, "qk_norm on with 128 experts");
  refused([](ModelConfig& d) { d.nope_layer_interval = 0; }, "nope_layer_interval 0");
  refused([](ModelConfig& d) { d.attn_scale = 0.2; }, "temperature tuning on with floor 8192 and scale 0.2");
  refused([](ModelConfig& d) { d.attn_temperature_tuning = false; }, "temperature tuning off");
  refused([](ModelConfig& d) { d.moe.shared_expert = false; }, "experts without a shared expert");
  refused([](ModelConfig& d) { d.vision_dim = 8; }, "mmproj");
  refused([](ModelConfig& d) { d.qk_norm_weight = true; }, "QK-norm weights");
  ModelConfig maverick = c;
  maverick.moe.n_experts = 128;
  maverick.qk_norm = false;
  EXPECT_TRUE(gguf_unsupported(maverick).empty());
  // Mixtral-style MoE is llama's; with a Llama 4 feature it would be llama4's, which routes by sigmoid.
  ModelConfig mixtral = *plan(fixture::dir() / "llama4/l4_moe_softmax_top2/model.safetensors", "lmkit").config;
  EXPECT_EQ(gguf_architecture(mixtral), "llama");
  EXPECT_TRUE(gguf_unsupported(mixtral).empty());
  mixtral.qk_norm = true;  // weightless: Llama 4's
  mixtral.qk_norm_weight = false;
  const std::vector<std::string> w = gguf_unsupported(mixtral);
  EXPECT_TRUE(std::any_of(w.begin(), w.end(), [](const std::string& x) { return x.find("softmax routing") != std::string::npos; }));
}

TEST(GgufMoE, RopeFreqsAreMatchedToAKnownScalingOrRefused) {
  const fs::path hf = fixture::dir() / "llama4_hf" / "lmkit.safetensors";
  const fs::path gguf = tmp("rope.gguf");
  write_plan(plan(hf, "gguf", kLlamaCppLlama4), gguf.string());
  // The factors of another scaling: refused by name.
  auto f = std::make_shared<GGUFFile>(GGUFFile::open(gguf.string()));
  GGUFWriter w;
  for (const auto& [k, v] : f->metadata())
    if (k.rfind("lmkit.", 0) != 0) w.set(k, v);
  for (const GGUFTensorInfo& t : f->tensors()) {
    const GGUFTensorInfo* info = &t;
    if (t.name == "rope_freqs.weight") {
      w.add_tensor(t.name, t.type, t.shape(), [info](ByteSink& s) {
        std::vector<float> x(info->nbytes / 4, 3.0f);
        s.write(x.data(), info->nbytes);
      });
    } else {
      w.add_tensor(t.name, t.type, t.shape(), [f, info](ByteSink& s) { s.write(f->data(*info), info->nbytes); });
    }
  }
  const fs::path bad = tmp("rope_bad.gguf");
  {
    auto sink = open_output(bad.string());
    w.write(*sink);
    sink->finish();
  }
  EXPECT_NE(error_of([&] { plan(bad, "lmkit"); }).find("rope_freqs.weight is none of the llama3 RoPE scalings lmkit knows"),
            std::string::npos);
  // With lmkit.config, factors that disagree with it are an error too.
  GGUFWriter w2;
  for (const auto& [k, v] : f->metadata()) w2.set(k, v);
  for (const GGUFTensorInfo& t : f->tensors()) {
    const GGUFTensorInfo* info = &t;
    const bool rope = t.name == "rope_freqs.weight";
    w2.add_tensor(t.name, t.type, t.shape(), [f, info, rope](ByteSink& s) {
      if (!rope) return s.write(f->data(*info), info->nbytes);
      std::vector<float> x(info->nbytes / 4, 3.0f);
      s.write(x.data(), info->nbytes);
    });
  }
  {
    auto sink = open_output(bad.string());
    w2.write(*sink);
    sink->finish();
  }
  EXPECT_NE(error_of([&] { plan(bad, "lmkit"); }).find("rope_freqs.weight differs from the config's llama3 RoPE scaling"),
            std::string::npos);
}

TEST(GgufMoE, UnchunkedLlama4VariantIsRefusedWithItsReason) {
  // llama.cpp's attention.sliding_window 0: the last layer NoPE with temperature-tuning constants
  // llama.cpp never sets (docs/llama4.md §12): refused, saying why.
  const fs::path hf = fixture::dir() / "llama4_hf" / "lmkit.safetensors";
  const fs::path gguf = tmp("swa0_src.gguf");
  write_plan(plan(hf, "gguf", kLlamaCppLlama4), gguf.string());
  auto f = std::make_shared<GGUFFile>(GGUFFile::open(gguf.string()));
  GGUFWriter w;
  for (const auto& [k, v] : f->metadata())
    if (k.rfind("lmkit.", 0) != 0) w.set(k, v);
  w.set("llama4.attention.sliding_window", GGUFValue::u32(0));
  for (const GGUFTensorInfo& t : f->tensors()) {
    const GGUFTensorInfo* info = &t;
    w.add_tensor(t.name, t.type, t.shape(), [f, info](ByteSink& s) { s.write(f->data(*info), info->nbytes); });
  }
  const fs::path bad = tmp("swa0.gguf");
  {
    auto sink = open_output(bad.string());
    w.write(*sink);
    sink->finish();
  }
  const std::string why = error_of([&] { plan(bad, "lmkit"); });
  EXPECT_NE(why.find("attention.sliding_window 0 (llama.cpp's unchunked llama4 variant) is not supported: llama.cpp makes "
                     "the last layer NoPE with temperature-tuning constants it leaves unset"),
            std::string::npos)
      << why;
}

TEST(HfMixtral, ExportsPerExpertAndImportsBackBitExact) {
  const fs::path m = fixture::dir() / "llama4" / "l4_moe_softmax_top2" / "model.safetensors";
  const fs::path dir = tmp("mixtral_hf");
  fs::remove_all(dir);
  const Plan out = plan(m, "hf");
  write_plan(out, dir.string() + "/");
  const SafeTensorsFile f = SafeTensorsFile::open((dir / "model.safetensors").string());
  const ModelConfig want = *out.config;
  const int64_t C = want.dim, Fe = want.moe_hidden(), E = want.moe.n_experts;
  ASSERT_TRUE(f.find("model.layers.1.block_sparse_moe.gate.weight"));
  EXPECT_EQ(f.find("model.layers.1.block_sparse_moe.gate.weight")->shape, (Shape{E, C}));
  EXPECT_EQ(f.find("model.layers.0.block_sparse_moe.experts.3.w1.weight")->shape, (Shape{Fe, C}));
  EXPECT_EQ(f.find("model.layers.0.block_sparse_moe.experts.3.w2.weight")->shape, (Shape{C, Fe}));
  EXPECT_EQ(f.find("model.layers.0.feed_forward.router.weight"), nullptr);
  // Expert 2's gate is row block 2 of lmkit's stacked [E, Fe, C].
  const SafeTensorsFile src = SafeTensorsFile::open(m.string());
  const Tensor stacked = src.get("layers.0.feed_forward.experts.w1.weight");
  const Tensor e2 = f.get("model.layers.0.block_sparse_moe.experts.2.w1.weight");
  EXPECT_EQ(std::memcmp(e2.raw(), static_cast<const uint8_t*>(stacked.raw()) + e2.nbytes() * 2, e2.nbytes()), 0);
  // The config.json is Mixtral's.
  const std::string cj = read_text_file((dir / "config.json").string());
  EXPECT_NE(cj.find("\"model_type\": \"mixtral\""), std::string::npos);
  EXPECT_NE(cj.find("\"num_local_experts\": 4"), std::string::npos);
  EXPECT_NE(cj.find("\"num_experts_per_tok\": 2"), std::string::npos);
  const Plan back = plan(dir, "lmkit");
  EXPECT_EQ(back.from, Layout::HF);
  expect_same_tensors(back.graph, m, "hf mixtral round trip");
  EXPECT_EQ(model_of(*back.config), model_of(want));
}

TEST(HfMixtral, ConfigKeysAndDefaults) {
  const ModelConfig c = config_from_hf_json(R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
      "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
      "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2,
      "rope_theta": 1000000.0, "sliding_window": null, "router_aux_loss_coef": 0.02, "output_router_logits": false,
      "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false, "rms_norm_eps": 1e-05})", "mixtral.json");
  EXPECT_EQ(c.moe.n_experts, 8);
  EXPECT_EQ(c.moe.top_k, 2);
  EXPECT_EQ(c.moe.hidden_dim, 14336);
  EXPECT_EQ(c.moe.routing, MoERouting::Softmax);
  EXPECT_FALSE(c.moe.shared_expert);
  EXPECT_EQ(c.moe.interleave_step, 1);
  EXPECT_EQ(c.kv_heads(), 8);
  EXPECT_TRUE(is_mixtral(c));
  EXPECT_FALSE(is_llama4_config(c));
  EXPECT_EQ(gguf_architecture(c), "llama");
  EXPECT_NE(error_of([] {
              config_from_hf_json(R"({"model_type": "mixtral", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
                                      "vocab_size": 10, "sliding_window": 4096})", "m.json");
            }).find("sliding_window 4096: sliding-window attention is not supported"),
            std::string::npos);
}

TEST(HfLlama4, ConditionalGenerationImportsTheTextModelAndTheProjector) {
  const fs::path dir = fixture::dir() / "llama4_hf" / "conditional";
  const Plan p = plan(dir, "lmkit");
  EXPECT_EQ(p.from, Layout::HFLlama4);
  expect_same_tensors(p.graph, fixture::dir() / "llama4_meta" / "lmkit.safetensors", "conditional");
  EXPECT_EQ(p.graph.dropped.size(), 2u);  // the encoder's two tensors
  bool said = false;
  for (const std::string& n : p.notes) said = said || n.find("dropped the vision encoder (2 tensors vision_model.*)") != std::string::npos;
  EXPECT_TRUE(said);
  ModelConfig want = config_from_json(SafeTensorsFile::open((fixture::dir() / "llama4_meta" / "lmkit.safetensors").string())
                                          .metadata()
                                          .at(kConfigMetadataKey),
                                      "meta");
  EXPECT_EQ(p.config->vision_dim, want.vision_dim);
  EXPECT_GE(p.config->image_token_id, 3);
  want.image_token_id = p.config->image_token_id;
  EXPECT_EQ(model_of(*p.config), model_of(want));
  EXPECT_NE(error_of([] { config_from_hf_json(R"({"model_type": "llama4"})", "c.json"); }).find("without a text_config"),
            std::string::npos);
}

}  // namespace
}  // namespace lm::convert
