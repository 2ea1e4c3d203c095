// Read-mostly open-addressing hash maps for the tokenizers' hot lookups (a piece by its
// text, a merge by its pair of ids): one flat array, linear probing, no nodes to chase.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "tokenizer/word_cache.h"

namespace lm {

// string_view -> uint32_t. The keys' bytes are owned elsewhere and must outlive the map.
class StringIdMap {
 public:
  // Inserts key -> id unless the key is there; returns false when it was.
  bool insert(std::string_view key, uint32_t id) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    const uint64_t h = hash_bytes(key.data(), key.size());
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (!s.key) break;
      if (s.hash == h && s.len == key.size() && equal_bytes(s.key, key.data(), key.size())) return false;
    }
    slots_[i] = {h, key.data() ? key.data() : "", static_cast<uint32_t>(key.size()), id};
    ++count_;
    return true;
  }
  // The id of `key`, or null.
  const uint32_t* find(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    const uint64_t h = hash_bytes(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.key) return nullptr;
      if (s.hash == h && s.len == key.size() && equal_bytes(s.key, key.data(), key.size())) return &s.id;
    }
  }
  size_t size() const { return count_; }
  void reserve(size_t n) {
    size_t want = 64;
    while (want < 2 * n) want *= 2;
    if (slots_.size() < want) grow(want);
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    const char* key = nullptr;
    uint32_t len = 0, id = 0;
  };
  void grow(size_t to = 0) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(to ? to : old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (!s.key) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].key) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, count_ = 0;
};

// uint64_t -> V for keys other than UINT64_MAX (the empty mark).
template <class V>
class U64Map {
 public:
  V& operator[](uint64_t key) {  // inserts a default V when absent
    if ((count_ + 1) * 2 > slots_.size()) grow();
    size_t i = mix(key) & mask_;
    for (; slots_[i].key != kEmpty; i = (i + 1) & mask_)
      if (slots_[i].key == key) return slots_[i].value;
    slots_[i].key = key;
    slots_[i].value = V{};
    ++count_;
    return slots_[i].value;
  }
  const V* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return count_; }
  template <class F>
  void for_each(F&& f) const {  // f(key, value) for every entry, in no particular order
    for (const Slot& s : slots_)
      if (s.key != kEmpty) f(s.key, s.value);
  }
  void reserve(size_t n) {
    size_t want = 64;
    while (want < 2 * n) want *= 2;
    if (slots_.size() < want) grow(want);
  }

 private:
  static constexpr uint64_t kEmpty = UINT64_MAX;
  struct Slot {
    uint64_t key = kEmpty;
    V value{};
  };
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return k;
  }
  void grow(size_t to = 0) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(to ? to : old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = mix(s.key) & mask_;
      while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, count_ = 0;
};

}  // namespace lm
