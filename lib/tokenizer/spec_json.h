// The tokenizer spec as JSON, the form a checkpoint carries it in (metadata key
// lmkit.tokenizer, io/metadata_keys.h):
//   {"kind":"byte-v1","vocab_size":264,"bos_id":..,"eos_id":257,"pad_id":256,"unk_id":..,"fingerprint":"0x.."}
// Special ids appear only when >= 0, the fingerprint only when non-zero.
#pragma once

#include <string>

#include "io/tokstream.h"

namespace lm {

std::string spec_to_json(const TokenizerSpec& spec);

// The inverse of spec_to_json. A missing kind (or "none") is raw; a missing vocab_size is 0
// (unknown); the fingerprint may be a number or a "0x..." string. byte-v1 needs no file, so its
// spec is byte_v1::spec() whatever else the JSON says, but a vocab_size other than its own is a
// mismatch. Data errors start with `source`: bad JSON, an unknown kind, a field of the wrong type.
TokenizerSpec spec_from_json(const std::string& json, const std::string& source);

}  // namespace lm
