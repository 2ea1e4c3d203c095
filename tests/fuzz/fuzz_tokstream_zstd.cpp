// libFuzzer target: zstd-compressed token input. The fuzzer's bytes are the *decompressed*
// content (so the reader behind the decompressor sees streams of every shape, which random
// compressed bytes never decode to), cut into one or more zstd frames; the first byte picks
// the frame count and a corruption (none, truncated, one byte flipped, trailing garbage) of
// the compressed file. Only lm::Error may escape; the chunks keep the reader's promises.
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "tokstream_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0], where = data[1];
  const uint8_t* content = data + 2;
  const size_t n = size - 2;
  const size_t frames = 1 + mode % 3;
  std::vector<uint8_t> z;
  for (size_t f = 0; f < frames; ++f) {
    const size_t begin = n * f / frames, end = n * (f + 1) / frames;
    std::vector<uint8_t> frame(ZSTD_compressBound(end - begin));
    const size_t got = ZSTD_compress(frame.data(), frame.size(), content + begin, end - begin, 1);
    if (ZSTD_isError(got)) __builtin_trap();
    z.insert(z.end(), frame.begin(), frame.begin() + got);
  }
  switch ((mode / 3) % 4) {
    case 0: break;
    case 1: z.resize(z.size() * where / 256); break;  // truncated
    case 2: z[z.size() * where / 256] ^= 0x5a; break;  // one byte changed
    case 3: z.insert(z.end(), content, content + n % 7); break;  // trailing bytes
  }
  for (auto format : {lm::TokenInputFormat::Auto, lm::TokenInputFormat::U16}) {
    try {
      fuzz::read_everything(z.data(), z.size(), format);
    } catch (const lm::Error&) {
    }
  }
  return 0;
}
