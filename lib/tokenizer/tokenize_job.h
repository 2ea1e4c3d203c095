// lm-tokenize as a library call: which inputs, which tokenizer, which direction and output
// (TokenizeJob), run by run_tokenize_job. The program only turns options into a job.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lm {

struct TokenizeJob {
  std::vector<std::string> inputs;  // each one document (each line, with encode.lines); "-" = stdin; none = stdin
  std::string output = "-";         // a file (written atomically) or "-" = stdout
  std::string tokenizer_path;       // a tokenizer.model or tokenizer.json; empty: byte-v1, or (decoding) each
                                    // stream's own tokenizer (tokenizer_for_decoding)
  TokenizerKind kind = TokenizerKind::Raw;  // Raw: detected from tokenizer_path (byte-v1 without a file)
  bool decode = false;
  // Encoding:
  EncodeOptions encode;             // its eos is replaced by `eos` below; threads 0 = all
  std::optional<EosMode> eos;       // none: soma for byte-v1, never for subword tokenizers
  TokenOutputFormat format = TokenOutputFormat::Stream;
  // Decoding:
  TokenInputFormat input_format = TokenInputFormat::Auto;
  int zstd_level = 0;  // compress the output at this level (0 = plain)
};

// Checks that every input can be read before the output is opened (an Io error naming the
// first that cannot), loads the tokenizer (a file given is remembered in the tokenizer store,
// so that a later --decode finds it by the stream's header), and encodes or decodes. Returns
// what was done as one line: "2 documents, 10 bytes -> 12 tokens in 2 records", or "1 inputs,
// 12 tokens in 2 records -> 10 bytes".
std::string run_tokenize_job(const TokenizeJob& job);

// True when the job writes binary data (a token stream or zstd): not for a terminal.
bool writes_binary(const TokenizeJob& job);

}  // namespace lm
