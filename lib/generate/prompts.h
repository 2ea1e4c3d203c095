// Where lm-generate's prompts come from: text (one prompt per line, or the whole input as
// one prompt) or token input (one prompt per record), read as they arrive so a pipe gets
// each completion before the next prompt is read.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/stream.h"
#include "io/tokstream.h"

namespace lm {

enum class PromptFormat { Auto, Lines, Text, Tokens };
std::optional<PromptFormat> prompt_format_from_name(std::string_view name);  // auto, lines, text, tokens

struct Prompt {
  std::string text;             // text prompts
  std::vector<int32_t> tokens;  // token prompts (text prompts are tokenized by the caller)
  bool is_tokens = false;
  uint64_t start = 0;           // token prompts: the record's start position
};

class PromptReader {
 public:
  // Auto: a token stream (its magic, after zstd decompression) or an llm.c file is read as
  // tokens, anything else as lines. `vocab` bounds headerless token ids.
  PromptReader(const std::string& path, PromptFormat format, uint32_t vocab);
  // The next prompt; false at the end of the input. Lines: a final line without a newline
  // counts, a trailing "\r" is dropped.
  bool next(Prompt& out);
  // The token reader (token input only), for tokenizer checks.
  const TokenReader* token_reader() const { return tokens_.get(); }
  PromptFormat format() const { return format_; }

 private:
  PromptFormat format_;
  std::unique_ptr<ByteSource> src_;
  std::unique_ptr<TokenReader> tokens_;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  TokenChunk chunk_;
};

}  // namespace lm
