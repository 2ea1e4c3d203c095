// GGUF v2/v3 (ggml's model container, formats.md §2): a header, typed key/value metadata,
// tensor infos (name, dims in ggml order, type, offset), then aligned tensor data.
// Reading maps the file and validates it the way ggml's reader does (every count, length and
// offset bounded by the file size with checked arithmetic; duplicate keys and names, unknown
// types and versions, holes and overlaps rejected) before handing out tensors. Writing streams
// the header and then each tensor, produced on demand.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lm {

class ByteSink;
class MappedFile;

// The ggml tensor types lmkit reads and writes (others are rejected by name or number).
enum class GGMLType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30 };
const char* ggml_type_name(GGMLType t);  // "F32", "F16", "Q4_0", "Q8_0", "Q4_K", "Q6_K", "BF16"

// Q8_0: blocks of 32 values, one f16 scale then 32 int8 (34 bytes), as ggml's reference
// quantize_row_q8_0 (d = max|x| / 127, q = round(x / d)).
inline constexpr int64_t kQ8Block = 32;
inline constexpr int64_t kQ8BlockBytes = 34;
void quantize_q8_0(const float* x, int64_t n, uint8_t* out);     // n % 32 == 0
void dequantize_q8_0(const uint8_t* in, int64_t n, float* out);  // n % 32 == 0

// One metadata value. Arrays hold scalars or strings (arrays of arrays are rejected, as ggml does).
struct GGUFValue {
  enum Type : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };
  Type type = U32;
  uint64_t u = 0;   // unsigned integers and bool
  int64_t i = 0;    // signed integers
  double f = 0;     // floats
  std::string s;    // strings
  Type elem = U32;  // array element type
  std::vector<GGUFValue> array;

  static GGUFValue u32(uint32_t v) { GGUFValue x; x.type = U32; x.u = v; return x; }
  static GGUFValue f32(float v) { GGUFValue x; x.type = F32; x.f = v; return x; }
  static GGUFValue str(std::string v) { GGUFValue x; x.type = String; x.s = std::move(v); return x; }
  static GGUFValue boolean(bool v) { GGUFValue x; x.type = Bool; x.u = v; return x; }

  bool is_integer() const { return type <= I32 || type == U64 || type == I64 || type == U8; }
  // The value as an integer (any integer type) or a Data error naming `key`.
  int64_t as_int(const std::string& key) const;
  double as_float(const std::string& key) const;  // F32/F64 (or an integer)
  const std::string& as_string(const std::string& key) const;
};
const char* gguf_value_type_name(uint32_t type);

struct GGUFTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the contiguous axis
  GGMLType type = GGMLType::F32;
  uint64_t offset = 0;         // relative to the data section
  uint64_t nbytes = 0;
  Shape shape() const;         // PyTorch order: dims reversed
};

class GGUFFile {
 public:
  // Maps `path` ("-" reads stdin) and validates it; Data errors name the file and the field.
  static GGUFFile open(const std::string& path);
  static GGUFFile parse(std::shared_ptr<MappedFile> file);
  static bool has_magic(const uint8_t* p, size_t n);

  const std::string& path() const;
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
  const GGUFValue* find(const std::string& key) const;
  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const uint8_t* data(const GGUFTensorInfo& t) const;
  uint64_t data_offset() const { return data_offset_; }  // file offset of the tensor data section
  // The tensor in PyTorch shape: a zero-copy view for F32/F16/BF16, dequantized to F32 for Q8_0, Q4_0, Q4_K and Q6_K.
  Tensor get(const GGUFTensorInfo& t) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 3;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GGUFTensorInfo> tensors_;
};

// Collects metadata and tensors, then streams a GGUF v3 file: header, key/values in the order
// set, tensor infos in the order added, data padded to `general.alignment` (32).
class GGUFWriter {
 public:
  void set(const std::string& key, GGUFValue value);  // replaces an earlier value of `key`
  // `shape` in PyTorch order (written reversed); `produce` writes exactly the tensor's bytes.
  void add_tensor(const std::string& name, GGMLType type, Shape shape, std::function<void(ByteSink&)> produce);
  void write(ByteSink& sink) const;

 private:
  struct Entry {
    std::string name;
    GGMLType type;
    Shape shape;
    std::function<void(ByteSink&)> produce;
  };
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<Entry> tensors_;
};

// Bytes of a tensor of `type` and PyTorch `shape` (ne0 = last dim must be a multiple of 32 for Q8_0).
uint64_t ggml_nbytes(GGMLType type, const Shape& shape);

}  // namespace lm
