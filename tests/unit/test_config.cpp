// Model config: JSON round trips, the error messages of parsing, overrides and validation,
// presets, feature gating, checkpoint inference, and the accounting against hand-computed values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "model/accounting.h"
#include "model/config.h"
#include "model/config_infer.h"
#include "model/presets.h"
#include "test_util.h"

namespace lm {
namespace {

// Runs `f`, expecting an lm::Error of `kind`; returns its message (and hint after " | ").
// The message and hint of the error `f` throws, which must be of `kind`.
std::string error_of(const std::function<void()>& f, ErrorKind kind = ErrorKind::Data) { return test::error_and_hint_of(f, kind); }

std::string parse_error(const std::string& text) {
  return error_of([&] { config_from_json(text, "cfg.json"); });
}

// The first validation message of `cfg` after `edit`.
ConditionConfig cond(const std::string& name, ProjLayerType type, int64_t input_dim, int64_t max_elements = 0) {
  ConditionConfig c;
  c.name = name;
  c.proj_layer_type = type;
  c.input_dim = input_dim;
  c.max_elements = max_elements;
  return c;
}

std::string invalid(const std::function<void(ModelConfig&)>& edit, ModelConfig cfg = preset("tiny")) {
  edit(cfg);
  const auto errs = validation_errors(cfg);
  return errs.empty() ? "" : errs[0];
}

// ---------------------------------------------------------------------------------------------
// Derived sizes

TEST(Config, FfnHiddenFollowsMeta) {
  EXPECT_EQ(preset("llama2-7b").ffn_hidden(), 11008);   // round_up(int(8*4096/3) = 10922, 256)
  EXPECT_EQ(preset("llama3-8b").ffn_hidden(), 14336);   // round_up(int(1.3 * 10922) = 14198, 1024)
  EXPECT_EQ(preset("stories15m").ffn_hidden(), 768);    // int(8*288/3) = 768, multiple of 32
  EXPECT_EQ(preset("stories42m").ffn_hidden(), 1376);   // round_up(1365, 32)
  EXPECT_EQ(preset("stories110m").ffn_hidden(), 2048);
  EXPECT_EQ(preset("tiny").ffn_hidden(), 352);          // round_up(341, 32)
  ModelConfig gelu = preset("tiny");
  gelu.ffn_type = FfnType::GELU;
  EXPECT_EQ(gelu.ffn_hidden(), 512);  // 4C
  gelu.hidden_dim = 100;
  EXPECT_EQ(gelu.ffn_hidden(), 100);
  EXPECT_EQ(gelu.moe_hidden(), 100);
}

TEST(Config, LayerSchedules) {
  ModelConfig c = preset("tiny");
  c.n_layers = 6;
  for (int64_t l = 0; l < 6; ++l) EXPECT_FALSE(c.is_moe_layer(l) || c.is_nope_layer(l));
  c.moe.n_experts = 4;
  c.moe.interleave_step = 2;  // Llama 4 Maverick: layers 1, 3, 5
  c.nope_layer_interval = 3;  // layers 2, 5
  c.attn_chunk_size = 16;
  std::vector<int64_t> moe, nope;
  for (int64_t l = 0; l < 6; ++l) {
    if (c.is_moe_layer(l)) moe.push_back(l);
    if (c.is_nope_layer(l)) nope.push_back(l);
  }
  EXPECT_EQ(moe, (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(nope, (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(c.layer_chunk(0), 16);
  EXPECT_EQ(c.layer_chunk(2), 0);  // NoPE layers attend globally
}

// ---------------------------------------------------------------------------------------------
// JSON

TEST(ConfigJson, EveryPresetRoundTripsAndValidates) {
  ASSERT_EQ(preset_names().size(), 19u);
  for (const std::string& name : preset_names()) {
    const ModelConfig c = preset(name);
    EXPECT_EQ(c.name, name);
    EXPECT_TRUE(validation_errors(c).empty()) << name << ": " << validation_errors(c)[0];
    const std::string text = config_to_json(c);
    EXPECT_EQ(config_from_json(text, name), c) << name;
    EXPECT_EQ(config_from_json(config_to_json(c, -1), name), c) << name;
  }
}

TEST(ConfigJson, WritesEveryFieldNested) {
  ModelConfig c = preset("soma-v1");
  c.conditions = {cond("band_gap", ProjLayerType::Linear, 1), cond("formula", ProjLayerType::Formula, 20, 8)};
  c.conditions[1].out_dim = c.dim;
  c.extra_eos_ids = {5, 6};
  const std::string text = config_to_json(c, -1);
  for (const std::string& key : config_keys()) {
    const auto dot = key.find('.');
    const std::string leaf = dot == std::string::npos ? key : key.substr(dot + 1);
    EXPECT_NE(text.find("\"" + leaf + "\":"), std::string::npos) << key;
  }
  EXPECT_NE(text.find("\"rope_scaling\":{\"type\":\"none\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"conditions\":[{\"name\":\"band_gap\",\"proj_layer_type\":\"linear\",\"input_dim\":1,"
                      "\"out_dim\":0,\"max_elements\":0},{\"name\":\"formula\",\"proj_layer_type\":\"formula\","
                      "\"input_dim\":20,\"out_dim\":2048,\"max_elements\":8}]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"rope_mode\":\"standard\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"extra_eos_ids\":[5,6]"), std::string::npos) << text;
  EXPECT_EQ(text.find("block_pos_ids"), std::string::npos) << "the legacy key is never written";
  EXPECT_EQ(config_from_json(text, "x"), c);
}

TEST(ConfigJson, MissingKeysKeepDefaults) {
  const ModelConfig c = config_from_json(R"({"dim": 64, "rope_scaling": {"type": "llama3"}})", "x");
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_layers, ModelConfig{}.n_layers);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::Llama3);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(config_from_json("{}", "x"), ModelConfig{});
  EXPECT_EQ(config_from_json(R"({"n_heads": 6.0})", "x").n_heads, 6);  // an integral number is an integer
}

TEST(ConfigJson, RejectsUnknownKeysWithASuggestion) {
  EXPECT_EQ(parse_error(R"({"n_head": 4})"), "'cfg.json': unknown key 'n_head' | did you mean 'n_heads'?");
  EXPECT_EQ(parse_error(R"({"rope_scaling": {"typ": "llama3"}})"),
            "'cfg.json': unknown key 'rope_scaling.typ' | did you mean 'rope_scaling.type'?");
  EXPECT_EQ(parse_error(R"({"moe": {"topk": 2}})"), "'cfg.json': unknown key 'moe.topk' | did you mean 'moe.top_k'?");
  EXPECT_EQ(parse_error(R"({"rope_scalling": {}})"),
            "'cfg.json': unknown key 'rope_scalling' | did you mean 'rope_scaling'?");
  const std::string far = parse_error(R"({"completely_unrelated_thing": 1})");
  EXPECT_NE(far.find("unknown key 'completely_unrelated_thing'"), std::string::npos) << far;
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
  EXPECT_EQ(parse_error(R"({"rope_scaling.type": "llama3"})"),
            "'cfg.json': unknown key 'rope_scaling.type' | nested fields are nested objects: "
            "{\"rope_scaling\": {\"type\": ...}}");
  EXPECT_EQ(far, "'cfg.json': unknown key 'completely_unrelated_thing' | 'lm-inspect-config --config tiny' prints every key");
  EXPECT_EQ(parse_error(R"({"conditions": [{"name": "x", "dims": 3}]})"),
            "'cfg.json': conditions[0]: unknown key 'dims' | a condition has \"name\", \"proj_layer_type\", "
            "\"input_dim\", \"out_dim\" and \"max_elements\"");
  EXPECT_EQ(parse_error(R"({"conditions": [{"name": "x", "input_dims": 3}]})"),
            "'cfg.json': conditions[0]: unknown key 'input_dims' | did you mean 'input_dim'?");
  EXPECT_EQ(parse_error(R"({"conditions": [{"name": "x", "dim": 3}]})"),
            "'cfg.json': conditions[0]: unknown key 'dim' | did you mean 'input_dim'? a condition is {\"name\", "
            "\"proj_layer_type\", \"input_dim\"} (docs/materium.md)");
}

TEST(ConfigJson, RejectsDuplicateKeys) {
  EXPECT_EQ(parse_error(R"({"dim": 64, "n_layers": 2, "dim": 128})"), "'cfg.json': duplicate key 'dim'");
  EXPECT_EQ(parse_error(R"({"moe": {"top_k": 1, "top_k": 2}})"), "'cfg.json': duplicate key 'moe.top_k'");
  // The same key in two different objects is fine.
  EXPECT_NO_THROW(config_from_json(R"({"rope_scaling": {"factor": 2}, "sigreg": {"enabled": true}})", "x"));
}

TEST(ConfigJson, RejectsWrongTypesNamingTheKey) {
  EXPECT_EQ(parse_error(R"({"n_heads": "six"})"), "'cfg.json': 'n_heads': expected an integer, got \"six\"");
  EXPECT_EQ(parse_error(R"({"n_heads": 6.5})"), "'cfg.json': 'n_heads': expected an integer, got 6.5");
  EXPECT_EQ(parse_error(R"({"dim": 1e30})"), "'cfg.json': 'dim': expected an integer, got 1e+30");
  EXPECT_EQ(parse_error(R"({"norm_eps": "1e-5"})"), "'cfg.json': 'norm_eps': expected a number, got \"1e-5\"");
  EXPECT_EQ(parse_error(R"({"causal": 1})"), "'cfg.json': 'causal': expected true or false, got 1");
  EXPECT_EQ(parse_error(R"({"norm_type": null})"),
            "'cfg.json': 'norm_type': expected one of 'rmsnorm', 'layernorm', got null");
  EXPECT_EQ(parse_error(R"({"norm_type": "batchnorm"})"),
            "'cfg.json': 'norm_type': expected one of 'rmsnorm', 'layernorm', got \"batchnorm\"");
  EXPECT_EQ(parse_error(R"({"ffn_type": "relu"})"), "'cfg.json': 'ffn_type': expected one of 'swiglu', 'gelu', got \"relu\"");
  EXPECT_EQ(parse_error(R"({"gelu_approximate": "fast"})"),
            "'cfg.json': 'gelu_approximate': expected one of 'none', 'tanh', got \"fast\"");
  EXPECT_EQ(parse_error(R"({"rope_scaling": {"type": "yarn"}})"),
            "'cfg.json': 'rope_scaling.type': expected one of 'none', 'llama3', 'linear', got \"yarn\"");
  EXPECT_EQ(parse_error(R"({"rope_scaling": "llama3"})"),
            "'cfg.json': 'rope_scaling': expected an object, got \"llama3\"");
  EXPECT_EQ(parse_error(R"({"sigreg": {"points": [17]}})"), "'cfg.json': 'sigreg.points': expected an integer, got [17]");
  EXPECT_EQ(parse_error(R"({"conditions": [{"name": 3}]})"),
            "'cfg.json': 'conditions[0].name': expected a string, got 3");
}

TEST(ConfigJson, RejectsNonObjectsAndBadJson) {
  EXPECT_EQ(parse_error("[1, 2]"), "'cfg.json': expected a JSON object, got [1,2]");
  const std::string bad = parse_error(R"({"dim": 64,})");
  EXPECT_EQ(bad.rfind("'cfg.json': not valid JSON: ", 0), 0u) << bad;
  EXPECT_NE(bad.find("line 1"), std::string::npos) << bad;
  EXPECT_EQ(parse_error("").rfind("'cfg.json': not valid JSON", 0), 0u);
}

// ---------------------------------------------------------------------------------------------
// Overrides

TEST(ConfigOverrides, SetsScalarsNestedKeysAndStrings) {
  ModelConfig c = preset("tiny");
  apply_overrides(c, {"n_heads=8", "rope_scaling.type=llama3", "sigreg.enabled=true", "norm_type=layernorm",
                      "name=my model", "norm_eps=1e-6", "rope_scaling.factor=32", "moe.top_k=2",
                      R"(conditions=[{"name": "band_gap", "proj_layer_type": "linear", "input_dim": 1}])", "pad_id=-1",
                      "rope_mode=blockwise", "doc_mask_boundary=start"});
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::Llama3);
  EXPECT_TRUE(c.sigreg.enabled);
  EXPECT_EQ(c.norm_type, NormType::LayerNorm);
  EXPECT_EQ(c.name, "my model");
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.moe.top_k, 2);
  ASSERT_EQ(c.conditions.size(), 1u);
  EXPECT_EQ(c.conditions[0], cond("band_gap", ProjLayerType::Linear, 1));
  EXPECT_EQ(c.pad_id, -1);
  EXPECT_EQ(c.rope_mode, RopeMode::Blockwise);
  EXPECT_EQ(c.doc_mask_boundary, DocMaskBoundary::Start);
  // An object merges into the group, key by key.
  apply_override(c, R"(rope_scaling={"type": "linear", "factor": 2})");
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::Linear);
  EXPECT_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  apply_override(c, "name=42");  // a string field takes the text as it is
  EXPECT_EQ(c.name, "42");
}

TEST(ConfigOverrides, ErrorsAreUsageErrors) {
  ModelConfig c = preset("tiny");
  EXPECT_EQ(error_of([&] { apply_override(c, "n_head=4"); }, ErrorKind::Usage),
            "--set 'n_head=4': unknown key 'n_head' | did you mean 'n_heads'?");
  EXPECT_EQ(error_of([&] { apply_override(c, "n_heads=six"); }, ErrorKind::Usage),
            "--set 'n_heads=six': 'n_heads': expected an integer, got \"six\"");
  EXPECT_EQ(error_of([&] { apply_override(c, "norm_type=batchnorm"); }, ErrorKind::Usage),
            "--set 'norm_type=batchnorm': 'norm_type': expected one of 'rmsnorm', 'layernorm', got \"batchnorm\"");
  EXPECT_EQ(error_of([&] { apply_override(c, "ffn_type=3"); }, ErrorKind::Usage),
            "--set 'ffn_type=3': 'ffn_type': expected one of 'swiglu', 'gelu', got \"3\"");
  EXPECT_EQ(error_of([&] { apply_override(c, "causal=yes"); }, ErrorKind::Usage),
            "--set 'causal=yes': 'causal': expected true or false, got \"yes\"");
  EXPECT_EQ(error_of([&] { apply_override(c, "n_heads"); }, ErrorKind::Usage),
            "--set 'n_heads': expected key=value | e.g. --set n_kv_heads=4 or --set rope_scaling.type=llama3");
  EXPECT_EQ(error_of([&] { apply_override(c, "=3"); }, ErrorKind::Usage).rfind("--set '=3': expected key=value | ", 0), 0u);
  EXPECT_EQ(error_of([&] { apply_override(c, "moe.n_expert=2"); }, ErrorKind::Usage),
            "--set 'moe.n_expert=2': unknown key 'moe.n_expert' | did you mean 'moe.n_experts'?");
  EXPECT_EQ(override_key("rope_scaling.type=llama3"), "rope_scaling.type");
  // Bytes that are not UTF-8 (found by fuzzing: the message built from them threw nlohmann's
  // type_error, and a string field holding them could not be saved).
  EXPECT_EQ(error_of([&] { apply_override(c, "dim=rno\xb2"); }, ErrorKind::Usage), "--set 'dim=rno\xb2': not valid UTF-8");
  EXPECT_EQ(error_of([&] { apply_override(c, "name=\xff"); }, ErrorKind::Usage), "--set 'name=\xff': not valid UTF-8");
  EXPECT_NO_THROW(apply_override(c, "name=caf\xc3\xa9"));
  // A value is read by the strict JSON reader: a repeated key is not silently the last one, and
  // nesting is bounded (plain nlohmann took both).
  EXPECT_EQ(error_of([&] { apply_override(c, R"(rope_scaling={"factor": 2, "factor": 8})"); }, ErrorKind::Usage),
            R"(--set 'rope_scaling={"factor": 2, "factor": 8}': duplicate key 'factor')");
  const std::string deep = "rope_scaling=" + std::string(600, '[') + std::string(600, ']');
  EXPECT_EQ(error_of([&] { apply_override(c, deep); }, ErrorKind::Usage),
            "--set '" + deep + "': JSON nested deeper than 512 levels");
}

// ---------------------------------------------------------------------------------------------
// Validation

TEST(ConfigValidation, EachRuleHasAPreciseMessage) {
  using C = ModelConfig;
  EXPECT_EQ(invalid([](C& c) { c.n_heads = 6, c.n_kv_heads = 4, c.dim = 48; }),
            "n_heads (6) is not a multiple of n_kv_heads (4)");
  EXPECT_EQ(invalid([](C& c) { c.dim = 100, c.n_heads = 3; }),
            "dim (100) is not divisible by n_heads (3); set head_dim explicitly");
  EXPECT_EQ(invalid([](C& c) { c.dim = 0; }), "dim must be positive, got 0");
  EXPECT_EQ(invalid([](C& c) { c.n_layers = -2; }), "n_layers must be positive, got -2");
  EXPECT_EQ(invalid([](C& c) { c.vocab_size = 0, c.pad_id = c.eos_id = -1; }), "vocab_size must be positive, got 0");
  EXPECT_EQ(invalid([](C& c) { c.max_seq_len = 0; }), "max_seq_len must be positive, got 0");
  EXPECT_EQ(invalid([](C& c) { c.n_kv_heads = -1; }), "n_kv_heads must be >= 0, got -1");
  EXPECT_EQ(invalid([](C& c) { c.head_dim = 7; }), "head size (7) must be even: RoPE rotates pairs");
  EXPECT_EQ(invalid([](C& c) { c.multiple_of = 0; }), "multiple_of must be positive, got 0");
  EXPECT_EQ(invalid([](C& c) { c.norm_eps = 0; }), "norm_eps must be > 0, got 0");
  EXPECT_EQ(invalid([](C& c) { c.norm_bias = true; }), "norm_bias needs norm_type 'layernorm'");
  EXPECT_EQ(invalid([](C& c) { c.rope_theta = -1; }), "rope_theta must be > 0, got -1");
  EXPECT_EQ(invalid([](C& c) { c.rope_scaling.type = RopeScalingType::Llama3, c.rope_scaling.high_freq_factor = 0.5; }),
            "rope_scaling.high_freq_factor (0.5) is below rope_scaling.low_freq_factor (1)");
  EXPECT_EQ(invalid([](C& c) { c.rope_scaling.type = RopeScalingType::Linear, c.rope_scaling.factor = 0; }),
            "rope_scaling.factor must be > 0, got 0");
  EXPECT_EQ(invalid([](C& c) { c.dropout = 1.0; }), "dropout must be in [0, 1), got 1");
  EXPECT_EQ(invalid([](C& c) { c.attn_dropout = -0.1; }), "attn_dropout must be in [0, 1), got -0.1");
  EXPECT_EQ(invalid([](C& c) { c.emb_dropout = 2; }), "emb_dropout must be in [0, 1), got 2");
  EXPECT_EQ(invalid([](C& c) { c.sigreg.enabled = true, c.sigreg.slices = 0; }), "sigreg.slices must be positive, got 0");
  EXPECT_EQ(invalid([](C& c) { c.eos_id = 264; }), "eos_id (264) is not below vocab_size (264)");
  EXPECT_EQ(invalid([](C& c) { c.bos_id = -5; }), "bos_id must be a token id or -1 (none), got -5");
  EXPECT_EQ(invalid([](C& c) { c.extra_eos_ids = {5, 264}; }), "extra_eos_ids (264) is not below vocab_size (264)");
  EXPECT_EQ(invalid([](C& c) { c.extra_eos_ids = {-1}; }), "extra_eos_ids holds -1: expected token ids");
  EXPECT_EQ(invalid([](C& c) { c.extra_eos_ids = {5, c.eos_id}; }), "extra_eos_ids holds eos_id (257) again");
  EXPECT_EQ(invalid([](C& c) { c.extra_eos_ids = {5, 6, 5}; }), "extra_eos_ids holds 5 twice");
  EXPECT_EQ(invalid([](C& c) { c.eos_id = -1, c.extra_eos_ids = {5}; }),
            "extra_eos_ids without an eos_id (list the first as eos_id)");
  EXPECT_EQ(invalid([](C& c) { c.moe.n_experts = 2, c.moe.top_k = 3; }), "moe.top_k (3) exceeds moe.n_experts (2)");
  EXPECT_EQ(invalid([](C& c) { c.moe.n_experts = 2, c.moe.interleave_step = 9; }),
            "moe.interleave_step (9) leaves no MoE layer among 4 layers");
  EXPECT_EQ(invalid([](C& c) { c.attn_temperature_tuning = true, c.attn_floor_scale = 0; }),
            "attn_floor_scale must be > 0, got 0");
  EXPECT_EQ(invalid([](C& c) { c.attn_chunk_size = 8, c.causal = false; }),
            "attn_chunk_size needs causal attention (a chunk is a causal window)");
  EXPECT_EQ(invalid([](C& c) { c.image_token_id = 5; }), "image_token_id needs vision_dim > 0");
  EXPECT_EQ(invalid([](C& c) { c.vision_dim = 8, c.image_token_id = 264; }),
            "image_token_id (264) is not below vocab_size (264)");
  EXPECT_EQ(invalid([](C& c) { c.vision_dim = 8, c.image_token_id = -2; }),
            "image_token_id must be a token id or -1 (none), got -2");
  EXPECT_EQ(invalid([](C& c) { c.logits_soft_cap = -30; }), "logits_soft_cap must be >= 0 (0 = off), got -30");
  EXPECT_EQ(invalid([](C& c) { c.atoms_token_id = 300; }), "atoms_token_id (300) is not below vocab_size (264)");
  EXPECT_EQ(invalid([](C& c) { c.dim = int64_t(1) << 40; }), "dim (1099511627776) is too large: the limit is 16777216");
  EXPECT_EQ(invalid([](C& c) { c.ffn_dim_multiplier = 1e300, c.hidden_dim = 0; }),
            "ffn_dim_multiplier (1e+300) is too large: the limit is 64");
  EXPECT_EQ(invalid([](C& c) { c.dim = 1 << 20, c.n_heads = 1 << 10, c.n_layers = 1 << 16; }),
            "the model is too large: up to 8.64697e+17 parameters (the limit is 2^50)");  // 2^16 x (4C^2 + 3CF)
  // Valid corner cases.
  EXPECT_EQ(invalid([](C& c) { c.dim = 100, c.n_heads = 3, c.head_dim = 32; }), "");
  EXPECT_EQ(invalid([](C& c) { c.rope_scaling = {RopeScalingType::Llama3, 16, 1, 1, 8192}; }), "");  // Llama 4 Scout's bands
  // Temperature tuning without NoPE layers changes nothing (docs/llama4.md §4): accepted.
  EXPECT_EQ(invalid([](C& c) { c.attn_temperature_tuning = true; }), "");
  EXPECT_EQ(invalid([](C& c) { c.vision_dim = 8, c.image_token_id = 5; }), "");
}

TEST(ConfigValidation, ValidateNamesTheSourceAndListsTheRest) {
  ModelConfig c = preset("tiny");
  c.n_kv_heads = 3;
  c.norm_eps = 0;
  c.dropout = 1;
  EXPECT_EQ(error_of([&] { validate(c, "cfg.json"); }),
            "'cfg.json': n_heads (4) is not a multiple of n_kv_heads (3) | also: norm_eps must be > 0, got 0; "
            "dropout must be in [0, 1), got 1");
  EXPECT_NO_THROW(validate(preset("tiny"), "tiny"));
}

// ---------------------------------------------------------------------------------------------
// Presets and features

TEST(Presets, UnknownPresetListsTheKnownOnes) {
  const std::string msg = error_of([] { preset("llama9"); });
  EXPECT_EQ(msg.rfind("unknown preset 'llama9' | presets: tiny, stories15m,", 0), 0u) << msg;
  EXPECT_FALSE(find_preset("llama9").has_value());
  EXPECT_NE(preset_info("soma-v1"), nullptr);
}

TEST(Presets, SeedArchitecturesHaveTheirDefiningSettings) {
  const ModelConfig soma = preset("soma-v1");
  EXPECT_EQ(soma.vocab_size, 264);
  EXPECT_EQ(soma.pad_id, 256);
  EXPECT_EQ(soma.eos_id, 257);
  EXPECT_EQ(soma.head_size(), 256);
  EXPECT_EQ(soma.ffn_hidden(), 8192);
  EXPECT_EQ(soma.norm_type, NormType::LayerNorm);
  EXPECT_TRUE(soma.norm_bias && soma.attn_bias && soma.ffn_bias && soma.output_bias && soma.sigreg.enabled);
  EXPECT_EQ(soma.sigreg.slices, 256);
  EXPECT_EQ(soma.sigreg.coefficient, 0.02);
  const ModelConfig l3 = preset("llama3-8b");
  EXPECT_EQ(l3.kv_heads(), 8);
  EXPECT_EQ(l3.rope_theta, 500000.0);
  EXPECT_EQ(l3.rope_scaling.type, RopeScalingType::None);
  const ModelConfig m = preset("mobilellm-950m");  // the seed's: QK-norm with weights, rope_base 500000
  EXPECT_TRUE(m.tie_embeddings && m.qk_norm && m.qk_norm_weight);
  EXPECT_EQ(m.head_size(), 64);
  EXPECT_EQ(m.kv_heads(), 6);
  EXPECT_EQ(m.rope_theta, 500000.0);
  const ModelConfig r1 = preset("mobilellm-r1-950m");  // as released: Llama 4's weightless norm, theta 8e6
  EXPECT_TRUE(r1.qk_norm && !r1.qk_norm_weight);
  EXPECT_EQ(r1.rope_theta, 8e6);
  EXPECT_EQ(preset("mobilellm-7b").kv_heads(), 8);
  // 61 layers, head size 7168 / 128 = 56; DeepSeek-V3's split: 3 dense layers, then 58 MoE layers
  // of 256 experts top-8 + 1 shared expert.
  const ModelConfig big = preset("mobilellm-671b");
  EXPECT_EQ(big.n_layers, 61);
  EXPECT_EQ(big.head_size(), 56);
  for (int64_t l = 0; l < 61; ++l) EXPECT_EQ(big.is_moe_layer(l), l >= 3) << l;
  EXPECT_TRUE(big.moe.shared_expert);
  EXPECT_EQ(big.ffn_hidden(), 18432);
  // The seed's name: within 1 % of 671B (0.8 % under: DeepSeek-V3's MLA attention and untied
  // embeddings are not the seed's GQA and tied ones).
  const double total = static_cast<double>(count_params(big).total);
  EXPECT_LT(std::abs(total / 671e9 - 1), 0.01) << total;
}

TEST(Presets, Llama4CountsAsMetaPublishesThem) {
  // Meta's "109B total / 17B active" (Scout) and "400B / 17B" (Maverick): the totals count the
  // vision encoder (the presets' outside_params), the active figures the text model per token.
  auto published = [](const std::string& name) {
    return static_cast<double>(count_params(preset(name)).total + preset_info(name)->outside_params);
  };
  auto text_active = [](const std::string& name) {
    const ParamCounts p = count_params(preset(name));
    return static_cast<double>(p.active - p.vision);
  };
  EXPECT_NEAR(published("llama4-scout") / 109e9, 1.0, 0.01);
  EXPECT_NEAR(published("llama4-maverick") / 400e9, 1.0, 0.01);
  EXPECT_EQ(count_params(preset("llama4-scout")).total - count_params(preset("llama4-scout")).vision,
            107'769'861'120LL);  // docs/llama4.md §13: 107.77B
  EXPECT_NEAR(text_active("llama4-scout"), 17.17e9, 0.005e9);  // Meta rounds both to "17B"
  EXPECT_NEAR(text_active("llama4-maverick"), 17.18e9, 0.005e9);
  // Meta's "17B active" is a figure rounded to two digits: both text models' active counts are
  // 1.0% and 1.1% above 17.0B (the nearest count; without the output matrix it would be 16.1B).
  EXPECT_EQ(std::llround(text_active("llama4-scout") / 1e9), 17);
  EXPECT_EQ(std::llround(text_active("llama4-maverick") / 1e9), 17);
  EXPECT_EQ(count_params(preset("llama4-maverick")).total - count_params(preset("llama4-maverick")).vision,
            400'711'848'960LL);  // docs/llama4.md §13: 400.71B
  const ModelConfig maverick = preset("llama4-maverick");
  EXPECT_FALSE(maverick.is_moe_layer(0));
  EXPECT_TRUE(maverick.is_moe_layer(1));
  EXPECT_EQ(maverick.moe_hidden(), 8192);
  EXPECT_EQ(maverick.ffn_hidden(), 16384);
}

TEST(Features, ProgramsRefuseWhatTheyCannotRun) {
  ModelConfig c = preset("tiny");
  EXPECT_TRUE(unsupported_features(c, Capabilities::none()).empty());
  c.moe.n_experts = 4;
  c.nope_layer_interval = 4;
  c.attn_chunk_size = 64;
  c.attn_temperature_tuning = true;
  c.vision_dim = 32;
  c.conditions = {cond("band_gap", ProjLayerType::Linear, 1)};
  c.rope_mode = RopeMode::Blockwise;
  const auto all = unsupported_features(c, Capabilities::none());
  EXPECT_EQ(all, (std::vector<std::string>{"mixture of experts (moe.n_experts = 4)", "NoPE layers (nope_layer_interval = 4)",
                                           "chunked attention (attn_chunk_size = 64)",
                                           "attention temperature tuning (attn_temperature_tuning)",
                                           "vision embeddings (vision_dim = 32)", "condition embeddings (1 condition)",
                                           "block-wise positions (rope_mode blockwise)"}));
  EXPECT_TRUE(unsupported_features(c, Capabilities::all()).empty());
  Capabilities caps;
  caps.moe = true;
  EXPECT_EQ(unsupported_features(c, caps).size(), 6u);
  const std::string msg = error_of([&] { require_supported(c, Capabilities::none(), "lm-train"); }, ErrorKind::Unsupported);
  EXPECT_EQ(msg.rfind("lm-train does not support mixture of experts (moe.n_experts = 4) yet | also not supported yet: "
                      "NoPE layers",
                      0),
            0u)
      << msg;
  EXPECT_NO_THROW(require_supported(preset("llama2-7b"), Capabilities::none(), "lm-train"));
  // The programs read condition values and form whole-record rows (issue 14, phase 2).
  ModelConfig m = preset("tiny");
  m.conditions = {cond("band_gap", ProjLayerType::Linear, 1)};
  m.rope_mode = RopeMode::Blockwise;
  EXPECT_NO_THROW(require_supported(m, program_capabilities(), "lm-eval-loss"));
  m.vision_dim = 8;  // image features come with --vision (lm-train refuses them itself)
  EXPECT_NO_THROW(require_supported(m, program_capabilities(), "lm-generate"));
  EXPECT_NO_THROW(require_supported(preset("llama2-7b"), program_capabilities(), "lm-train"));
}

// ---------------------------------------------------------------------------------------------
// Accounting, by hand

TEST(Accounting, Llama2_7B) {
  const ParamCounts p = count_params(preset("llama2-7b"));
  EXPECT_EQ(p.embedding, 32000LL * 4096);                       // 131,072,000
  EXPECT_EQ(p.attention, 32LL * 4 * 4096 * 4096);               // 2,147,483,648
  EXPECT_EQ(p.ffn, 32LL * 3 * 4096 * 11008);                    // 4,328,521,728
  EXPECT_EQ(p.norms, 65LL * 4096);                              // 2 per layer + final
  EXPECT_EQ(p.output, 32000LL * 4096);
  EXPECT_EQ(p.total, 6'738'415'616LL);
  EXPECT_EQ(p.active, p.total);
  EXPECT_EQ(p.non_embedding, 6'738'415'616LL - 2 * 131'072'000LL);
  EXPECT_EQ(with_commas(p.total), "6,738,415,616");

  const FlopCounts f = count_flops(preset("llama2-7b"));
  EXPECT_EQ(f.context, 4096);
  // 2 x (attention + FFN + classifier weights) and 4 x L x NH x HS x T.
  EXPECT_EQ(f.matmul_per_token, 2.0 * (2'147'483'648.0 + 4'328'521'728.0 + 131'072'000.0));
  EXPECT_EQ(f.attention_per_token, 4.0 * 32 * 4096 * 4096);
  EXPECT_EQ(f.forward_per_token, 15'361'638'400.0);
  EXPECT_EQ(f.training_per_token, 3 * 15'361'638'400.0);
  EXPECT_EQ(count_flops(preset("llama2-7b"), 1024).attention_per_token, 4.0 * 32 * 4096 * 1024);

  EXPECT_EQ(kv_cache_bytes_per_token(preset("llama2-7b"), 4), 1024.0 * 1024);  // 2 x 32 x 4096 x 4 bytes
  EXPECT_EQ(kv_cache_bytes(preset("llama2-7b"), 0, 2), 2.0 * 1024 * 1024 * 1024);
}

TEST(Accounting, TinyStoriesTied) {
  const ParamCounts p = count_params(preset("stories15m"));
  EXPECT_EQ(p.embedding, 9'216'000);   // 32000 x 288, shared with the classifier
  EXPECT_EQ(p.attention, 6 * 331'776);  // 4 x 288^2 per layer
  EXPECT_EQ(p.ffn, 6 * 663'552);        // 3 x 288 x 768
  EXPECT_EQ(p.norms, 13 * 288);
  EXPECT_EQ(p.output, 0);
  EXPECT_EQ(p.total, 15'191'712);
  EXPECT_EQ(count_params(preset("stories42m")).total, 41'689'600);
  EXPECT_EQ(count_params(preset("stories110m")).total, 109'529'856);
  // The classifier still costs FLOPs when tied.
  EXPECT_EQ(count_flops(preset("stories15m"), 1).matmul_per_token, 2.0 * (6 * (331'776 + 663'552) + 9'216'000));
}

TEST(Accounting, Tiny) {
  const ModelConfig c = preset("tiny");
  const ParamCounts p = count_params(c);
  EXPECT_EQ(p.embedding, 264 * 128);
  EXPECT_EQ(p.attention, 4 * 4 * 128 * 128);
  EXPECT_EQ(p.ffn, 4 * 3 * 128 * 352);
  EXPECT_EQ(p.norms, 9 * 128);
  EXPECT_EQ(p.output, 264 * 128);
  EXPECT_EQ(p.total, 871'552);

  // Training memory at batch 2 x seq 16: 16 bytes per parameter plus activations. Per token:
  // C + (C + 2) + 2V = 786, and per layer 2C + 4 + (NH + 2 NKV) HS + NH HS + NH T + 2C + 3F
  // = 256 + 4 + 384 + 128 + 64 + 256 + 1056 = 2148.
  const TrainingMemory m = training_memory(c, 2, 16);
  EXPECT_EQ(m.weights, 4.0 * 871'552);
  EXPECT_EQ(m.grads, 4.0 * 871'552);
  EXPECT_EQ(m.adam_moments, 8.0 * 871'552);
  EXPECT_EQ(m.activations, 4.0 * (786 + 4 * 2148) * 2 * 16);
  EXPECT_EQ(m.total, 16.0 * 871'552 + 4.0 * (786 + 4 * 2148) * 32);
  EXPECT_EQ(training_memory(c, 1).seq, 256);
}

TEST(Accounting, SomaV1WithBiases) {
  const ParamCounts p = count_params(preset("soma-v1"));
  const int64_t C = 2048, F = 8192, V = 264;
  EXPECT_EQ(p.embedding, V * C);
  EXPECT_EQ(p.attention, 24 * 4 * (C * C + C));                 // q, k, v, o with biases
  EXPECT_EQ(p.ffn, 24 * (C * F + F + F * C + C));                // two layers with biases
  EXPECT_EQ(p.norms, 24 * 2 * 2 * C + 2 * C);                    // LayerNorm gamma + beta
  EXPECT_EQ(p.output, V * C + V);                                // untied predictor with bias
  EXPECT_EQ(p.total, 1'209'684'232LL);
  // GELU FFN: two matmuls.
  EXPECT_EQ(count_flops(preset("soma-v1"), 1).matmul_per_token, 2.0 * (24 * (4 * C * C + 2 * C * F) + V * C));
}

TEST(Accounting, GqaTiedWithQkNorm) {
  ModelConfig c = preset("tiny");
  c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 100, c.hidden_dim = 128;
  c.tie_embeddings = true, c.qk_norm = true, c.pad_id = -1, c.eos_id = 99;
  ASSERT_TRUE(validation_errors(c).empty());
  // HS 16: q 64x64, k 32x64, v 32x64, o 64x64 = 12,288 per layer, + q/k norm 2 x 16.
  ParamCounts p = count_params(c);
  EXPECT_EQ(p.attention, 2 * (12'288 + 32));
  EXPECT_EQ(p.ffn, 2 * 3 * 64 * 128);
  EXPECT_EQ(p.output, 0);
  EXPECT_EQ(p.total, 6'400 + 24'640 + 49'152 + 320);
  c.qk_norm_weight = false;  // Llama 4's weightless norm
  EXPECT_EQ(count_params(c).total, 80'512 - 64);
  EXPECT_EQ(kv_cache_bytes_per_token(c, 4), 2.0 * 2 * 32 * 4);  // 2 layers x (k, v) x NKV*HS x 4 bytes
  // The seed's MobileLLM (QK-norm weights: 2 x 64 per layer) and MobileLLM-R1 (weightless).
  EXPECT_EQ(count_params(preset("mobilellm-140m")).total, 140'250'432LL);
  EXPECT_EQ(count_params(preset("mobilellm-360m")).total, 359'433'088LL);
  EXPECT_EQ(count_params(preset("mobilellm-950m")).total, 949'688'576LL);
  EXPECT_EQ(count_params(preset("mobilellm-r1-140m")).total, 140'248'512LL);
  EXPECT_EQ(count_params(preset("mobilellm-r1-950m")).total, 949'685'760LL);
  EXPECT_EQ(count_params(preset("llama3-8b")).total, 8'030'261'248LL);
  // The rest of the seed's table: 7B and 70B (GQA 8 kv heads, tied 128256 vocabulary, QK-norm
  // weights), and R1 360M. Per layer of 7B: attention 2 x 4096^2 + 2 x 1024 x 4096, FFN 3 x 4096
  // x 11008, norms 2 x 4096 + 2 x 128; the embedding 128256 x 4096 once, the final norm.
  EXPECT_EQ(count_params(preset("mobilellm-7b")).total,
            32LL * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 4096 * 11008 + 2 * 4096 + 2 * 128) + 128256LL * 4096 + 4096);
  EXPECT_EQ(count_params(preset("mobilellm-7b")).total, 6'196'310'016LL);
  EXPECT_EQ(count_params(preset("mobilellm-70b")).total, 69'503'053'824LL);
  EXPECT_EQ(count_params(preset("mobilellm-r1-360m")).total, 359'431'168LL);
}

TEST(Accounting, Llama4TinyPreset) {
  // 4 layers of C 128 (4 heads / 2 kv of 32, weightless QK-norm), every layer MoE: router 8 x 128,
  // 8 experts and a shared one of 3 x 128 x 256; untied byte vocabulary 264.
  const ParamCounts p = count_params(preset("llama4-tiny"));
  const int64_t expert = 3 * 128 * 256, attention = 2 * 128 * 128 + 2 * 64 * 128;
  const int64_t layer = attention + 8 * 128 + 8 * expert + expert + 2 * 128;
  EXPECT_EQ(p.total, 4 * layer + 2 * 264 * 128 + 128);
  EXPECT_EQ(p.total, 3'808'384);
  EXPECT_EQ(p.active, p.total - 4 * 7 * expert);  // top-1: seven experts idle per layer
  EXPECT_EQ(p.active, 1'055'872);
}

TEST(Accounting, MixtureOfExperts) {
  ModelConfig c = preset("tiny");
  c.dim = 32, c.n_layers = 4, c.n_heads = 4, c.vocab_size = 50, c.hidden_dim = 64, c.pad_id = -1, c.eos_id = 49;
  c.moe = {4, 2, 48, true, 2};  // 4 experts of 48, top-2, shared expert, layers 1 and 3
  ASSERT_TRUE(validation_errors(c).empty());
  const ParamCounts p = count_params(c);
  const int64_t expert = 3 * 32 * 48;  // 4608
  EXPECT_EQ(p.attention, 4 * 4 * 32 * 32);
  EXPECT_EQ(p.ffn, 2 * 3 * 32 * 64);  // dense layers 0 and 2
  EXPECT_EQ(p.moe_router, 2 * 32 * 4);
  EXPECT_EQ(p.moe_experts, 2 * 4 * expert);
  EXPECT_EQ(p.moe_shared, 2 * expert);
  EXPECT_EQ(p.total, 1'600 + 16'384 + 12'288 + 256 + 36'864 + 9'216 + 9 * 32 + 1'600);  // 78,496
  EXPECT_EQ(p.active, p.total - 2 * (4 - 2) * expert);                                 // 60,064
  const FlopCounts f = count_flops(c, 10);
  // Per token: attention 4 x 4096, dense FFN 2 x 6144, MoE 2 x (router 128 + 3 experts), classifier 1600.
  EXPECT_EQ(f.matmul_per_token, 2.0 * (16'384 + 12'288 + 2 * (128 + 3 * expert) + 1'600));
  EXPECT_EQ(f.attention_per_token, 4.0 * 32 * 10 * 4);
  // Decode reads the active weights, the embedding as one row.
  EXPECT_EQ(decode_params_per_token(c), p.active - 1'600 + 32);
  c.vision_dim = 8;  // read per image place, not per decoded token
  EXPECT_EQ(decode_params_per_token(c), p.active - 1'600 + 32);
  c.vision_dim = 0;
  // Training activations per token: the dense layers 2C + 4 + 4C (q, k, v, o: MHA) + T probabilities + 2C
  // + 3F, the MoE layers the same attention part + E + 4K + K (2C + 3Fe) + 3Fe (shared); embedding,
  // final norm, logits.
  const double attn = 2 * 32 + 4 + 4 * 32 + 4 * 10 + 2 * 32;
  const double per_token = 2 * (attn + 3 * 64) + 2 * (attn + 4 + 4 * 2 + 2 * (2 * 32 + 3 * 48) + 3 * 48) + 32 + 34 + 2 * 50;
  EXPECT_EQ(training_memory(c, 3, 10).activations, 4.0 * per_token * 3 * 10);
  EXPECT_EQ(count_params(preset("mobilellm-671b")).total, 665'339'006'640LL);
}

TEST(Accounting, ChunkedLayersAttendToTheirChunk) {
  ModelConfig c = preset("tiny");
  c.attn_chunk_size = 8;
  c.nope_layer_interval = 2;  // layers 1 and 3 are NoPE and global; 0 and 2 chunked
  EXPECT_EQ(count_flops(c, 100).attention_per_token, 4.0 * 128 * (8 + 100 + 8 + 100));
  EXPECT_EQ(kv_cache_bytes(c, 100, 4), 2.0 * 128 * (8 + 100 + 8 + 100) * 4);
  EXPECT_EQ(kv_cache_bytes(c, 4, 4), 2.0 * 128 * 16 * 4);  // shorter than the chunk
}

TEST(Accounting, Formatting) {
  EXPECT_EQ(with_commas(0), "0");
  EXPECT_EQ(with_commas(999), "999");
  EXPECT_EQ(with_commas(1000), "1,000");
  EXPECT_EQ(with_commas(-1234567), "-1,234,567");
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(human_bytes(4.0 * 1024 * 1024 * 1024), "4.00 GiB");
  EXPECT_EQ(human_flops(15'361'638'400.0), "15.36 GFLOP");
}

// ---------------------------------------------------------------------------------------------
// Checkpoint inference

struct Ckpt {
  SafeTensorsWriter w;
  void add(const std::string& name, Shape shape) {
    const int64_t n = shape_numel(shape);
    w.add_lazy(name, DType::F32, shape, [n](ByteSink& s) {
      const std::vector<float> zeros(static_cast<size_t>(n));
      s.write(zeros.data(), zeros.size() * sizeof(float));
    });
  }
  SafeTensorsFile file() const {
    std::vector<uint8_t> bytes;
    auto sink = memory_sink(&bytes);
    w.write(*sink);
    sink->finish();
    return SafeTensorsFile::parse(MappedFile::from_bytes(std::move(bytes), "ckpt.safetensors"));
  }
};

// A Meta-style checkpoint: C 32, 2 layers, q rows 32, k/v rows 16, F 48, V 40.
Ckpt llama_like(bool tied, bool qk_norm, bool ffn_gelu = false, bool biases = false) {
  Ckpt k;
  const int64_t C = 32, F = 48, V = 40;
  k.add("tok_embeddings.weight", {V, C});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    k.add(p + "attention.wq.weight", {32, C});
    k.add(p + "attention.wk.weight", {16, C});
    k.add(p + "attention.wv.weight", {16, C});
    k.add(p + "attention.wo.weight", {C, 32});
    if (qk_norm) {
      k.add(p + "attention.q_norm.weight", {8});
      k.add(p + "attention.k_norm.weight", {8});
    }
    k.add(p + "attention_norm.weight", {C});
    k.add(p + "ffn_norm.weight", {C});
    if (biases) {
      k.add(p + "attention_norm.bias", {C});
      k.add(p + "ffn_norm.bias", {C});
    }
    k.add(p + "feed_forward.w1.weight", {F, C});
    k.add(p + "feed_forward.w2.weight", {C, F});
    if (!ffn_gelu) k.add(p + "feed_forward.w3.weight", {F, C});
  }
  k.add("norm.weight", {C});
  if (biases) k.add("norm.bias", {C});
  if (!tied) k.add("output.weight", {V, C});
  return k;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(CheckpointConfig, InfersShapesWithHeadsFromQkNorm) {
  const SafeTensorsFile f = llama_like(/*tied=*/true, /*qk_norm=*/true).file();
  const CheckpointConfig k = config_from_checkpoint(f, {});
  const ModelConfig& c = k.config;
  EXPECT_FALSE(k.from_metadata);
  EXPECT_EQ(c.dim, 32);
  EXPECT_EQ(c.vocab_size, 40);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);  // 32 q rows / HS 8
  EXPECT_EQ(c.kv_heads(), 2);
  EXPECT_EQ(c.head_size(), 8);
  EXPECT_EQ(c.ffn_hidden(), 48);
  EXPECT_EQ(c.ffn_type, FfnType::SwiGLU);
  EXPECT_EQ(c.norm_type, NormType::RMSNorm);
  EXPECT_TRUE(c.tie_embeddings && c.qk_norm && c.qk_norm_weight);
  EXPECT_TRUE(contains(k.inferred, "n_heads"));
  EXPECT_TRUE(contains(k.assumed, "rope_theta"));
  EXPECT_TRUE(contains(k.assumed, "norm_type"));  // RMSNorm vs bias-free LayerNorm: shapes cannot tell
  EXPECT_TRUE(validation_errors(c).empty());
  EXPECT_EQ(c.eos_id, 2);
}

TEST(CheckpointConfig, NeedsNHeadsWithoutQkNorm) {
  const SafeTensorsFile f = llama_like(false, false, /*gelu=*/true, /*biases=*/true).file();
  const std::string msg = error_of([&] { config_from_checkpoint(f, {}); });
  EXPECT_EQ(msg, "cannot infer n_heads from 'ckpt.safetensors': wq has 32 rows, which any head count dividing it fits"
                 " | give it: --set n_heads=N (or --set head_dim=N)");
  const CheckpointConfig k = config_from_checkpoint(f, {"n_heads=2", "rope_theta=500000"});
  EXPECT_EQ(k.config.n_heads, 2);
  EXPECT_EQ(k.config.kv_heads(), 1);
  EXPECT_EQ(k.config.ffn_type, FfnType::GELU);
  EXPECT_EQ(k.config.norm_type, NormType::LayerNorm);
  EXPECT_TRUE(k.config.norm_bias);
  EXPECT_FALSE(k.config.tie_embeddings);
  EXPECT_EQ(k.config.rope_theta, 500000.0);
  EXPECT_FALSE(contains(k.assumed, "rope_theta"));
  EXPECT_TRUE(contains(k.overridden, "n_heads"));
  EXPECT_EQ(config_from_checkpoint(f, {"head_dim=8"}).config.n_heads, 4);
  EXPECT_EQ(error_of([&] { config_from_checkpoint(f, {"n_heads=3"}); }),
            "'ckpt.safetensors': wq has 32 rows, not a multiple of n_heads 3");
  EXPECT_EQ(error_of([&] { config_from_checkpoint(f, {"n_heads=2", "dim=64"}); }),
            "--set dim contradicts 'ckpt.safetensors': the tensors say 32, got 64");
}

TEST(CheckpointConfig, ChecksEveryLayersShapes) {
  Ckpt k = llama_like(true, true);
  k.add("layers.2.attention.wq.weight", {32, 32});  // a third layer with only wq
  const SafeTensorsFile f = k.file();
  EXPECT_EQ(error_of([&] { config_from_checkpoint(f, {}); }),
            "'ckpt.safetensors': no tensor 'layers.2.attention.wk.weight' (needed to infer the config)");
  Ckpt bad;
  bad.add("tok_embeddings.weight", {40, 32});
  bad.add("layers.0.attention.wq.weight", {32, 32});
  bad.add("layers.0.attention.wk.weight", {16, 32});
  bad.add("layers.0.attention.wv.weight", {16, 30});
  bad.add("layers.0.feed_forward.w1.weight", {48, 32});
  const SafeTensorsFile g = bad.file();
  EXPECT_EQ(error_of([&] { config_from_checkpoint(g, {"n_heads=4"}); }),
            "'ckpt.safetensors': tensor 'layers.0.attention.wv.weight' has shape [16, 30], expected [16, 32]");
  Ckpt none;
  none.add("model.embed_tokens.weight", {40, 32});
  const SafeTensorsFile h = none.file();
  EXPECT_EQ(error_of([&] { config_from_checkpoint(h, {}); }).rfind(
                "'ckpt.safetensors': no model config (no 'lmkit.config' metadata) and no 'tok_embeddings.weight' to "
                "infer one from | lmkit infers",
                0),
            0u);
}

TEST(CheckpointConfig, MetadataWins) {
  Ckpt k = llama_like(true, false);
  ModelConfig want = preset("tiny");
  k.w.set_metadata(kConfigMetadataKey, config_to_json(want));
  const SafeTensorsFile f = k.file();
  const CheckpointConfig got = config_from_checkpoint(f, {"max_seq_len=512"});
  EXPECT_TRUE(got.from_metadata);
  want.max_seq_len = 512;
  EXPECT_EQ(got.config, want);
  Ckpt bad = llama_like(true, false);
  bad.w.set_metadata(kConfigMetadataKey, R"({"n_heads": "six"})");
  const SafeTensorsFile g = bad.file();
  EXPECT_EQ(error_of([&] { config_from_checkpoint(g, {}); }),
            "'ckpt.safetensors (metadata lmkit.config)': 'n_heads': expected an integer, got \"six\"");
}

TEST(CheckpointConfig, InfersMixtureOfExperts) {
  const int64_t C = 16;
  // Dense layers 0 and 2; MoE layers 1 and 3 with Llama 4's stacked experts (w1/w3 [E, F, C],
  // w2 [E, C, F]) and a shared expert. `last_w2_f`: the F of layer 3's stacked w2.
  auto moe_ckpt = [&](int64_t last_w2_f) {
    Ckpt k;
    k.add("tok_embeddings.weight", {20, C});
    for (int l = 0; l < 4; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      for (const char* w : {"wq", "wo"}) k.add(p + "attention." + w + ".weight", {C, C});
      for (const char* w : {"wk", "wv"}) k.add(p + "attention." + w + ".weight", {C, C});
      k.add(p + "attention_norm.weight", {C});
      k.add(p + "ffn_norm.weight", {C});
      auto ffn = [&](const std::string& q, int64_t F) {
        k.add(q + "w1.weight", {F, C});
        k.add(q + "w2.weight", {C, F});
        k.add(q + "w3.weight", {F, C});
      };
      if (l % 2 == 1) {
        k.add(p + "feed_forward.router.weight", {3, C});
        k.add(p + "feed_forward.experts.w1.weight", {3, 24, C});
        k.add(p + "feed_forward.experts.w2.weight", {3, C, l == 3 ? last_w2_f : 24});
        k.add(p + "feed_forward.experts.w3.weight", {3, 24, C});
        ffn(p + "feed_forward.shared_expert.", 24);
      } else {
        ffn(p + "feed_forward.", 40);
      }
    }
    k.add("norm.weight", {C});
    return k;
  };
  const SafeTensorsFile f = moe_ckpt(24).file();
  const CheckpointConfig got = config_from_checkpoint(f, {"n_heads=2", "moe.top_k=2"});
  EXPECT_EQ(got.config.moe, (MoEConfig{3, 2, 24, true, 2}));
  EXPECT_EQ(got.config.ffn_hidden(), 40);
  EXPECT_FALSE(contains(got.assumed, "moe.top_k"));
  EXPECT_TRUE(validation_errors(got.config).empty());
  const SafeTensorsFile g = moe_ckpt(20).file();  // every MoE layer is checked, not only the first
  EXPECT_EQ(error_of([&] { config_from_checkpoint(g, {"n_heads=2"}); }),
            "'ckpt.safetensors': tensor 'layers.3.feed_forward.experts.w2.weight' has shape [3, 16, 20], expected [3, 16, 24]");
}

}  // namespace
}  // namespace lm

namespace lm {
namespace {

TEST(JsonInput, TellsJsonFromSafetensorsByNameThenBytes) {
  auto bytes = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  const std::string obj = " \n{\"dim\": 8}", arr = "[1, 2]", text = "dim=8";
  EXPECT_TRUE(looks_like_json("x", bytes(obj), obj.size()));
  EXPECT_TRUE(looks_like_json("x", bytes(arr), arr.size()));
  EXPECT_FALSE(looks_like_json("x", bytes(text), text.size()));
  EXPECT_TRUE(looks_like_json("w.json", bytes(text), text.size()));        // the name decides first
  EXPECT_FALSE(looks_like_json("m.safetensors", bytes(obj), obj.size()));
  std::string st(8, '\0');  // a safetensors header: length 2, then "{}"
  st[0] = 2;
  st += "{}";
  EXPECT_FALSE(looks_like_json("model", bytes(st), st.size()));
  st[0] = 100;  // a length past the end: not a safetensors header, and not JSON text either
  EXPECT_FALSE(looks_like_json("model", bytes(st), st.size()));
}

}  // namespace
}  // namespace lm
