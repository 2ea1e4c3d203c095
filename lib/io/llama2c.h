// llama2.c checkpoints (formats.md §3): legacy v0 (7 int32 + fp32 arrays, the only format
// run.c reads; negative vocab_size = untied classifier), v1 (256-byte header with magic,
// fp32, different order) and v2 (Q8_0 groups, runq.c). Read all three, write v0.
//
// The arrays are stacked over layers ([L, ...]); the reader hands out one tensor per layer
// under lmkit's (Meta) names, as zero-copy views for fp32 and dequantized for v2. Which array
// holds which tensor, and in which order each version stores them, comes from the name table
// (lib/convert/names.h), so reader, writer and the other layouts agree.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace lm {

class ByteSink;
class MappedFile;

struct Llama2cHeader {
  int version = 0;  // 0 (legacy), 1 or 2
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;
  int32_t group_size = 0;  // v2 only
};

class Llama2cFile {
 public:
  // Maps `path` ("-" reads stdin) and validates the header and the exact file size.
  static Llama2cFile open(const std::string& path);
  static Llama2cFile parse(std::shared_ptr<MappedFile> file);
  // v1/v2 files start with the magic "ak42" (bytes 32 34 6b 61); anything else is tried as v0.
  static bool has_magic(const uint8_t* p, size_t n);
  // The first 28 bytes read as a plausible v0 header (positive sizes that divide into heads):
  // how a file without magic is recognised as v0 (parse() then checks the exact size).
  static bool plausible_v0_header(const uint8_t* p, size_t n);

  const std::string& path() const;
  const Llama2cHeader& header() const { return header_; }
  // The model config the header implies; what the file cannot store takes llama2.c's fixed
  // values: RMSNorm eps 1e-5, RoPE theta 10000, HS = dim / n_heads, BOS 1, EOS 2.
  ModelConfig config() const;

  struct Entry {
    std::string name;  // lmkit (Meta) name, e.g. "layers.3.attention.wq.weight"
    Shape shape;
    bool q8 = false;             // v2: int8 values followed by fp32 group scales
    uint64_t offset = 0;         // of the fp32 data, or of the int8 values (v2)
    uint64_t scale_offset = 0;   // v2: of the fp32 scales
  };
  const std::vector<Entry>& entries() const { return entries_; }
  // A float32 tensor: a view into the mapping (fp32), or dequantized (v2).
  Tensor get(const Entry& e) const;

 private:
  std::shared_ptr<MappedFile> file_;
  Llama2cHeader header_;
  std::vector<Entry> entries_;
};

// Writes a legacy v0 file for `cfg` (which must be a plain Llama that v0 can describe: the
// Unsupported error names the first field it cannot store). `get(name)` returns each lmkit
// tensor (any float dtype; written as fp32). freq_cis_real/imag are computed (run.c skips them).
void write_llama2c_v0(ByteSink& sink, const ModelConfig& cfg, const std::function<Tensor(const std::string&)>& get);
// What v0 cannot express about `cfg`, one message each (empty = writable).
std::vector<std::string> llama2c_unsupported(const ModelConfig& cfg);

}  // namespace lm
