#include "io/llama2c.h"

#include <cmath>
#include <cstring>

#include "convert/names.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/stream.h"

namespace lm {

namespace {

constexpr uint32_t kMagic = 0x616b3432;  // bytes 32 34 6b 61
constexpr uint64_t kV0Header = 28;
constexpr uint64_t kV1Header = 256;

// The order each version stores its arrays in (llama2.c export.py). Names are run.c's
// TransformerWeights fields, which the name table maps to lmkit's tensors.
const std::vector<const char*> kV0Order = {"token_embedding_table", "rms_att_weight", "wq", "wk", "wv", "wo",
                                           "rms_ffn_weight", "w1", "w2", "w3", "rms_final_weight", "freq_cis", "wcls"};
const std::vector<const char*> kV1Order = {"rms_att_weight", "rms_ffn_weight", "rms_final_weight", "token_embedding_table",
                                           "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls"};
const int kV2Fp32Arrays = 3;  // v2: the three norm arrays in fp32, then the rest as Q8_0 groups

const convert::NameRow& row_of(const char* array) {
  for (const auto& row : convert::name_table())
    if (row.llama2c && std::strcmp(row.llama2c, array) == 0) return row;
  fail(ErrorKind::Runtime, cat("internal: no name-table row for llama2.c array ", array));
}

bool per_layer(const convert::NameRow& row) { return std::strstr(row.lmkit, "{L}") != nullptr; }

// Shape of one layer's slice of `array` (or of the whole array when it is not per layer).
Shape array_shape(const char* array, const Llama2cHeader& h) {
  const int64_t C = h.dim, F = h.hidden_dim, V = std::abs(static_cast<int64_t>(h.vocab_size));
  const int64_t HS = C / h.n_heads, Q = h.n_heads * HS, KV = h.n_kv_heads * HS;
  const std::string a = array;
  if (a == "token_embedding_table" || a == "wcls") return {V, C};
  if (a == "rms_att_weight" || a == "rms_ffn_weight" || a == "rms_final_weight") return {C};
  if (a == "wq") return {Q, C};
  if (a == "wk" || a == "wv") return {KV, C};
  if (a == "wo") return {C, Q};
  if (a == "w1" || a == "w3") return {F, C};
  if (a == "w2") return {C, F};
  fail(ErrorKind::Runtime, cat("internal: unknown llama2.c array ", a));
}

uint64_t mul(uint64_t a, uint64_t b, const std::string& file) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail_data(cat(quote(file), ": tensor sizes overflow"));
  return r;
}
uint64_t add(uint64_t a, uint64_t b, const std::string& file) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail_data(cat(quote(file), ": tensor sizes overflow"));
  return r;
}

void check_header(const Llama2cHeader& h, const std::string& file) {
  const std::string f = quote(file);
  auto positive = [&](int64_t v, const char* what) {
    if (v <= 0) fail_data(cat(f, ": llama2.c header: ", what, " is ", v, ", expected > 0"));
  };
  positive(h.dim, "dim");
  positive(h.hidden_dim, "hidden_dim");
  positive(h.n_layers, "n_layers");
  positive(h.n_heads, "n_heads");
  positive(h.n_kv_heads, "n_kv_heads");
  positive(std::abs(static_cast<int64_t>(h.vocab_size)), "vocab_size");
  positive(h.seq_len, "seq_len");
  if (h.dim % h.n_heads != 0) fail_data(cat(f, ": llama2.c header: dim ", h.dim, " is not a multiple of n_heads ", h.n_heads));
  if ((h.dim / h.n_heads) % 2 != 0) fail_data(cat(f, ": llama2.c header: head size ", h.dim / h.n_heads, " is odd"));
  if (h.n_heads % h.n_kv_heads != 0)
    fail_data(cat(f, ": llama2.c header: n_heads ", h.n_heads, " is not a multiple of n_kv_heads ", h.n_kv_heads));
  if (h.version == 2 && h.group_size <= 0) fail_data(cat(f, ": llama2.c v2 header: group_size is ", h.group_size));
}

}  // namespace

bool Llama2cFile::has_magic(const uint8_t* p, size_t n) {
  if (n < 4) return false;
  uint32_t m;
  std::memcpy(&m, p, 4);
  return m == kMagic;
}

Llama2cFile Llama2cFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

bool Llama2cFile::plausible_v0_header(const uint8_t* p, size_t n) {
  if (n < kV0Header) return false;
  Llama2cHeader h;
  int32_t v[7];
  std::memcpy(v, p, sizeof v);
  h.dim = v[0], h.hidden_dim = v[1], h.n_layers = v[2], h.n_heads = v[3], h.n_kv_heads = v[4], h.vocab_size = v[5],
  h.seq_len = v[6];
  try {
    check_header(h, "probe");
  } catch (const Error&) {
    return false;
  }
  return true;
}

Llama2cFile Llama2cFile::parse(std::shared_ptr<MappedFile> file) {
  const std::string name = file->path();
  const std::string f = quote(name);
  const uint8_t* p = file->data();
  const uint64_t size = file->size();
  Llama2cFile out;
  out.file_ = file;
  Llama2cHeader& h = out.header_;
  uint64_t pos;
  if (has_magic(p, size)) {
    if (size < kV1Header) fail_data(cat(f, ": truncated llama2.c header: ", size, " bytes, expected at least ", kV1Header));
    int32_t version;
    std::memcpy(&version, p + 4, 4);
    if (version != 1 && version != 2) fail_data(cat(f, ": unknown llama2.c version ", version, " (expected 1 or 2)"));
    h.version = version;
    int32_t v[7];
    std::memcpy(v, p + 8, sizeof v);
    h.dim = v[0], h.hidden_dim = v[1], h.n_layers = v[2], h.n_heads = v[3], h.n_kv_heads = v[4], h.vocab_size = v[5],
    h.seq_len = v[6];
    if (h.vocab_size <= 0) fail_data(cat(f, ": llama2.c v", version, " header: vocab_size ", h.vocab_size, " must be positive"));
    if (p[36] > 1) fail_data(cat(f, ": llama2.c header: shared_classifier byte is ", int(p[36]), ", expected 0 or 1"));
    h.shared_classifier = p[36] == 1;
    if (version == 2) std::memcpy(&h.group_size, p + 37, 4);
    pos = kV1Header;
  } else {
    if (size < kV0Header) fail_data(cat(f, ": not a llama2.c checkpoint: ", size, " bytes, too short for the 28-byte header"));
    int32_t v[7];
    std::memcpy(v, p, sizeof v);
    h.dim = v[0], h.hidden_dim = v[1], h.n_layers = v[2], h.n_heads = v[3], h.n_kv_heads = v[4], h.vocab_size = v[5],
    h.seq_len = v[6];
    h.shared_classifier = h.vocab_size > 0;  // the sign says whether the classifier is stored
    pos = kV0Header;
  }
  check_header(h, name);

  const int64_t L = h.n_layers;
  const int64_t HS = h.dim / h.n_heads;
  auto add_array = [&](const char* array, bool q8) {
    const convert::NameRow& row = row_of(array);
    const Shape shape = array_shape(array, h);
    const uint64_t numel = static_cast<uint64_t>(shape_numel(shape));
    const int64_t count = per_layer(row) ? L : 1;
    if (q8 && numel % static_cast<uint64_t>(h.group_size) != 0)
      fail_data(cat(f, ": llama2.c v2: ", array, " has ", numel, " values, not a multiple of group_size ", h.group_size));
    // The whole array must fit in the file before one entry per layer is made (n_layers may be 2^31).
    const uint64_t per = q8 ? add(numel, mul(numel / h.group_size, 4, name), name) : mul(numel, 4, name);
    const uint64_t end = add(pos, mul(per, static_cast<uint64_t>(count), name), name);
    if (end > size)
      fail_data(cat(f, ": truncated llama2.c v", h.version, " checkpoint: the header implies at least ", end,
                    " bytes (to the end of ", array, "), the file has ", size));
    for (int64_t l = 0; l < count; ++l) {
      Entry e;
      e.name = per_layer(row) ? convert::expand(row.lmkit, l) : row.lmkit;
      e.shape = shape;
      e.q8 = q8;
      e.offset = pos;
      if (q8) {
        pos = add(pos, numel, name);
        e.scale_offset = pos;
        pos = add(pos, mul(numel / h.group_size, 4, name), name);
      } else {
        pos = add(pos, mul(numel, 4, name), name);
      }
      out.entries_.push_back(std::move(e));
    }
  };
  if (h.version == 0) {
    for (const char* a : kV0Order) {
      if (std::strcmp(a, "freq_cis") == 0) {  // freq_cis_real and _imag: [seq_len, HS/2] each, skipped
        pos = add(pos, mul(mul(static_cast<uint64_t>(h.seq_len), static_cast<uint64_t>(HS), name), 4, name), name);
        continue;
      }
      if (std::strcmp(a, "wcls") == 0 && h.shared_classifier) continue;
      add_array(a, false);
    }
  } else {
    int index = 0;
    for (const char* a : kV1Order) {
      if (std::strcmp(a, "wcls") == 0 && h.shared_classifier) continue;
      add_array(a, h.version == 2 && index++ >= kV2Fp32Arrays);
    }
  }
  if (pos != size) {
    if (pos > size)
      fail_data(cat(f, ": truncated llama2.c v", h.version, " checkpoint: the header implies ", pos, " bytes, the file has ", size));
    fail_data(cat(f, ": llama2.c v", h.version, " checkpoint has ", size - pos, " trailing bytes (the header implies ", pos,
                  " bytes)"));
  }
  return out;
}

const std::string& Llama2cFile::path() const { return file_->path(); }

ModelConfig Llama2cFile::config() const {
  const Llama2cHeader& h = header_;
  ModelConfig c;
  c.name = "llama2c";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads == h.n_heads ? 0 : h.n_kv_heads;
  c.vocab_size = std::abs(static_cast<int64_t>(h.vocab_size));
  c.max_seq_len = h.seq_len;
  c.tie_embeddings = h.shared_classifier;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.bos_id = c.vocab_size > 1 ? 1 : -1;
  c.eos_id = c.vocab_size > 2 ? 2 : -1;
  return c;
}

Tensor Llama2cFile::get(const Entry& e) const {
  const uint8_t* base = file_->data();
  if (!e.q8) return Tensor::view(DType::F32, e.shape, base + e.offset, file_);
  Tensor out = Tensor::zeros(DType::F32, e.shape);
  float* dst = out.data_mut<float>();
  const int64_t n = out.numel(), gs = header_.group_size;
  for (int64_t g = 0; g < n / gs; ++g) {
    float s;
    std::memcpy(&s, base + e.scale_offset + 4 * g, 4);
    for (int64_t i = 0; i < gs; ++i) dst[g * gs + i] = static_cast<float>(static_cast<int8_t>(base[e.offset + g * gs + i])) * s;
  }
  return out;
}

std::vector<std::string> llama2c_unsupported(const ModelConfig& c) {
  std::vector<std::string> why;
  auto no = [&](bool bad, const std::string& msg) {
    if (bad) why.push_back(msg);
  };
  no(c.norm_type != NormType::RMSNorm, cat("norm_type ", quote(name_of(c.norm_type)), " (run.c has RMSNorm)"));
  no(c.norm_bias, "norm biases (norm_bias)");
  no(c.ffn_type != FfnType::SwiGLU, cat("ffn_type ", quote(name_of(c.ffn_type)), " (run.c has SwiGLU)"));
  no(c.attn_bias, "attention biases (attn_bias)");
  no(c.ffn_bias, "feed-forward biases (ffn_bias)");
  no(c.output_bias, "a classifier bias (output_bias)");
  no(c.qk_norm, "QK-norm (qk_norm)");
  no(c.head_dim > 0 && c.head_dim != c.dim / c.n_heads, cat("head_dim ", c.head_dim, " (run.c uses dim / n_heads)"));
  no(c.norm_eps != 1e-5, cat("norm_eps ", c.norm_eps, " (run.c uses 1e-5)"));
  no(c.rope_theta != 10000, cat("rope_theta ", c.rope_theta, " (run.c uses 10000)"));
  no(c.rope_scaling.type != RopeScalingType::None, cat("rope_scaling.type ", quote(name_of(c.rope_scaling.type))));
  no(c.rope_scale_factor != 1, cat("rope_scale_factor ", c.rope_scale_factor));
  no(c.logits_soft_cap != 0, "a logits soft cap (logits_soft_cap)");
  no(!c.causal, "non-causal attention (causal = false)");
  no(c.moe.n_experts > 0, "mixture of experts (moe.n_experts)");
  for (int64_t v : {c.dim, c.ffn_hidden(), c.n_layers, c.n_heads, c.kv_heads(), c.vocab_size, c.max_seq_len})
    no(v > INT32_MAX, cat("a size of ", v, " (the header holds int32)"));
  return why;
}

void write_llama2c_v0(ByteSink& sink, const ModelConfig& cfg, const std::function<Tensor(const std::string&)>& get) {
  const std::vector<std::string> why = llama2c_unsupported(cfg);
  if (!why.empty())
    fail(ErrorKind::Unsupported, "a llama2.c v0 checkpoint cannot hold " + why[0],
         why.size() > 1 ? "also: " + [&] {
           std::string s;
           for (size_t i = 1; i < why.size(); ++i) s += (i > 1 ? "; " : "") + why[i];
           return s;
         }()
                        : std::string());
  Llama2cHeader h;
  h.dim = static_cast<int32_t>(cfg.dim);
  h.hidden_dim = static_cast<int32_t>(cfg.ffn_hidden());
  h.n_layers = static_cast<int32_t>(cfg.n_layers);
  h.n_heads = static_cast<int32_t>(cfg.n_heads);
  h.n_kv_heads = static_cast<int32_t>(cfg.kv_heads());
  h.vocab_size = static_cast<int32_t>(cfg.tie_embeddings ? cfg.vocab_size : -cfg.vocab_size);
  h.seq_len = static_cast<int32_t>(cfg.max_seq_len);
  const int32_t header[7] = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len};
  sink.write(header, sizeof header);

  auto write_f32 = [&](const std::string& name, const Shape& shape) {
    const Tensor t = get(name);
    if (t.shape() != shape)
      fail_data(cat("tensor ", quote(name), ": got shape ", shape_str(t.shape()), ", expected ", shape_str(shape)));
    const Tensor f = t.dtype() == DType::F32 ? t : t.cast(DType::F32);
    sink.write(f.raw(), f.nbytes());
  };
  const int64_t HS = cfg.dim / cfg.n_heads;
  for (const char* a : kV0Order) {
    if (std::strcmp(a, "freq_cis") == 0) {
      // precompute_freqs_cis(HS, ...)[:seq_len]: cos, then sin, of t * theta^(-2i/HS).
      std::vector<float> cosv, sinv;
      for (int64_t t = 0; t < cfg.max_seq_len; ++t)
        for (int64_t i = 0; i < HS / 2; ++i) {
          const float freq = 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / static_cast<float>(HS));
          const float angle = static_cast<float>(t) * freq;
          cosv.push_back(std::cos(angle));
          sinv.push_back(std::sin(angle));
        }
      sink.write(cosv.data(), cosv.size() * 4);
      sink.write(sinv.data(), sinv.size() * 4);
      continue;
    }
    if (std::strcmp(a, "wcls") == 0 && cfg.tie_embeddings) continue;
    const convert::NameRow& row = row_of(a);
    const Shape shape = array_shape(a, h);
    if (per_layer(row))
      for (int64_t l = 0; l < cfg.n_layers; ++l) write_f32(convert::expand(row.lmkit, l), shape);
    else
      write_f32(row.lmkit, shape);
  }
}

}  // namespace lm
