#include "io/llama2c.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/stream.h"

namespace lm {

namespace {

constexpr uint32_t kMagic = 0x616b3432;  // bytes 32 34 6b 61
constexpr uint64_t kV0Header = 28;
constexpr uint64_t kV1Header = 256;

// The order each version stores its arrays in (llama2.c export.py), by run.c's
// TransformerWeights field names. "freq_cis" is v0's freq_cis_real and _imag, [seq_len, HS/2] each.
const std::vector<const char*> kV0Order = {"token_embedding_table", "rms_att_weight", "wq", "wk", "wv", "wo",
                                           "rms_ffn_weight", "w1", "w2", "w3", "rms_final_weight", "freq_cis", "wcls"};
const std::vector<const char*> kV1Order = {"rms_att_weight", "rms_ffn_weight", "rms_final_weight", "token_embedding_table",
                                           "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls"};
const int kV2Fp32Arrays = 3;  // v2: the three norm arrays in fp32, then the rest as Q8_0 groups

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

bool llama2c_per_layer(const std::string& a) {
  for (const char* name : {"rms_att_weight", "wq", "wk", "wv", "wo", "rms_ffn_weight", "w1", "w2", "w3"})
    if (a == name) return true;
  return false;
}

Shape llama2c_array_shape(const std::string& a, const Llama2cHeader& h) {
  const int64_t C = h.dim, F = h.hidden_dim, V = std::abs(static_cast<int64_t>(h.vocab_size));
  const int64_t HS = C / h.n_heads, Q = h.n_heads * HS, KV = h.n_kv_heads * HS;
  if (a == "token_embedding_table" || a == "wcls") return {V, C};
  if (a == "rms_att_weight" || a == "rms_ffn_weight" || a == "rms_final_weight") return {C};
  if (a == "wq") return {Q, C};
  if (a == "wk" || a == "wv") return {KV, C};
  if (a == "wo") return {C, Q};
  if (a == "w1" || a == "w3") return {F, C};
  if (a == "w2") return {C, F};
  fail(ErrorKind::Runtime, cat("internal: unknown llama2.c array ", a));
}

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
    const Shape shape = llama2c_array_shape(array, h);
    const uint64_t numel = static_cast<uint64_t>(shape_numel(shape));
    const bool stacked = llama2c_per_layer(array);
    const int64_t count = stacked ? L : 1;
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
      e.array = array;
      e.layer = stacked ? l : -1;
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

void write_llama2c_v0(ByteSink& sink, const Llama2cHeader& given,
                      const std::function<Tensor(const std::string& array, int64_t layer)>& get) {
  Llama2cHeader h = given;
  h.version = 0;
  h.vocab_size = static_cast<int32_t>(std::abs(static_cast<int64_t>(given.vocab_size)));
  try {
    check_header(h, "llama2.c output");
  } catch (const Error& e) {
    fail_usage(e.what());
  }
  const int32_t signed_vocab = h.shared_classifier ? h.vocab_size : -h.vocab_size;
  const int32_t header[7] = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, signed_vocab, h.seq_len};
  sink.write(header, sizeof header);

  auto write_f32 = [&](const char* array, int64_t layer) {
    const Shape shape = llama2c_array_shape(array, h);
    const Tensor t = get(array, layer);
    if (t.shape() != shape)
      fail_data(cat("llama2.c array ", array, layer >= 0 ? cat(" (layer ", layer, ")") : std::string(), ": got shape ",
                    shape_str(t.shape()), ", expected ", shape_str(shape)));
    const Tensor f = t.dtype() == DType::F32 ? t : t.cast(DType::F32);
    sink.write(f.raw(), f.nbytes());
  };
  const int64_t HS = h.dim / h.n_heads;
  for (const char* a : kV0Order) {
    if (std::strcmp(a, "freq_cis") == 0) {
      // precompute_freqs_cis(HS, ...)[:seq_len]: cos, then sin, of t * theta^(-2i/HS), theta 10000.
      std::vector<float> cosv, sinv;
      for (int64_t t = 0; t < h.seq_len; ++t)
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
    if (std::strcmp(a, "wcls") == 0 && h.shared_classifier) continue;
    if (llama2c_per_layer(a))
      for (int64_t l = 0; l < h.n_layers; ++l) write_f32(a, l);
    else
      write_f32(a, -1);
  }
}

}  // namespace lm
