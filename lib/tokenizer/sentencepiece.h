// SentencePiece BPE models (tokenizer.model, as used by Llama 1 and 2, Mistral), encoded
// exactly as SentencePiece's own encoder does (sentencepiece normalizer.cc, bpe_model.cc,
// sentencepiece_processor.cc; the reference is Debian's spm_encode):
//
//  normalisation  NormalizerSpec with an empty precompiled charsmap ("identity"):
//                 malformed UTF-8 becomes U+FFFD one byte at a time (SentencePiece's rule,
//                 see utf8.h); add_dummy_prefix puts U+2581 in front of a non-empty
//                 document; escape_whitespaces turns ' ' into U+2581;
//                 remove_extra_whitespaces drops leading spaces, collapses runs and drops
//                 trailing U+2581s. User-defined symbols are matched longest first.
//  BPE            a document starts as characters (user-defined symbols whole and frozen);
//                 the adjacent pair whose concatenation is a piece of the highest score is
//                 merged, leftmost first among equal scores, until no pair is a piece.
//                 UNUSED pieces are split back into the pair that made them.
//  unknowns       a symbol that is no piece is <unk>; with byte_fallback it becomes the
//                 byte pieces <0xNN> of its UTF-8 bytes, without it a run of unknowns is
//                 one <unk>.
//
// Cuts (text_tokenizer.h). No merge can join two characters x, y unless some piece
// contains "xy": every symbol ever formed is a piece. So between adjacent characters x, y
// such that no piece contains "xy" the text can be cut and the two sides encoded alone
// with the same result. For Llama 2 this cuts before every U+2581 that follows another
// character: words. (A model with UNUSED pieces is never cut: SentencePiece resegments them
// with a map shared by the whole text.)
//
// Decoding: pieces with U+2581 as ' ', byte pieces as their raw bytes, control pieces
// (BOS, EOS) as nothing, <unk> as the model's unk_surface (" \u2047 "); the dummy prefix
// (the first piece's leading U+2581 in a document) is dropped. So decoding the tokens of a
// document gives its bytes back unless it held malformed UTF-8 or U+2581 characters, or
// (remove_extra_whitespaces) extra spaces.
//
// Not supported (refused when loading, naming the file): model types other than BPE,
// normalisation rules (a non-empty precompiled charsmap, e.g. nmt_nfkc), denormalisation
// rules and treat_whitespace_as_suffix.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/flat_map.h"
#include "tokenizer/text_tokenizer.h"

namespace lm {

namespace sentencepiece {

// ModelProto.SentencePiece.Type
enum class PieceType : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct Piece {
  std::string text;
  float score = 0;
  PieceType type = PieceType::Normal;
};

// What lmkit reads of a sentencepiece.ModelProto (defaults are the proto's).
struct ModelProto {
  std::vector<Piece> pieces;
  int32_t model_type = 1;  // TrainerSpec.ModelType: 1 unigram, 2 bpe, 3 word, 4 char
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
  std::string unk_surface = " \xE2\x81\x87 ";
  std::string normalizer_name;
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
  bool denormalizer_rules = false;  // a denormalizer_spec with a charsmap
};

// Parses a serialized ModelProto; malformed protobuf is a Data error naming `file` and the offset.
ModelProto parse_model_proto(std::string_view bytes, const std::string& file);

// The fingerprint of a vocabulary: FNV-1a 64 over "lmkit-sentencepiece-v1\n" followed, for
// each piece in id order, by its type (1 byte, the proto's value), its length (u32
// little-endian) and its bytes. Scores are left out: they decide how text is split, not what
// a token means. docs/tokenizers.md.
uint64_t fingerprint(const std::vector<Piece>& pieces);

}  // namespace sentencepiece

class SentencePieceTokenizer final : public TextTokenizer {
 public:
  // Loads and validates a model; Data/Unsupported errors name `name`.
  static std::unique_ptr<SentencePieceTokenizer> from_bytes(std::string_view bytes, const std::string& name);
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path);
  // From a model already in memory (a GGUF vocabulary, gguf_vocab.h); the same checks.
  static std::unique_ptr<SentencePieceTokenizer> from_proto(sentencepiece::ModelProto proto, const std::string& name) {
    return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(proto), name));
  }

  const TokenizerSpec& spec() const override { return spec_; }
  size_t decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const override;
  size_t decode_in_document(const uint32_t* tokens, size_t n, DecodeContext& ctx,
                            std::vector<uint8_t>& out) const override;
  std::string describe_token(uint32_t token) const override;

  std::unique_ptr<Preparer> make_preparer() const override;
  std::unique_ptr<Encoder> make_encoder() const override;
  size_t last_cut(std::string_view text, size_t from) const override;
  int32_t collapsed_unknown() const override { return proto_.byte_fallback ? -1 : unk_id_; }

  const sentencepiece::ModelProto& proto() const { return proto_; }
  const std::string& piece(uint32_t id) const { return proto_.pieces[id].text; }

 private:
  class Prep;
  class Enc;
  explicit SentencePieceTokenizer(sentencepiece::ModelProto proto, const std::string& name);
  bool cuttable(uint32_t x, uint32_t y) const;  // may the text be cut between code points x and y?
  size_t user_symbol_at(const char* p, size_t n) const;  // length of the longest user symbol at p, or 0

  sentencepiece::ModelProto proto_;
  TokenizerSpec spec_;
  StringIdMap pieces_;    // normal, user-defined, unused
  StringIdMap reserved_;  // control, unknown, byte
  int32_t unk_id_ = -1;
  uint32_t byte_ids_[256] = {};
  bool has_unused_ = false;
  std::vector<std::string_view> user_symbols_;  // longest first
  bool user_first_byte_[256] = {};
  size_t max_user_symbol_ = 0;
  // Adjacent character pairs inside pieces: a bitmap for ASCII and U+2581 (index 128), a set for the rest.
  std::vector<uint64_t> pair_bits_;  // 129 * 129 bits
  U64Map<bool> pair_set_;
};

}  // namespace lm
