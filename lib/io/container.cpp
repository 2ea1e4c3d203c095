#include "io/container.h"

#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/zip.h"

namespace lm {

Container sniff_container(const uint8_t* p, size_t n) {
  if (GGUFFile::has_magic(p, n)) return Container::GGUF;
  if (Llama2cFile::has_magic(p, n)) return Container::Llama2c;
  if (n >= 9 && p[8] == '{') {
    // A safetensors header length is far below 2^32 (its upper bytes are zero); a llama2.c v0
    // header with 123 layers also has '{' at byte 8, but its hidden_dim fills those bytes.
    uint32_t upper;
    std::memcpy(&upper, p + 4, 4);
    if (upper == 0) return Container::Safetensors;
  }
  // After safetensors: a zip's byte 8 is its compression method (0 for torch.save), never '{'.
  if (ZipArchive::has_magic(p, n)) return Container::Torch;
  // torch.save's legacy format (before 1.6): PROTO 2, then LONG1 of its 10-byte magic number.
  // Sniffed so the PyTorch reader can say what it is and how to re-save it.
  if (n >= 4 && p[0] == 0x80 && p[1] == 0x02 && p[2] == 0x8a && p[3] == 0x0a) return Container::Torch;
  if (n > 0 && p[0] == '{') return Container::Json;
  if (Llama2cFile::plausible_v0_header(p, n)) return Container::Llama2c;
  return Container::Unknown;
}

const char* container_name(Container c) {
  switch (c) {
    case Container::Safetensors: return "safetensors";
    case Container::GGUF: return "GGUF";
    case Container::Llama2c: return "llama2.c";
    case Container::Torch: return "PyTorch";
    case Container::Json: return "JSON";
    case Container::Unknown: return "unknown";
  }
  return "unknown";
}

void refuse_other_checkpoint(const uint8_t* p, size_t n, const std::string& name) {
  const Container c = sniff_container(p, n);
  if (c != Container::GGUF && c != Container::Llama2c && c != Container::Torch) return;
  // The command that converts it: the input's name with .safetensors for its extension.
  const bool stdin_input = name == "<stdin>" || name == "-";
  const std::string in = stdin_input ? "-" : name;
  std::string out = "out.safetensors";
  if (!stdin_input) {
    const size_t slash = name.rfind('/'), dot = name.rfind('.');
    const bool has_ext = dot != std::string::npos && (slash == std::string::npos || dot > slash + 1);
    out = (has_ext ? name.substr(0, dot) : name) + ".safetensors";
  }
  fail_data(cat(quote(name), ": a ", container_name(c), " checkpoint, not an lmkit one (safetensors): convert it with '",
                "lm-convert-checkpoint ", in, " ", out, "'"));
}

}  // namespace lm
