#include "tokenizer/protobuf.h"

#include <cstring>

#include "core/error.h"

namespace lm::pb {

void Reader::fail(uint64_t offset, const std::string& message) const {
  fail_data(cat(quote(file_), ": ", message, " at byte ", offset));
}

uint64_t Reader::read_varint(size_t& pos, const char* what) {
  const size_t start = pos;
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= data_.size()) fail(base_ + start, cat("truncated protobuf: the input ends inside ", what));
    const uint8_t b = static_cast<uint8_t>(data_[pos++]);
    if (shift == 63 && b > 1) fail(base_ + start, cat("malformed protobuf: ", what, " overflows 64 bits"));
    v |= uint64_t{b & 0x7Fu} << shift;
    if (b < 0x80) return v;
  }
  fail(base_ + start, cat("malformed protobuf: ", what, " is longer than 10 bytes"));
}

bool Reader::next(Field& f) {
  if (pos_ >= data_.size()) return false;
  f.offset = base_ + pos_;
  const uint64_t tag = read_varint(pos_, "a field tag");
  const uint64_t number = tag >> 3;
  const uint32_t type = static_cast<uint32_t>(tag & 7);
  if (number == 0 || number > 0x1FFFFFFF) fail(f.offset, cat("malformed protobuf: field number ", number));
  f.number = static_cast<uint32_t>(number);
  f.bytes = {};
  f.value = 0;
  switch (type) {
    case kVarint:
      f.type = kVarint;
      f.value = read_varint(pos_, "a varint");
      return true;
    case kFixed64:
    case kFixed32: {
      const size_t n = type == kFixed64 ? 8 : 4;
      if (data_.size() - pos_ < n)
        fail(f.offset, cat("truncated protobuf: field ", number, " needs ", n, " bytes, ", data_.size() - pos_,
                           " remain"));
      uint64_t v = 0;
      std::memcpy(&v, data_.data() + pos_, n);  // little-endian, like the host (tokstream.cpp asserts it)
      pos_ += n;
      f.type = static_cast<WireType>(type);
      f.value = v;
      return true;
    }
    case kBytes: {
      const uint64_t len = read_varint(pos_, "a length");
      if (len > data_.size() - pos_)
        fail(f.offset, cat("truncated protobuf: field ", number, " declares ", len, " bytes, ", data_.size() - pos_,
                           " remain"));
      f.type = kBytes;
      f.bytes = data_.substr(pos_, static_cast<size_t>(len));
      pos_ += static_cast<size_t>(len);
      return true;
    }
    default:
      fail(f.offset, cat("malformed protobuf: field ", number, " has ",
                         type == 3 || type == 4 ? "a group (unsupported wire type " : "invalid wire type ", type,
                         type == 3 || type == 4 ? ")" : ""));
  }
}

std::string_view Reader::bytes(const Field& f, const char* what) const {
  if (f.type != kBytes) fail(f.offset, cat("malformed protobuf: ", what, " has wire type ", f.type, ", expected 2"));
  return f.bytes;
}

uint64_t Reader::varint(const Field& f, const char* what) const {
  if (f.type != kVarint) fail(f.offset, cat("malformed protobuf: ", what, " has wire type ", f.type, ", expected 0"));
  return f.value;
}

float Reader::fixed_float(const Field& f, const char* what) const {
  if (f.type != kFixed32) fail(f.offset, cat("malformed protobuf: ", what, " has wire type ", f.type, ", expected 5"));
  const uint32_t bits = static_cast<uint32_t>(f.value);
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

Reader Reader::message(const Field& f, const char* what) const {
  const std::string_view b = bytes(f, what);
  return Reader(b, base_ + static_cast<uint64_t>(b.data() - data_.data()), file_);
}

}  // namespace lm::pb
