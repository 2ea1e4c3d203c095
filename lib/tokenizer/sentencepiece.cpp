#include "tokenizer/sentencepiece.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <queue>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/protobuf.h"
#include "tokenizer/utf8.h"
#include "tokenizer/word_cache.h"

namespace lm {

namespace sentencepiece {

namespace {

void parse_piece(const pb::Reader& parent, const pb::Field& field, std::vector<Piece>& out) {
  pb::Reader r = parent.message(field, "ModelProto.pieces");
  Piece p;
  pb::Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1: p.text = std::string(r.bytes(f, "SentencePiece.piece")); break;
      case 2: p.score = r.fixed_float(f, "SentencePiece.score"); break;
      case 3: {
        const uint64_t t = r.varint(f, "SentencePiece.type");
        if (t < 1 || t > 6) r.fail(f.offset, cat("piece ", out.size(), " has unknown type ", t));
        p.type = static_cast<PieceType>(t);
        break;
      }
      default: break;  // unknown fields are skipped, as protobuf does
    }
  }
  out.push_back(std::move(p));
}

void parse_trainer_spec(const pb::Reader& parent, const pb::Field& field, ModelProto& m) {
  pb::Reader r = parent.message(field, "ModelProto.trainer_spec");
  pb::Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 3: m.model_type = r.int32(f, "TrainerSpec.model_type"); break;
      case 24: m.treat_whitespace_as_suffix = r.boolean(f, "TrainerSpec.treat_whitespace_as_suffix"); break;
      case 35: m.byte_fallback = r.boolean(f, "TrainerSpec.byte_fallback"); break;
      case 44: m.unk_surface = std::string(r.bytes(f, "TrainerSpec.unk_surface")); break;
      case 45: m.unk_piece = std::string(r.bytes(f, "TrainerSpec.unk_piece")); break;
      case 46: m.bos_piece = std::string(r.bytes(f, "TrainerSpec.bos_piece")); break;
      case 47: m.eos_piece = std::string(r.bytes(f, "TrainerSpec.eos_piece")); break;
      case 48: m.pad_piece = std::string(r.bytes(f, "TrainerSpec.pad_piece")); break;
      default: break;
    }
  }
}

void parse_normalizer_spec(const pb::Reader& parent, const pb::Field& field, ModelProto& m, bool denormalizer) {
  pb::Reader r = parent.message(field, denormalizer ? "ModelProto.denormalizer_spec" : "ModelProto.normalizer_spec");
  pb::Field f;
  while (r.next(f)) {
    if (denormalizer) {
      if (f.number == 2 && !r.bytes(f, "NormalizerSpec.precompiled_charsmap").empty()) m.denormalizer_rules = true;
      continue;
    }
    switch (f.number) {
      case 1: m.normalizer_name = std::string(r.bytes(f, "NormalizerSpec.name")); break;
      case 2: m.precompiled_charsmap = std::string(r.bytes(f, "NormalizerSpec.precompiled_charsmap")); break;
      case 3: m.add_dummy_prefix = r.boolean(f, "NormalizerSpec.add_dummy_prefix"); break;
      case 4: m.remove_extra_whitespaces = r.boolean(f, "NormalizerSpec.remove_extra_whitespaces"); break;
      case 5: m.escape_whitespaces = r.boolean(f, "NormalizerSpec.escape_whitespaces"); break;
      default: break;
    }
  }
}

}  // namespace

ModelProto parse_model_proto(std::string_view bytes, const std::string& file) {
  ModelProto m;
  pb::Reader r(bytes, 0, file);
  pb::Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1: parse_piece(r, f, m.pieces); break;
      case 2: parse_trainer_spec(r, f, m); break;  // a repeated message field merges, as in protobuf
      case 3: parse_normalizer_spec(r, f, m, false); break;
      case 5: parse_normalizer_spec(r, f, m, true); break;
      default: break;  // self_test_data (4), extensions and unknown fields: skipped
    }
  }
  return m;
}

uint64_t fingerprint(const std::vector<Piece>& pieces) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  };
  static constexpr char kTag[] = "lmkit-sentencepiece-v1\n";
  mix(kTag, sizeof(kTag) - 1);
  for (const Piece& p : pieces) {
    const uint8_t type = static_cast<uint8_t>(p.type);
    const uint32_t len = static_cast<uint32_t>(p.text.size());
    const uint8_t le[4] = {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len >> 16),
                           static_cast<uint8_t>(len >> 24)};
    mix(&type, 1);
    mix(le, 4);
    mix(p.text.data(), p.text.size());
  }
  return h;
}

}  // namespace sentencepiece

using sentencepiece::PieceType;

namespace {

constexpr char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581
constexpr uint32_t kSpaceCp = 0x2581;

int pair_index(uint32_t cp) { return cp < 128 ? static_cast<int>(cp) : cp == kSpaceCp ? 128 : -1; }

// A file that is not a protobuf but a tiktoken vocabulary (Llama 3's original tokenizer.model).
bool looks_like_tiktoken(std::string_view b) {
  const size_t nl = b.find('\n');
  const std::string_view line = b.substr(0, nl);
  const size_t sp = line.find(' ');
  if (nl == std::string_view::npos || sp == std::string_view::npos || sp == 0 || sp + 1 == line.size()) return false;
  for (size_t i = 0; i < sp; ++i)
    if (!std::isalnum(static_cast<unsigned char>(line[i])) && line[i] != '+' && line[i] != '/' && line[i] != '=')
      return false;
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
  return true;
}

}  // namespace

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  const auto file = MappedFile::open(path);
  return from_bytes(std::string_view(reinterpret_cast<const char*>(file->data()), file->size()), file->path());
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_bytes(std::string_view bytes,
                                                                           const std::string& name) {
  if (bytes.empty()) fail_data(cat(quote(name), ": empty file, not a SentencePiece model"));
  if (looks_like_tiktoken(bytes))
    fail(ErrorKind::Unsupported, cat(quote(name), ": a tiktoken vocabulary (base64 tokens and ranks), not a SentencePiece model"),
         "for Llama 3 use its tokenizer.json");
  sentencepiece::ModelProto proto = sentencepiece::parse_model_proto(bytes, name);
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(proto), name));
}

SentencePieceTokenizer::SentencePieceTokenizer(sentencepiece::ModelProto proto, const std::string& name)
    : proto_(std::move(proto)) {
  const std::string q = quote(name);
  const auto& pieces = proto_.pieces;
  if (pieces.empty()) fail_data(cat(q, ": not a SentencePiece model (no pieces)"));
  if (pieces.size() > tokstream::kMaxRecordTokens) fail_data(cat(q, ": ", pieces.size(), " pieces is too many"));
  const char* type = nullptr;
  switch (proto_.model_type) {
    case 1: type = "unigram"; break;
    case 2: break;
    case 3: type = "word"; break;
    case 4: type = "char"; break;
    default: fail_data(cat(q, ": unknown SentencePiece model type ", proto_.model_type));
  }
  if (type)
    fail(ErrorKind::Unsupported, cat(q, ": unsupported SentencePiece model type '", type, "' (lmkit reads BPE models)"));
  if (!proto_.precompiled_charsmap.empty())
    fail(ErrorKind::Unsupported, cat(q, ": unsupported SentencePiece normalization '", proto_.normalizer_name,
                                     "' (lmkit implements the identity normalizer only)"));
  if (proto_.denormalizer_rules)
    fail(ErrorKind::Unsupported, cat(q, ": unsupported SentencePiece denormalization rules"));
  if (proto_.treat_whitespace_as_suffix)
    fail(ErrorKind::Unsupported, cat(q, ": unsupported SentencePiece option treat_whitespace_as_suffix"));

  pieces_.reserve(pieces.size());
  reserved_.reserve(512);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    const uint32_t id = static_cast<uint32_t>(i);
    if (p.text.empty()) fail_data(cat(q, ": piece ", i, " is empty"));
    const bool normal = p.type == PieceType::Normal || p.type == PieceType::UserDefined || p.type == PieceType::Unused;
    if (!(normal ? pieces_ : reserved_).insert(p.text, id))
      fail_data(cat(q, ": piece ", i, " ", quote(p.text), " is already defined"));
    if (p.type == PieceType::Unknown) {
      if (unk_id_ >= 0) fail_data(cat(q, ": more than one unknown piece (", unk_id_, " and ", i, ")"));
      unk_id_ = static_cast<int32_t>(i);
    }
    if (p.type == PieceType::Unused) has_unused_ = true;
    if (p.type == PieceType::UserDefined) {
      bool valid = true;
      for (size_t k = 0; k < p.text.size() && valid;)
        k += utf8::spm_char(reinterpret_cast<const uint8_t*>(p.text.data()) + k, p.text.size() - k, &valid);
      if (!valid) fail_data(cat(q, ": user-defined piece ", i, " is not well-formed UTF-8"));
      user_symbols_.push_back(p.text);
      user_first_byte_[static_cast<uint8_t>(p.text[0])] = true;
      max_user_symbol_ = std::max(max_user_symbol_, p.text.size());
    }
    if (p.type == PieceType::Byte) {
      if (!proto_.byte_fallback)
        fail_data(cat(q, ": byte piece ", quote(p.text), " is found although byte_fallback is false"));
      unsigned v = 0;
      if (p.text.size() != 6 || p.text.compare(0, 3, "<0x") != 0 || p.text[5] != '>' ||
          std::sscanf(p.text.c_str() + 3, "%2X", &v) != 1 || !std::isxdigit(static_cast<unsigned char>(p.text[3])) ||
          !std::isxdigit(static_cast<unsigned char>(p.text[4])))
        fail_data(cat(q, ": byte piece ", i, " is ", quote(p.text), ", expected <0xNN>"));
    }
  }
  if (unk_id_ < 0) fail_data(cat(q, ": the model has no unknown piece"));
  std::sort(user_symbols_.begin(), user_symbols_.end(),
            [](std::string_view a, std::string_view b) { return a.size() > b.size(); });

  // Byte fallback ids: PieceToId("<0xNN>"), the unknown piece where one is missing.
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    const uint32_t* r = reserved_.find(buf);
    const uint32_t* p = pieces_.find(buf);
    byte_ids_[b] = r ? *r : p ? *p : static_cast<uint32_t>(unk_id_);
  }

  // Adjacent character pairs within every piece that a merge can produce.
  pair_bits_.assign((129 * 129 + 63) / 64, 0);
  for (const auto& piece : pieces) {
    if (piece.type != PieceType::Normal && piece.type != PieceType::UserDefined && piece.type != PieceType::Unused)
      continue;
    const std::string& text = piece.text;
    bool valid = true;
    for (size_t i = 0; i < text.size() && valid;) {
      const size_t k = utf8::spm_char(reinterpret_cast<const uint8_t*>(text.data()) + i, text.size() - i, &valid);
      i += k;
    }
    if (!valid) continue;  // a piece with malformed UTF-8 never matches normalized text
    size_t i = 0;
    uint32_t x = utf8::next_code_point(text, i);
    while (i < text.size()) {
      const uint32_t y = utf8::next_code_point(text, i);
      const int a = pair_index(x), b = pair_index(y);
      if (a >= 0 && b >= 0)
        pair_bits_[(a * 129 + b) / 64] |= uint64_t{1} << ((a * 129 + b) % 64);
      else
        pair_set_[(uint64_t{x} << 32) | y] = true;
      x = y;
    }
  }

  spec_.kind = TokenizerKind::SentencePiece;
  spec_.vocab_size = static_cast<uint32_t>(pieces.size());
  auto control_id = [&](const std::string& piece) -> int32_t {
    const uint32_t* id = reserved_.find(piece);
    return id && pieces[*id].type == PieceType::Control ? static_cast<int32_t>(*id) : -1;
  };
  spec_.bos_id = control_id(proto_.bos_piece);
  spec_.eos_id = control_id(proto_.eos_piece);
  spec_.pad_id = control_id(proto_.pad_piece);
  {
    const uint32_t* id = reserved_.find(proto_.unk_piece);
    spec_.unk_id = id && pieces[*id].type == PieceType::Unknown ? static_cast<int32_t>(*id) : -1;
  }
  spec_.fingerprint = sentencepiece::fingerprint(pieces);
}

bool SentencePieceTokenizer::cuttable(uint32_t x, uint32_t y) const {
  const int a = pair_index(x), b = pair_index(y);
  if (a >= 0 && b >= 0) return !((pair_bits_[(a * 129 + b) / 64] >> ((a * 129 + b) % 64)) & 1);
  return pair_set_.find((uint64_t{x} << 32) | y) == nullptr;
}

size_t SentencePieceTokenizer::user_symbol_at(const char* p, size_t n) const {
  if (user_symbols_.empty() || !user_first_byte_[static_cast<uint8_t>(p[0])]) return 0;
  for (std::string_view s : user_symbols_)  // longest first
    if (s.size() <= n && std::memcmp(s.data(), p, s.size()) == 0) return s.size();
  return 0;
}

size_t SentencePieceTokenizer::last_cut(std::string_view text, size_t from) const {
  if (has_unused_ || text.size() < 2) return 0;
  size_t c = utf8::prev_char_start(text, text.size());
  while (c > 0 && c >= from) {
    const size_t p = utf8::prev_char_start(text, c);
    size_t i = p, j = c;
    const uint32_t x = utf8::next_code_point(text, i);
    const uint32_t y = utf8::next_code_point(text, j);
    if (cuttable(x, y)) return c;
    c = p;
  }
  return 0;
}

// ---------------------------------------------------------------- normalizer

// The streaming form of SentencePiece's Normalizer::Normalize with an identity charsmap.
class SentencePieceTokenizer::Prep final : public TextTokenizer::Preparer {
 public:
  explicit Prep(const SentencePieceTokenizer& t)
      : t_(t),
        m_(t.proto_),
        look_(std::max<size_t>(4, t.max_user_symbol_)),
        space_(m_.escape_whitespaces ? std::string_view(kSpaceSymbol, 3) : std::string_view(" ", 1)) {}

  void reset() override {
    started_ = false;
    prev_space_ = m_.remove_extra_whitespaces;
    held_ = 0;
  }

  size_t prepare(const uint8_t* raw, size_t n, bool last, std::string& out) override {
    size_t i = 0;
    const bool simple = !m_.remove_extra_whitespaces && t_.user_symbols_.empty();
    while (i < n) {
      if (!last && n - i < look_) break;  // the rest may be part of a longer character or symbol
      if (simple && started_) {  // Llama's case: runs of ASCII copied whole, ' ' escaped
        const size_t stop = last ? n : n - look_ + 1;
        while (i < stop) {
          size_t j = i;
          while (j < stop && raw[j] < 0x80 && raw[j] != ' ') ++j;
          out.append(reinterpret_cast<const char*>(raw + i), j - i);
          i = j;
          if (i < stop && raw[i] == ' ') {
            if (m_.escape_whitespaces) out.append(kSpaceSymbol, 3);
            else out += ' ';
            ++i;
            continue;
          }
          break;
        }
        if (i >= stop) continue;
      }
      std::string_view sp;
      const size_t user = t_.user_symbol_at(reinterpret_cast<const char*>(raw + i), n - i);
      if (user) {
        sp = std::string_view(reinterpret_cast<const char*>(raw + i), user);
        i += user;
      } else {
        bool valid;
        const size_t k = utf8::spm_char(raw + i, n - i, &valid);
        sp = valid ? std::string_view(reinterpret_cast<const char*>(raw + i), k) : std::string_view(utf8::kReplacement, 3);
        i += valid ? k : 1;
      }
      add(sp, out);
    }
    if (last && i == n) held_ = 0;  // trailing whitespace is dropped (remove_extra_whitespaces)
    return i;
  }

 private:
  void add(std::string_view sp, std::string& out) {
    if (!started_) {
      if (m_.remove_extra_whitespaces && sp == " ") return;  // heading spaces
      started_ = true;
      if (m_.add_dummy_prefix) put(space_, out);
    }
    if (m_.remove_extra_whitespaces) {
      while (prev_space_ && !sp.empty() && sp[0] == ' ') sp.remove_prefix(1);
      if (sp.empty()) return;
      prev_space_ = sp.back() == ' ';
    }
    size_t i = 0;
    while (i < sp.size()) {
      if (sp[i] == ' ' && m_.escape_whitespaces) {
        put(space_, out);
        ++i;
      } else if (sp.compare(i, space_.size(), space_) == 0) {  // a literal U+2581 (or ' ')
        put(space_, out);
        i += space_.size();
      } else {
        const size_t k = std::min(utf8::char_len(static_cast<uint8_t>(sp[i])), sp.size() - i);
        put(sp.substr(i, k), out);
        i += k;
      }
    }
  }
  // Appends one normalized character. With remove_extra_whitespaces a run of space symbols
  // is held back until something follows it: at the end of the document it is dropped.
  void put(std::string_view ch, std::string& out) {
    if (!m_.remove_extra_whitespaces) {
      out.append(ch);
      return;
    }
    if (ch == space_) {
      ++held_;
      return;
    }
    for (; held_ > 0; --held_) out.append(space_);
    out.append(ch);
  }

  const SentencePieceTokenizer& t_;
  const sentencepiece::ModelProto& m_;
  size_t look_;
  std::string_view space_;
  bool started_ = false, prev_space_ = false;
  uint64_t held_ = 0;
};

std::unique_ptr<TextTokenizer::Preparer> SentencePieceTokenizer::make_preparer() const {
  auto p = std::make_unique<Prep>(*this);
  p->reset();
  return p;
}

// ---------------------------------------------------------------- BPE

class SentencePieceTokenizer::Enc final : public TextTokenizer::Encoder {
 public:
  explicit Enc(const SentencePieceTokenizer& t) : t_(t) {}

  void encode(std::string_view text, std::vector<uint32_t>& out) override {
    if (text.empty()) return;
    if (t_.has_unused_) {  // one word: UNUSED pieces are resegmented with a map shared by the whole text
      bpe(text, out);
      return;
    }
    size_t start = 0, i = 0;
    uint32_t x = utf8::next_code_point(text, i);
    const size_t n = text.size();
    while (i < n) {
      const size_t at = i;
      const uint8_t b = static_cast<uint8_t>(text[i]);
      uint32_t y;
      bool cut;
      if (b < 0x80 && x < 0x80) {  // ASCII pairs: the bitmap, inline
        y = b;
        ++i;
        const uint32_t bit = x * 129 + y;
        cut = !((t_.pair_bits_[bit / 64] >> (bit % 64)) & 1);
      } else {
        y = utf8::next_code_point(text, i);
        cut = t_.cuttable(x, y);
      }
      if (cut) {
        word(text.substr(start, at - start), out);
        start = at;
      }
      x = y;
    }
    word(text.substr(start), out);
  }

 private:
  struct Symbol {
    int prev, next;
    uint32_t start, len;
    bool freeze;
  };
  struct Pair {
    float score;
    int left, right;
    uint32_t size;
  };
  struct Worse {  // SentencePiece's SymbolPairComparator: higher score first, then the leftmost
    bool operator()(const Pair& a, const Pair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  void word(std::string_view w, std::vector<uint32_t>& out) {
    cache_.encode(w, out, [this](std::string_view piece, std::vector<uint32_t>& to) { bpe(piece, to); });
  }

  void add_pair(std::string_view w, int left, int right) {
    if (left < 0 || right < 0 || sym_[left].freeze || sym_[right].freeze) return;
    const std::string_view piece = w.substr(sym_[left].start, sym_[left].len + sym_[right].len);
    const uint32_t* id = t_.pieces_.find(piece);
    if (!id) return;
    agenda_.push({t_.proto_.pieces[*id].score, left, right, static_cast<uint32_t>(piece.size())});
    if (t_.proto_.pieces[*id].type == PieceType::Unused)
      rev_merge_[piece] = {w.substr(sym_[left].start, sym_[left].len), w.substr(sym_[right].start, sym_[right].len)};
  }

  void bpe(std::string_view w, std::vector<uint32_t>& out) {
    sym_.clear();
    rev_merge_.clear();
    for (size_t i = 0; i < w.size();) {
      const size_t user = t_.user_symbol_at(w.data() + i, w.size() - i);
      const size_t len = user ? user : std::min(utf8::char_len(static_cast<uint8_t>(w[i])), w.size() - i);
      const int idx = static_cast<int>(sym_.size());
      sym_.push_back({idx - 1, i + len < w.size() ? idx + 1 : -1, static_cast<uint32_t>(i), static_cast<uint32_t>(len),
                      user > 0});
      i += len;
    }
    if (sym_.empty()) return;
    for (size_t i = 1; i < sym_.size(); ++i) add_pair(w, static_cast<int>(i - 1), static_cast<int>(i));
    while (!agenda_.empty()) {
      const Pair top = agenda_.top();
      agenda_.pop();
      Symbol& l = sym_[top.left];
      Symbol& r = sym_[top.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != top.size) continue;  // stale
      l.len += r.len;
      l.next = r.next;
      if (r.next >= 0) sym_[r.next].prev = top.left;
      r.len = 0;
      add_pair(w, l.prev, top.left);
      add_pair(w, top.left, l.next);
    }
    for (int i = 0; i != -1; i = sym_[i].next) resolve(w.substr(sym_[i].start, sym_[i].len), out);
  }

  // PieceToId, UNUSED resegmentation and byte fallback for one final symbol.
  void resolve(std::string_view piece, std::vector<uint32_t>& out) {
    uint32_t id = static_cast<uint32_t>(t_.unk_id_);
    if (const uint32_t* r = t_.reserved_.find(piece))
      id = *r;
    else if (const uint32_t* p = t_.pieces_.find(piece))
      id = *p;
    const PieceType type = t_.proto_.pieces[id].type;
    if (type == PieceType::Unused) {
      const auto r = rev_merge_.find(piece);
      if (r != rev_merge_.end()) {
        const auto parts = r->second;
        resolve(parts.first, out);
        resolve(parts.second, out);
        return;
      }
    }
    if (type == PieceType::Unknown && t_.proto_.byte_fallback) {
      for (char c : piece) out.push_back(t_.byte_ids_[static_cast<uint8_t>(c)]);
      return;
    }
    out.push_back(id);
  }

  const SentencePieceTokenizer& t_;
  WordCache cache_;
  std::vector<Symbol> sym_;
  std::priority_queue<Pair, std::vector<Pair>, Worse> agenda_;
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge_;
};

std::unique_ptr<TextTokenizer::Encoder> SentencePieceTokenizer::make_encoder() const {
  return std::make_unique<Enc>(*this);
}

// ---------------------------------------------------------------- decoding

size_t SentencePieceTokenizer::decode(const uint32_t* tokens, size_t n, std::vector<uint8_t>& out) const {
  DecodeContext ctx;
  return decode_in_document(tokens, n, ctx, out);
}

size_t SentencePieceTokenizer::decode_in_document(const uint32_t* tokens, size_t n, DecodeContext& ctx,
                                                  std::vector<uint8_t>& out) const {
  const auto& pieces = proto_.pieces;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t id = tokens[i];
    if (id >= pieces.size()) return i;
    const auto& p = pieces[id];
    switch (p.type) {
      case PieceType::Control: continue;  // BOS, EOS, PAD: no text
      case PieceType::Unknown:
        out.insert(out.end(), proto_.unk_surface.begin(), proto_.unk_surface.end());
        break;
      case PieceType::Byte: {
        unsigned v = 0;
        std::sscanf(p.text.c_str() + 3, "%2X", &v);
        out.push_back(static_cast<uint8_t>(v));
        break;
      }
      default: {
        std::string_view s = p.text;
        if (ctx.document_start && proto_.add_dummy_prefix && s.compare(0, 3, kSpaceSymbol) == 0) s.remove_prefix(3);
        for (size_t j = 0; j < s.size();) {
          if (s.compare(j, 3, kSpaceSymbol) == 0) {
            out.push_back(' ');
            j += 3;
          } else {
            out.push_back(static_cast<uint8_t>(s[j++]));
          }
        }
      }
    }
    ctx.document_start = false;
  }
  return n;
}

std::string SentencePieceTokenizer::describe_token(uint32_t token) const {
  if (token >= proto_.pieces.size())
    return cat("token ", token, " is outside the vocabulary of ", proto_.pieces.size(), " pieces");
  return cat("piece ", token, " ", quote(proto_.pieces[token].text));
}

}  // namespace lm
