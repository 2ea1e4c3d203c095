#include "io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/container.h"
#include "io/stream.h"

namespace lm {

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // the reference reader's MAX_HEADER_SIZE

using json = nlohmann::json;

// The header read in one SAX pass straight into TensorInfo records: no document is built,
// so 1M tensors cost what their records cost, and every event is O(1) (repeated tensor
// names are found after the pass, by sorting). The structure is fixed at depth 3
// ({name: {"shape": [dims]}}), so anything nested deeper is an error before it costs memory.
class HeaderReader final : public nlohmann::json_sax<json> {
 public:
  HeaderReader(const std::string& file, std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata)
      : q_(quote(file)), tensors_(tensors), metadata_(metadata) {}

  bool null() override { return misplaced(); }
  bool boolean(bool) override { return misplaced(); }
  bool number_integer(number_integer_t) override { return misplaced(); }
  bool number_float(number_float_t, const string_t&) override { return misplaced(); }
  bool binary(binary_t&) override { return misplaced(); }

  bool number_unsigned(number_unsigned_t v) override {
    if (at_ == At::Shape) {
      if (v > static_cast<uint64_t>(INT64_MAX)) bad_tensor("dimension too large");
      entry_.shape.push_back(static_cast<int64_t>(v));
    } else if (at_ == At::Offsets) {
      if (offsets_ < 2) (offsets_ == 0 ? entry_.begin : entry_.end) = v;
      ++offsets_;
    } else {
      misplaced();
    }
    return true;
  }

  bool string(string_t& v) override {
    if (at_ == At::Metadata) {
      metadata_.emplace(std::move(key_), std::move(v));
    } else if (at_ == At::Entry && field_ == Field::Dtype) {
      dtype_ = std::move(v);
    } else {
      misplaced();
    }
    return true;
  }

  bool start_object(std::size_t) override {
    if (at_ == At::Root) {
      at_ = At::Top;
    } else if (at_ == At::Top && in_metadata_) {
      at_ = At::Metadata;
    } else if (at_ == At::Top) {
      at_ = At::Entry;
      seen_ = 0;
      dtype_.clear();
      offsets_ = 0;
      entry_ = TensorInfo{};
      entry_.name = std::move(key_);
    } else {
      misplaced();
    }
    return true;
  }

  bool start_array(std::size_t) override {
    if (at_ == At::Entry && field_ == Field::Shape) at_ = At::Shape;
    else if (at_ == At::Entry && field_ == Field::Offsets) at_ = At::Offsets;
    else misplaced();
    return true;
  }

  bool end_array() override {
    if (at_ == At::Offsets && offsets_ != 2) bad_tensor("data_offsets must be [begin, end]");
    at_ = At::Entry;
    return true;
  }

  bool end_object() override {
    if (at_ == At::Entry) finish_entry();
    at_ = at_ == At::Top ? At::Done : At::Top;
    return true;
  }

  bool key(string_t& k) override {
    if (at_ == At::Top) {
      in_metadata_ = k == "__metadata__";
      if (in_metadata_ && metadata_seen_) fail_data(cat(q_, ": duplicate key ", quote(k), " in header"));
      metadata_seen_ = metadata_seen_ || in_metadata_;
    } else if (at_ == At::Metadata) {
      if (metadata_.count(k)) fail_data(cat(q_, ": duplicate key ", quote("__metadata__." + k), " in header"));
    } else {  // At::Entry
      const Field f = k == "dtype" ? Field::Dtype : k == "shape" ? Field::Shape : k == "data_offsets" ? Field::Offsets : Field::None;
      if (f == Field::None) bad_tensor(cat("unknown field ", quote(k)));
      if (seen_ & (1u << static_cast<int>(f)))
        fail_data(cat(q_, ": duplicate key ", quote(entry_.name + "." + k), " in header"));
      seen_ |= 1u << static_cast<int>(f);
      field_ = f;
    }
    key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    fail_data(cat(q_, ": header is not valid JSON: ", json_error_text(e)));
  }

 private:
  enum class At { Root, Top, Metadata, Entry, Shape, Offsets, Done };
  enum class Field { None, Dtype, Shape, Offsets };

  [[noreturn]] void bad_tensor(const std::string& why) const { fail_data(cat(q_, ": tensor ", quote(entry_.name), ": ", why)); }

  // A value (or container) where the format has none of its kind.
  [[noreturn]] bool misplaced() const {
    switch (at_) {
      case At::Root: fail_data(cat(q_, ": header is not a JSON object"));
      case At::Top:
        if (in_metadata_) fail_data(cat(q_, ": __metadata__ is not an object"));
        fail_data(cat(q_, ": entry ", quote(key_), " is not an object"));
      case At::Metadata: fail_data(cat(q_, ": __metadata__ value of ", quote(key_), " is not a string"));
      case At::Entry:
        if (field_ == Field::Dtype) bad_tensor("missing or non-string dtype");
        if (field_ == Field::Shape) bad_tensor("missing or non-array shape");
        bad_tensor("data_offsets must be [begin, end]");
      case At::Shape: bad_tensor("shape must hold non-negative integers");
      case At::Offsets: bad_tensor("data_offsets must hold non-negative integers");
      case At::Done: break;
    }
    fail_data(cat(q_, ": header is not valid JSON"));  // the parser reports trailing values first
  }

  void finish_entry() {
    if (!(seen_ & (1u << static_cast<int>(Field::Dtype)))) bad_tensor("missing or non-string dtype");
    if (!(seen_ & (1u << static_cast<int>(Field::Shape)))) bad_tensor("missing or non-array shape");
    if (!(seen_ & (1u << static_cast<int>(Field::Offsets)))) bad_tensor("data_offsets must be [begin, end]");
    const auto dtype = dtype_from_name(dtype_);
    if (!dtype) {
      static const char* const known_unsupported[] = {"F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                                                      "F4",      "F6_E2M3", "F6_E3M2", "C64"};
      for (const char* u : known_unsupported)
        if (dtype_ == u) fail(ErrorKind::Unsupported, cat(q_, ": tensor ", quote(entry_.name), ": dtype ", dtype_, " is not supported"));
      bad_tensor(cat("unknown dtype ", quote(dtype_)));
    }
    entry_.dtype = *dtype;
    if (entry_.end < entry_.begin)
      bad_tensor(cat("data_offsets end ", entry_.end, " is before begin ", entry_.begin));
    const int64_t numel = shape_numel(entry_.shape, cat(q_, ": tensor ", quote(entry_.name)));
    uint64_t nbytes;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(entry_.dtype), &nbytes)) bad_tensor("byte size overflows");
    if (entry_.end - entry_.begin != nbytes)
      bad_tensor(cat("shape ", shape_str(entry_.shape), " x ", dtype_, " needs ", nbytes, " bytes, data_offsets span ",
                     entry_.end - entry_.begin));
    tensors_.push_back(std::move(entry_));
  }

  const std::string q_;
  std::vector<TensorInfo>& tensors_;
  std::map<std::string, std::string>& metadata_;
  At at_ = At::Root;
  bool in_metadata_ = false, metadata_seen_ = false;
  std::string key_;        // the last key (tensor name at the top, metadata key inside __metadata__)
  TensorInfo entry_;       // the tensor being read
  Field field_ = Field::None;
  unsigned seen_ = 0;      // bit per Field seen in the entry
  std::string dtype_;
  size_t offsets_ = 0;     // data_offsets elements seen
};

}  // namespace

SafeTensorsFile SafeTensorsFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

SafeTensorsFile SafeTensorsFile::parse(std::shared_ptr<MappedFile> file) {
  const std::string& name = file->path();
  const uint8_t* p = file->data();
  const uint64_t size = file->size();
  refuse_other_checkpoint(p, size, name);  // a GGUF or llama2.c file: say so, and how to convert it
  if (size < 8) fail_data(cat(quote(name), ": not a safetensors file: ", size, " bytes, too short for the header length"));
  uint64_t header_len;
  std::memcpy(&header_len, p, 8);
  if (header_len > kMaxHeaderSize)
    fail_data(cat(quote(name), ": header length ", header_len, " exceeds the limit of ", kMaxHeaderSize, " bytes"));
  if (header_len > size - 8)
    fail_data(cat(quote(name), ": header length ", header_len, " is larger than the file (", size,
                  " bytes): truncated or not a safetensors file"));
  if (header_len < 2 || p[8] != '{') fail_data(cat(quote(name), ": header does not start with '{'"));

  SafeTensorsFile st;
  st.file_ = file;
  st.data_offset_ = 8 + header_len;
  HeaderReader reader(name, st.tensors_, st.metadata_);
  const char* hbegin = reinterpret_cast<const char*>(p + 8);
  json::sax_parse(hbegin, hbegin + header_len, &reader);  // every failure throws

  std::sort(st.tensors_.begin(), st.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // By name, for find(); a name given twice sorts next to its twin (checked before
  // the offsets: a repeated entry would otherwise be reported as an overlap).
  if (st.tensors_.size() > UINT32_MAX) fail_data(cat(quote(name), ": too many tensors"));
  st.by_name_.resize(st.tensors_.size());
  for (uint32_t i = 0; i < st.by_name_.size(); ++i) st.by_name_[i] = i;
  const auto& tensors = st.tensors_;
  std::sort(st.by_name_.begin(), st.by_name_.end(),
            [&](uint32_t a, uint32_t b) { return tensors[a].name < tensors[b].name; });
  for (size_t i = 1; i < st.by_name_.size(); ++i)
    if (tensors[st.by_name_[i]].name == tensors[st.by_name_[i - 1]].name)
      fail_data(cat(quote(name), ": duplicate key ", quote(tensors[st.by_name_[i]].name), " in header"));
  uint64_t expected = 0;
  for (const auto& t : st.tensors_) {
    if (t.begin < expected)
      fail_data(cat(quote(name), ": tensor ", quote(t.name), " overlaps the previous tensor (begins at ", t.begin,
                    ", previous ends at ", expected, ")"));
    if (t.begin > expected)
      fail_data(cat(quote(name), ": gap in the data area before tensor ", quote(t.name), " (begins at ", t.begin,
                    ", expected ", expected, ")"));
    expected = t.end;
  }
  const uint64_t data_size = size - st.data_offset_;
  if (expected != data_size) {
    if (expected > data_size)
      fail_data(cat(quote(name), ": truncated: tensors need ", expected, " data bytes, the file has ", data_size));
    fail_data(cat(quote(name), ": ", data_size - expected, " trailing bytes after the last tensor"));
  }
  return st;
}

const std::string& SafeTensorsFile::path() const { return file_->path(); }

const TensorInfo* SafeTensorsFile::find(const std::string& name) const {
  const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                   [&](uint32_t i, const std::string& n) { return tensors_[i].name < n; });
  return it == by_name_.end() || tensors_[*it].name != name ? nullptr : &tensors_[*it];
}

Tensor SafeTensorsFile::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) fail_data(cat("no tensor ", quote(name), " in ", quote(path())));
  const uint8_t* p = file_->data() + data_offset_ + info->begin;
  // The format does not ask writers to align tensors (lmkit's and HF's do): one off its element
  // type's alignment is copied, since a view must keep it.
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(info->dtype) != 0) {
    Tensor out = Tensor::zeros(info->dtype, info->shape);
    if (info->end > info->begin) std::memcpy(out.raw_mut(), p, info->end - info->begin);
    return out;
  }
  return Tensor::view(info->dtype, info->shape, p, file_);
}

std::optional<std::string> SafeTensorsFile::metadata_value(const std::string& key) const {
  const auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  return it->second;
}

void SafeTensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void SafeTensorsWriter::add(const std::string& name, const Tensor& tensor) {
  entries_.push_back({name, tensor.dtype(), tensor.shape(), tensor, nullptr});
}

void SafeTensorsWriter::add_lazy(const std::string& name, DType dtype, Shape shape,
                                 std::function<void(ByteSink&)> produce) {
  entries_.push_back({name, dtype, std::move(shape), Tensor(), std::move(produce)});
}


void SafeTensorsWriter::write(ByteSink& sink) const {
  std::vector<const Entry*> order;
  std::set<std::string> names;
  for (const auto& e : entries_) {
    if (e.name == "__metadata__" || !names.insert(e.name).second)
      fail_usage(cat("cannot write tensor ", quote(e.name), " twice"));
    order.push_back(&e);
  }
  std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    const size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  std::string header = "{";
  if (!metadata_.empty()) header += "\"__metadata__\":" + json(metadata_).dump();
  uint64_t offset = 0;
  for (const Entry* e : order) {
    const uint64_t nbytes = static_cast<uint64_t>(shape_numel(e->shape, e->name)) * dtype_size(e->dtype);
    json entry;
    entry["dtype"] = std::string(dtype_name(e->dtype));
    entry["shape"] = e->shape;
    entry["data_offsets"] = {offset, offset + nbytes};
    if (header.size() > 1) header += ",";
    header += json(e->name).dump() + ":" + entry.dump();
    offset += nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const uint64_t header_len = header.size();
  sink.write(&header_len, 8);
  sink.write(header.data(), header.size());
  for (const Entry* e : order) {
    const uint64_t nbytes = static_cast<uint64_t>(shape_numel(e->shape, e->name)) * dtype_size(e->dtype);
    if (e->produce) {
      CountingSink counter(sink);
      e->produce(counter);
      if (counter.count != nbytes)
        fail(ErrorKind::Runtime, cat("internal: tensor ", quote(e->name), " produced ", counter.count, " bytes, expected ", nbytes));
    } else {
      sink.write(e->tensor.raw(), nbytes);
    }
  }
}

void SafeTensorsWriter::write_file(const std::string& path) const {
  auto sink = open_output(path);
  write(*sink);
  sink->finish();
}

}  // namespace lm
