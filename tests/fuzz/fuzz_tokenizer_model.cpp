// libFuzzer target: arbitrary bytes as a SentencePiece tokenizer.model (protobuf). Only
// lm::Error may escape loading; a tokenizer that loads must pass fuzz::exercise.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = lm::SentencePieceTokenizer::from_bytes(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.model");
    fuzz::exercise(*tok);
  } catch (const lm::Error&) {
  }
  return 0;
}
