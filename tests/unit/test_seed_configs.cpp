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

// A key a file leaves out takes the seed's default, never lmkit's (docs/seed-configs.md): xlstm-jax's
// head_dim 128 and ffn_multiple_of 64 (and flax RMSNorm's eps 1e-6), MobileLLMConfig's rope_base
// 500000, max_seq_len 32768 and QK-norm, materium's ModelArgs defaults, soma V1's constants.
TEST(SeedConfigs, AKeyLeftOutTakesTheSeedsDefault) {
  const ModelConfig lm_defaults;
  const ModelConfig x =
      config_from_seed_json(R"({"vocab_size": 512, "embedding_dim": 512, "num_blocks": 2})", SeedFormat::XlstmJax, "x")
          .config;
  EXPECT_EQ(x.head_dim, 128);
  EXPECT_EQ(x.head_size(), 128);
  EXPECT_EQ(x.n_heads, 4);  // embedding_dim // head_dim
  EXPECT_EQ(x.multiple_of, 64);
  EXPECT_NE(lm_defaults.multiple_of, 64);  // so the mapping, not lmkit's default, gave it
  EXPECT_EQ(x.norm_eps, 1e-6);
  EXPECT_EQ(x.rope_theta, 10000.0);
  EXPECT_TRUE(x.causal);
  EXPECT_FALSE(x.tie_embeddings);
  EXPECT_EQ(x.ffn_hidden(), 1408);  // round_up(int(8 * 512 / 3) = 1365, 64)
  EXPECT_TRUE(validation_errors(x).empty());

  const ModelConfig m = config_from_seed_json(
                            R"({"num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "embed_dim": 64, "hidden_dim": 128})",
                            SeedFormat::MobileLLM, "m")
                            .config;
  EXPECT_EQ(m.rope_theta, 500000.0);
  EXPECT_EQ(m.max_seq_len, 32768);
  EXPECT_EQ(m.vocab_size, 128256);
  EXPECT_EQ(m.bos_id, 128000);
  EXPECT_EQ(m.eos_id, 128001);
  EXPECT_TRUE(m.qk_norm && m.qk_norm_weight && m.tie_embeddings);
  EXPECT_EQ(m.head_size(), 16);
  EXPECT_TRUE(validation_errors(m).empty());
  // The presets named as the seed's table carry the same two values.
  for (const char* name : {"mobilellm-140m", "mobilellm-950m"}) {
    EXPECT_EQ(preset(name).rope_theta, 500000.0) << name;
    EXPECT_EQ(preset(name).max_seq_len, 32768) << name;
  }

  const ModelConfig mat = config_from_seed_json(R"({"condition_config": null})", SeedFormat::Materium, "a").config;
  EXPECT_EQ(mat.dim, 4096);
  EXPECT_EQ(mat.n_layers, 32);
  EXPECT_EQ(mat.vocab_size, 32000);
  EXPECT_EQ(mat.multiple_of, 256);
  EXPECT_EQ(mat.max_seq_len, 2048);
  EXPECT_EQ(mat.dropout, 0.1);
  EXPECT_EQ(mat.rope_mode, RopeMode::Standard);
  EXPECT_EQ(mat.atom_block_size, 4);
  EXPECT_TRUE(mat.tie_embeddings);
  EXPECT_TRUE(mat.conditions.empty());

  const ModelConfig soma = config_from_seed_json(R"({"dropout_rate": 0.0})", SeedFormat::Soma, "s").config;
  EXPECT_EQ(soma.max_seq_len, 1024);  // V1_MAX_SEQ_LEN, as lm-tokenize's byte-v1 default
  EXPECT_EQ(soma.dim, 2048);
  EXPECT_EQ(soma.n_layers, 24);
  EXPECT_EQ(soma.vocab_size, 264);
  EXPECT_EQ(soma.sigreg.slices, 256);
  EXPECT_TRUE(soma.sigreg.enabled);
}

// Every key of every format, each at a value other than the seed's default (keys without math
// at the seed's default: they are written back so), read and written back: the same document,
// key for key in the seed's order. A key spelled one way in the reader and another in the
// writer, or read into one lmkit field and written from another, breaks it.
TEST(SeedConfigs, EveryFieldOfEveryFormatRoundTrips) {
  const std::vector<std::pair<SeedFormat, std::string>> docs = {
      {SeedFormat::Materium,
       R"({"dim": 96, "n_layers": 3, "n_heads": 6, "n_kv_heads": 2, "vocab_size": 50, "hidden_dim": 200,
           "multiple_of": 32, "norm_eps": 1e-06, "max_seq_len": 64, "dropout": 0.05, "pad_id": 0,
           "condition_config": {"sg": {"proj_layer_type": "embedding", "input_dim": 230, "out_dim": 96},
                                "gap": {"proj_layer_type": "linear", "input_dim": 2, "out_dim": 96}},
           "rope_mode": "BLOCKWISE", "atoms_token_id": 4, "lattice_token_id": 3, "atom_block_size": 3})"},
      {SeedFormat::XlstmJax,
       R"({"vocab_size": 300, "embedding_dim": 96, "num_blocks": 3, "head_dim": 32, "qk_norm": true, "causal": true,
           "theta": 50000.0, "ffn_multiple_of": 32, "ffn_dim_multiplier": 1.5, "use_bias": true, "scan_blocks": true,
           "attention_backend": "xla", "mask_across_document_boundaries": true, "dtype": "float32",
           "dropout_rate": 0.1, "add_embedding_dropout": true, "logits_soft_cap": 30.0,
           "parallel": {"data_axis_size": -1, "fsdp_axis_size": 1, "pipeline_axis_size": 1, "model_axis_size": 1,
                        "data_axis_name": "dp", "fsdp_axis_name": "fsdp", "pipeline_axis_name": "pipe",
                        "model_axis_name": "tp", "remat": [], "fsdp_modules": [], "fsdp_min_weight_size": 262144,
                        "fsdp_gather_dtype": null, "fsdp_grad_scatter_dtype": null, "tp_async_dense": true}})"},
      // The other value of each boolean the first document leaves at the seed's default (causal).
      {SeedFormat::XlstmJax,
       R"({"vocab_size": 300, "embedding_dim": 64, "num_blocks": 2, "head_dim": 16, "qk_norm": false, "causal": false,
           "theta": 10000.0, "ffn_multiple_of": 64, "ffn_dim_multiplier": 1.0, "use_bias": false, "scan_blocks": true,
           "attention_backend": "xla", "mask_across_document_boundaries": false, "dtype": "float32",
           "dropout_rate": 0.0, "add_embedding_dropout": false, "logits_soft_cap": null,
           "parallel": {"data_axis_size": -1, "fsdp_axis_size": 1, "pipeline_axis_size": 1, "model_axis_size": 1,
                        "data_axis_name": "dp", "fsdp_axis_name": "fsdp", "pipeline_axis_name": "pipe",
                        "model_axis_name": "tp", "remat": [], "fsdp_modules": [], "fsdp_min_weight_size": 262144,
                        "fsdp_gather_dtype": null, "fsdp_grad_scatter_dtype": null, "tp_async_dense": true}})"},
      {SeedFormat::MobileLLM,
       R"({"vocab_size": 1000, "num_layers": 3, "num_heads": 6, "num_kv_heads": 2, "embed_dim": 96, "hidden_dim": 200,
           "max_seq_len": 128, "rope_base": 20000.0, "use_qk_norm": false, "tie_word_embeddings": false,
           "dropout": 0.1, "norm_eps": 1e-06, "attention_dropout": 0.05})"},
      {SeedFormat::Soma,
       R"({"dropout_rate": 0.1, "embedding_dim": 96, "pwff_hidden_dim": 200, "num_layers": 3, "num_heads": 6,
           "vocab_size": 300, "max_wavelength": 20000.0, "scale_factor": 2.0,
           "sig_reg": {"t_max": 2.5, "points": 9, "slices": 32, "coefficient": 0.1}})"},
  };
  for (const auto& [fmt, text] : docs) {
    SCOPED_TRACE(name_of(fmt));
    const ojson doc = ojson::parse(text);
    EXPECT_EQ(detect_seed_format(text, "d"), fmt);
    const SeedConfig got = config_from_seed_json(text, fmt, "d");
    const auto errs = validation_errors(got.config);
    EXPECT_TRUE(errs.empty()) << errs[0];
    const ojson back = ojson::parse(config_to_seed_json(got.config, fmt));
    std::vector<std::string> got_keys, want_keys;
    for (const auto& [k, v] : back.items()) got_keys.push_back(k);
    for (const auto& [k, v] : doc.items()) want_keys.push_back(k);
    EXPECT_EQ(got_keys, want_keys);
    for (const auto& [k, v] : doc.items()) EXPECT_EQ(back.value(k, ojson()), v) << k;
    EXPECT_EQ(config_from_seed_json(back.dump(), fmt, "back").config, got.config);
  }
  // The values land in the lmkit fields the seeds' documents name (docs/seed-configs.md).
  const ModelConfig m = config_from_seed_json(docs[0].second, SeedFormat::Materium, "m").config;
  EXPECT_EQ(m.n_kv_heads, 2);
  EXPECT_EQ(m.hidden_dim, 200);
  EXPECT_EQ(m.norm_eps, 1e-6);
  EXPECT_EQ(m.attn_dropout, 0.05);
  EXPECT_EQ(m.pad_id, 0);
  EXPECT_EQ(m.conditions.size(), 2u);
  EXPECT_EQ(m.rope_mode, RopeMode::Blockwise);
  EXPECT_EQ(m.atom_block_size, 3);
  const ModelConfig x = config_from_seed_json(docs[1].second, SeedFormat::XlstmJax, "x").config;
  EXPECT_EQ(x.n_heads, 3);
  EXPECT_EQ(x.rope_theta, 50000);
  EXPECT_EQ(x.multiple_of, 32);
  EXPECT_TRUE(x.attn_bias && x.ffn_bias && x.doc_mask && x.qk_norm);
  EXPECT_EQ(x.emb_dropout, 0.1);
  EXPECT_EQ(x.logits_soft_cap, 30.0);
  const ModelConfig b = config_from_seed_json(docs[3].second, SeedFormat::MobileLLM, "b").config;
  EXPECT_EQ(b.rope_theta, 20000);
  EXPECT_EQ(b.attn_dropout, 0.05);
  EXPECT_FALSE(b.tie_embeddings);
  EXPECT_EQ(b.max_seq_len, 128);
  const ModelConfig so = config_from_seed_json(docs[4].second, SeedFormat::Soma, "s").config;
  EXPECT_EQ(so.rope_theta, 20000);
  EXPECT_EQ(so.rope_scale_factor, 2.0);
  EXPECT_EQ(so.sigreg.points, 9);
  EXPECT_EQ(so.sigreg.coefficient, 0.1);
  EXPECT_EQ(so.hidden_dim, 200);
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
  const ModelConfig m = preset("mobilellm-950m");  // the seed's table: QK-norm weights, rope_base 500000
  const SeedConfig back = config_from_seed_json(config_to_seed_json(m, SeedFormat::MobileLLM), SeedFormat::MobileLLM, "b");
  EXPECT_EQ(back.config.kv_heads(), m.kv_heads());
  EXPECT_EQ(back.config.ffn_hidden(), m.ffn_hidden());
  EXPECT_EQ(write_error(preset("mobilellm-r1-950m"), SeedFormat::MobileLLM),  // R1 as released
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
