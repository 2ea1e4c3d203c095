// Llama 4 configs in Meta's and Hugging Face's conventions (docs/llama4.md §7, §12): the
// conversion fixtures' params.json and config.json give the fixtures' lmkit.config, Meta's
// expert width rule (Scout and the fixture), Llama 4's defaults, write-back that reads back as
// the same model, and the refusals (unknown params keys, irregular layer lists, the
// multimodal config, features a convention cannot carry).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "test_util.h"
#include "convert/config_io.h"
#include "convert/names.h"
#include "convert/rules.h"
#include "convert/source.h"
#include "core/error.h"
#include "io/metadata_keys.h"
#include "io/stream.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace lm::convert {
namespace {

namespace fs = std::filesystem;

using test::error_of;

ModelConfig fixture_config(const std::string& dir) {
  const SafeTensorsFile f = SafeTensorsFile::open((fixture::dir() / dir / "lmkit.safetensors").string());
  return config_from_json(f.metadata().at(kConfigMetadataKey), dir);
}

// One spelling of the same model: derived sizes resolved, no name.
ModelConfig same_model(ModelConfig c) {
  c.name = "";
  c.hidden_dim = c.ffn_hidden();
  c.moe.hidden_dim = c.moe.n_experts > 0 ? c.moe_hidden() : 0;
  c.multiple_of = 256;
  c.ffn_dim_multiplier = 0;
  c.head_dim = 0;
  return c;
}

std::string read(const fs::path& p) { return read_text_file(p.string()); }

TEST(Llama4Config, MetaParamsGiveTheFixtureConfig) {
  const ModelConfig want = fixture_config("llama4_meta");
  for (const char* form : {"released", "state_dict"}) {
    const fs::path p = fixture::dir() / "llama4_meta" / form / "params.json";
    ModelConfig c = config_from_params_json(read(p), p.string());
    c.name = want.name;
    EXPECT_EQ(config_to_json(c), config_to_json(want)) << form;
  }
  EXPECT_EQ(config_convention(read(fixture::dir() / "llama4_meta" / "released" / "params.json"), "p"), "meta");
}

TEST(Llama4Config, MetaExpertWidthRuleAndDefaults) {
  // Scout: 20480 -> 13653 -> 16383 -> 8191 -> 8192; dense 16384; Llama 4's rope and theta.
  const std::string scout = R"({"dim": 5120, "n_layers": 48, "n_heads": 40, "n_kv_heads": 8, "vocab_size": 202048,
    "multiple_of": 2048, "ffn_dim_multiplier": 1.2, "ffn_exp": 4.0, "norm_eps": 1e-05, "use_scaled_rope": true,
    "nope_layer_interval": 4, "use_qk_norm": true, "attn_temperature_tuning": true, "attention_chunk_size": 8192,
    "moe_args": {"num_experts": 16, "capacity_factor": 1.0, "auto_scale_F": true, "top_k": 1,
                 "interleave_moe_layer_step": 1}, "max_seq_len": 10485760})";
  const ModelConfig c = config_from_params_json(scout, "scout.json");
  EXPECT_EQ(c.moe.hidden_dim, 8192);
  EXPECT_EQ(c.ffn_hidden(), 16384);
  EXPECT_EQ(c.rope_theta, 500000);
  EXPECT_EQ(c.rope_scaling.factor, 16);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 1);
  EXPECT_EQ(c.attn_floor_scale, 8192);
  EXPECT_EQ(c.attn_scale, 0.1);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qk_norm_weight);
  EXPECT_TRUE(c.moe.shared_expert);
  // Without auto_scale_F the capacity factor does nothing: 16383 rounds to 16384.
  std::string no_scale = scout;
  no_scale.replace(no_scale.find("\"auto_scale_F\": true"), 20, "\"auto_scale_F\": false");
  EXPECT_EQ(config_from_params_json(no_scale, "s").moe.hidden_dim, 16384);
  // Wrapped as {"model": {...}} (transformers' converter accepts it).
  EXPECT_EQ(config_from_params_json("{\"model\": " + scout + "}", "s").moe.hidden_dim, 8192);
  // Write-back: Meta's params read back as the same model.
  ModelConfig back = config_from_params_json(config_to_params_json(c), "back.json");
  EXPECT_EQ(config_to_json(same_model(back)), config_to_json(same_model(c)));
  const ModelConfig fx = fixture_config("llama4_meta");
  back = config_from_params_json(config_to_params_json(fx), "back.json");
  EXPECT_EQ(config_to_json(same_model(back)), config_to_json(same_model(fx)));
}

TEST(Llama4Config, MetaParamsRefuseWhatLmkitCannotHonour) {
  const std::string base = R"({"dim": 24, "n_layers": 4, "n_heads": 4, "multiple_of": 8, "nope_layer_interval": 4)";
  EXPECT_EQ(error_of([&] { config_from_params_json(base + R"(, "nope_layer_intervall": 2})", "p.json"); }),
            "'p.json': Llama 4 params.json: unknown key 'nope_layer_intervall'");
  EXPECT_EQ(error_of([&] { config_from_params_json(base + R"(, "ffn_exp": 4, "moe_args": {"num_experts": 2}})", "p.json"); }),
            "'p.json': moe_args needs ffn_dim_multiplier (Meta's MoE width rule requires it)");
  EXPECT_EQ(error_of([&] {
              config_from_params_json(base + R"(, "ffn_dim_multiplier": 1.3, "moe_args": {"num_experts": 2}})", "p.json");
            }),
            "'p.json': moe_args needs ffn_exp (the experts' width is int(ffn_exp * dim) by Meta's rule)");
  EXPECT_EQ(error_of([&] {
              config_from_params_json(base + R"(, "ffn_exp": 4, "ffn_dim_multiplier": 1.3, "moe_args": {"num_experts": 2, "topk": 1}})", "p.json");
            }),
            "'p.json': moe_args: unknown key 'topk'");
  EXPECT_EQ(error_of([&] { config_from_params_json(base + R"(, "lora_args": {"rank": 8}})", "p.json"); }),
            "'p.json': lora_args: LoRA checkpoints are not supported");
  EXPECT_EQ(error_of([&] { config_from_params_json(base + R"(, "head_dim": 8})", "p.json"); }),
            "'p.json': head_dim 8 is not dim / n_heads (Meta's attention uses dim // n_heads)");
  // Llama 3's params.json is unchanged: its unknown keys are ignored, its defaults are Llama 3's.
  const ModelConfig l3 = config_from_params_json(R"({"dim": 24, "n_layers": 2, "n_heads": 4, "foo": 1})", "p.json");
  EXPECT_EQ(l3.rope_theta, 10000);
  // Weighted QK-norm has no params.json spelling (Llama 4's is weightless).
  ModelConfig q = l3;
  q.qk_norm = true;
  EXPECT_NE(error_of([&] { config_to_params_json(q); }).find("QK-norm"), std::string::npos);
}

TEST(Llama4Config, HuggingFaceTextConfigGivesTheFixtureConfig) {
  const fs::path p = fixture::dir() / "llama4_hf" / "checkpoint" / "config.json";
  const ModelConfig c = config_from_hf_json(read(p), p.string());
  const ModelConfig want = fixture_config("llama4_hf");
  EXPECT_EQ(config_to_json(same_model(c)), config_to_json(same_model(want)));
  EXPECT_EQ(config_convention(read(p), "c"), "hf");
  // Written back and read again: the same model.
  const ModelConfig back = config_from_hf_json(config_to_hf_json(c, "float32"), "back.json");
  EXPECT_EQ(config_to_json(same_model(back)), config_to_json(same_model(c)));
  // A dense Llama 4 text model (moe_layers []) and no chunking (attention_chunk_size null).
  ModelConfig dense = want;
  dense.moe = MoEConfig{};
  dense.attn_chunk_size = 0;
  const std::string dense_json = config_to_hf_json(dense, "float32");
  EXPECT_NE(dense_json.find("\"attention_chunk_size\": null"), std::string::npos) << dense_json;
  EXPECT_EQ(config_to_json(same_model(config_from_hf_json(dense_json, "d.json"))), config_to_json(same_model(dense)));
}

TEST(Llama4Config, HuggingFaceDefaultsAndRefusals) {
  // Absent keys take Llama4TextConfig's defaults.
  const ModelConfig d = config_from_hf_json(R"({"model_type": "llama4_text"})", "c.json");
  EXPECT_EQ(d.dim, 5120);
  EXPECT_EQ(d.n_layers, 48);
  EXPECT_EQ(d.moe.n_experts, 16);
  EXPECT_EQ(d.moe.hidden_dim, 8192);
  EXPECT_EQ(d.ffn_hidden(), 16384);
  EXPECT_EQ(d.nope_layer_interval, 4);
  EXPECT_EQ(d.attn_chunk_size, 8192);
  EXPECT_TRUE(d.attn_temperature_tuning);
  EXPECT_TRUE(d.qk_norm);
  EXPECT_FALSE(d.qk_norm_weight);
  EXPECT_EQ(config_from_hf_json(R"({"model_type": "llama4_text", "attention_chunk_size": null})", "c").attn_chunk_size, 0);
  EXPECT_TRUE(config_from_hf_json(R"({"model_type": "llama4_text", "attn_temperature_tuning": 4})", "c").attn_temperature_tuning);
  const std::string small = R"({"model_type": "llama4_text", "num_hidden_layers": 4, )";
  EXPECT_EQ(config_from_hf_json(small + R"("no_rope_layers": [1, 1, 1, 1]})", "c").nope_layer_interval, 0);
  EXPECT_EQ(config_from_hf_json(small + R"("no_rope_layers": [1, 0, 1, 0]})", "c").nope_layer_interval, 2);
  EXPECT_EQ(error_of([&] { config_from_hf_json(small + R"("no_rope_layers": [1, 0, 0, 1]})", "c.json"); }),
            "'c.json': no_rope_layers [1,0,0,1] are not every n-th layer for any n (lmkit's NoPE layers are those "
            "with (i + 1) % nope_layer_interval == 0)");
  EXPECT_EQ(error_of([&] { config_from_hf_json(small + R"("interleave_moe_layer_step": 2, "moe_layers": [0, 2]})", "c.json"); }),
            "'c.json': moe_layers [0,2] are not every 2. layer (interleave_moe_layer_step): lmkit places MoE layers by "
            "the interleave");
  EXPECT_EQ(config_from_hf_json(small + R"("moe_layers": []})", "c").moe.n_experts, 0);
  EXPECT_NE(error_of([&] { config_from_hf_json(small + R"("layer_types": ["full_attention", "full_attention", "full_attention", "full_attention"]})", "c"); })
                .find("layer_types"),
            std::string::npos);
  // Llama4ForConditionalGeneration: its text_config is a llama4_text config (test_gguf_moe.cpp imports one).
  EXPECT_EQ(error_of([] { config_from_hf_json(R"({"model_type": "llama4", "text_config": {}})", "c.json"); }),
            "'c.json': text_config: no 'model_type'");
  // The text model has no vision projection.
  ModelConfig v = fixture_config("llama4_meta");
  EXPECT_NE(error_of([&] { config_to_hf_json(v, "float32"); }).find("vision_projection"), std::string::npos);
}

// The graph `g` holds exactly the tensors of `file`, byte for byte.
void expect_same_tensors(const Graph& g, const fs::path& file, const std::string& what) {
  const SafeTensorsFile want = SafeTensorsFile::open(file.string());
  std::set<std::string> names;
  for (const Node& n : g.nodes) {
    names.insert(n.name);
    const TensorInfo* info = want.find(n.name);
    if (!info) {
      ADD_FAILURE() << what << ": unexpected " << n.name;
      continue;
    }
    EXPECT_EQ(n.shape, info->shape) << what << ": " << n.name;
    const Tensor got = n.load();
    const Tensor w = want.get(n.name);
    ASSERT_EQ(got.nbytes(), w.nbytes()) << what << ": " << n.name;
    EXPECT_EQ(std::memcmp(got.raw(), w.raw(), w.nbytes()), 0) << what << ": " << n.name << " differs";
  }
  for (const TensorInfo& t : want.tensors())
    EXPECT_TRUE(names.count(t.name)) << what << ": missing " << t.name;
}

Graph imported(const fs::path& file, Layout layout, const ModelConfig& cfg) {
  Source src = open_source(file.string());
  Graph g = src.graph;
  apply_rules(g, import_rules(layout), &cfg);
  return g;
}

TEST(Llama4Config, FirstDenseLayersAreSaidByHuggingFacesMoeLayersOnly) {
  // moe.first_dense_layers (DeepSeek-V3's dense first layers): transformers' moe_layers lists the
  // MoE layers, so llama4_text says it both ways; Meta's params.json and llama.cpp's llama4 place
  // MoE layers by the interleave alone: writing them refuses it.
  const std::string small = R"({"model_type": "llama4_text", "num_hidden_layers": 6, )";
  const ModelConfig c = config_from_hf_json(small + R"("moe_layers": [2, 3, 4, 5]})", "c.json");
  EXPECT_EQ(c.moe.first_dense_layers, 2);
  EXPECT_EQ(c.moe.interleave_step, 1);
  const ModelConfig stepped = config_from_hf_json(small + R"("interleave_moe_layer_step": 2, "moe_layers": [3, 5]})", "c");
  EXPECT_EQ(stepped.moe.first_dense_layers, 3);  // the first listed layer (2 would say the same)
  EXPECT_EQ(stepped.moe.interleave_step, 2);
  EXPECT_EQ(config_from_hf_json(small + R"("interleave_moe_layer_step": 2, "moe_layers": [1, 3, 5]})", "c").moe.first_dense_layers, 0);
  EXPECT_EQ(error_of([&] { config_from_hf_json(small + R"("moe_layers": [2, 4]})", "c.json"); }),
            "'c.json': moe_layers [2,4] are not every 1. layer (interleave_moe_layer_step): lmkit places MoE layers by "
            "the interleave");
  const std::string written = config_to_hf_json(c, "float32");
  EXPECT_EQ(config_to_json(same_model(config_from_hf_json(written, "back.json"))), config_to_json(same_model(c)));
  ModelConfig meta = fixture_config("llama4_meta");
  meta.moe.interleave_step = 1;
  meta.moe.first_dense_layers = 1;
  EXPECT_NE(error_of([&] { config_to_params_json(meta); }).find("moe.first_dense_layers 1 (Llama 4's ModelArgs places MoE layers"),
            std::string::npos);
  bool refused = false;
  for (const std::string& why : gguf_unsupported(c))
    refused = refused || why.find("moe.first_dense_layers 2 (llama.cpp's llama4") != std::string::npos;
  EXPECT_TRUE(refused);
  ModelConfig mixtral = c;  // Mixtral routes every layer: dense first layers make it a Llama 4 style config
  mixtral.moe.routing = MoERouting::Softmax;
  mixtral.moe.shared_expert = false;
  mixtral.nope_layer_interval = mixtral.attn_chunk_size = 0;
  mixtral.attn_temperature_tuning = mixtral.qk_norm = false;
  mixtral.moe.first_dense_layers = 0;
  EXPECT_TRUE(is_mixtral(mixtral));
  mixtral.moe.first_dense_layers = 2;
  EXPECT_FALSE(is_mixtral(mixtral));
}

TEST(Llama4Names, MetaCheckpointsImportBitExact) {
  const ModelConfig cfg = fixture_config("llama4_meta");
  for (const char* form : {"released", "state_dict"}) {
    const fs::path dir = fixture::dir() / "llama4_meta" / form;
    std::vector<std::string> names;
    for (const Node& n : open_source((dir / "consolidated.00.safetensors").string()).graph.nodes) names.push_back(n.name);
    EXPECT_EQ(detect_layout(names, false), Layout::Meta) << form;
    const Graph g = imported(dir / "consolidated.00.safetensors", Layout::Meta, cfg);
    expect_same_tensors(g, fixture::dir() / "llama4_meta" / "lmkit.safetensors", form);
    if (std::string(form) == "released") EXPECT_EQ(g.dropped.size(), 2u);  // the two vision_embeddings tensors
  }
  // Written in Meta's module names and read back: the same tensors.
  Graph out = open_source((fixture::dir() / "llama4_meta" / "lmkit.safetensors").string()).graph;
  apply_rules(out, export_rules(Layout::Meta), &cfg);
  std::set<std::string> names;
  for (const Node& n : out.nodes) names.insert(n.name);
  EXPECT_TRUE(names.count("layers.1.feed_forward.router_DE"));
  EXPECT_TRUE(names.count("layers.1.feed_forward.experts.w2"));
  for (const Node& n : out.nodes)
    if (n.name == "layers.1.feed_forward.experts.w1") EXPECT_EQ(n.shape, (Shape{4, 24, 48}));  // [E, C, Fe]
  apply_rules(out, import_rules(Layout::Meta), &cfg);
  expect_same_tensors(out, fixture::dir() / "llama4_meta" / "lmkit.safetensors", "meta round trip");
}

TEST(Llama4Names, HuggingFaceTextModelImportsAndExportsBitExact) {
  const fs::path hf = fixture::dir() / "llama4_hf" / "checkpoint" / "model.safetensors";
  const ModelConfig cfg = fixture_config("llama4_hf");
  std::vector<std::string> names;
  for (const Node& n : open_source(hf.string()).graph.nodes) names.push_back(n.name);
  EXPECT_EQ(detect_layout(names, false), Layout::HFLlama4);
  expect_same_tensors(imported(hf, Layout::HFLlama4, cfg), fixture::dir() / "llama4_hf" / "lmkit.safetensors", "hf import");
  Graph out = open_source((fixture::dir() / "llama4_hf" / "lmkit.safetensors").string()).graph;
  apply_rules(out, export_rules(Layout::HFLlama4), &cfg);
  expect_same_tensors(out, hf, "hf export");
}

TEST(Llama4Names, TransposeRuleStacksExperts) {
  EXPECT_EQ(parse_rule("transpose", "x=experts").stack, "experts");
  EXPECT_EQ(parse_rule("transpose", "x=3").stack, "3");
  EXPECT_EQ(error_of([] { parse_rule("transpose", "x=two"); }),
            "bad --transpose 'x=two': the stack count must be 'experts' (moe.n_experts) or a positive number, got 'two'");
  // [2*2, 3] viewed as [2, 2, 3] -> [2, 3, 2]
  Tensor t = Tensor::zeros(DType::F32, {4, 3});
  for (int i = 0; i < 12; ++i) t.data_mut<float>()[i] = static_cast<float>(i);
  const Tensor s = transpose_stacked(t, 2);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  const std::vector<float> got(s.data<float>(), s.data<float>() + 12);
  EXPECT_EQ(got, (std::vector<float>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));
}

}  // namespace
}  // namespace lm::convert
