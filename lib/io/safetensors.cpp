#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/container.h"
#include "io/stream.h"

namespace lm {

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // the reference reader's MAX_HEADER_SIZE

using json = nlohmann::json;

// nlohmann keeps the last of duplicate keys silently; the parser callback sees every key.
json parse_rejecting_duplicates(const char* begin, const char* end, const std::string& file) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::object_end:
        keys_per_object.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!keys_per_object.back().insert(k).second && duplicate.empty()) duplicate = k;
        break;
      }
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(begin, end, callback);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for number overflow
    std::string what = e.what();
    const auto pos = what.find("] ");
    fail_data(cat(quote(file), ": header is not valid JSON: ", pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  if (!duplicate.empty()) fail_data(cat(quote(file), ": duplicate key ", quote(duplicate), " in header"));
  return j;
}

uint64_t checked_u64(const json& v, const std::string& file, const std::string& tensor, const char* field) {
  if (!v.is_number_unsigned())
    fail_data(cat(quote(file), ": tensor ", quote(tensor), ": ", field, " must hold non-negative integers"));
  return v.get<uint64_t>();
}

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

  const char* hbegin = reinterpret_cast<const char*>(p + 8);
  const json header = parse_rejecting_duplicates(hbegin, hbegin + header_len, name);
  if (!header.is_object()) fail_data(cat(quote(name), ": header is not a JSON object"));

  SafeTensorsFile st;
  st.file_ = file;
  st.data_offset_ = 8 + header_len;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail_data(cat(quote(name), ": __metadata__ is not an object"));
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail_data(cat(quote(name), ": __metadata__ value of ", quote(mk), " is not a string"));
        st.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail_data(cat(quote(name), ": entry ", quote(key), " is not an object"));
    for (const auto& [field, unused] : value.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        fail_data(cat(quote(name), ": tensor ", quote(key), ": unknown field ", quote(field)));
    if (!value.contains("dtype") || !value["dtype"].is_string())
      fail_data(cat(quote(name), ": tensor ", quote(key), ": missing or non-string dtype"));
    if (!value.contains("shape") || !value["shape"].is_array())
      fail_data(cat(quote(name), ": tensor ", quote(key), ": missing or non-array shape"));
    if (!value.contains("data_offsets") || !value["data_offsets"].is_array() || value["data_offsets"].size() != 2)
      fail_data(cat(quote(name), ": tensor ", quote(key), ": data_offsets must be [begin, end]"));
    const std::string dtype_str = value["dtype"].get<std::string>();
    const auto dtype = dtype_from_name(dtype_str);
    if (!dtype) {
      static const std::set<std::string> known_unsupported{"F8_E5M2",     "F8_E4M3",     "F8_E8M0", "F8_E4M3FNUZ",
                                                           "F8_E5M2FNUZ", "F4",          "F6_E2M3", "F6_E3M2",
                                                           "C64"};
      if (known_unsupported.count(dtype_str))
        fail(ErrorKind::Unsupported,
             cat(quote(name), ": tensor ", quote(key), ": dtype ", dtype_str, " is not supported"));
      fail_data(cat(quote(name), ": tensor ", quote(key), ": unknown dtype ", quote(dtype_str)));
    }
    TensorInfo info;
    info.name = key;
    info.dtype = *dtype;
    for (const auto& d : value["shape"]) {
      const uint64_t dim = checked_u64(d, name, key, "shape");
      if (dim > static_cast<uint64_t>(INT64_MAX)) fail_data(cat(quote(name), ": tensor ", quote(key), ": dimension too large"));
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    info.begin = checked_u64(value["data_offsets"][0], name, key, "data_offsets");
    info.end = checked_u64(value["data_offsets"][1], name, key, "data_offsets");
    if (info.end < info.begin)
      fail_data(cat(quote(name), ": tensor ", quote(key), ": data_offsets end ", info.end, " is before begin ", info.begin));
    const int64_t numel = shape_numel(info.shape, cat(quote(name), ": tensor ", quote(key)));
    uint64_t nbytes;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(info.dtype), &nbytes))
      fail_data(cat(quote(name), ": tensor ", quote(key), ": byte size overflows"));
    if (info.end - info.begin != nbytes)
      fail_data(cat(quote(name), ": tensor ", quote(key), ": shape ", shape_str(info.shape), " x ", dtype_str, " needs ",
                    nbytes, " bytes, data_offsets span ", info.end - info.begin));
    st.tensors_.push_back(std::move(info));
  }

  std::sort(st.tensors_.begin(), st.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
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
  for (size_t i = 0; i < st.tensors_.size(); ++i) st.index_[st.tensors_[i].name] = i;
  return st;
}

const std::string& SafeTensorsFile::path() const { return file_->path(); }

const TensorInfo* SafeTensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafeTensorsFile::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) fail_data(cat("no tensor ", quote(name), " in ", quote(path())));
  return Tensor::view(info->dtype, info->shape, file_->data() + data_offset_ + info->begin, file_);
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
