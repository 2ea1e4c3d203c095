// The seeds' own config files (tests/seed-configs/, made and mapped by seed_configs.py): each
// detected, read, compared with the lmkit config the mapping must give, validated and accounted,
// written back in its format (the .back.json file) and read back; the error cases with the words
// their messages carry; and write-backs that cannot exist.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/accounting.h"
#include "model/config.h"
#include "model/config_formats.h"
#include "model/params.h"
#include "model/presets.h"

namespace lm {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

fs::path seed_dir() { return fs::path(LMKIT_SOURCE_DIR) / "tests" / "seed-configs"; }

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in) << p;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<ojson> manifest() {
  std::vector<ojson> out;
  for (const ojson& e : ojson::parse(read_text(seed_dir() / "manifest.json"))) out.push_back(e);
  return out;
}

std::string error_of(const std::function<void()>& f, ErrorKind kind = ErrorKind::Data) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

class SeedConfigFile : public ::testing::TestWithParam<ojson> {};

TEST_P(SeedConfigFile, MapsAsTheManifestSays) {
  const ojson& e = GetParam();
  const std::string file = e["file"].get<std::string>();
  const std::string text = read_text(seed_dir() / file);
  if (e["format"].is_null()) {  // detection itself fails
    const std::string msg = error_of([&] { detect_seed_format(text, file); });
    for (const auto& w : e["error"]) EXPECT_NE(msg.find(w.get<std::string>()), std::string::npos) << msg;
    return;
  }
  const std::optional<SeedFormat> fmt = detect_seed_format(text, file);
  ASSERT_TRUE(fmt.has_value()) << file;
  EXPECT_EQ(name_of(*fmt), e["format"].get<std::string>());
  EXPECT_EQ(seed_format_from_name(e["format"].get<std::string>()), fmt);
  if (e.contains("error")) {
    const std::string msg = error_of([&] { config_from_seed_json(text, *fmt, file); });
    for (const auto& w : e["error"]) EXPECT_NE(msg.find(w.get<std::string>()), std::string::npos) << msg;
    EXPECT_NE(msg.find(e["message"].get<std::string>()), std::string::npos) << "the reference mapping's words: " << msg;
    return;
  }
  // Read: the lmkit config of X.lmkit.json exactly.
  const SeedConfig got = config_from_seed_json(text, *fmt, file);
  const ModelConfig want = config_from_json(read_text(seed_dir() / e["expect"].get<std::string>()), e["expect"]);
  EXPECT_EQ(got.config, want) << config_to_json(got.config) << "\nwant\n" << config_to_json(want);
  // Validated and accounted: the parameter count is the parameter table's.
  const auto errs = validation_errors(got.config);
  EXPECT_TRUE(errs.empty()) << errs[0];
  EXPECT_EQ(count_params(got.config).total, ParameterLayout(got.config).num_parameters()) << file;
  // Written back: X.back.json, key for key in the seed's order; reading that gives the config again.
  const std::string back = config_to_seed_json(got.config, *fmt);
  const ojson want_back = ojson::parse(read_text(seed_dir() / e["write_back"].get<std::string>()));
  EXPECT_EQ(ojson::parse(back), want_back) << back;
  std::vector<std::string> got_keys, want_keys;
  const ojson back_doc = ojson::parse(back);
  for (const auto& [k, v] : back_doc.items()) got_keys.push_back(k);
  for (const auto& [k, v] : want_back.items()) want_keys.push_back(k);
  EXPECT_EQ(got_keys, want_keys);
  EXPECT_EQ(config_from_seed_json(back, *fmt, "back").config, want);
  EXPECT_EQ(detect_seed_format(back, "back"), fmt);
  // One line when asked.
  EXPECT_EQ(config_to_seed_json(got.config, *fmt, -1).find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Manifest, SeedConfigFile, ::testing::ValuesIn(manifest()), [](const auto& info) {
  std::string name = info.param["file"].template get<std::string>();
  for (char& ch : name)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
});

TEST(SeedConfigs, EveryCaseOfTheManifestRuns) {
  EXPECT_EQ(manifest().size(), 15u);
  EXPECT_EQ(seed_format_names(), (std::vector<std::string>{"materium", "xlstm-jax", "mobilellm", "soma"}));
  EXPECT_FALSE(seed_format_from_name("hf").has_value());
}

TEST(SeedConfigs, FieldsWithoutMathAreNoted) {
  const SeedConfig x = config_from_seed_json(read_text(seed_dir() / "xlstm_llama.json"), SeedFormat::XlstmJax, "x");
  EXPECT_EQ(x.noted, (std::vector<std::string>{"scan_blocks", "attention_backend", "dtype", "parallel"}));
  const SeedConfig m =
      config_from_seed_json(read_text(seed_dir() / "mobilellm_140m_asdict.json"), SeedFormat::MobileLLM, "m");
  EXPECT_EQ(m.noted, (std::vector<std::string>{"num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                               "initializer_range", "use_gradient_checkpointing",
                                               "gradient_checkpointing_mode"}));
  EXPECT_TRUE(config_from_seed_json(R"({"dropout_rate": 0.0})", SeedFormat::Soma, "s").noted.empty());
  // A plain lmkit config has no seed marker.
  EXPECT_FALSE(detect_seed_format(R"({"dim": 64, "n_layers": 2})", "c").has_value());
}

TEST(SeedConfigs, KeysTypesAndValuesTheSeedWouldRefuse) {
  auto read = [](const std::string& text, SeedFormat f) {
    return error_of([&] { config_from_seed_json(text, f, "c.json"); });
  };
  EXPECT_EQ(read(R"({"dim": 64, "n_layer": 2, "condition_config": null})", SeedFormat::Materium),
            "'c.json': materium ModelArgs: unknown key 'n_layer'");
  EXPECT_EQ(read(R"({"dim": "64", "condition_config": null})", SeedFormat::Materium),
            "'c.json': materium ModelArgs: 'dim': expected an integer, got \"64\"");
  EXPECT_EQ(read(R"({"dim": 64, "condition_config": {"g": {"proj_layer_type": "mlp", "input_dim": 1, "out_dim": 64}}})",
                 SeedFormat::Materium),
            "'c.json': materium ModelArgs: condition_config.g: unknown proj_layer_type 'mlp'");
  EXPECT_EQ(read(R"({"dim": 64, "condition_config": {"g": {"proj_layer_type": "linear", "input_dim": 1}}})",
                 SeedFormat::Materium),
            "'c.json': materium ModelArgs: condition_config.g: 'out_dim' is required (the seed gives it no default)");
  EXPECT_EQ(read(R"({"dim": 64, "condition_config": {"g": 3}})", SeedFormat::Materium),
            "'c.json': materium ModelArgs: condition_config.g: expected a ConditionConfig object");
  EXPECT_EQ(read(R"({"vocab_size": 256, "embedding_dim": 64})", SeedFormat::XlstmJax),
            "'c.json': xlstm-jax LlamaConfig: 'num_blocks' is required (the seed gives it no default)");
  EXPECT_EQ(read(R"({"vocab_size": 256, "embedding_dim": 256, "num_blocks": 2, "attention_backend": "flash"})",
                 SeedFormat::XlstmJax),
            "'c.json': xlstm-jax LlamaConfig: unknown attention_backend 'flash'");
  EXPECT_EQ(read(R"({"vocab_size": 256, "embedding_dim": 64, "num_blocks": 2, "head_dim": 0})", SeedFormat::XlstmJax),
            "'c.json': xlstm-jax LlamaConfig: head_dim must be positive, got 0");
  EXPECT_EQ(read(R"({"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "embed_dim": 64, "hidden_dim": 128,
                     "rope_scaling": {"factor": 2}})",
                 SeedFormat::MobileLLM),
            "'c.json': MobileLLMConfig: rope_scaling {\"factor\":2}: the seed does not define its form");
  EXPECT_EQ(read(R"({"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "embed_dim": 64, "hidden_dim": 128,
                     "tie_word_embeddings": false, "use_weight_sharing": true})",
                 SeedFormat::MobileLLM),
            "'c.json': MobileLLMConfig: tie_word_embeddings and use_weight_sharing disagree");
  EXPECT_EQ(read(R"({"dropout_rate": 0.1, "vocab_size": 200})", SeedFormat::Soma),
            "'c.json': soma ModelConfig: vocab_size 200 leaves no room for PAD 256 and EOS 257");
  EXPECT_EQ(read(R"({"dropout_rate": 0.1, "sig_reg": {"slices": 64, "t": 3}})", SeedFormat::Soma),
            "'c.json': soma SIGRegConfig: unknown key 't'");
  EXPECT_EQ(read("[1, 2]", SeedFormat::Soma), "'c.json': soma ModelConfig: expected a JSON object, got [1,2]");
  // A named format decides the keys, whatever detection would say.
  EXPECT_EQ(read(R"({"embed_dim": 64})", SeedFormat::Soma), "'c.json': soma ModelConfig: unknown key 'embed_dim'");
}

TEST(SeedConfigs, AWriteBackExistsExactlyWhenItReadsBackTheSame) {
  auto write_error = [](const ModelConfig& c, SeedFormat f) {
    return error_of([&] { config_to_seed_json(c, f); }, ErrorKind::Unsupported);
  };
  const ModelConfig l3 = preset("llama3-8b");
  EXPECT_EQ(write_error(l3, SeedFormat::Materium), "tie_embeddings = false has no materium equivalent");
  ModelConfig tied = l3;
  tied.tie_embeddings = true;
  tied.dropout = tied.attn_dropout = tied.emb_dropout = 0.1;
  EXPECT_EQ(write_error(tied, SeedFormat::Materium), "rope_theta = 500000.0 has no materium equivalent");
  EXPECT_EQ(write_error(l3, SeedFormat::XlstmJax), "n_kv_heads = 8 has no xlstm-jax equivalent");
  EXPECT_EQ(write_error(preset("tiny"), SeedFormat::Soma), "max_seq_len = 256 has no soma equivalent");
  // Equivalent spellings do not count: derived head_dim / kv heads / hidden size, a preset's name.
  ModelConfig m = preset("mobilellm-950m");
  m.qk_norm_weight = true;  // the seed's code (the preset is R1's weightless norm)
  m.rope_theta = 500000;
  const SeedConfig back = config_from_seed_json(config_to_seed_json(m, SeedFormat::MobileLLM), SeedFormat::MobileLLM, "b");
  EXPECT_EQ(back.config.kv_heads(), m.kv_heads());
  EXPECT_EQ(back.config.ffn_hidden(), m.ffn_hidden());
  EXPECT_EQ(write_error(preset("mobilellm-950m"), SeedFormat::MobileLLM),
            "qk_norm_weight = false has no mobilellm equivalent");
  // materium keeps a derived hidden size as null, and writes one its rule does not give.
  ModelConfig mat;
  mat.dim = 64, mat.n_layers = 2, mat.n_heads = 4, mat.vocab_size = 40, mat.tie_embeddings = true;
  mat.dropout = mat.attn_dropout = mat.emb_dropout = 0.1;
  EXPECT_TRUE(ojson::parse(config_to_seed_json(mat, SeedFormat::Materium))["hidden_dim"].is_null());
  mat.ffn_dim_multiplier = 3.0;  // F 512, where materium's rule gives 256
  EXPECT_EQ(ojson::parse(config_to_seed_json(mat, SeedFormat::Materium))["hidden_dim"], mat.ffn_hidden());
  ConditionConfig f;
  f.name = "formula", f.proj_layer_type = ProjLayerType::Formula, f.input_dim = 20, f.max_elements = 8;
  mat.conditions = {f};
  EXPECT_EQ(write_error(mat, SeedFormat::Materium).rfind("conditions = [{", 0), 0u);
}

}  // namespace
}  // namespace lm
