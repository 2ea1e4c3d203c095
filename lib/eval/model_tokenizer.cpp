#include "eval/model_tokenizer.h"

#include "core/error.h"
#include "tokenizer/spec_json.h"

namespace lm {

TokenizerSpec model_tokenizer_spec(const std::string& json, int64_t model_vocab, const std::string& source) {
  TokenizerSpec spec;
  if (!json.empty()) spec = spec_from_json(json, source);
  if (spec.vocab_size == 0) spec.vocab_size = static_cast<uint32_t>(model_vocab);
  if (spec.vocab_size > model_vocab)
    fail_data(cat(source, ": vocab mismatch: the tokenizer has ", spec.vocab_size, " tokens, the model's vocab_size is ",
                  model_vocab));
  return spec;
}

std::unique_ptr<Tokenizer> make_model_tokenizer(const TokenizerSpec& spec, const std::string& source) {
  if (spec.kind == TokenizerKind::Raw)
    fail(ErrorKind::Unsupported, cat(source, ": the checkpoint names no tokenizer, so it cannot read or write text"),
         "give token input and output instead (token streams, or token ids)");
  auto tok = make_tokenizer(spec.kind);
  if (spec.kind == TokenizerKind::ByteV1) require_same_tokenizer(tok->spec(), spec, source);
  return tok;
}

void require_tokens_for_model(const TokenizerSpec& model, int64_t model_vocab, const TokenReader& reader) {
  const TokenizerSpec& got = reader.spec();
  const std::string what = quote(reader.name());
  if (reader.format() != TokenInputFormat::Stream) return;  // headerless: the reader checks ids < vocab
  if (got.vocab_size > model_vocab)
    fail_data(cat(what, ": vocab mismatch: the token stream has a vocabulary of ", got.vocab_size,
                  ", the model's vocab_size is ", model_vocab));
  if (model.kind != TokenizerKind::Raw) {
    require_same_tokenizer(model, got, what);
  } else if (got.vocab_size != model.vocab_size) {
    fail_data(cat(what, ": vocab mismatch: the token stream has a vocabulary of ", got.vocab_size,
                  ", the model's tokenizer has ", model.vocab_size));
  }
}

std::vector<int32_t> token_byte_lengths(const Tokenizer& tokenizer, int64_t V) {
  std::vector<int32_t> len(static_cast<size_t>(V), 0);
  std::vector<uint8_t> bytes;
  const int64_t n = std::min<int64_t>(V, tokenizer.spec().vocab_size);
  for (int64_t i = 0; i < n; ++i) {
    bytes.clear();
    const uint32_t id = static_cast<uint32_t>(i);
    if (tokenizer.decode(&id, 1, bytes) == 1) len[static_cast<size_t>(i)] = static_cast<int32_t>(bytes.size());
  }
  return len;
}

}  // namespace lm
