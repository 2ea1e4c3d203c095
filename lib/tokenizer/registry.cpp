#include "tokenizer/registry.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/stream.h"
#include "tokenizer/gguf_vocab.h"

namespace lm {

namespace fs = std::filesystem;

namespace {

std::string entry_name(const TokenizerSpec& spec) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(spec.fingerprint));
  return cat(spec.kind_name(), "-", hex);
}

const char* file_name(TokenizerKind kind) {
  return kind == TokenizerKind::HfBpe ? "tokenizer.json" : "tokenizer.model";
}

// Copies `from` to `to` through a temporary file in the target directory (open_output).
void copy_file(const std::string& from, const std::string& to) {
  const auto src = MappedFile::open(from);
  auto out = open_output(to);
  out->write(src->data(), src->size());
  out->finish();
}

}  // namespace

std::string tokenizer_store_dir() {
  if (const char* env = std::getenv("LMKIT_TOKENIZER_CACHE")) return env;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/lmkit/tokenizers";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/lmkit/tokenizers";
  return "";
}

bool remember_tokenizer(const std::string& path, const Tokenizer& tok) {
  const TokenizerSpec& spec = tok.spec();
  const std::string root = tokenizer_store_dir();
  if (root.empty() || path == "-") return false;
  if (is_gguf_path(path)) return false;  // a vocabulary inside a model file: not a tokenizer file to copy
  if (spec.kind != TokenizerKind::SentencePiece && spec.kind != TokenizerKind::HfBpe) return false;
  const fs::path dir = fs::path(root) / entry_name(spec);
  const fs::path file = dir / file_name(spec.kind);
  std::error_code ec;
  if (fs::is_regular_file(file, ec)) return true;
  try {
    fs::create_directories(dir, ec);
    if (ec) return false;
    if (spec.kind == TokenizerKind::HfBpe) {
      const fs::path config = fs::path(path).parent_path() / "tokenizer_config.json";
      if (fs::is_regular_file(config, ec)) copy_file(config.string(), (dir / "tokenizer_config.json").string());
    }
    copy_file(path, file.string());  // last: its presence marks a complete entry
    return true;
  } catch (const Error&) {
    return false;
  } catch (const std::exception&) {
    return false;
  }
}

std::unique_ptr<Tokenizer> recall_tokenizer(const TokenizerSpec& spec) {
  if (spec.kind != TokenizerKind::SentencePiece && spec.kind != TokenizerKind::HfBpe) return nullptr;
  const std::string root = tokenizer_store_dir();
  if (root.empty()) return nullptr;
  const fs::path file = fs::path(root) / entry_name(spec) / file_name(spec.kind);
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return nullptr;
  auto tok = load_tokenizer(file.string(), spec.kind);
  require_same_tokenizer(tok->spec(), spec, quote(file.string()));
  return tok;
}

}  // namespace lm
