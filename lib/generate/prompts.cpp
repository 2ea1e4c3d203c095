#include "generate/prompts.h"

#include <cstring>

#include "core/error.h"

namespace lm {

std::optional<PromptFormat> prompt_format_from_name(std::string_view name) {
  if (name == "auto") return PromptFormat::Auto;
  if (name == "lines") return PromptFormat::Lines;
  if (name == "text") return PromptFormat::Text;
  if (name == "tokens") return PromptFormat::Tokens;
  return std::nullopt;
}

namespace {

bool looks_like_tokens(const std::vector<uint8_t>& head) {
  if (head.size() >= 8 && std::memcmp(head.data(), tokstream::kMagic, 8) == 0) return true;
  if (head.size() >= 4) {
    int32_t magic;
    std::memcpy(&magic, head.data(), 4);
    return magic == kLlmcMagicU16 || magic == kLlmcMagicU32;
  }
  return false;
}

}  // namespace

PromptReader::PromptReader(const std::string& path, PromptFormat format, uint32_t vocab) : format_(format) {
  std::unique_ptr<ByteSource> src = open_input(path);
  if (format_ == PromptFormat::Auto) {
    std::vector<uint8_t> head(8);
    head.resize(src->read_full(head.data(), head.size()));
    format_ = looks_like_tokens(head) ? PromptFormat::Tokens : PromptFormat::Lines;
    src = prefixed_source(std::move(head), std::move(src));
  }
  if (format_ == PromptFormat::Tokens) {
    TokenReadOptions ro;
    ro.vocab_size = vocab;
    tokens_ = open_token_reader(std::move(src), ro);
  } else {
    src_ = std::move(src);
  }
}

bool PromptReader::next(Prompt& out) {
  out = Prompt{};
  if (tokens_) {
    out.is_tokens = true;
    bool any = false;
    while (tokens_->next(chunk_)) {
      if (chunk_.first) out.start = chunk_.start;
      any = true;
      for (uint32_t t : chunk_.tokens) out.tokens.push_back(static_cast<int32_t>(t));
      if (chunk_.last) return true;
    }
    return any;
  }
  char block[1 << 16];
  while (true) {
    if (format_ == PromptFormat::Lines) {
      const size_t nl = buf_.find('\n', pos_);
      if (nl != std::string::npos) {
        out.text = buf_.substr(pos_, nl - pos_);
        pos_ = nl + 1;
        if (!out.text.empty() && out.text.back() == '\r') out.text.pop_back();
        return true;
      }
    }
    if (eof_) {
      if (pos_ >= buf_.size()) return false;
      if (format_ == PromptFormat::Text && pos_ == buf_.size()) return false;
      out.text = buf_.substr(pos_);
      pos_ = buf_.size();
      if (format_ == PromptFormat::Lines && !out.text.empty() && out.text.back() == '\r') out.text.pop_back();
      return true;
    }
    buf_.erase(0, pos_);
    pos_ = 0;
    const size_t n = src_->read_some(block, sizeof block);
    if (n == 0)
      eof_ = true;
    else
      buf_.append(block, n);
  }
}

}  // namespace lm
