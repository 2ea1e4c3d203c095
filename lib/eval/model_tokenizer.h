// The tokenizer a checkpoint names in its `lmkit.tokenizer` metadata (JSON, e.g.
// {"kind":"byte-v1","vocab_size":264,"pad_id":256,"eos_id":257}), and the checks a program
// makes before feeding a token input to a model: same tokenizer, vocabulary within the
// model's. Shared by lm-eval-loss and lm-generate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/tokstream.h"
#include "model/params.h"
#include "tokenizer/tokenizer.h"

namespace lm {

// The spec of a checkpoint's tokenizer. No metadata, kind "raw" or "none": kind Raw with the
// vocab size given (else the model's V). byte-v1: exactly byte_v1::spec(). Other kinds: the
// fields of the JSON (vocab_size, bos_id, eos_id, pad_id, unk_id, fingerprint as a number or
// a "0x..." string). Data errors name `source`: bad JSON, an unknown kind, a tokenizer
// vocabulary larger than the model's (`model_vocab`).
TokenizerSpec model_tokenizer_spec(const std::string& json, int64_t model_vocab, const std::string& source);
inline TokenizerSpec model_tokenizer_spec(const ModelWeights& w, const std::string& source) {
  return model_tokenizer_spec(w.tokenizer_json(), w.config().vocab_size, source);
}

// The tokenizer for text in and out of a model: make_tokenizer(spec.kind) (so SentencePiece
// and tokenizer.json BPE work once lib/tokenizer provides them). Kind Raw: an Unsupported
// error naming `source` with a hint to use token input/output instead.
std::unique_ptr<Tokenizer> make_model_tokenizer(const TokenizerSpec& spec, const std::string& source);

// Refuses token input the model cannot read (Data errors naming the input):
//  - a stream whose header names another tokenizer than the model's (require_same_tokenizer);
//  - for a model without a known tokenizer (Raw), a stream whose vocab size differs from it;
//  - a vocabulary larger than the model's.
// Headerless inputs (llm.c, raw u16/u32) carry no tokenizer: their tokens are checked
// against the model's vocab by the reader (TokenReadOptions::vocab_size).
void require_tokens_for_model(const TokenizerSpec& model, int64_t model_vocab, const TokenReader& reader);

// Bytes each token id decodes to, [V] (0 for ids without bytes: specials, reserved, ids
// past the tokenizer's vocabulary): the byte count of a text for bits per byte.
std::vector<int32_t> token_byte_lengths(const Tokenizer& tokenizer, int64_t V);

}  // namespace lm
