// A per-thread cache from a word (a stretch of text between two exact cuts) to its
// tokens: open addressing over one key arena and one token arena, cleared as a whole when
// it grows past its budget. Most of a corpus's words repeat, so most words skip BPE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace lm {

inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ (v * 0xFF51AFD7ED558CCDull)) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h = (h ^ (v * 0xFF51AFD7ED558CCDull)) * 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 32);
}

// Equality of two byte strings of length n, without a library call for short ones.
inline bool equal_bytes(const char* a, const char* b, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a0, b0, a1, b1;
    std::memcpy(&a0, a, 8);
    std::memcpy(&b0, b, 8);
    std::memcpy(&a1, a + n - 8, 8);
    std::memcpy(&b1, b + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  if (n < 8) {
    if (n >= 4) {
      uint32_t a0, b0, a1, b1;
      std::memcpy(&a0, a, 4);
      std::memcpy(&b0, b, 4);
      std::memcpy(&a1, a + n - 4, 4);
      std::memcpy(&b1, b + n - 4, 4);
      return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    for (size_t i = 0; i < n; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  return std::memcmp(a, b, n) == 0;
}

class WordCache {
 public:
  static constexpr size_t kMaxWord = 256;  // longer words are not cached

  // Appends the tokens of `word` to `out`: the cached ones, else the ones `encode(word, out)`
  // appends, which are then cached.
  template <class Encode>
  void encode(std::string_view word, std::vector<uint32_t>& out, Encode&& encode) {
    size_t n = 0;
    if (const uint32_t* hit = find(word, n)) {
      out.insert(out.end(), hit, hit + n);
      return;
    }
    const size_t before = out.size();
    encode(word, out);
    insert(word, out.data() + before, out.size() - before);
  }

  // The tokens of `word`, or null (n untouched) when it is not cached.
  const uint32_t* find(std::string_view word, size_t& n) const {
    if (slots_.empty() || word.size() > kMaxWord) return nullptr;
    const uint64_t h = hash_bytes(word.data(), word.size());
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.len == kEmpty) return nullptr;
      if (s.tag == tag && s.len == word.size() && equal_bytes(keys_.data() + s.key, word.data(), word.size())) {
        n = s.ntok;
        return tokens_.data() + s.tok;
      }
    }
  }

  void insert(std::string_view word, const uint32_t* tok, size_t n) {
    if (word.size() > kMaxWord || n > 0xFFFF) return;
    if (slots_.empty() || keys_.size() > kMaxBytes) reset();
    if ((count_ + 1) * 2 > slots_.size()) {
      if (slots_.size() >= kMaxSlots) reset();
      else grow();
    }
    const uint64_t h = hash_bytes(word.data(), word.size());
    size_t i = h & mask_;
    while (slots_[i].len != kEmpty) i = (i + 1) & mask_;
    slots_[i] = {static_cast<uint32_t>(h >> 32), static_cast<uint32_t>(keys_.size()),
                 static_cast<uint32_t>(tokens_.size()), static_cast<uint16_t>(word.size()), static_cast<uint16_t>(n)};
    keys_.insert(keys_.end(), word.begin(), word.end());
    tokens_.insert(tokens_.end(), tok, tok + n);
    ++count_;
  }

 private:
  static constexpr uint16_t kEmpty = 0xFFFF;
  static constexpr size_t kFirstSlots = size_t{1} << 10;
  static constexpr size_t kMaxSlots = size_t{1} << 18;  // up to 128Ki words, then start over
  static constexpr size_t kMaxBytes = size_t{8} << 20;  // of keys
  struct Slot {  // 16 bytes: the table stays small enough for the caches
    uint32_t tag;  // the hash's high half (the low bits place the slot)
    uint32_t key, tok;
    uint16_t len = kEmpty, ntok;
  };
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{0, 0, 0, kEmpty, 0});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.len == kEmpty) continue;
      size_t i = hash_bytes(keys_.data() + s.key, s.len) & mask_;
      while (slots_[i].len != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  void reset() {
    slots_.assign(kFirstSlots, Slot{0, 0, 0, kEmpty, 0});
    mask_ = kFirstSlots - 1;
    keys_.clear();
    tokens_.clear();
    count_ = 0;
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0, count_ = 0;
  std::vector<char> keys_;
  std::vector<uint32_t> tokens_;
};

}  // namespace lm
