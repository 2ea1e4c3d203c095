#include "eval/checkpoint_tokenizer.h"

#include "convert/source.h"
#include "core/error.h"
#include "eval/model_tokenizer.h"
#include "tokenizer/registry.h"

namespace lm {

std::shared_ptr<Tokenizer> find_checkpoint_tokenizer(const std::string& path, TokenizerSpec& spec, const std::string& given,
                                                     const std::string& source) {
  if (!given.empty()) {
    std::shared_ptr<Tokenizer> tok = load_tokenizer(given);
    if (spec.kind != TokenizerKind::Raw) {
      require_same_tokenizer(spec, tok->spec(), cat("--tokenizer ", quote(given), " for ", source));
    } else {
      if (tok->spec().vocab_size > spec.vocab_size)
        fail_data(cat("--tokenizer ", quote(given), ": vocab mismatch: the tokenizer has ", tok->spec().vocab_size,
                      " tokens, the model's vocab_size is ", spec.vocab_size));
      spec = tok->spec();
    }
    return tok;
  }
  if (spec.kind == TokenizerKind::Raw) return nullptr;
  if (spec.kind == TokenizerKind::ByteV1) return make_model_tokenizer(spec, source);
  if (path != "-") {
    convert::Source src = convert::open_source(path);
    if (src.tokenizer) {
      require_same_tokenizer(spec, src.tokenizer->spec(), cat(source, " (its vocabulary)"));
      return src.tokenizer;
    }
  }
  return recall_tokenizer(spec);
}

void fail_no_tokenizer(const TokenizerSpec& spec, const std::string& source) {
  if (spec.kind == TokenizerKind::Raw) make_model_tokenizer(spec, source);  // throws Unsupported
  fail(ErrorKind::Usage,
       cat(source, ": its ", spec.kind_name(), " tokenizer is not at hand (the checkpoint names it but does not carry it)"),
       "give the tokenizer file with --tokenizer FILE");
}

}  // namespace lm
