#include "io/gguf.h"

#include "core/quant.h"

#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/stream.h"

namespace lm {

namespace {

constexpr uint64_t kMaxNameLen = 63;        // ggml: a name must be shorter than GGML_MAX_NAME (64)
constexpr uint64_t kMaxKeyLen = 65535;
constexpr uint32_t kMaxDims = 4;

struct TypeInfo {
  GGMLType type;
  const char* name;
  int64_t block;       // elements per block
  int64_t block_bytes;
};
constexpr TypeInfo kTypes[] = {
    {GGMLType::F32, "F32", 1, 4},
    {GGMLType::F16, "F16", 1, 2},
    {GGMLType::Q8_0, "Q8_0", kQ8Block, kQ8BlockBytes},
    {GGMLType::BF16, "BF16", 1, 2},
    {GGMLType::Q4_0, "Q4_0", 32, 18},
    {GGMLType::Q4_K, "Q4_K", kSuperBlock, kQ4_KBlockBytes},
    {GGMLType::Q6_K, "Q6_K", kSuperBlock, kQ6_KBlockBytes},
};

const TypeInfo* type_info(uint32_t t) {
  for (const auto& info : kTypes)
    if (static_cast<uint32_t>(info.type) == t) return &info;
  return nullptr;
}

// ggml type numbers lmkit does not handle, named so the error says what the file holds.
const char* known_unsupported_type(uint32_t t) {
  static const char* names[] = {nullptr, nullptr, nullptr, "Q4_1", nullptr, nullptr, "Q5_0", "Q5_1", nullptr,
                                "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS",
                                "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
                                "I64", "F64", "IQ1_M"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : nullptr;
}

size_t scalar_size(uint32_t t) {
  switch (t) {
    case GGUFValue::U8: case GGUFValue::I8: case GGUFValue::Bool: return 1;
    case GGUFValue::U16: case GGUFValue::I16: return 2;
    case GGUFValue::U32: case GGUFValue::I32: case GGUFValue::F32: return 4;
    case GGUFValue::U64: case GGUFValue::I64: case GGUFValue::F64: return 8;
    default: return 0;
  }
}

// Bounds-checked little-endian reads over the mapped file.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t size, std::string file) : p_(p), size_(size), file_(std::move(file)) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail_data(cat(quote(file_), ": truncated at byte ", pos_, ": ", what, " needs ", n, " bytes, ", left(), " left"));
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const std::string& what, uint64_t max_len) {
    const uint64_t n = read<uint64_t>(what + " length");
    if (n > max_len) fail_data(cat(quote(file_), ": ", what, " length ", n, " at byte ", pos_ - 8, " exceeds ", max_len));
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string file_;
};

GGUFValue read_scalar(Cursor& c, uint32_t type, const std::string& key, const std::string& file) {
  GGUFValue v;
  v.type = static_cast<GGUFValue::Type>(type);
  const std::string what = "value of " + quote(key);
  switch (type) {
    case GGUFValue::U8: v.u = c.read<uint8_t>(what); break;
    case GGUFValue::I8: v.i = c.read<int8_t>(what); break;
    case GGUFValue::U16: v.u = c.read<uint16_t>(what); break;
    case GGUFValue::I16: v.i = c.read<int16_t>(what); break;
    case GGUFValue::U32: v.u = c.read<uint32_t>(what); break;
    case GGUFValue::I32: v.i = c.read<int32_t>(what); break;
    case GGUFValue::U64: v.u = c.read<uint64_t>(what); break;
    case GGUFValue::I64: v.i = c.read<int64_t>(what); break;
    case GGUFValue::F32: v.f = c.read<float>(what); break;
    case GGUFValue::F64: v.f = c.read<double>(what); break;
    case GGUFValue::Bool: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) fail_data(cat(quote(file), ": key ", quote(key), ": bool value ", int(b), " is not 0 or 1"));
      v.u = b;
      break;
    }
    case GGUFValue::String: v.s = c.string(what, UINT64_MAX); break;
    default: fail_data(cat(quote(file), ": key ", quote(key), ": unknown value type ", type));
  }
  return v;
}

void write_string(ByteSink& sink, const std::string& s) {
  const uint64_t n = s.size();
  sink.write(&n, 8);
  sink.write(s.data(), s.size());
}

void write_scalar(ByteSink& sink, const GGUFValue& v) {
  switch (v.type) {
    case GGUFValue::U8: { const uint8_t x = v.u; sink.write(&x, 1); break; }
    case GGUFValue::I8: { const int8_t x = v.i; sink.write(&x, 1); break; }
    case GGUFValue::U16: { const uint16_t x = v.u; sink.write(&x, 2); break; }
    case GGUFValue::I16: { const int16_t x = v.i; sink.write(&x, 2); break; }
    case GGUFValue::U32: { const uint32_t x = v.u; sink.write(&x, 4); break; }
    case GGUFValue::I32: { const int32_t x = v.i; sink.write(&x, 4); break; }
    case GGUFValue::U64: sink.write(&v.u, 8); break;
    case GGUFValue::I64: sink.write(&v.i, 8); break;
    case GGUFValue::F32: { const float x = static_cast<float>(v.f); sink.write(&x, 4); break; }
    case GGUFValue::F64: sink.write(&v.f, 8); break;
    case GGUFValue::Bool: { const uint8_t x = v.u ? 1 : 0; sink.write(&x, 1); break; }
    case GGUFValue::String: write_string(sink, v.s); break;
    default: fail(ErrorKind::Runtime, "internal: cannot write a GGUF array inside an array");
  }
}

uint64_t align_up(uint64_t x, uint64_t a, const std::string& file) {
  const uint64_t pad = (a - x % a) % a;
  uint64_t out;
  if (__builtin_add_overflow(x, pad, &out)) fail_data(cat(quote(file), ": padded size overflows"));
  return out;
}

}  // namespace

const char* ggml_type_name(GGMLType t) {
  const TypeInfo* info = type_info(static_cast<uint32_t>(t));
  return info ? info->name : "?";
}

const char* gguf_value_type_name(uint32_t type) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  return type < 13 ? names[type] : "unknown";
}

int64_t GGUFValue::as_int(const std::string& key) const {
  switch (type) {
    case U8: case U16: case U32: case U64: case Bool:
      if (u > static_cast<uint64_t>(INT64_MAX)) fail_data(cat("GGUF key ", quote(key), ": value ", u, " is too large"));
      return static_cast<int64_t>(u);
    case I8: case I16: case I32: case I64: return i;
    default: fail_data(cat("GGUF key ", quote(key), ": got type ", gguf_value_type_name(type), ", expected an integer"));
  }
}

double GGUFValue::as_float(const std::string& key) const {
  if (type == F32 || type == F64) return f;
  if (type != String && type != Array) return static_cast<double>(as_int(key));
  fail_data(cat("GGUF key ", quote(key), ": got type ", gguf_value_type_name(type), ", expected a number"));
}

const std::string& GGUFValue::as_string(const std::string& key) const {
  if (type != String) fail_data(cat("GGUF key ", quote(key), ": got type ", gguf_value_type_name(type), ", expected a string"));
  return s;
}

Shape GGUFTensorInfo::shape() const {
  Shape s;
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) s.push_back(static_cast<int64_t>(*it));
  return s;
}

uint64_t ggml_nbytes(GGMLType type, const Shape& shape) {
  const TypeInfo* info = type_info(static_cast<uint32_t>(type));
  if (!info) fail(ErrorKind::Runtime, "internal: unknown ggml type");
  const int64_t numel = shape_numel(shape);
  const int64_t ne0 = shape.empty() ? 1 : shape.back();
  if (ne0 % info->block != 0)
    fail_usage(cat("a ", info->name, " tensor needs its last dimension to be a multiple of ", info->block, ", got shape ",
                   shape_str(shape)));
  return static_cast<uint64_t>(numel / info->block) * static_cast<uint64_t>(info->block_bytes);
}

bool GGUFFile::has_magic(const uint8_t* p, size_t n) { return n >= 4 && std::memcmp(p, "GGUF", 4) == 0; }

GGUFFile GGUFFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

GGUFFile GGUFFile::parse(std::shared_ptr<MappedFile> file) {
  const std::string name = file->path();
  const std::string qn = quote(name);
  Cursor c(file->data(), file->size(), name);
  GGUFFile g;
  g.file_ = file;

  if (!has_magic(file->data(), file->size())) fail_data(cat(qn, ": not a GGUF file (no 'GGUF' magic)"));
  c.read<uint32_t>("magic");
  g.version_ = c.read<uint32_t>("version");
  if (g.version_ == 1) fail(ErrorKind::Unsupported, cat(qn, ": GGUF version 1 is not supported (version 2 and 3 are)"));
  if (g.version_ != 2 && g.version_ != 3)
    fail_data(cat(qn, ": unknown GGUF version ", g.version_, " (expected 2 or 3)"));
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("key/value count");
  // Each key/value needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 8 + 4 + 8.
  if (n_kv > c.left() / 13) fail_data(cat(qn, ": key/value count ", n_kv, " is larger than the file can hold"));
  if (n_tensors > c.left() / 32) fail_data(cat(qn, ": tensor count ", n_tensors, " is larger than the file can hold"));

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.string(cat("key ", k), kMaxKeyLen);
    if (key.empty()) fail_data(cat(qn, ": key ", k, " is empty"));
    if (g.kv_index_.count(key)) fail_data(cat(qn, ": duplicate key ", quote(key)));
    const uint32_t type = c.read<uint32_t>("value type of " + quote(key));
    GGUFValue v;
    if (type == GGUFValue::Array) {
      v.type = GGUFValue::Array;
      const uint32_t elem = c.read<uint32_t>("array type of " + quote(key));
      if (elem == GGUFValue::Array) fail_data(cat(qn, ": key ", quote(key), ": arrays of arrays are not supported"));
      if (elem > GGUFValue::F64) fail_data(cat(qn, ": key ", quote(key), ": unknown array element type ", elem));
      v.elem = static_cast<GGUFValue::Type>(elem);
      const uint64_t n = c.read<uint64_t>("array length of " + quote(key));
      const uint64_t min_size = elem == GGUFValue::String ? 8 : scalar_size(elem);
      if (n > c.left() / min_size)
        fail_data(cat(qn, ": key ", quote(key), ": array of ", n, " elements is larger than the file can hold"));
      v.array.reserve(n);
      for (uint64_t e = 0; e < n; ++e) v.array.push_back(read_scalar(c, elem, key, name));
    } else {
      v = read_scalar(c, type, key, name);
    }
    g.kv_index_[key] = g.kv_.size();
    g.kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GGUFValue* a = g.find("general.alignment")) {
    if (a->type != GGUFValue::U32)
      fail_data(cat(qn, ": general.alignment has type ", gguf_value_type_name(a->type), ", expected u32"));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0)
      fail_data(cat(qn, ": general.alignment ", a->u, " is not a power of two"));
    g.alignment_ = a->u;
  }

  std::set<std::string> names;
  uint64_t expected_offset = 0;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GGUFTensorInfo info;
    info.name = c.string(cat("name of tensor ", t), UINT64_MAX);
    const std::string tq = cat(qn, ": tensor ", quote(info.name));
    if (info.name.size() > kMaxNameLen)
      fail_data(cat(qn, ": tensor name ", quote(info.name), " is ", info.name.size(), " bytes, the limit is ", kMaxNameLen));
    if (!names.insert(info.name).second) fail_data(cat(qn, ": duplicate tensor ", quote(info.name)));
    const uint32_t n_dims = c.read<uint32_t>("dimension count of " + quote(info.name));
    if (n_dims == 0 || n_dims > kMaxDims) fail_data(cat(tq, ": ", n_dims, " dimensions (1 to 4 allowed)"));
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>("dimension of " + quote(info.name));
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel) ||
          numel > static_cast<uint64_t>(INT64_MAX))
        fail_data(cat(tq, ": element count overflows"));
      info.dims.push_back(dim);
    }
    const uint32_t type = c.read<uint32_t>("type of " + quote(info.name));
    const TypeInfo* ti = type_info(type);
    if (!ti) {
      if (const char* known = known_unsupported_type(type))
        fail(ErrorKind::Unsupported, cat(tq, ": ggml type ", known, " is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K are)"));
      fail_data(cat(tq, ": unknown ggml type ", type));
    }
    info.type = ti->type;
    if (info.dims[0] % ti->block != 0)
      fail_data(cat(tq, ": first dimension ", info.dims[0], " is not a multiple of the ", ti->name, " block size ", ti->block));
    if (__builtin_mul_overflow(numel / ti->block, static_cast<uint64_t>(ti->block_bytes), &info.nbytes))
      fail_data(cat(tq, ": byte size overflows"));
    info.offset = c.read<uint64_t>("offset of " + quote(info.name));
    if (info.offset != expected_offset)
      fail_data(cat(tq, ": data offset ", info.offset, ", expected ", expected_offset,
                    " (tensors must be laid out in order, each padded to ", g.alignment_, ")"));
    uint64_t end;
    if (__builtin_add_overflow(info.offset, info.nbytes, &end)) fail_data(cat(tq, ": data end overflows"));
    expected_offset = align_up(end, g.alignment_, name);
    g.tensors_.push_back(std::move(info));
  }

  g.data_offset_ = align_up(c.pos(), g.alignment_, name);
  const uint64_t size = file->size();
  if (g.data_offset_ > size) {
    if (n_tensors > 0) fail_data(cat(qn, ": truncated: the tensor data would start at byte ", g.data_offset_, ", the file has ", size));
    g.data_offset_ = size;
  }
  const uint64_t data_size = size - g.data_offset_;
  uint64_t needed = 0;
  if (!g.tensors_.empty()) needed = g.tensors_.back().offset + g.tensors_.back().nbytes;
  if (needed > data_size)
    fail_data(cat(qn, ": truncated: tensors need ", needed, " data bytes, the file has ", data_size));
  if (data_size > (g.tensors_.empty() ? 0 : expected_offset))
    fail_data(cat(qn, ": ", data_size - (g.tensors_.empty() ? 0 : expected_offset), " trailing bytes after the last tensor"));
  return g;
}

const std::string& GGUFFile::path() const { return file_->path(); }

const GGUFValue* GGUFFile::find(const std::string& key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const uint8_t* GGUFFile::data(const GGUFTensorInfo& t) const { return file_->data() + data_offset_ + t.offset; }

Tensor GGUFFile::get(const GGUFTensorInfo& t) const {
  const Shape shape = t.shape();
  switch (t.type) {
    case GGMLType::F32: return Tensor::view(DType::F32, shape, data(t), file_);
    case GGMLType::F16: return Tensor::view(DType::F16, shape, data(t), file_);
    case GGMLType::BF16: return Tensor::view(DType::BF16, shape, data(t), file_);
    case GGMLType::Q8_0: {
      Tensor out = Tensor::zeros(DType::F32, shape);
      dequantize_q8_0(data(t), out.numel(), out.data_mut<float>());
      return out;
    }
    case GGMLType::Q4_0:
    case GGMLType::Q4_K:
    case GGMLType::Q6_K: {
      const WeightType wt = t.type == GGMLType::Q4_0 ? WeightType::Q4_0 : t.type == GGMLType::Q4_K ? WeightType::Q4_K : WeightType::Q6_K;
      Tensor out = Tensor::zeros(DType::F32, shape);
      dequantize_row(wt, data(t), out.numel(), out.data_mut<float>());
      return out;
    }
  }
  fail(ErrorKind::Runtime, "internal: unhandled ggml type");
}

void quantize_q8_0(const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const float* xb = x + b * kQ8Block;
    float amax = 0;
    for (int64_t j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    uint8_t* ob = out + b * kQ8BlockBytes;
    const uint16_t dh = f32_to_f16(d);
    std::memcpy(ob, &dh, 2);
    for (int64_t j = 0; j < kQ8Block; ++j) {
      const int8_t q = static_cast<int8_t>(std::lround(xb[j] * id));
      std::memcpy(ob + 2 + j, &q, 1);
    }
  }
}

void dequantize_q8_0(const uint8_t* in, int64_t n, float* out) {
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const uint8_t* ib = in + b * kQ8BlockBytes;
    uint16_t dh;
    std::memcpy(&dh, ib, 2);
    const float d = f16_to_f32(dh);
    for (int64_t j = 0; j < kQ8Block; ++j) out[b * kQ8Block + j] = static_cast<float>(static_cast<int8_t>(ib[2 + j])) * d;
  }
}

void GGUFWriter::set(const std::string& key, GGUFValue value) {
  for (auto& [k, v] : kv_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GGUFWriter::add_tensor(const std::string& name, GGMLType type, Shape shape, std::function<void(ByteSink&)> produce) {
  if (name.size() > kMaxNameLen)
    fail_usage(cat("tensor name ", quote(name), " is too long for GGUF (", name.size(), " bytes, the limit is ", kMaxNameLen, ")"));
  if (shape.empty() || shape.size() > kMaxDims)
    fail_usage(cat("tensor ", quote(name), ": GGUF holds 1 to 4 dimensions, got shape ", shape_str(shape)));
  ggml_nbytes(type, shape);  // checks the block size
  for (const auto& e : tensors_)
    if (e.name == name) fail_usage(cat("cannot write tensor ", quote(name), " twice"));
  tensors_.push_back({name, type, std::move(shape), std::move(produce)});
}


void GGUFWriter::write(ByteSink& out) const {
  constexpr uint64_t kAlign = 32;
  CountingSink sink(out);
  static const uint8_t zeros[kAlign] = {};
  sink.write("GGUF", 4);
  const uint32_t version = 3;
  sink.write(&version, 4);
  const uint64_t n_tensors = tensors_.size(), n_kv = kv_.size();
  sink.write(&n_tensors, 8);
  sink.write(&n_kv, 8);
  for (const auto& [key, v] : kv_) {
    write_string(sink, key);
    const uint32_t type = v.type;
    sink.write(&type, 4);
    if (v.type == GGUFValue::Array) {
      const uint32_t elem = v.elem;
      sink.write(&elem, 4);
      const uint64_t n = v.array.size();
      sink.write(&n, 8);
      for (const auto& e : v.array) write_scalar(sink, e);
    } else {
      write_scalar(sink, v);
    }
  }
  uint64_t offset = 0;
  for (const auto& e : tensors_) {
    write_string(sink, e.name);
    const uint32_t n_dims = static_cast<uint32_t>(e.shape.size());
    sink.write(&n_dims, 4);
    for (auto it = e.shape.rbegin(); it != e.shape.rend(); ++it) {
      const uint64_t d = static_cast<uint64_t>(*it);
      sink.write(&d, 8);
    }
    const uint32_t type = static_cast<uint32_t>(e.type);
    sink.write(&type, 4);
    sink.write(&offset, 8);
    const uint64_t nbytes = ggml_nbytes(e.type, e.shape);
    offset += nbytes + (kAlign - nbytes % kAlign) % kAlign;
  }
  sink.write(zeros, (kAlign - sink.count % kAlign) % kAlign);
  for (const auto& e : tensors_) {
    const uint64_t nbytes = ggml_nbytes(e.type, e.shape);
    const uint64_t before = sink.count;
    e.produce(sink);
    if (sink.count - before != nbytes)
      fail(ErrorKind::Runtime, cat("internal: tensor ", quote(e.name), " produced ", sink.count - before, " bytes, expected ", nbytes));
    sink.write(zeros, (kAlign - nbytes % kAlign) % kAlign);
  }
}

}  // namespace lm
