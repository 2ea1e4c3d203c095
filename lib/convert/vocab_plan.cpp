// Which vocabulary a conversion writes (convert.h, plan_vocabulary).
#include "convert/convert.h"

#include <unistd.h>

#include "core/error.h"
#include "model/config.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/registry.h"
#include "tokenizer/spec_json.h"
#include "tokenizer/tokenizer.h"

namespace lm::convert {

void plan_vocabulary(Plan& plan, const std::string& tokenizer_file) {
  Source& src = plan.source;
  TokenizerSpec named;  // what the checkpoint says its tokenizer is (kind Raw: nothing)
  if (!src.tokenizer_json.empty()) named = spec_from_json(src.tokenizer_json, quote(src.display));
  if (!tokenizer_file.empty()) {
    std::shared_ptr<Tokenizer> tok = load_tokenizer(tokenizer_file);
    if (named.kind != TokenizerKind::Raw)
      require_same_tokenizer(named, tok->spec(), cat("--tokenizer ", quote(tokenizer_file), " for ", quote(src.display)));
    if (plan.config && static_cast<int64_t>(tok->spec().vocab_size) > plan.config->vocab_size)
      fail_data(cat("--tokenizer ", quote(tokenizer_file), ": vocab mismatch: the tokenizer has ", tok->spec().vocab_size,
                    " tokens, the model's vocab_size is ", plan.config->vocab_size));
    remember_tokenizer(tokenizer_file, *tok);
    src.tokenizer = std::move(tok);
    src.tokenizer_json = spec_to_json(src.tokenizer->spec());
    named = src.tokenizer->spec();
  }
  if (plan.to != Layout::GGUF && plan.to != Layout::Lmkit) return;
  if (!plan.config) return;
  // A Hugging Face checkpoint's tokenizer lies beside its config.json: tokenizer.model first
  // (Llama 2's tokenizer.json is byte_fallback BPE, which lmkit reads from the .model), then
  // tokenizer.json (with tokenizer_config.json for the special ids).
  if (tokenizer_file.empty() && !src.tokenizer && !src.dir.empty() && (plan.from == Layout::HF || plan.from == Layout::HFLlama4)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json"}) {
      const std::string path = src.dir + "/" + name;
      if (::access(path.c_str(), R_OK) != 0) continue;
      try {
        std::shared_ptr<Tokenizer> tok = load_tokenizer(path);
        if (named.kind != TokenizerKind::Raw) require_same_tokenizer(named, tok->spec(), quote(path));
        remember_tokenizer(path, *tok);  // found again by its identity even where lmkit.vocab cannot hold it
        src.tokenizer = std::move(tok);
        src.tokenizer_json = spec_to_json(src.tokenizer->spec());
        named = src.tokenizer->spec();
        plan.notes.push_back(cat("tokenizer: ", path));
        break;
      } catch (const Error& e) {
        plan.notes.push_back(cat("tokenizer ", quote(path), " not carried: ", e.what()));
      }
    }
  }
  if (!src.tokenizer && plan.to == Layout::GGUF) {
    if (named.kind == TokenizerKind::SentencePiece || named.kind == TokenizerKind::HfBpe) {
      src.tokenizer = recall_tokenizer(named);
      if (!src.tokenizer)
        fail(ErrorKind::Usage,
             cat(quote(src.display), ": its ", named.kind_name(), " tokenizer is not at hand, and llama.cpp needs the vocabulary"),
             "give the tokenizer file with --tokenizer FILE");
    } else if (named.kind == TokenizerKind::ByteV1) {
      plan.notes.push_back("the byte-v1 tokenizer has no GGUF vocabulary llama.cpp can read: written without one "
                           "(tokenizer.ggml.model \"none\"; llama.cpp runs it on token ids)");
    } else if (!src.tokenizer_error.empty()) {
      plan.notes.push_back(cat("written without a vocabulary: ", src.tokenizer_error));
    }
  }
  if (!src.tokenizer) return;
  // With --tokenizer the model's special ids become the tokenizer's (generation stops at the
  // config's eos_id, llama.cpp at the vocabulary's); a config that came with its tokenizer (a
  // GGUF file, Hugging Face's config.json) keeps its own.
  const TokenizerSpec& ts = src.tokenizer->spec();
  ModelConfig& c = *plan.config;
  if (!tokenizer_file.empty() && (c.bos_id != ts.bos_id || c.eos_id != ts.eos_id || c.pad_id != ts.pad_id)) {
    plan.notes.push_back(cat("config special ids set to the tokenizer's: bos_id ", c.bos_id, " -> ", ts.bos_id, ", eos_id ",
                             c.eos_id, " -> ", ts.eos_id, ", pad_id ", c.pad_id, " -> ", ts.pad_id));
    c.bos_id = ts.bos_id;
    c.eos_id = ts.eos_id;
    c.pad_id = ts.pad_id;
    std::erase(c.extra_eos_ids, c.eos_id);
    plan.config_json = config_to_json(c);
  }
  try {
    plan.vocab = gguf_vocab_keys(*src.tokenizer, plan.config->vocab_size);
  } catch (const Error& e) {
    // A GGUF file without its vocabulary is of little use to llama.cpp: refuse. An lmkit
    // checkpoint still names its tokenizer (lmkit.tokenizer) without carrying it.
    if (e.kind() != ErrorKind::Unsupported || plan.to == Layout::GGUF) throw;
    plan.notes.push_back(cat("the tokenizer is not carried in the checkpoint: ", e.what()));
  }
}

}  // namespace lm::convert
