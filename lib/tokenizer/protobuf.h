// A minimal reader of the protobuf wire format: just enough for SentencePiece's
// tokenizer.model (a serialized sentencepiece.ModelProto). It walks the fields of one
// message; length-delimited fields (strings, bytes, nested messages) are views into the
// input. Every length is bounded by the bytes that remain, with overflow-checked
// arithmetic; malformed input is a Data error naming the file and the byte offset.
//
// Wire types 0 (varint), 1 (64-bit), 2 (length-delimited) and 5 (32-bit) are read;
// groups (3, 4) were deprecated before SentencePiece existed and are rejected, as are
// field number 0 and the undefined wire types 6 and 7.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lm::pb {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  WireType type = kVarint;
  uint64_t value = 0;      // varint, fixed32 or fixed64 payload
  std::string_view bytes;  // length-delimited payload
  uint64_t offset = 0;     // of the field's tag, from the start of the file
};

class Reader {
 public:
  // `data` is one message; `base` is its offset in the file; `file` names it in errors.
  Reader(std::string_view data, uint64_t base, const std::string& file) : data_(data), base_(base), file_(file) {}

  // The next field, or false at the end of the message.
  bool next(Field& f);

  // Typed views of a field; a wire type that does not fit the field is a Data error
  // naming `what` (the field, e.g. "ModelProto.pieces").
  std::string_view bytes(const Field& f, const char* what) const;
  uint64_t varint(const Field& f, const char* what) const;
  bool boolean(const Field& f, const char* what) const { return varint(f, what) != 0; }
  int32_t int32(const Field& f, const char* what) const {  // protobuf truncates to 32 bits
    return static_cast<int32_t>(static_cast<uint32_t>(varint(f, what)));
  }
  float fixed_float(const Field& f, const char* what) const;
  // A reader of the nested message in a length-delimited field.
  Reader message(const Field& f, const char* what) const;

  [[noreturn]] void fail(uint64_t offset, const std::string& message) const;

 private:
  uint64_t read_varint(size_t& pos, const char* what);

  std::string_view data_;
  uint64_t base_;
  const std::string& file_;
  size_t pos_ = 0;
};

}  // namespace lm::pb
