// The common machinery of the subword tokenizers (SentencePiece, tokenizer.json BPE):
// documents streamed through a sequential "preparer" (normalisation, UTF-8 repair), cut
// into segments where the tokenizer guarantees that encoding the parts separately gives
// exactly the tokens of the whole, encoded in parallel by per-thread encoders, and put
// back together in order into records (BOS, EOS, chunking into --max-seq-len records).
//
// Exactness of cuts. A cut is only made where no token could span it: the tokenizer's
// `last_cut` decides (see sentencepiece.h and hf_bpe.h for the rules and their proofs).
// So the output does not depend on the block size, the thread count or the input's
// arrival in pieces, and memory is bounded by the threads' blocks plus the longest
// stretch of a document without a cut.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace lm {

class TextTokenizer : public Tokenizer {
 public:
  // Turns a document's raw bytes into the text the encoders read, incrementally. One per
  // pipeline (it is sequential and keeps per-document state).
  class Preparer {
   public:
    virtual ~Preparer() = default;
    virtual void reset() = 0;  // a new document starts
    // Appends the prepared form of raw[0..k) to `out` and returns k. Unless `last` (the
    // document ends with raw[n-1]), it may keep back a short tail (an incomplete UTF-8
    // character, a possible special symbol, held-back spaces) for the next call.
    virtual size_t prepare(const uint8_t* raw, size_t n, bool last, std::string& out) = 0;
  };
  // Per-thread encoding state: caches and scratch memory.
  class Encoder {
   public:
    virtual ~Encoder() = default;
    // Appends the tokens of one segment of prepared text (between two cuts).
    virtual void encode(std::string_view text, std::vector<uint32_t>& out) = 0;
  };

  virtual std::unique_ptr<Preparer> make_preparer() const = 0;
  virtual std::unique_ptr<Encoder> make_encoder() const = 0;
  // The largest c with from <= c < text.size() and c > 0 where prepared text may be cut
  // exactly (text[0, c) and the text from c on encoded separately give the tokens of the
  // whole), or 0 when there is none. The text after c may still grow.
  virtual size_t last_cut(std::string_view text, size_t from) const = 0;
  // The unknown token's id when a run of unknown tokens collapses into one (SentencePiece
  // without byte fallback), else -1. The assembler collapses runs across segments.
  virtual int32_t collapsed_unknown() const { return -1; }

  // Tokenizer: one document, through the pipeline with opts.threads.
  void encode_document(ByteSource& src, const EncodeOptions& opts, RecordSink& out, EncodeStats& stats) override;
  // The training view of a record: tokens padded with PAD (or EOS when there is no PAD,
  // or 0), targets shifted by one, positions start + i (padding at the last position + 1).
  void make_sequence(const uint32_t* tokens, size_t n, uint64_t start, size_t max_seq_len,
                     Sequence& out) const override;
};

// Where documents come from: each call hands out the next one (valid until the next call),
// or null at the end.
class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  virtual ByteSource* next() = 0;
};
// Each file ("-" = stdin) is one document.
std::unique_ptr<DocumentSource> file_documents(const std::vector<std::string>& paths);
// Each line of each file is one document; the line break ('\n') is not part of it. A
// final line without a line break is a document too; an empty input has none.
std::unique_ptr<DocumentSource> line_documents(const std::vector<std::string>& paths);
// One given source.
std::unique_ptr<DocumentSource> single_document(ByteSource& src);

// Encodes every document of `docs` with `tok` into `out` (not finished), on opts.threads
// threads (0 = lm::thread_count()), records in input order.
void encode_text_documents(const TextTokenizer& tok, DocumentSource& docs, const EncodeOptions& opts, RecordSink& out,
                           EncodeStats& stats);

}  // namespace lm
