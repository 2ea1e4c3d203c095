// The tokenizer interface every lmkit tokenizer implements (byte-level V1,
// SentencePiece in sentencepiece.h, tokenizer.json BPE in hf_bpe.h), loading one from a
// file, the record sinks that need a tokenizer (JSON Lines training sequences), and
// lm-tokenize's two jobs: files to records, and token inputs back to bytes.
//
// Documents. Each input (file or stdin) is one document, or with EncodeOptions::lines
// each line of it. Its tokens (after a BOS when asked) are chunked into records of at
// most max_seq_len tokens; chunking restarts at each document and a record's start is
// the position of its first token within the document, so positions (soma V1 pos_ids)
// restart at 0 per document.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/stream.h"
#include "io/tokstream.h"

namespace lm {

// Where an end-of-document token goes.
enum class EosMode {
  Soma,    // soma V1's rule: after the document's last chunk when that chunk has room
           // (length not a multiple of max_seq_len); none for an empty document
  Always,  // after every document, in a record of its own when the last chunk is full
  Never,   // no end-of-document token
};
const char* eos_mode_name(EosMode m);  // "soma", "always", "never"
std::optional<EosMode> eos_mode_from_name(std::string_view name);

struct EncodeOptions {
  size_t max_seq_len = 8192;  // tokens per record, 1 .. 2^31-1 (byte-v1 uses byte_v1::kMaxSeqLen, soma V1's 1024)
  EosMode eos = EosMode::Soma;
  bool add_bos = false;  // BOS first in every document (a Usage error for a tokenizer without one)
  bool lines = false;    // tokenize_files: each line ('\n' excluded) is a document
  int threads = 1;       // subword tokenizers: encoding threads (0 = lm::thread_count()); output order is kept
};

struct EncodeStats {
  uint64_t documents = 0, bytes = 0, tokens = 0, records = 0;
};

// What decoding carries from one call to the next within a token input.
struct DecodeContext {
  bool document_start = false;  // the next token is the first of a document (position 0)
};

// The training view of one record, soma V1's TokenizedSequence: token_ids padded to
// max_seq_len, targets = token_ids shifted left by one with PAD appended, pos_ids.
struct Sequence {
  std::vector<uint32_t> token_ids;  // [max_seq_len]
  std::vector<uint32_t> targets;    // [max_seq_len]
  std::vector<uint64_t> pos_ids;    // [max_seq_len]
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual const TokenizerSpec& spec() const = 0;

  // Tokenizes one document, read from `src` to its end, into records of at most
  // opts.max_seq_len tokens with starts counted from the document's start. Memory is
  // bounded by max_seq_len plus fixed buffers. Not thread-safe: one tokenizer per thread.
  virtual void encode_document(ByteSource& src, const EncodeOptions& opts, RecordSink& out, EncodeStats& stats) = 0;

  // Appends the bytes of tokens[0..n) to `out`, as tokens inside a document (a
  // SentencePiece word piece keeps its leading space). Returns n, or the index of the
  // first token that has no bytes and may not be dropped (see describe_token).
  virtual size_t decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const = 0;
  // The same with the document context: at a document's start SentencePiece drops the
  // space of its dummy prefix. decode_files uses this one.
  virtual size_t decode_in_document(const uint32_t* tokens, size_t n, DecodeContext& ctx,
                                    std::vector<uint8_t>& out) const {
    ctx.document_start = false;
    return decode(tokens, n, out);
  }
  // Why `token` cannot be decoded, for messages.
  virtual std::string describe_token(uint32_t token) const = 0;

  // The training sequence of a record of n tokens starting at `start` (see Sequence).
  virtual void make_sequence(const uint32_t* tokens, size_t n, uint64_t start, size_t max_seq_len,
                             Sequence& out) const = 0;
};

// A tokenizer of `kind` that needs no file (byte-v1). SentencePiece and tokenizer.json
// kinds need their file: a Usage error that says so (use load_tokenizer).
std::unique_ptr<Tokenizer> make_tokenizer(TokenizerKind kind);
// The kind of a tokenizer file: hf-bpe when its name ends in ".json" or it starts (after
// white space) with '{', else sentencepiece (a protobuf).
TokenizerKind detect_tokenizer_kind(const std::string& path);
// Loads a tokenizer.model (sentencepiece) or tokenizer.json (hf-bpe) file; kind Raw =
// detect. Io, Data (malformed, naming the file) or Unsupported errors.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, TokenizerKind kind = TokenizerKind::Raw);
// The tokenizer that decodes tokens described by `spec`. `given` (may be null) is the
// tokenizer the user named: it decodes headerless tokens and streams of its own spec
// (another spec is a Data error naming `what`). Without one, byte-v1 decodes byte-v1 and
// headerless tokens, and a SentencePiece or tokenizer.json stream is decoded with the copy
// of its tokenizer kept when it was made (registry.h), or is a Usage error asking for the
// tokenizer file. The returned pointer is `given` or owned by `owned`.
const Tokenizer* tokenizer_for_decoding(const TokenizerSpec& spec, const std::string& what, const Tokenizer* given,
                                        std::unique_ptr<Tokenizer>& owned);

// One JSON object per record and line: {"token_ids":[...],"targets":[...],"pos_ids":[...]},
// the record's training sequence (Tokenizer::make_sequence).
class JsonlSequenceWriter final : public RecordSink {
 public:
  JsonlSequenceWriter(ByteSink& sink, const Tokenizer& tokenizer, size_t max_seq_len)
      : sink_(sink), tokenizer_(tokenizer), max_seq_len_(max_seq_len) {}
  void write_record(const uint32_t* tokens, size_t n, uint64_t start) override;
  void finish() override;

 private:
  ByteSink& sink_;
  const Tokenizer& tokenizer_;
  size_t max_seq_len_;
  Sequence seq_;
  std::vector<char> line_;
};

enum class TokenOutputFormat { Stream, Text, Jsonl };
const char* token_output_format_name(TokenOutputFormat f);  // "stream", "text", "jsonl"
std::optional<TokenOutputFormat> token_output_format_from_name(std::string_view name);
// A sink writing records of `tokenizer` in `format` to `sink`.
std::unique_ptr<RecordSink> make_record_sink(TokenOutputFormat format, ByteSink& sink, const Tokenizer& tokenizer,
                                             size_t max_seq_len);

// Tokenizes each file ("-" = stdin) as one document (each line, with opts.lines) into
// `out`; does not finish `out`.
EncodeStats tokenize_files(Tokenizer& tokenizer, const std::vector<std::string>& paths, const EncodeOptions& opts,
                           RecordSink& out);

struct DecodeStats {
  uint64_t inputs = 0, records = 0, tokens = 0, bytes = 0;
};
// Decodes each token input (stream, llm.c, or raw per opts) to bytes on `out`, in
// order; does not finish `out`. Throws Data for tokens that have no bytes. `tokenizer`
// (may be null) is the one the user named (see tokenizer_for_decoding).
DecodeStats decode_files(const std::vector<std::string>& paths, const TokenReadOptions& opts, ByteSink& out,
                         const Tokenizer* tokenizer = nullptr);

}  // namespace lm
