// llama2.c checkpoints (formats.md §3): legacy v0 (7 int32 + fp32 arrays, the only format
// run.c reads; negative vocab_size = untied classifier), v1 (256-byte header with magic,
// fp32, different order) and v2 (Q8_0 groups, runq.c). Read all three, write v0.
//
// The container only: the header, which arrays each version stores in which order, their
// shapes and offsets. The arrays are stacked over layers ([L, ...]); the reader hands out one
// entry per layer slice, named by run.c's TransformerWeights field and the layer. What those
// arrays are in lmkit's terms (tensor names, the model config a header implies) is the
// conversion's business (lib/convert: names.h, config_io.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

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

  struct Entry {
    std::string array;           // run.c's TransformerWeights field, e.g. "wq"
    int64_t layer = -1;          // the layer of a per-layer array's slice; -1 for a whole array
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

// Whether run.c stacks `array` over layers (rms_att_weight, wq, ..., w3) rather than holding one.
bool llama2c_per_layer(const std::string& array);
// The shape of one layer's slice of `array` (or of the whole array) under header `h`.
Shape llama2c_array_shape(const std::string& array, const Llama2cHeader& h);

// Writes a legacy v0 file with header `h` (version, group_size ignored; shared_classifier decides
// the sign of vocab_size and whether wcls is stored). `get(array, layer)` returns each slice
// (layer -1 for a whole array) in any float dtype, of llama2c_array_shape; it is written as fp32.
// freq_cis_real/imag are computed (run.c skips them). A header the reader would refuse is a
// Usage error.
void write_llama2c_v0(ByteSink& sink, const Llama2cHeader& h,
                      const std::function<Tensor(const std::string& array, int64_t layer)>& get);

}  // namespace lm
