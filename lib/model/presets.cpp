// The presets. Each block cites where its numbers come from; where a size has no public
// definition the derivation is spelled out.
#include "model/presets.h"

#include <functional>

#include "core/error.h"

namespace lm {

namespace {

struct Preset {
  PresetInfo info;
  std::function<ModelConfig()> make;
};

// Byte-level tokens as soma V1 numbers them: 256 bytes, then PAD 256, EOS 257 (8 specials).
void byte_vocab(ModelConfig& c) {
  c.vocab_size = 264;
  c.pad_id = 256;
  c.eos_id = 257;
  c.bos_id = -1;
}

// llama2.c (karpathy/llama2.c, README "models" table; train.py: multiple_of 32, dropout 0,
// vocab 32000; model.py: RMSNorm eps 1e-5, RoPE theta 10000, output tied to tok_embeddings).
ModelConfig tinystories(int64_t dim, int64_t layers, int64_t heads, int64_t seq) {
  ModelConfig c;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = heads;
  c.vocab_size = 32000;
  c.multiple_of = 32;
  c.max_seq_len = seq;
  c.norm_eps = 1e-5;
  c.tie_embeddings = true;
  return c;
}

// The seed's MobileLLM table (shared/docs/seeds/003: MobileLLMConfig, get_mobilellm_config
// "140m" ... "671b"; docs/seed-configs.md): the Llama 3 vocabulary 128256 (BOS 128000, EOS
// 128001), tied embeddings, GQA, head size embed_dim / num_heads, SwiGLU of hidden_dim,
// RMSNorm eps 1e-5, QK-norm as the seed's code writes it (RMSNorm(head_dim) with its weight,
// before RoPE), rope_base 500000, context 32768.
ModelConfig mobilellm(int64_t dim, int64_t layers, int64_t heads, int64_t kv_heads, int64_t hidden) {
  ModelConfig c;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.hidden_dim = hidden;
  c.vocab_size = 128256;
  c.max_seq_len = 32768;
  c.norm_eps = 1e-5;
  c.qk_norm = true;
  c.qk_norm_weight = true;
  c.tie_embeddings = true;
  c.rope_theta = 500000;
  c.bos_id = 128000;
  c.eos_id = 128001;
  return c;
}

// MobileLLM-R1 as released (facebookresearch/MobileLLM-R1 README "Model Architecture"; the HF
// config.json of facebook/MobileLLM-R1-*, Llama4ForCausalLM as a dense text model): the seed's
// shapes with Llama 4's weightless QK-norm, rope_theta 8,000,000 and head_dim 64.
// attention_chunk_size 32768 equals the context, so no chunking; every layer uses RoPE.
ModelConfig mobilellm_r1(int64_t dim, int64_t layers, int64_t heads, int64_t kv_heads, int64_t hidden) {
  ModelConfig c = mobilellm(dim, layers, heads, kv_heads, hidden);
  c.head_dim = 64;
  c.qk_norm_weight = false;
  c.rope_theta = 8'000'000;
  return c;
}

// Llama 4's text models (Meta llama-models models/llama4/args.py and the released params.json;
// transformers Llama4TextConfig; docs/llama4.md §13): C 5120, 48 layers, 40 / 8 heads of 128,
// vocabulary 202048 (BOS 200000, EOS 200001, PAD 200018), untied, RMSNorm eps 1e-5, rope_theta
// 500000, experts of 8192 (Meta's rule, §7) and dense layers of 16384, top-1 sigmoid routing
// with a shared expert, NoPE every 4th layer, chunk 8192 on the others, temperature tuning
// (floor 8192, scale 0.1), the vision projection [5120, 4096]. For accounting (the programs run
// every feature, but at 100B+ parameters not on this machine).
ModelConfig llama4(int64_t experts, int64_t interleave, bool qk_norm) {
  ModelConfig c;
  c.dim = 5120;
  c.n_layers = 48;
  c.n_heads = 40;
  c.n_kv_heads = 8;
  c.head_dim = 0;  // 5120 / 40 = 128
  c.vocab_size = 202048;
  c.hidden_dim = 16384;
  c.norm_eps = 1e-5;
  c.qk_norm = qk_norm;
  c.qk_norm_weight = false;
  c.rope_theta = 500000;
  c.bos_id = 200000;
  c.eos_id = 200001;
  c.pad_id = 200018;
  c.nope_layer_interval = 4;
  c.attn_chunk_size = 8192;
  c.attn_temperature_tuning = true;
  c.attn_floor_scale = 8192;
  c.attn_scale = 0.1;
  c.moe.n_experts = experts;
  c.moe.top_k = 1;
  c.moe.hidden_dim = 8192;
  c.moe.shared_expert = true;
  c.moe.interleave_step = interleave;
  c.moe.routing = MoERouting::Sigmoid;
  c.vision_dim = 4096;
  return c;
}

// Llama 4's vision encoder (transformers Llama4VisionModel with the released vision_config:
// hidden 1408, 34 layers, MLP 5632, image 336, patch 14, projector 4096 -> 4096), which lmkit
// does not run (it takes the features): patch embedding 588 x 1408, class embedding, 577
// position embeddings, two LayerNorms, 34 layers of (q, k, v, o with biases, fc1 and fc2 with
// biases, two LayerNorms), and the pixel-shuffle adapter 5632 x 4096 + 4096 x 4096.
constexpr int64_t kLlama4VisionEncoderParams = 588 * 1408 + 1408 + 577 * 1408 + 4 * 1408 +
                                                34 * (4 * (1408 * 1408 + 1408) + 2 * 1408 * 5632 + 5632 + 1408 + 4 * 1408) +
                                                5632 * 4096 + 4096 * 4096;

const std::vector<Preset>& table() {
  static const std::vector<Preset> presets = {
      {{"tiny", "demo/test model: byte vocabulary, 4 x 128, trains in about a minute on a CPU",
        "lmkit's own choice"},
       [] {
         ModelConfig c;
         c.dim = 128;
         c.n_layers = 4;
         c.n_heads = 4;
         c.multiple_of = 32;  // F = round_up(int(8 * 128 / 3), 32) = 352
         c.max_seq_len = 256;
         byte_vocab(c);
         return c;
       }},
      {{"stories15m", "llama2.c TinyStories 15M (288 x 6 layers, 6 heads)",
        "karpathy/llama2.c README 'models' table (OG: dim 288, 6 layers, 6 heads, context 256), train.py, model.py"},
       [] { return tinystories(288, 6, 6, 256); }},
      {{"stories42m", "llama2.c TinyStories 42M (512 x 8 layers, 8 heads)",
        "karpathy/llama2.c README 'models' table (42M: dim 512, 8 layers, 8 heads, context 1024)"},
       [] { return tinystories(512, 8, 8, 1024); }},
      {{"stories110m", "llama2.c TinyStories 110M (768 x 12 layers, 12 heads)",
        "karpathy/llama2.c README 'models' table (110M: dim 768, 12 layers, 12 heads, context 1024)"},
       [] { return tinystories(768, 12, 12, 1024); }},
      {{"llama2-7b", "Llama 2 7B",
        "Meta llama-2-7b params.json (dim 4096, 32 layers, 32 heads, multiple_of 256, norm_eps 1e-5, "
        "vocab 32000); context 4096 from the Llama 2 paper"},
       [] {
         ModelConfig c;  // the defaults are Llama 2 7B's shape
         c.dim = 4096;
         c.n_layers = 32;
         c.n_heads = 32;
         c.vocab_size = 32000;
         c.multiple_of = 256;
         c.max_seq_len = 4096;
         c.norm_eps = 1e-5;
         return c;
       }},
      {{"llama3-8b", "Llama 3 8B (Llama 3.0: no RoPE scaling; 3.1 adds --set rope_scaling.type=llama3)",
        "Meta Meta-Llama-3-8B params.json (dim 4096, 32 layers, 32 heads, 8 kv heads, vocab 128256, "
        "multiple_of 1024, ffn_dim_multiplier 1.3, norm_eps 1e-5, rope_theta 500000), context 8192"},
       [] {
         ModelConfig c;
         c.dim = 4096;
         c.n_layers = 32;
         c.n_heads = 32;
         c.n_kv_heads = 8;
         c.vocab_size = 128256;
         c.multiple_of = 1024;
         c.ffn_dim_multiplier = 1.3;  // F = round_up(int(1.3 * 10922), 1024) = 14336
         c.norm_eps = 1e-5;
         c.rope_theta = 500000;
         c.max_seq_len = 8192;
         c.bos_id = 128000;
         c.eos_id = 128001;
         return c;
       }},
      {{"soma-v1", "soma-models V1: byte-level pre-norm LayerNorm transformer, GELU FFN, SIGReg",
        "soma-models V1 constants as pinned by lmkit (dim 2048, 24 layers, 8 heads, FFN 8192, vocab 264, "
        "context 1024, RoPE 10000/1.0, SIGReg t_max 3, points 17, slices 256, coefficient 0.02); biases and "
        "the predictor bias from soma's canonical safetensors layout"},
       [] {
         // Newer soma-models releases use 32 layers, context 8192 and 1024 SIGReg slices: set them with --set.
         // Assumed where soma's docs are silent: LayerNorm eps 1e-5 (torch default), exact (erf) GELU.
         ModelConfig c;
         c.dim = 2048;
         c.n_layers = 24;
         c.n_heads = 8;
         c.hidden_dim = 8192;
         c.max_seq_len = 1024;
         byte_vocab(c);
         c.norm_type = NormType::LayerNorm;
         c.norm_bias = true;
         c.norm_eps = 1e-5;
         c.ffn_type = FfnType::GELU;
         c.attn_bias = true;
         c.ffn_bias = true;
         c.output_bias = true;
         c.rope_theta = 10000;
         c.rope_scale_factor = 1.0;
         c.sigreg.enabled = true;
         c.sigreg.t_max = 3.0;
         c.sigreg.points = 17;
         c.sigreg.slices = 256;
         c.sigreg.coefficient = 0.02;
         return c;
       }},
      {{"llama4-tiny",
        "Llama 4 style MoE that trains on a CPU: byte vocabulary, 4 x 128, 8 experts top-1 + shared, NoPE layer 3, chunk 64",
        "lmkit's own choice: Llama 4 Scout's layout (every layer MoE with sigmoid routing and a shared expert, NoPE every "
        "4th layer, chunked attention elsewhere, weightless QK-norm, rope_theta 500000) at the size of 'tiny'"},
       [] {
         ModelConfig c;
         c.dim = 128;
         c.n_layers = 4;
         c.n_heads = 4;
         c.n_kv_heads = 2;
         c.hidden_dim = 256;  // dense width (no dense layer here; kept for --set moe.interleave_step=2)
         c.max_seq_len = 256;
         byte_vocab(c);
         c.qk_norm = true;
         c.qk_norm_weight = false;
         c.rope_theta = 500000;
         c.nope_layer_interval = 4;
         c.attn_chunk_size = 64;
         c.moe.n_experts = 8;
         c.moe.top_k = 1;
         c.moe.hidden_dim = 256;
         c.moe.shared_expert = true;
         c.moe.interleave_step = 1;
         c.moe.routing = MoERouting::Sigmoid;
         c.moe.aux_loss_coef = 0.01;  // Switch Transformer's coefficient
         return c;
       }},
      {{"llama4-scout",
        "Llama 4 Scout 17B-16E: 5120 x 48, 16 experts top-1 + shared on every layer; 108.6B counting the vision "
        "encoder as Meta's 109B does (107.8B in lmkit's tensors)",
        "Meta llama-models llama4 args.py and Llama-4-Scout params.json (moe_args num_experts 16, top_k 1, interleave 1; "
        "ffn_exp 4, ffn_dim_multiplier 1.2, multiple_of 2048: experts 8192, dense 16384), HF config.json (use_qk_norm, "
        "rope_scaling llama3 factor 16, max_position_embeddings 10485760); docs/llama4.md §13",
        kLlama4VisionEncoderParams, "vision encoder, not in lmkit"},
       [] {
         ModelConfig c = llama4(16, 1, true);
         c.rope_scaling.type = RopeScalingType::Llama3;
         c.rope_scaling.factor = 16;
         c.rope_scaling.low_freq_factor = 1;
         c.rope_scaling.high_freq_factor = 1;
         c.rope_scaling.original_max_seq_len = 8192;
         c.max_seq_len = 10485760;
         return c;
       }},
      {{"llama4-maverick",
        "Llama 4 Maverick 17B-128E: 5120 x 48, 128 experts top-1 + shared on every 2nd layer; 401.6B with the vision "
        "encoder (400.7B in lmkit's tensors), Meta's 400B",
        "Meta llama-models llama4 args.py and Llama-4-Maverick params.json (moe_args num_experts 128, top_k 1, "
        "interleave_moe_layer_step 2), HF config.json (use_qk_norm false, no rope scaling, max_position_embeddings "
        "1048576); docs/llama4.md §13",
        kLlama4VisionEncoderParams, "vision encoder, not in lmkit"},
       [] {
         ModelConfig c = llama4(128, 2, false);
         c.max_seq_len = 1048576;
         return c;
       }},
      {{"mobilellm-140m", "MobileLLM 140M as the seed's table (576 x 15 layers, 9 heads / 3 kv heads, F 2048)",
        "shared/docs/seeds/003 MobileLLMConfig table and get_mobilellm_config('140m'); kv heads and F from the seed's code"},
       [] { return mobilellm(576, 15, 9, 3, 2048); }},
      {{"mobilellm-360m", "MobileLLM 360M as the seed's table (1024 x 15 layers, 16 heads / 4 kv heads, F 4096)",
        "shared/docs/seeds/003 MobileLLMConfig table; kv heads and F from the seed's code"},
       [] { return mobilellm(1024, 15, 16, 4, 4096); }},
      {{"mobilellm-950m", "MobileLLM 950M as the seed's table (1536 x 22 layers, 24 heads / 6 kv heads, F 6144)",
        "shared/docs/seeds/003 MobileLLMConfig table and its example config"},
       [] { return mobilellm(1536, 22, 24, 6, 6144); }},
      {{"mobilellm-7b", "MobileLLM 7B as the seed's table: Llama 2 7B's shape (4096 x 32, 32 heads / 8 kv heads, F 11008)",
        "shared/docs/seeds/003 MobileLLMConfig table; kv heads and F from the seed's code (MobileLLM7BConfig)"},
       [] { return mobilellm(4096, 32, 32, 8, 11008); }},
      {{"mobilellm-70b", "MobileLLM 70B as the seed's table: Llama 2 70B's shape (8192 x 80, 64 heads / 8 kv, F 28672)",
        "shared/docs/seeds/003 MobileLLMConfig table; kv heads and F from the seed's code (MobileLLM70BConfig)"},
       [] { return mobilellm(8192, 80, 64, 8, 28672); }},
      {{"mobilellm-671b",
        "MobileLLM 671B as the seed's table: 7168 x 61, 128 heads (size 56) / 8 kv; DeepSeek-V3's split: 3 dense layers "
        "(F 18432), then 58 MoE layers of 256 experts of 2048, top-8 + 1 shared expert",
        "shared/docs/seeds/003 MobileLLMConfig table (61 layers, 128 heads, embed 7168); the seed's code "
        "(MobileLLM671BConfig 'based on DeepSeek-V3 architecture with MoE': 8 kv heads, hidden 18432, num_experts 256, "
        "num_experts_per_tok 8, moe_intermediate_size 2048, head_dim = 7168 // 128 = 56). The seed does not say which "
        "layers are MoE nor whether there is a shared expert: DeepSeek-V3's (first_k_dense_replace 3, n_shared_experts 1, "
        "intermediate_size 18432 for the dense layers) give 665.3B total, 0.8 % under the 671B name (DeepSeek-V3's MLA "
        "attention and untied embeddings make up the rest); every layer MoE without a shared expert would be 695.4B"},
       [] {
         ModelConfig c = mobilellm(7168, 61, 128, 8, 18432);
         c.moe.n_experts = 256;
         c.moe.top_k = 8;
         c.moe.hidden_dim = 2048;
         c.moe.shared_expert = true;
         c.moe.interleave_step = 1;
         c.moe.first_dense_layers = 3;
         return c;
       }},
      {{"mobilellm-r1-140m", "MobileLLM-R1 140M as released (576 x 15, 9/3 heads of 64, F 2048, rope_theta 8e6)",
        "facebookresearch/MobileLLM-R1 README table and HF config.json"},
       [] { return mobilellm_r1(576, 15, 9, 3, 2048); }},
      {{"mobilellm-r1-360m", "MobileLLM-R1 360M as released (1024 x 15, 16/4 heads of 64, F 4096, rope_theta 8e6)",
        "facebookresearch/MobileLLM-R1 README table and HF config.json"},
       [] { return mobilellm_r1(1024, 15, 16, 4, 4096); }},
      {{"mobilellm-r1-950m", "MobileLLM-R1 950M as released (1536 x 22, 24/6 heads of 64, F 6144, rope_theta 8e6)",
        "facebookresearch/MobileLLM-R1 README table and HF config.json"},
       [] { return mobilellm_r1(1536, 22, 24, 6, 6144); }},
  };
  return presets;
}

}  // namespace

const std::vector<PresetInfo>& presets() {
  static const std::vector<PresetInfo> infos = [] {
    std::vector<PresetInfo> out;
    for (const Preset& p : table()) out.push_back(p.info);
    return out;
  }();
  return infos;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : table()) names.push_back(p.info.name);
  return names;
}

const PresetInfo* preset_info(const std::string& name) {
  for (const PresetInfo& p : presets())
    if (p.name == name) return &p;
  return nullptr;
}

std::optional<ModelConfig> find_preset(const std::string& name) {
  for (const Preset& p : table()) {
    if (p.info.name != name) continue;
    ModelConfig c = p.make();
    c.name = name;
    return c;
  }
  return std::nullopt;
}

ModelConfig preset(const std::string& name) {
  if (auto c = find_preset(name)) return *c;
  std::string list;
  for (const std::string& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  fail(ErrorKind::Data, "unknown preset " + quote(name), "presets: " + list + " (or a config JSON or checkpoint file)");
}

}  // namespace lm
