#include "io/torch_pth.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/zip.h"

namespace lm {

namespace {

// The callables a state dict's pickle names, and nothing else.
enum class Global : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, Storage };

struct GlobalName {
  const char* module;
  const char* name;
  Global kind;
  DType dtype;  // for storages
};
constexpr GlobalName kGlobals[] = {
    {"collections", "OrderedDict", Global::OrderedDict, DType::F32},
    {"torch._utils", "_rebuild_tensor_v2", Global::RebuildTensorV2, DType::F32},
    {"torch._utils", "_rebuild_parameter", Global::RebuildParameter, DType::F32},
    {"torch", "FloatStorage", Global::Storage, DType::F32},
    {"torch", "HalfStorage", Global::Storage, DType::F16},
    {"torch", "BFloat16Storage", Global::Storage, DType::BF16},
    {"torch", "DoubleStorage", Global::Storage, DType::F64},
    {"torch", "LongStorage", Global::Storage, DType::I64},
    {"torch", "IntStorage", Global::Storage, DType::I32},
    {"torch", "ShortStorage", Global::Storage, DType::I16},
    {"torch", "CharStorage", Global::Storage, DType::I8},
    {"torch", "ByteStorage", Global::Storage, DType::U8},
    {"torch", "BoolStorage", Global::Storage, DType::Bool},
};

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor };

// A pickle value. Containers, strings, storages and tensors live in the interpreter's arenas and
// are referred to by index: copies (BINGET) are O(1), and self-references cannot leak.
struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;     // Bool, Int; Global: index into kGlobals
  uint32_t ref = 0;  // Str, Tuple/List (seqs), Dict (dicts), Storage, Tensor
};

struct StorageRef {
  DType dtype;
  const ZipEntry* entry;
  uint64_t numel;
};

struct TensorRef {
  uint32_t storage;
  int64_t offset;  // elements
  Shape shape;
  std::vector<int64_t> stride;
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "a bool";
    case Kind::Int: return "an int";
    case Kind::Float: return "a float";
    case Kind::Str: return "a string";
    case Kind::Tuple: return "a tuple";
    case Kind::List: return "a list";
    case Kind::Dict: return "a dict";
    case Kind::Global: return "a global";
    case Kind::Storage: return "a storage";
    case Kind::Tensor: return "a tensor";
  }
  return "?";
}

class Unpickler {
 public:
  Unpickler(const ZipArchive& zip, std::string prefix, const uint8_t* p, size_t n, std::string where)
      : zip_(zip), prefix_(std::move(prefix)), p_(p), n_(n), where_(std::move(where)) {}

  // Runs the pickle to its STOP; returns the one value left.
  Value run() {
    while (true) {
      if (pos_ >= n_) bad("ends without STOP");
      op_at_ = pos_;
      const uint8_t op = p_[pos_++];
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t v = byte();
          if (v < 2 || v > 5) bad(cat("pickle protocol ", int(v), " (torch.save writes 2)"));
          break;
        }
        case 0x95: take(8); break;  // FRAME: a length hint only
        case '.': {                 // STOP
          if (stack_.size() != 1 || !marks_.empty()) bad("ends with a malformed stack");
          return stack_[0];
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case 'N': push({Kind::None}); break;
        case 0x88: push({Kind::Bool, 1}); break;  // NEWTRUE
        case 0x89: push({Kind::Bool, 0}); break;  // NEWFALSE
        case 'K': push({Kind::Int, byte()}); break;  // BININT1
        case 'M': {                                  // BININT2
          const uint8_t* b = take(2);
          push({Kind::Int, b[0] | b[1] << 8});
          break;
        }
        case 'J': {  // BININT (signed)
          const uint8_t* b = take(4);
          const uint32_t u = b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24;
          push({Kind::Int, static_cast<int32_t>(u)});
          break;
        }
        case 0x8a: {  // LONG1: n little-endian two's-complement bytes
          const uint8_t len = byte();
          if (len > 8) bad(cat("an integer of ", int(len), " bytes"));
          const uint8_t* b = take(len);
          uint64_t u = 0;
          for (int k = len - 1; k >= 0; --k) u = u << 8 | b[k];
          if (len > 0 && len < 8 && (b[len - 1] & 0x80)) u |= ~uint64_t(0) << (8 * len);
          push({Kind::Int, static_cast<int64_t>(u)});
          break;
        }
        case 'G': take(8), push({Kind::Float}); break;  // BINFLOAT (its value is never needed)
        case 'X': push(str_value(take_len(4))); break;     // BINUNICODE
        case 0x8c: push(str_value(take_len(1))); break;    // SHORT_BINUNICODE
        case 0x8d: push(str_value(take_len(8))); break;    // BINUNICODE8
        case 'U': push(str_value(take_len(1))); break;     // SHORT_BINSTRING
        case 'T': push(str_value(take_len(4))); break;     // BINSTRING
        case ')': push(seq(Kind::Tuple, {})); break;    // EMPTY_TUPLE
        case ']': push(seq(Kind::List, {})); break;     // EMPTY_LIST
        case '}': push(dict()); break;                  // EMPTY_DICT
        case 't': push(seq(Kind::Tuple, pop_mark())); break;  // TUPLE
        case 0x85: case 0x86: case 0x87: {                    // TUPLE1..3
          const size_t k = op - 0x84u;
          if (stack_.size() < k + base()) bad("tuple of more items than the stack holds");
          std::vector<Value> items(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
          stack_.resize(stack_.size() - k);
          push(seq(Kind::Tuple, std::move(items)));
          break;
        }
        case 'a': {  // APPEND
          const Value v = pop();
          list_at_top().push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Value> items = pop_mark();
          auto& l = list_at_top();
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          const Value v = pop(), k = pop();
          dict_at_top().push_back({k, v});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Value> items = pop_mark();
          if (items.size() % 2) bad("SETITEMS with an odd number of items");
          auto& d = dict_at_top();
          for (size_t k = 0; k < items.size(); k += 2) d.push_back({items[k], items[k + 1]});
          break;
        }
        case 'q': memo_put(byte()); break;  // BINPUT
        case 'r': memo_put(u32(take(4))); break;  // LONG_BINPUT
        case 0x94: memo_put(static_cast<uint32_t>(memo_.size())); break;  // MEMOIZE
        case 'h': memo_get(byte()); break;  // BINGET
        case 'j': memo_get(u32(take(4))); break;  // LONG_BINGET
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const Value name = pop(), module = pop();
          if (name.kind != Kind::Str || module.kind != Kind::Str) bad("STACK_GLOBAL of non-strings");
          push(global(strings_[module.ref], strings_[name.ref]));
          break;
        }
        case 'Q': push(persistent(pop())); break;  // BINPERSID
        case 'R': {                                // REDUCE
          const Value args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD: an OrderedDict's state (state_dict()'s _metadata: module versions)
          const Value state = pop();
          if (top().kind != Kind::Dict || (state.kind != Kind::Dict && state.kind != Kind::None))
            bad(cat("BUILD of ", kind_name(top().kind), " with ", kind_name(state.kind), " (not a state dict's)"));
          break;
        }
        default: {
          const char c = static_cast<char>(op);
          bad(cat("opcode 0x", hex(op), c >= 0x20 && c < 0x7f ? cat(" ('", c, "')") : std::string(),
                  " is not one a state dict uses: refused (lmkit runs no pickled code)"));
        }
      }
    }
  }

  std::vector<std::string> strings_;
  std::vector<std::vector<Value>> seqs_;
  std::vector<std::vector<std::pair<Value, Value>>> dicts_;
  std::vector<StorageRef> storages_;
  std::vector<TensorRef> tensors_;

 private:
  [[noreturn]] void bad(const std::string& why) const { fail_data(cat(where_, ": byte ", op_at_, ": ", why)); }
  static std::string hex(uint8_t v) {
    const char* d = "0123456789abcdef";
    return {d[v >> 4], d[v & 15]};
  }
  static uint32_t u32(const uint8_t* b) { return b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24; }

  const uint8_t* take(size_t k) {
    if (n_ - pos_ < k) bad("truncated");
    const uint8_t* b = p_ + pos_;
    pos_ += k;
    return b;
  }
  uint8_t byte() { return *take(1); }
  std::string_view take_len(size_t width) {
    const uint8_t* b = take(width);
    uint64_t len = 0;
    for (int k = static_cast<int>(width) - 1; k >= 0; --k) len = len << 8 | b[k];
    if (len > n_ - pos_) bad("a string runs past the end");
    return {reinterpret_cast<const char*>(take(len)), static_cast<size_t>(len)};
  }
  std::string line() {
    const void* nl = std::memchr(p_ + pos_, '\n', n_ - pos_);
    if (!nl) bad("GLOBAL without its newline");
    const size_t len = static_cast<const uint8_t*>(nl) - (p_ + pos_);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len + 1;
    return s;
  }

  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value v) { stack_.push_back(v); }
  Value pop() {
    if (stack_.size() <= base()) bad("pops an empty stack");
    const Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value& top() {
    if (stack_.size() <= base()) bad("needs a value on an empty stack");
    return stack_.back();
  }
  std::vector<Value> pop_mark() {
    if (marks_.empty()) bad("no MARK");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  std::vector<Value>& list_at_top() {
    const Value& t = top();
    if (t.kind != Kind::List) bad(cat("APPEND to ", kind_name(t.kind)));
    return seqs_[t.ref];
  }
  std::vector<std::pair<Value, Value>>& dict_at_top() {
    const Value& t = top();
    if (t.kind != Kind::Dict) bad(cat("SETITEM on ", kind_name(t.kind)));
    return dicts_[t.ref];
  }
  void memo_put(uint32_t k) { memo_[k] = top(); }
  void memo_get(uint32_t k) {
    const auto it = memo_.find(k);
    if (it == memo_.end()) bad(cat("memo ", k, " was never stored"));
    push(it->second);
  }

  Value str_value(std::string_view s) {
    strings_.emplace_back(s);
    return {Kind::Str, 0, static_cast<uint32_t>(strings_.size() - 1)};
  }
  Value seq(Kind k, std::vector<Value> items) {
    seqs_.push_back(std::move(items));
    return {k, 0, static_cast<uint32_t>(seqs_.size() - 1)};
  }
  Value dict() {
    dicts_.emplace_back();
    return {Kind::Dict, 0, static_cast<uint32_t>(dicts_.size() - 1)};
  }
  Value global(const std::string& module, const std::string& name) {
    for (size_t k = 0; k < std::size(kGlobals); ++k)
      if (module == kGlobals[k].module && name == kGlobals[k].name) return {Kind::Global, static_cast<int64_t>(k)};
    if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0)
      fail(ErrorKind::Unsupported, cat(where_, ": storage type torch.", name, " is not supported (F32, F16, BF16 and integers are)"));
    bad(cat("refers to ", module, ".", name, ", which a state dict does not use: refused (lmkit runs no pickled code)"));
  }
  const std::vector<Value>& tuple(const Value& v, const char* what) {
    if (v.kind != Kind::Tuple) bad(cat(what, " is ", kind_name(v.kind), ", not a tuple"));
    return seqs_[v.ref];
  }
  int64_t integer(const Value& v, const char* what) {
    if (v.kind != Kind::Int) bad(cat(what, " is ", kind_name(v.kind), ", not an int"));
    return v.i;
  }

  // ('storage', torch.XStorage, key, location, numel): the storage in <archive>/data/<key>.
  Value persistent(const Value& pid) {
    const auto& t = tuple(pid, "a persistent id");
    if (t.size() != 5 || t[0].kind != Kind::Str || strings_[t[0].ref] != "storage")
      bad("a persistent id that is not ('storage', type, key, location, numel)");
    if (t[1].kind != Kind::Global || kGlobals[t[1].i].kind != Global::Storage) bad("a storage whose type is not a torch storage class");
    if (t[2].kind != Kind::Str || t[3].kind != Kind::Str) bad("a storage whose key or location is not a string");
    const int64_t numel = integer(t[4], "a storage's size");
    const std::string& key = strings_[t[2].ref];
    const DType dtype = kGlobals[t[1].i].dtype;
    const ZipEntry* e = zip_.find(prefix_ + "data/" + key);
    if (!e) bad(cat("storage ", quote(key), " has no entry ", quote(prefix_ + "data/" + key), " in the archive"));
    uint64_t bytes;
    if (numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(dtype), &bytes) || bytes != e->size)
      bad(cat("storage ", quote(key), ": ", numel, " x ", dtype_name(dtype), " does not fill its entry of ", e->size, " bytes"));
    storages_.push_back({dtype, e, static_cast<uint64_t>(numel)});
    return {Kind::Storage, 0, static_cast<uint32_t>(storages_.size() - 1)};
  }

  Value reduce(const Value& fn, const Value& args_v) {
    if (fn.kind != Kind::Global) bad(cat("REDUCE calls ", kind_name(fn.kind)));
    const auto& args = tuple(args_v, "REDUCE's arguments");
    switch (kGlobals[fn.i].kind) {
      case Global::OrderedDict:
        if (!args.empty()) bad("OrderedDict built from arguments");
        return dict();
      case Global::RebuildParameter:  // (tensor, requires_grad, backward_hooks)
        if (args.size() != 3 || args[0].kind != Kind::Tensor) bad("_rebuild_parameter without (tensor, requires_grad, hooks)");
        return args[0];
      case Global::RebuildTensorV2: {  // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
        if ((args.size() != 6 && args.size() != 7) || args[0].kind != Kind::Storage)
          bad("_rebuild_tensor_v2 without (storage, offset, size, stride, requires_grad, hooks)");
        TensorRef t;
        t.storage = args[0].ref;
        t.offset = integer(args[1], "a tensor's storage offset");
        for (const Value& d : tuple(args[2], "a tensor's size")) t.shape.push_back(integer(d, "a tensor's size"));
        for (const Value& s : tuple(args[3], "a tensor's stride")) t.stride.push_back(integer(s, "a tensor's stride"));
        if (t.shape.size() != t.stride.size()) bad(cat("a tensor with ", t.shape.size(), " sizes and ", t.stride.size(), " strides"));
        tensors_.push_back(std::move(t));
        return {Kind::Tensor, 0, static_cast<uint32_t>(tensors_.size() - 1)};
      }
      case Global::Storage: break;
    }
    bad("REDUCE calls a storage class");
  }

  const ZipArchive& zip_;
  const std::string prefix_;
  const uint8_t* p_;
  size_t n_;
  std::string where_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Value> memo_;
};

}  // namespace

bool TorchCheckpoint::has_magic(const uint8_t* p, size_t n) { return ZipArchive::has_magic(p, n); }

TorchCheckpoint TorchCheckpoint::open(const std::string& path) { return parse(MappedFile::open(path)); }

TorchCheckpoint TorchCheckpoint::parse(std::shared_ptr<MappedFile> file) {
  const std::string q = quote(file->path());
  if (!has_magic(file->data(), file->size())) {
    // torch.save before 1.6 (and with _use_new_zipfile_serialization=False): pickles back to back.
    if (file->size() >= 2 && file->data()[0] == 0x80)
      fail(ErrorKind::Unsupported, cat(q, ": a PyTorch checkpoint in the legacy format (before torch 1.6) is not read"),
           "load and save it again with torch >= 1.6: torch.save(torch.load(f), f)");
    fail_data(cat(q, ": not a PyTorch checkpoint (no zip archive)"));
  }
  const ZipArchive zip = ZipArchive::parse(file);
  if (zip.entries().empty()) fail_data(cat(q, ": an empty zip archive, not a PyTorch checkpoint"));
  // torch names every entry <archive>/..., the archive name being the first entry's directory.
  const std::string& first = zip.entries()[0].name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos) fail_data(cat(q, ": zip entry ", quote(first), " is not inside an archive directory: not a PyTorch checkpoint"));
  const std::string prefix = first.substr(0, slash + 1);
  const ZipEntry* pkl = zip.find(prefix + "data.pkl");
  if (!pkl) fail_data(cat(q, ": no ", quote(prefix + "data.pkl"), " in the zip archive: not a PyTorch checkpoint"));
  if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
    const std::string bo(reinterpret_cast<const char*>(zip.data(*order)), order->size);
    if (bo != "little") fail(ErrorKind::Unsupported, cat(q, ": byte order ", quote(bo.substr(0, 16)), " (lmkit reads little-endian checkpoints)"));
  }

  Unpickler u(zip, prefix, zip.data(*pkl), pkl->size, cat(q, ": ", prefix, "data.pkl"));
  const Value root = u.run();
  if (root.kind != Kind::Dict) fail_data(cat(q, ": the pickle holds ", kind_name(root.kind), ", not a state dict"));

  TorchCheckpoint ck;
  ck.file_ = file;
  for (const auto& [k, v] : u.dicts_[root.ref]) {
    if (k.kind != Kind::Str) fail_data(cat(q, ": a state dict key is ", kind_name(k.kind), ", not a string"));
    const std::string& name = u.strings_[k.ref];
    if (v.kind != Kind::Tensor)
      fail_data(cat(q, ": entry ", quote(name), " is ", kind_name(v.kind), ", not a tensor (lmkit reads state dicts: name -> tensor)"));
    const TensorRef& t = u.tensors_[v.ref];
    const StorageRef& s = u.storages_[t.storage];
    const std::string what = cat(q, ": tensor ", quote(name));
    TorchTensorInfo info;
    info.name = name;
    info.dtype = s.dtype;
    info.shape = t.shape;
    info.stride = t.stride;
    const int64_t numel = shape_numel(t.shape, what);
    if (t.offset < 0) fail_data(cat(what, ": negative storage offset ", t.offset));
    // The last element it reaches must lie inside the storage; every stride is non-negative.
    uint64_t last = static_cast<uint64_t>(t.offset);
    int64_t expect = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
      if (t.stride[d] < 0) fail_data(cat(what, ": negative stride ", t.stride[d]));
      uint64_t reach;
      if (t.shape[d] > 0 && (__builtin_mul_overflow(static_cast<uint64_t>(t.shape[d] - 1), static_cast<uint64_t>(t.stride[d]), &reach) ||
                             __builtin_add_overflow(last, reach, &last)))
        fail_data(cat(what, ": strides overflow"));
      if (t.shape[d] != 1 && t.stride[d] != expect) info.contiguous = false;
      if (__builtin_mul_overflow(expect, t.shape[d] == 0 ? 1 : t.shape[d], &expect)) info.contiguous = false;
    }
    if (numel == 0) info.contiguous = true;  // nothing to copy, nothing to reach
    if (numel > 0 && last >= s.numel)
      fail_data(cat(what, ": shape ", shape_str(t.shape), " at offset ", t.offset, " reaches element ", last, " of a storage of ", s.numel));
    // A strided tensor is copied out when read: no more elements than its storage holds (a stride
    // of 0 could otherwise ask for any amount of memory).
    if (!info.contiguous && static_cast<uint64_t>(numel) > s.numel)
      fail_data(cat(what, ": ", numel, " elements with overlapping strides over a storage of ", s.numel));
    info.offset = s.entry->offset + static_cast<uint64_t>(t.offset) * dtype_size(s.dtype);
    info.storage = s.entry->name.substr(prefix.size() + 5);
    ck.tensors_.push_back(std::move(info));
  }
  ck.by_name_.resize(ck.tensors_.size());
  for (uint32_t i = 0; i < ck.by_name_.size(); ++i) ck.by_name_[i] = i;
  const auto& ts = ck.tensors_;
  std::sort(ck.by_name_.begin(), ck.by_name_.end(), [&](uint32_t a, uint32_t b) { return ts[a].name < ts[b].name; });
  for (size_t i = 1; i < ck.by_name_.size(); ++i)
    if (ts[ck.by_name_[i]].name == ts[ck.by_name_[i - 1]].name)
      fail_data(cat(q, ": tensor ", quote(ts[ck.by_name_[i]].name), " appears twice in the state dict"));
  return ck;
}

const std::string& TorchCheckpoint::path() const { return file_->path(); }

const TorchTensorInfo* TorchCheckpoint::find(const std::string& name) const {
  const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                   [&](uint32_t i, const std::string& n) { return tensors_[i].name < n; });
  return it == by_name_.end() || tensors_[*it].name != name ? nullptr : &tensors_[*it];
}

Tensor TorchCheckpoint::get(const std::string& name) const {
  const TorchTensorInfo* t = find(name);
  if (!t) fail_data(cat("no tensor ", quote(name), " in ", quote(path())));
  return get(*t);
}

Tensor TorchCheckpoint::get(const TorchTensorInfo& t) const {
  const uint8_t* base = file_->data() + t.offset;
  const size_t es = dtype_size(t.dtype), nd = t.shape.size();
  // torch.save aligns each storage to 64 bytes; other zip writers need not, and a view must
  // keep its element type's alignment: such an entry is copied.
  const bool aligned = reinterpret_cast<uintptr_t>(base) % es == 0;
  if (t.contiguous && aligned) return Tensor::view(t.dtype, t.shape, base, file_);
  Tensor out = Tensor::zeros(t.dtype, t.shape);
  auto* dst = static_cast<uint8_t*>(out.raw_mut());
  if (t.contiguous) {
    if (out.numel() > 0) std::memcpy(dst, base, static_cast<size_t>(out.numel()) * es);
    return out;
  }
  // A strided view (a transpose saved as is): copied out element by element, row-major.
  std::vector<int64_t> idx(nd, 0);
  for (int64_t k = 0, n = out.numel(); k < n; ++k) {
    uint64_t off = 0;
    for (size_t d = 0; d < nd; ++d) off += static_cast<uint64_t>(idx[d]) * static_cast<uint64_t>(t.stride[d]);
    std::memcpy(dst + static_cast<size_t>(k) * es, base + off * es, es);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < t.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace lm
