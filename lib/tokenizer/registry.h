// A per-user store of the tokenizer files that made token streams, by identity, so
// that `lm-tokenize -t tokenizer.model < in.txt | lm-tokenize --decode` needs the file only
// once: encoding with a tokenizer file keeps a copy under
//
//   $LMKIT_TOKENIZER_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/lmkit/tokenizers)
//     /<kind>-<fingerprint as 16 hex digits>/tokenizer.model | tokenizer.json [+ tokenizer_config.json]
//
// and a token stream whose header names a kind and fingerprint finds its tokenizer there.
// The copy is loaded and checked against the whole header (kind, vocabulary size, special
// ids, fingerprint) before use, so a stale or damaged entry is never used silently. An
// empty LMKIT_TOKENIZER_CACHE turns the store off. Storing is best effort: a store that
// cannot be written is skipped without an error.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace lm {

// The store's directory, or "" when it is turned off.
std::string tokenizer_store_dir();

// Keeps a copy of the tokenizer file at `path` (and, for tokenizer.json, the
// tokenizer_config.json beside it) for `tok`'s identity, unless one is there already.
// Returns whether the store now has it.
bool remember_tokenizer(const std::string& path, const Tokenizer& tok);

// The stored tokenizer of `spec`, loaded and verified (Data error if the stored copy does
// not match), or null when the store has none.
std::unique_ptr<Tokenizer> recall_tokenizer(const TokenizerSpec& spec);

}  // namespace lm
