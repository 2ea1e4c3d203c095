#include "eval/model_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "tokenizer/byte_v1.h"

namespace lm {

namespace {

int64_t int_field(const nlohmann::json& j, const char* key, int64_t def, const std::string& source) {
  if (!j.contains(key)) return def;
  const auto& v = j[key];
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX))
    fail_data(cat(source, ": tokenizer '", key, "': expected an integer"));
  return v.get<int64_t>();
}

// A special token id: -1 (none) or an id of the vocabulary.
int32_t id_field(const nlohmann::json& j, const char* key, int64_t vocab, const std::string& source) {
  const int64_t id = int_field(j, key, -1, source);
  if (id < -1 || id >= vocab)
    fail_data(cat(source, ": tokenizer '", key, "': ", id, " is not a token id (vocab_size ", vocab, ")"));
  return static_cast<int32_t>(id);
}

// "0x1f..." (as checkpoints write it) or decimal digits; the whole string, at most 64 bits.
bool parse_fingerprint(const std::string& s, uint64_t& out) {
  const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  const unsigned base = hex ? 16 : 10;
  const size_t first = hex ? 2 : 0;
  if (s.size() == first) return false;
  out = 0;
  for (size_t i = first; i < s.size(); ++i) {
    const char c = s[i];
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (hex && c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else if (hex && c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
    else return false;
    if (__builtin_mul_overflow(out, base, &out) || __builtin_add_overflow(out, d, &out)) return false;
  }
  return true;
}

}  // namespace

TokenizerSpec model_tokenizer_spec(const std::string& json, int64_t model_vocab, const std::string& source) {
  TokenizerSpec spec;
  spec.vocab_size = static_cast<uint32_t>(model_vocab);
  if (json.empty()) return spec;
  const nlohmann::json j = parse_json_strict(json, cat(source, ": bad tokenizer metadata (lmkit.tokenizer): "));
  if (!j.is_object()) fail_data(cat(source, ": bad tokenizer metadata (lmkit.tokenizer): not a JSON object"));
  if (j.contains("kind") && !j["kind"].is_string()) fail_data(cat(source, ": tokenizer 'kind': expected a string"));
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
  spec.bos_id = id_field(j, "bos_id", vocab, source);
  spec.eos_id = id_field(j, "eos_id", vocab, source);
  spec.pad_id = id_field(j, "pad_id", vocab, source);
  spec.unk_id = id_field(j, "unk_id", vocab, source);
  if (j.contains("fingerprint")) {
    const auto& f = j["fingerprint"];
    if (f.is_number_unsigned())
      spec.fingerprint = f.get<uint64_t>();
    else if (!f.is_string() || !parse_fingerprint(f.get<std::string>(), spec.fingerprint))
      fail_data(cat(source, ": tokenizer 'fingerprint': expected a 64-bit number or a \"0x...\" string"));
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
