// lmkit's token stream: the self-describing binary format that flows between
// lm-tokenize, lm-train, lm-eval-loss and lm-generate. The exact byte layout is in
// docs/token-stream.md; in short (all little-endian):
//
//   header (64 bytes)  "LMKTOKS\0", u32 version = 1, u32 header size = 64,
//                      u32 tokenizer kind, u32 vocab size, u32 token width (2|4),
//                      i32 bos, eos, pad, unk ids (-1 = none), u32 reserved,
//                      u64 vocabulary fingerprint, 8 reserved bytes; reserved = 0
//   record (repeated)  "LMKR", u32 token count (<= 2^31-1), u64 start position,
//                      count tokens of `width` bytes, zero padding to a multiple of 8
//
// Every record and token array starts at a multiple of 8 bytes from the start of
// its stream, so a reader may map a file and view tokens in place. A record's
// tokens have positions start, start+1, ... (soma V1 pos_ids). A header may appear
// again at a record boundary (`cat a.tok b.tok`) when it names the same tokenizer.
//
// Readers here also present headerless token files (llm.c .bin, raw nanoGPT u16/u32)
// through the same interface, delivering every record in bounded chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/stream.h"

namespace lm {

// Which tokenizer made the tokens. Values are stored in stream headers: never renumber.
enum class TokenizerKind : uint32_t {
  Raw = 0,            // unknown tokenizer (headerless inputs, or a stream written without one)
  ByteV1 = 1,         // soma-models V1 bytes: 256 byte values + 8 specials
  SentencePiece = 2,  // a SentencePiece model (tokenizer.model)
  HfBpe = 3,          // a Hugging Face tokenizer.json BPE
};
const char* tokenizer_kind_name(TokenizerKind kind);  // "raw", "byte-v1", "sentencepiece", "hf-bpe"
std::optional<TokenizerKind> tokenizer_kind_from_name(std::string_view name);

// The identity of a tokenizer: what a token stream header carries and what a
// consumer compares against its model before using the tokens.
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::Raw;
  uint32_t vocab_size = 0;  // 0 = unknown (headerless inputs only; a stream header needs >= 1)
  int32_t bos_id = -1;      // special ids: -1 = none, else in [0, vocab_size)
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  int32_t unk_id = -1;
  uint64_t fingerprint = 0;  // of the vocabulary; equal fingerprints = same token meanings

  std::string kind_name() const { return tokenizer_kind_name(kind); }
  // "byte-v1 (vocab 264, fingerprint 0x0123456789abcdef)" for messages.
  std::string describe() const;
  bool operator==(const TokenizerSpec&) const = default;
};

// Bytes per token in a stream for this vocabulary: 2 (u16) up to 65536 tokens, else 4.
// An unknown vocabulary (0) gets 4.
uint32_t token_width_for(uint32_t vocab_size);

// Refuses (Data error) tokens made by a different tokenizer than `expected`:
// "<what>: tokenizer mismatch: got X, expected Y".
void require_same_tokenizer(const TokenizerSpec& expected, const TokenizerSpec& got, const std::string& what);

namespace tokstream {
inline constexpr char kMagic[8] = {'L', 'M', 'K', 'T', 'O', 'K', 'S', '\0'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kHeaderSize = 64;
inline constexpr char kRecordTag[4] = {'L', 'M', 'K', 'R'};
inline constexpr uint32_t kRecordHeaderSize = 16;
inline constexpr uint32_t kMaxRecordTokens = 0x7fffffffu;  // 2^31 - 1
inline constexpr uint32_t kAlign = 8;                     // records are padded to this

// The 64 header bytes for `spec`. Throws Usage for a spec that cannot be written
// (vocab size 0, special id out of range).
std::vector<uint8_t> encode_header(const TokenizerSpec& spec);
}  // namespace tokstream

// Headerless token files carry no vocabulary; the llm.c magic numbers.
inline constexpr int32_t kLlmcMagicU16 = 20240520;  // version 1, uint16 tokens (GPT-2)
inline constexpr int32_t kLlmcMagicU32 = 20240801;  // version 7, uint32 tokens (Llama 3)
inline constexpr size_t kLlmcHeaderBytes = 256 * 4;

// Where tokenized records go: a token stream, or text/JSON Lines for people.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // One record: n tokens whose positions are start, start+1, ...
  virtual void write_record(const uint32_t* tokens, size_t n, uint64_t start) = 0;
  // The same for byte-level tokenizers, without an intermediate array: the tokens are
  // bytes[0..n) (each byte value is its token id) followed by extra[0..n_extra).
  virtual void write_byte_record(const uint8_t* bytes, size_t n, const uint32_t* extra, size_t n_extra,
                                 uint64_t start);
  // Flushes and finishes the underlying ByteSink (renames a file output into place).
  virtual void finish() = 0;
};

// Writes a token stream to `sink` (which may be a zstd_sink). The header is written at
// construction; an input without records still makes a valid (header-only) stream.
class TokenStreamWriter final : public RecordSink {
 public:
  TokenStreamWriter(ByteSink& sink, const TokenizerSpec& spec);
  ~TokenStreamWriter() override;
  TokenStreamWriter(const TokenStreamWriter&) = delete;
  TokenStreamWriter& operator=(const TokenStreamWriter&) = delete;

  // Throws Data for a token outside [0, vocab_size) or n > 2^31-1.
  void write_record(const uint32_t* tokens, size_t n, uint64_t start) override;
  void write_byte_record(const uint8_t* bytes, size_t n, const uint32_t* extra, size_t n_extra,
                         uint64_t start) override;
  void finish() override;

  const TokenizerSpec& spec() const { return spec_; }
  uint32_t token_width() const { return width_; }
  uint64_t records_written() const { return records_; }
  uint64_t tokens_written() const { return tokens_; }

 private:
  void begin_record(size_t n, uint64_t start);
  void end_record(size_t n);
  uint8_t* reserve(size_t bytes);  // room for `bytes` (<= capacity) in the staging buffer
  void flush();

  ByteSink& sink_;
  TokenizerSpec spec_;
  uint32_t width_;
  uint8_t* buf_;  // staging buffer, written to the sink in blocks of >= 1 MiB
  size_t used_ = 0;
  uint64_t records_ = 0, tokens_ = 0;
};

// Writes each record as one line of decimal token ids separated by spaces.
class TextRecordWriter final : public RecordSink {
 public:
  explicit TextRecordWriter(ByteSink& sink) : sink_(sink) {}
  void write_record(const uint32_t* tokens, size_t n, uint64_t start) override;
  void finish() override;

 private:
  ByteSink& sink_;
  std::vector<char> line_;
};

// What a reader is given. Auto detects a token stream (its magic) or an llm.c file
// (first int32 is an llm.c magic), after zstd decompression; it never guesses raw.
enum class TokenInputFormat { Auto, Stream, Llmc, U16, U32 };
const char* token_input_format_name(TokenInputFormat f);  // "auto", "stream", "llmc", "u16", "u32"
std::optional<TokenInputFormat> token_input_format_from_name(std::string_view name);

struct TokenReadOptions {
  TokenInputFormat format = TokenInputFormat::Auto;
  uint32_t vocab_size = 0;               // headerless inputs: tokens must be below it (0 = unknown)
  size_t max_chunk_tokens = size_t{1} << 20;  // bounds the memory of one next() call
  bool decompressed = false;             // the caller decompressed the input: offsets in messages say so
};

// A piece of one record: records longer than max_chunk_tokens arrive in several chunks.
struct TokenChunk {
  std::vector<uint32_t> tokens;  // reused between calls
  uint64_t start = 0;            // position of tokens[0] (record start + offset in the record)
  uint64_t record = 0;           // index of the record in the input, from 0
  uint64_t offset = 0;           // byte offset of tokens[0] in the (decompressed) input
  bool first = false;            // tokens[0] is the record's first token
  bool last = false;             // the record ends with this chunk
};

class TokenReader {
 public:
  virtual ~TokenReader() = default;
  // Reads the next chunk; false at the clean end of the input. Throws Data errors
  // naming the input and the byte offset (in the decompressed stream) for corrupt,
  // truncated or out-of-vocabulary data.
  virtual bool next(TokenChunk& out) = 0;

  const TokenizerSpec& spec() const { return spec_; }  // kind Raw for headerless inputs
  uint32_t token_width() const { return width_; }
  TokenInputFormat format() const { return format_; }  // what was detected
  bool compressed() const { return compressed_; }
  const std::string& name() const { return name_; }

 protected:
  TokenizerSpec spec_;
  uint32_t width_ = 0;
  TokenInputFormat format_ = TokenInputFormat::Auto;
  bool compressed_ = false;
  std::string name_;
};

// Opens tokens from `src` (zstd is detected and decompressed). Throws Data
// "not a token stream (bad magic)" when Auto finds neither a stream nor an llm.c file.
std::unique_ptr<TokenReader> open_token_reader(std::unique_ptr<ByteSource> src, const TokenReadOptions& opts = {});
// The same for a path ("-" = stdin).
std::unique_ptr<TokenReader> open_token_reader(const std::string& path, const TokenReadOptions& opts = {});

}  // namespace lm
