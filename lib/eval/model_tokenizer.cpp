#include "eval/model_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/byte_v1.h"

namespace lm {

namespace {

int64_t int_field(const nlohmann::json& j, const char* key, int64_t def, const std::string& source) {
  if (!j.contains(key)) return def;
  const auto& v = j[key];
  if (!v.is_number_integer()) fail_data(cat(source, ": tokenizer '", key, "': expected an integer"));
  return v.get<int64_t>();
}

}  // namespace

TokenizerSpec model_tokenizer_spec(const std::string& json, int64_t model_vocab, const std::string& source) {
  TokenizerSpec spec;
  spec.vocab_size = static_cast<uint32_t>(model_vocab);
  if (json.empty()) return spec;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail_data(cat(source, ": bad tokenizer metadata (lmkit.tokenizer): ", e.what()));
  }
  if (!j.is_object()) fail_data(cat(source, ": bad tokenizer metadata (lmkit.tokenizer): not a JSON object"));
  const std::string kind = j.value("kind", std::string("raw"));
  const int64_t vocab = int_field(j, "vocab_size", model_vocab, source);
  if (vocab < 1 || vocab > model_vocab)
    fail_data(cat(source, ": vocab mismatch: the tokenizer has ", vocab, " tokens, the model's vocab_size is ",
                  model_vocab));
  if (kind == "raw" || kind == "none") {
    spec.vocab_size = static_cast<uint32_t>(vocab);
    return spec;
  }
  const auto k = tokenizer_kind_from_name(kind);
  if (!k) fail_data(cat(source, ": unknown tokenizer kind '", kind, "' in lmkit.tokenizer"));
  if (*k == TokenizerKind::ByteV1) {
    spec = byte_v1::spec();
    if (vocab != spec.vocab_size)
      fail_data(cat(source, ": vocab mismatch: byte-v1 has ", spec.vocab_size, " tokens, lmkit.tokenizer says ", vocab));
    return spec;
  }
  spec.kind = *k;
  spec.vocab_size = static_cast<uint32_t>(vocab);
  spec.bos_id = static_cast<int32_t>(int_field(j, "bos_id", -1, source));
  spec.eos_id = static_cast<int32_t>(int_field(j, "eos_id", -1, source));
  spec.pad_id = static_cast<int32_t>(int_field(j, "pad_id", -1, source));
  spec.unk_id = static_cast<int32_t>(int_field(j, "unk_id", -1, source));
  if (j.contains("fingerprint")) {
    const auto& f = j["fingerprint"];
    if (f.is_number_unsigned() || f.is_number_integer())
      spec.fingerprint = f.get<uint64_t>();
    else if (f.is_string())
      spec.fingerprint = std::stoull(f.get<std::string>(), nullptr, 0);
    else
      fail_data(cat(source, ": tokenizer 'fingerprint': expected a number or a string"));
  }
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
