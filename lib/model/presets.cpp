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

// MobileLLM-R1 (facebookresearch/MobileLLM-R1 README "Model Architecture"; the HF config.json
// of facebook/MobileLLM-R1-*, architecture Llama4ForCausalLM as dense text model): Llama 3
// vocabulary 128256 (BOS 128000, EOS 128001), tied embeddings, GQA, head_dim 64, SwiGLU with an
// explicit intermediate_size, RMSNorm eps 1e-5, use_qk_norm (Llama 4's weightless L2 norm),
// rope_theta 8,000,000, no rope scaling, 32k context (post-trained models; the -base models 4k).
// attention_chunk_size 32768 equals the context, so no chunking; every layer uses RoPE.
ModelConfig mobilellm_r1(int64_t dim, int64_t layers, int64_t heads, int64_t kv_heads, int64_t hidden) {
  ModelConfig c;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.hidden_dim = hidden;
  c.vocab_size = 128256;
  c.max_seq_len = 32768;
  c.norm_eps = 1e-5;
  c.qk_norm = true;
  c.qk_norm_weight = false;
  c.tie_embeddings = true;
  c.rope_theta = 8'000'000;
  c.bos_id = 128000;
  c.eos_id = 128001;
  return c;
}

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
      {{"mobilellm-140m", "MobileLLM-R1 140M (576 x 15 layers, 9 heads / 3 kv heads, F 2048)",
        "facebookresearch/MobileLLM-R1 README table and HF config.json"},
       [] { return mobilellm_r1(576, 15, 9, 3, 2048); }},
      {{"mobilellm-360m", "MobileLLM-R1 360M (1024 x 15 layers, 16 heads / 4 kv heads, F 4096)",
        "facebookresearch/MobileLLM-R1 README table and HF config.json"},
       [] { return mobilellm_r1(1024, 15, 16, 4, 4096); }},
      {{"mobilellm-950m", "MobileLLM-R1 950M (1536 x 22 layers, 24 heads / 6 kv heads, F 6144)",
        "facebookresearch/MobileLLM-R1 README table and HF config.json"},
       [] { return mobilellm_r1(1536, 22, 24, 6, 6144); }},
      {{"mobilellm-7b", "MobileLLM-R1 recipe at 7B: Llama 2 7B's shape (4096 x 32, MHA, F 11008)",
        "derived: no public MobileLLM 7B; Llama 2 7B shape with MobileLLM-R1's vocabulary, tying, QK-norm and RoPE"},
       [] {
         ModelConfig c = mobilellm_r1(4096, 32, 32, 32, 11008);
         c.head_dim = 128;
         return c;
       }},
      {{"mobilellm-70b", "MobileLLM-R1 recipe at 70B: Llama 2 70B's shape (8192 x 80, 64 heads / 8 kv, F 28672)",
        "derived: no public MobileLLM 70B; Llama 2 70B shape with MobileLLM-R1's vocabulary, tying, QK-norm and RoPE"},
       [] {
         ModelConfig c = mobilellm_r1(8192, 80, 64, 8, 28672);
         c.head_dim = 128;
         return c;
       }},
      {{"mobilellm-671b",
        "MobileLLM-R1 recipe at 671B: Llama 4 style MoE, 7168 x 58, 256 experts top-8 + shared (~38B active)",
        "derived: no public MobileLLM 671B; DeepSeek-V3's 671B sizes (dim 7168, 128 heads x 128, 256 routed experts "
        "of 2048 + 1 shared, top-8) as far as this config expresses them: GQA with 8 kv heads instead of MLA, "
        "all 58 MoE layers of DeepSeek-V3 (its 3 dense layers dropped), MobileLLM-R1 vocabulary and tying"},
       [] {
         ModelConfig c = mobilellm_r1(7168, 58, 128, 8, 18432);
         c.head_dim = 128;
         c.moe.n_experts = 256;
         c.moe.top_k = 8;
         c.moe.hidden_dim = 2048;
         c.moe.shared_expert = true;
         c.moe.interleave_step = 1;
         return c;
       }},
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
