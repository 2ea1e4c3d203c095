#include "tokenizer/tokenizer.h"

#include <charconv>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/container.h"
#include "io/llama2c.h"
#include "tokenizer/byte_v1.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/registry.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/text_tokenizer.h"

namespace lm {

const char* eos_mode_name(EosMode m) {
  switch (m) {
    case EosMode::Soma: return "soma";
    case EosMode::Always: return "always";
    case EosMode::Never: return "never";
  }
  return "unknown";
}

std::optional<EosMode> eos_mode_from_name(std::string_view name) {
  for (auto m : {EosMode::Soma, EosMode::Always, EosMode::Never})
    if (name == eos_mode_name(m)) return m;
  return std::nullopt;
}

const char* token_output_format_name(TokenOutputFormat f) {
  switch (f) {
    case TokenOutputFormat::Stream: return "stream";
    case TokenOutputFormat::Text: return "text";
    case TokenOutputFormat::Jsonl: return "jsonl";
  }
  return "unknown";
}

std::optional<TokenOutputFormat> token_output_format_from_name(std::string_view name) {
  for (auto f : {TokenOutputFormat::Stream, TokenOutputFormat::Text, TokenOutputFormat::Jsonl})
    if (name == token_output_format_name(f)) return f;
  return std::nullopt;
}

std::unique_ptr<Tokenizer> make_tokenizer(TokenizerKind kind) {
  if (kind == TokenizerKind::ByteV1) return std::make_unique<ByteV1Tokenizer>();
  if (kind == TokenizerKind::SentencePiece || kind == TokenizerKind::HfBpe)
    fail(ErrorKind::Usage, cat("the ", tokenizer_kind_name(kind), " tokenizer needs its file"),
         kind == TokenizerKind::SentencePiece ? "give the tokenizer.model file" : "give the tokenizer.json file");
  fail(ErrorKind::Unsupported, cat("there is no ", tokenizer_kind_name(kind), " tokenizer"));
}

TokenizerKind detect_tokenizer_kind(const std::string& path) {
  // By name first: a file named *.json is meant as tokenizer.json, and its reader says what is
  // wrong with it (not the protobuf reader, about bytes that were never meant as protobuf).
  constexpr std::string_view kJson = ".json";
  if (path.size() >= kJson.size() && path.compare(path.size() - kJson.size(), kJson.size(), kJson) == 0)
    return TokenizerKind::HfBpe;
  const auto src = open_raw_input(path);
  uint8_t buf[256];
  const size_t n = src->read_full(buf, sizeof(buf));
  // A checkpoint given for the tokenizer: said so, not read as malformed protobuf.
  const Container c = sniff_container(buf, n);
  if (c == Container::GGUF || c == Container::Safetensors || (c == Container::Llama2c && Llama2cFile::has_magic(buf, n)))
    fail_data(cat(quote(display_name(path)), ": a ", container_name(c),
                  " checkpoint, not a tokenizer file (a SentencePiece tokenizer.model or a tokenizer.json)"));
  size_t i = 0;
  if (n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) i = 3;  // a UTF-8 byte order mark
  while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) ++i;
  return i < n && buf[i] == '{' ? TokenizerKind::HfBpe : TokenizerKind::SentencePiece;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, TokenizerKind kind) {
  if (path == "-") fail_usage("a tokenizer is read from a file, not from standard input");
  if (is_gguf_path(path)) {  // a GGUF model file: its vocabulary (gguf_vocab.h)
    auto tok = tokenizer_from_gguf(GGUFFile::open(path), path);
    if (!tok) fail_data(cat(quote(path), ": the GGUF file has no vocabulary (tokenizer.ggml.model)"));
    if (kind != TokenizerKind::Raw && tok->spec().kind != kind)
      fail_usage(cat(quote(path), ": its vocabulary is ", tok->spec().kind_name(), ", not ", tokenizer_kind_name(kind)));
    return tok;
  }
  if (kind == TokenizerKind::Raw) kind = detect_tokenizer_kind(path);
  switch (kind) {
    case TokenizerKind::SentencePiece: return SentencePieceTokenizer::load(path);
    case TokenizerKind::HfBpe: return HfBpeTokenizer::load(path);
    case TokenizerKind::ByteV1: fail_usage("the byte-v1 tokenizer has no file");
    case TokenizerKind::Raw: break;
  }
  fail_usage("unknown tokenizer kind");
}

const Tokenizer* tokenizer_for_decoding(const TokenizerSpec& spec, const std::string& what, const Tokenizer* given,
                                        std::unique_ptr<Tokenizer>& owned) {
  if (given) {
    if (spec.kind != TokenizerKind::Raw) require_same_tokenizer(given->spec(), spec, what);
    return given;
  }
  if (spec.kind == TokenizerKind::SentencePiece || spec.kind == TokenizerKind::HfBpe) {
    if (owned && owned->spec() == spec) return owned.get();
    if (auto stored = recall_tokenizer(spec)) {  // the copy kept when the stream was made
      owned = std::move(stored);
      return owned.get();
    }
    fail(ErrorKind::Usage, cat(what, " holds ", spec.describe(), " tokens: decoding them needs the tokenizer file"),
         "give it with --tokenizer FILE");
  }
  if (spec.kind == TokenizerKind::ByteV1) require_same_tokenizer(byte_v1::spec(), spec, what);
  if (!owned || owned->spec().kind != TokenizerKind::ByteV1) owned = make_tokenizer(TokenizerKind::ByteV1);
  return owned.get();
}

namespace {
template <class T>
void append_array(std::vector<char>& line, const char* key, const std::vector<T>& values) {
  line.insert(line.end(), key, key + std::char_traits<char>::length(key));
  line.push_back('[');
  char num[24];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) line.push_back(',');
    const auto r = std::to_chars(num, num + sizeof(num), values[i]);
    line.insert(line.end(), num, r.ptr);
  }
  line.push_back(']');
}
}  // namespace

void JsonlSequenceWriter::write_record(const uint32_t* tokens, size_t n, uint64_t start) {
  tokenizer_.make_sequence(tokens, n, start, max_seq_len_, seq_);
  line_.clear();
  append_array(line_, "{\"token_ids\":", seq_.token_ids);
  append_array(line_, ",\"targets\":", seq_.targets);
  append_array(line_, ",\"pos_ids\":", seq_.pos_ids);
  line_.push_back('}');
  line_.push_back('\n');
  sink_.write(line_.data(), line_.size());
}

void JsonlSequenceWriter::finish() { sink_.finish(); }

std::unique_ptr<RecordSink> make_record_sink(TokenOutputFormat format, ByteSink& sink, const Tokenizer& tokenizer,
                                             size_t max_seq_len) {
  switch (format) {
    case TokenOutputFormat::Stream: return std::make_unique<TokenStreamWriter>(sink, tokenizer.spec());
    case TokenOutputFormat::Text: return std::make_unique<TextRecordWriter>(sink);
    case TokenOutputFormat::Jsonl: return std::make_unique<JsonlSequenceWriter>(sink, tokenizer, max_seq_len);
  }
  fail_usage("unknown token output format");
}

EncodeStats tokenize_files(Tokenizer& tokenizer, const std::vector<std::string>& paths, const EncodeOptions& opts,
                           RecordSink& out) {
  EncodeStats stats;
  // Bytes as they are: a compressed file is tokenized compressed.
  const auto docs = opts.lines ? line_documents(paths) : file_documents(paths);
  if (auto* text = dynamic_cast<TextTokenizer*>(&tokenizer)) {
    encode_text_documents(*text, *docs, opts, out, stats);
  } else {
    if (opts.add_bos) fail_usage(cat("the ", tokenizer.spec().kind_name(), " tokenizer has no BOS token"));
    while (ByteSource* src = docs->next()) tokenizer.encode_document(*src, opts, out, stats);
  }
  return stats;
}

DecodeStats decode_files(const std::vector<std::string>& paths, const TokenReadOptions& opts, ByteSink& out,
                         const Tokenizer* given) {
  DecodeStats stats;
  TokenChunk chunk;
  std::vector<uint8_t> bytes;
  std::unique_ptr<Tokenizer> owned;
  DecodeContext ctx;
  for (const std::string& path : paths) {
    const auto reader = open_token_reader(path, opts);
    const Tokenizer* tokenizer = tokenizer_for_decoding(reader->spec(), quote(reader->name()), given, owned);
    while (reader->next(chunk)) {
      bytes.clear();
      const size_t n = chunk.tokens.size();
      if (chunk.first && chunk.start == 0) ctx.document_start = true;
      const size_t done = tokenizer->decode_in_document(chunk.tokens.data(), n, ctx, bytes);
      if (done < n)
        fail_data(cat(quote(reader->name()), ": cannot decode record ", chunk.record, " at position ",
                      chunk.start + done, ": ", tokenizer->describe_token(chunk.tokens[done])));
      out.write(bytes.data(), bytes.size());
      stats.tokens += n;
      stats.bytes += bytes.size();
      stats.records += chunk.last ? 1 : 0;
    }
    ++stats.inputs;
  }
  return stats;
}

}  // namespace lm
