#include "convert/rules.h"

#include <fnmatch.h>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "core/regex.h"
#include "io/stream.h"
#include "model/params.h"

namespace lm::convert {

namespace {

using json = nlohmann::json;

struct KindName {
  Rule::Kind kind;
  const char* name;
};
constexpr KindName kKinds[] = {
    {Rule::Kind::Rename, "rename"},
    {Rule::Kind::Drop, "drop"},
    {Rule::Kind::Transpose, "transpose"},
    {Rule::Kind::Split, "split"},
    {Rule::Kind::Fuse, "fuse"},
    {Rule::Kind::RopeToHalf, "rope-to-half"},
    {Rule::Kind::RopeToInterleaved, "rope-to-interleaved"},
    {Rule::Kind::Cast, "cast"},
};

[[noreturn]] void bad_rule(const std::string& option, const std::string& arg, const std::string& why,
                           const std::string& hint = {}) {
  fail(ErrorKind::Usage, cat("bad --", option, " ", quote(arg), ": ", why), hint);
}

Regex compile(const std::string& option, const std::string& arg, const std::string& re) {
  try {
    return Regex(re);
  } catch (const Error& e) {
    bad_rule(option, arg, e.what());
  }
}

// sed's \1 becomes ECMAScript's $1 (what Regex::format reads); a literal '$' is written '$$'.
std::string to_format(const std::string& repl) {
  std::string out;
  for (size_t i = 0; i < repl.size(); ++i) {
    if (repl[i] == '\\' && i + 1 < repl.size() && std::isdigit(static_cast<unsigned char>(repl[i + 1]))) {
      out += '$';
      continue;
    }
    out += repl[i];
  }
  return out;
}

// "...@DIM" -> DIM (default 0); strips the suffix from `s`.
int take_dim(std::string& s, const std::string& option, const std::string& arg) {
  const size_t at = s.rfind('@');
  if (at == std::string::npos) return 0;
  const std::string d = s.substr(at + 1);
  if (d.empty() || d.size() > 2 || !std::all_of(d.begin(), d.end(), ::isdigit))
    bad_rule(option, arg, cat("the dimension after '@' must be a small number, got ", quote(d)));
  s.resize(at);
  return std::stoi(d);
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

const char* dtype_option_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    default: return "?";
  }
}

std::string describe(const Rule& r) { return cat("--", r.option(), " ", quote(r.arg)); }

// A name a rule makes. Bounded: renames that repeat a name ("(.*)=$1$1") would otherwise
// double it with every rule, to gigabytes within a few dozen rules.
constexpr size_t kMaxTensorName = 4096;
std::string rule_name(const Rule& r, std::string name) {
  if (name.size() > kMaxTensorName)
    fail_data(cat(describe(r), " makes a tensor name of ", name.size(), " bytes (at most ", kMaxTensorName, ")"));
  return name;
}

// Position of each node by name, for fuse partners and duplicate checks.
std::map<std::string, size_t> index_of(const std::vector<Node>& nodes) {
  std::map<std::string, size_t> idx;
  for (size_t i = 0; i < nodes.size(); ++i) idx[nodes[i].name] = i;
  return idx;
}

void check_unique(const std::vector<Node>& nodes, const Rule& r) {
  std::map<std::string, const Node*> seen;
  for (const Node& n : nodes) {
    auto [it, fresh] = seen.emplace(n.name, &n);
    if (!fresh) {
      const std::string a = it->second->from.empty() ? "?" : it->second->from[0].name;
      const std::string b = n.from.empty() ? "?" : n.from[0].name;
      fail_data(cat(describe(r), " gives two tensors the name ", quote(n.name), " (from ", quote(a), " and ", quote(b), ")"));
    }
  }
}

// A node computed from `inputs` by `f`; the inputs' mapped pages are released once computed.
Node derived(std::string name, DType dtype, Shape shape, const std::vector<const Node*>& inputs, std::string op,
             std::function<Tensor(std::vector<Tensor>&)> f) {
  Node out;
  out.name = std::move(name);
  out.dtype = dtype;
  out.shape = std::move(shape);
  for (const Node* in : inputs) {
    out.from.insert(out.from.end(), in->from.begin(), in->from.end());
    out.ops.insert(out.ops.end(), in->ops.begin(), in->ops.end());
  }
  out.ops.push_back(std::move(op));
  std::vector<Node> copies;
  for (const Node* in : inputs) copies.push_back(*in);
  auto shared = std::make_shared<std::vector<Node>>(std::move(copies));
  out.load = [shared, f = std::move(f)]() {
    std::vector<Tensor> ts;
    for (const Node& n : *shared) {
      ts.push_back(n.load());
      if (n.mapped) populate_pages(ts.back().raw(), ts.back().nbytes());
    }
    Tensor result = f(ts);
    ts.clear();
    for (const Node& n : *shared)
      if (n.release) n.release();
    return result;
  };
  return out;
}

int64_t resolve_heads(const Rule& r, const ModelConfig* cfg) {
  if (r.heads == "q" || r.heads == "k") {
    if (!cfg) return 0;
    return r.heads == "q" ? cfg->n_heads : cfg->kv_heads();
  }
  return std::stoll(r.heads);
}

void apply_split(Graph& g, const Rule& r, const ModelConfig* cfg) {
  const Regex re(r.pattern);
  std::unique_ptr<ParameterLayout> layout;
  if (cfg) layout = std::make_unique<ParameterLayout>(*cfg);
  std::vector<Node> out;
  for (Node& n : g.nodes) {
    Regex::Match m;
    if (!re.full_match(n.name, &m)) {
      out.push_back(std::move(n));
      continue;
    }
    const int d = r.dim;
    if (d >= static_cast<int>(n.shape.size()))
      fail_data(cat(describe(r), ": tensor ", quote(n.name), " has shape ", shape_str(n.shape), ", no dimension ", d));
    std::vector<std::string> names;
    for (const auto& p : r.parts) names.push_back(rule_name(r, Regex::format(m, to_format(p))));
    std::vector<int64_t> sizes = r.sizes;
    const int64_t total = n.shape[d];
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] > 0) continue;
      const ParamInfo* p = layout ? layout->find(names[i]) : nullptr;
      if (p && static_cast<size_t>(d) < p->shape.size()) sizes[i] = p->shape[d];
    }
    int64_t known = 0, unknown = 0;
    for (int64_t s : sizes) (s > 0 ? known += s : ++unknown);
    if (unknown > 0) {
      if (total < known || (total - known) % unknown != 0)
        fail_data(cat(describe(r), ": cannot split ", quote(n.name), " ", shape_str(n.shape), " along dimension ", d,
                      " into ", sizes.size(), " parts: ", total - known, " is not a multiple of ", unknown));
      for (int64_t& s : sizes)
        if (s == 0) s = (total - known) / unknown;
    }
    int64_t sum = 0;
    std::string parts_desc;
    for (size_t i = 0; i < sizes.size(); ++i) {
      sum += sizes[i];
      parts_desc += cat(i ? ", " : "", quote(names[i]), " ", sizes[i]);
    }
    if (sum != total)
      fail_data(cat(describe(r), ": shape mismatch: ", quote(n.name), " has ", total, " along dimension ", d, " (shape ",
                    shape_str(n.shape), "), the parts need ", sum, " (", parts_desc, ")"));
    for (size_t i = 0; i < names.size(); ++i) {
      Shape s = n.shape;
      s[d] = sizes[i];
      const size_t which = i;
      out.push_back(derived(names[i], n.dtype, s, {&n}, cat("split ", which + 1, "/", names.size(), " dim ", d),
                            [d, sizes, which](std::vector<Tensor>& in) {
                              return std::move(split_tensor(in[0], d, sizes)[which]);
                            }));
    }
  }
  g.nodes = std::move(out);
  check_unique(g.nodes, r);
}

void apply_fuse(Graph& g, const Rule& r) {
  const Regex re(r.pattern);
  std::map<std::string, size_t> idx = index_of(g.nodes);
  std::set<size_t> consumed;
  std::vector<Node> fused;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& first = g.nodes[i];
    Regex::Match m;
    if (!re.full_match(first.name, &m)) continue;
    std::vector<const Node*> inputs{&first};
    for (const auto& p : r.parts) {
      const std::string partner = Regex::format(m, to_format(p));
      const auto it = idx.find(partner);
      if (it == idx.end())
        fail_data(cat(describe(r), ": ", quote(first.name), " has no partner ", quote(partner)));
      inputs.push_back(&g.nodes[it->second]);
    }
    const int d = r.dim;
    Shape shape = first.shape;
    if (d >= static_cast<int>(shape.size()))
      fail_data(cat(describe(r), ": tensor ", quote(first.name), " has shape ", shape_str(shape), ", no dimension ", d));
    for (size_t k = 1; k < inputs.size(); ++k) {
      const Node& p = *inputs[k];
      if (p.dtype != first.dtype)
        fail_data(cat(describe(r), ": ", quote(first.name), " is ", dtype_name(first.dtype), ", ", quote(p.name), " is ",
                      dtype_name(p.dtype)));
      Shape a = first.shape, b = p.shape;
      if (a.size() != b.size() || (a[d] = 0, b[d] = 0, a != b))
        fail_data(cat(describe(r), ": shape mismatch: ", quote(first.name), " ", shape_str(first.shape), " and ",
                      quote(p.name), " ", shape_str(p.shape), " differ outside dimension ", d));
      shape[d] += p.shape[d];
    }
    for (const Node* in : inputs) consumed.insert(static_cast<size_t>(in - g.nodes.data()));
    fused.push_back(derived(rule_name(r, Regex::format(m, to_format(r.replacement))), first.dtype, shape, inputs, cat("fuse dim ", d),
                            [d](std::vector<Tensor>& in) { return fuse_tensors(in, d); }));
  }
  std::vector<Node> out;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!consumed.count(i)) out.push_back(std::move(g.nodes[i]));
  for (Node& f : fused) out.push_back(std::move(f));
  g.nodes = std::move(out);
  check_unique(g.nodes, r);
}

// Output buffers for the transforms: not zeroed (every byte is written), and freed ones are kept
// for the next tensors. Fresh pages are expensive here (a page fault each, paravirtualized on a
// VM): reusing a few resident blocks, and mapping new ones in bulk, keeps transforms at memory
// speed. At most kIdle blocks wait, so the pool holds a few of the largest tensors at most.
class BufferPool {
 public:
  // Null when the memory cannot be had.
  std::shared_ptr<void> get(size_t n) {
    n = std::max<size_t>(64, (n + 63) / 64 * 64);
    void* p = nullptr;
    size_t cap = n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t best = idle_.size();
      for (size_t i = 0; i < idle_.size(); ++i)
        if (idle_[i].second >= n && (best == idle_.size() || idle_[i].second < idle_[best].second)) best = i;
      if (best < idle_.size()) {
        std::tie(p, cap) = idle_[best];
        idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(best));
      }
    }
    if (!p) {
      p = std::aligned_alloc(64, cap);
      if (!p) return nullptr;
#ifdef MADV_POPULATE_WRITE
      static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
      const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
      const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + cap) & ~(page - 1);
      if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_POPULATE_WRITE);
#endif
    }
    return std::shared_ptr<void>(p, [this, cap](void* q) { put(q, cap); });
  }

 private:
  static constexpr size_t kIdle = 3;
  void put(void* q, size_t cap) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.emplace_back(q, cap);
    if (idle_.size() > kIdle) {  // free the smallest
      auto smallest = std::min_element(idle_.begin(), idle_.end(), [](auto& a, auto& b) { return a.second < b.second; });
      std::free(smallest->first);
      idle_.erase(smallest);
    }
  }
  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> idle_;
};

// A tensor of `dtype` and `shape` whose bytes the caller writes through `*data` before use.
Tensor output_tensor(DType dtype, const Shape& shape, uint8_t** data) {
  static BufferPool* pool = new BufferPool();  // never destroyed: buffers may outlive static destructors
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  std::shared_ptr<void> owner = pool->get(bytes);
  if (!owner)
    fail(ErrorKind::Runtime,
         cat("cannot allocate ", bytes, " bytes for a ", shape_str(shape), " ", dtype_name(dtype), " tensor: out of memory"));
  void* p = owner.get();  // before the move below (argument order is unspecified)
  *data = static_cast<uint8_t*>(p);
  return Tensor::view(dtype, shape, p, std::move(owner));
}

// Tiles of 64 x 64 (16 KB of f32): each output row segment is written contiguously while the
// tile's input rows stay in L1. Output blocks are split among threads.
template <class T>
void transpose_typed(const uint8_t* src, uint8_t* dst, int64_t R, int64_t C) {
  constexpr int64_t B = 64;
  T* d = reinterpret_cast<T*>(dst);  // output buffers are 64-byte aligned
  auto tiles = [&](auto load) {
#pragma omp parallel for schedule(static) if (R * C > (1 << 16))
    for (int64_t c0 = 0; c0 < C; c0 += B)
      for (int64_t r0 = 0; r0 < R; r0 += B) {
        const int64_t r1 = std::min(R, r0 + B), c1 = std::min(C, c0 + B);
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t r = r0; r < r1; ++r) d[c * R + r] = load(r * C + c);
      }
  };
  if (reinterpret_cast<uintptr_t>(src) % alignof(T) == 0) {
    const T* s = reinterpret_cast<const T*>(src);
    tiles([s](int64_t i) { return s[i]; });
  } else {  // mapped data may be unaligned
    tiles([src](int64_t i) {
      T v;
      std::memcpy(&v, src + i * sizeof(T), sizeof(T));
      return v;
    });
  }
}

// out[i] = f(in[i]) in blocks copied through aligned locals (the input may be unaligned), so the
// per-element loop is plain and vectorizes where f allows.
template <class In, class Out, class F>
void map_elements(const uint8_t* src, uint8_t* dst, int64_t n, F f) {
  Out* out = reinterpret_cast<Out*>(dst);  // output buffers are 64-byte aligned
  if (reinterpret_cast<uintptr_t>(src) % alignof(In) == 0) {
    const In* in = reinterpret_cast<const In*>(src);
#pragma omp parallel for simd schedule(static) if (n > (1 << 18))
    for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
    return;
  }
  constexpr int64_t kBlock = 4096;  // unaligned input: through an aligned local block
#pragma omp parallel for schedule(static) if (n > (1 << 18))
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(n - b, kBlock);
    alignas(64) In in[kBlock];
    std::memcpy(in, src + b * sizeof(In), m * sizeof(In));
    for (int64_t i = 0; i < m; ++i) out[b + i] = f(in[i]);
  }
}

// f32 -> f16 with the F16C instruction (IEEE round to nearest even, as f32_to_f16), eight at a time;
// NaN lanes take lmkit's canonical NaN so results equal f32_to_f16 bit for bit.
void f32_to_f16_block(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    if (const int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
      for (int j = 0; j < 8; ++j)
        if (nan >> j & 1) out[i + j] = f32_to_f16(in[i + j]);
  }
#endif
  for (; i < n; ++i) out[i] = f32_to_f16(in[i]);
}

inline uint16_t bits_to_bf16(uint32_t u) {  // f32_to_bf16 on the bits: round to nearest even, NaN stays NaN
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

const char* Rule::option() const {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

void populate_pages(const void* p, size_t n) {
#ifdef MADV_POPULATE_READ
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  if (n > 0) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ);
#else
  (void)p, (void)n;
#endif
}

void drop_mapped_pages(const void* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
  const uintptr_t b = (begin + page - 1) & ~(page - 1), e = end & ~(page - 1);
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

bool glob_match(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

Rule parse_rule(const std::string& option, const std::string& arg) {
  Rule r;
  r.arg = arg;
  bool known = false;
  for (const auto& k : kKinds)
    if (option == k.name) {
      r.kind = k.kind;
      known = true;
    }
  if (!known) {
    std::string names;
    for (const auto& k : kKinds) names += (names.empty() ? "" : ", ") + std::string(k.name);
    fail(ErrorKind::Usage, cat("unknown rule ", quote(option)), "rules are " + names);
  }
  switch (r.kind) {
    case Rule::Kind::Rename: {
      const size_t eq = arg.rfind('=');
      if (eq == std::string::npos || eq == 0) bad_rule(option, arg, "expected REGEX=REPLACEMENT");
      r.pattern = arg.substr(0, eq);
      r.replacement = arg.substr(eq + 1);
      compile(option, arg, r.pattern);
      break;
    }
    case Rule::Kind::Drop:
      if (arg.empty()) bad_rule(option, arg, "expected a GLOB (e.g. '*.inv_freq')");
      r.pattern = arg;
      break;
    case Rule::Kind::Transpose: {
      if (arg.empty()) bad_rule(option, arg, "expected a GLOB (e.g. '*.kernel') or GLOB=E");
      const size_t eq = arg.rfind('=');
      r.pattern = arg.substr(0, eq);
      if (eq != std::string::npos) {
        r.stack = arg.substr(eq + 1);
        const bool number = !r.stack.empty() && r.stack.size() < 7 &&
                            std::all_of(r.stack.begin(), r.stack.end(), ::isdigit) && std::stoll(r.stack) > 0;
        if (r.pattern.empty() || (r.stack != "experts" && !number))
          bad_rule(option, arg, cat("the stack count must be 'experts' (moe.n_experts) or a positive number, got ", quote(r.stack)));
      }
      break;
    }
    case Rule::Kind::RopeToHalf:
    case Rule::Kind::RopeToInterleaved: {
      const size_t eq = arg.rfind('=');
      if (eq == std::string::npos || eq == 0) bad_rule(option, arg, "expected GLOB=q, GLOB=k or GLOB=HEADS");
      r.pattern = arg.substr(0, eq);
      r.heads = arg.substr(eq + 1);
      const bool number = !r.heads.empty() && r.heads.size() < 7 && std::all_of(r.heads.begin(), r.heads.end(), ::isdigit) &&
                          std::stoll(r.heads) > 0;
      if (r.heads != "q" && r.heads != "k" && !number)
        bad_rule(option, arg, cat("the head count must be q (n_heads), k (n_kv_heads) or a positive number, got ", quote(r.heads)));
      break;
    }
    case Rule::Kind::Split: {
      std::string s = arg;
      r.dim = take_dim(s, option, arg);
      const size_t eq = s.rfind('=');
      if (eq == std::string::npos || eq == 0) bad_rule(option, arg, "expected NAME=A,B[,C][@DIM]");
      r.pattern = s.substr(0, eq);
      compile(option, arg, r.pattern);
      for (std::string p : split_list(s.substr(eq + 1), ',')) {
        int64_t size = 0;
        const size_t colon = p.rfind(':');
        if (colon != std::string::npos) {
          const std::string n = p.substr(colon + 1);
          if (n.empty() || n.size() > 12 || !std::all_of(n.begin(), n.end(), ::isdigit) || std::stoll(n) == 0)
            bad_rule(option, arg, cat("part size after ':' must be a positive number, got ", quote(n)));
          size = std::stoll(n);
          p.resize(colon);
        }
        if (p.empty()) bad_rule(option, arg, "empty part name");
        r.parts.push_back(p);
        r.sizes.push_back(size);
      }
      if (r.parts.size() < 2) bad_rule(option, arg, "a split needs at least two parts");
      break;
    }
    case Rule::Kind::Fuse: {
      std::string s = arg;
      r.dim = take_dim(s, option, arg);
      const size_t eq = s.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) bad_rule(option, arg, "expected A,B[,C]=NAME[@DIM]");
      r.replacement = s.substr(eq + 1);
      std::vector<std::string> ins = split_list(s.substr(0, eq), ',');
      if (ins.size() < 2) bad_rule(option, arg, "a fuse needs at least two inputs");
      for (const auto& p : ins)
        if (p.empty()) bad_rule(option, arg, "empty input name");
      r.pattern = ins[0];
      compile(option, arg, r.pattern);
      r.parts.assign(ins.begin() + 1, ins.end());
      break;
    }
    case Rule::Kind::Cast:
      if (arg == "f32") r.dtype = DType::F32;
      else if (arg == "f16") r.dtype = DType::F16;
      else if (arg == "bf16") r.dtype = DType::BF16;
      else bad_rule(option, arg, "expected f32, f16 or bf16");
      break;
  }
  return r;
}

std::vector<Rule> parse_rules_json(const std::string& text, const std::string& source) {
  json j = parse_json_strict(text, cat(quote(source), ": "));
  if (j.is_object() && j.contains("rules") && j.size() == 1) j = j["rules"];
  if (!j.is_array())
    fail_data(cat(quote(source), ": expected an array of rules like [{\"rename\": \"a=b\"}, {\"drop\": \"*.x\"}]"));
  std::vector<Rule> rules;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& e = j[i];
    if (!e.is_object() || e.size() != 1 || !e.begin().value().is_string())
      fail_data(cat(quote(source), ": rule ", i + 1, ": expected one key with a string value, e.g. {\"drop\": \"*.inv_freq\"}"));
    try {
      rules.push_back(parse_rule(e.begin().key(), e.begin().value().get<std::string>()));
    } catch (const Error& err) {
      fail(ErrorKind::Data, cat(quote(source), ": rule ", i + 1, ": ", err.what()), err.hint());
    }
  }
  return rules;
}

std::vector<Rule> parse_rules_file(const std::string& path) { return parse_rules_json(read_text_file(path), path); }

std::string rules_to_json(const std::vector<Rule>& rules) {
  std::string out = "[\n";
  for (size_t i = 0; i < rules.size(); ++i) {
    json one;
    one[rules[i].option()] = rules[i].arg;
    out += "  " + one.dump() + (i + 1 < rules.size() ? ",\n" : "\n");
  }
  return out + "]\n";
}

void apply_rule(Graph& g, const Rule& r, const ModelConfig* cfg) {
  switch (r.kind) {
    case Rule::Kind::Rename: {
      const Regex re(r.pattern);
      const std::string fmt = to_format(r.replacement);
      bool any = false;
      for (Node& n : g.nodes)
        if (re.search(n.name)) {
          n.name = rule_name(r, re.replace_all(n.name, fmt));
          any = true;
        }
      if (any) check_unique(g.nodes, r);
      break;
    }
    case Rule::Kind::Drop: {
      std::vector<Node> keep;
      for (Node& n : g.nodes) {
        if (glob_match(r.pattern, n.name))
          g.dropped.insert(g.dropped.end(), n.from.begin(), n.from.end());
        else
          keep.push_back(std::move(n));
      }
      g.nodes = std::move(keep);
      break;
    }
    case Rule::Kind::Transpose: {
      // Stacked tensors (experts [E, out, in]) transpose each slice; "=E" also unflattens [E*R, C].
      const int64_t E = r.stack.empty() ? 0 : r.stack == "experts" ? (cfg ? cfg->moe.n_experts : 0) : std::stoll(r.stack);
      for (Node& n : g.nodes) {
        if (!glob_match(r.pattern, n.name)) continue;
        if (n.shape.size() == 3) {
          n = derived(n.name, n.dtype, {n.shape[0], n.shape[2], n.shape[1]}, {&n}, "transpose each slice",
                      [](std::vector<Tensor>& in) { return transpose_stacked(in[0], in[0].dim(0)); });
          continue;
        }
        if (n.shape.size() != 2)
          fail_data(cat(describe(r), ": tensor ", quote(n.name), " has shape ", shape_str(n.shape), ", a transpose needs 2 or 3 dimensions"));
        if (!r.stack.empty()) {
          if (E <= 0) continue;  // no config yet (a shape probe): the experts' count is unknown
          if (n.shape[0] % E != 0)
            fail_data(cat(describe(r), ": tensor ", quote(n.name), " has ", n.shape[0], " rows, not a multiple of ", E, " experts"));
          n = derived(n.name, n.dtype, {E, n.shape[1], n.shape[0] / E}, {&n}, cat("view as ", E, " stacked, transpose each"),
                      [E](std::vector<Tensor>& in) { return transpose_stacked(in[0], E); });
          continue;
        }
        n = derived(n.name, n.dtype, {n.shape[1], n.shape[0]}, {&n}, "transpose",
                    [](std::vector<Tensor>& in) { return transpose_2d(in[0]); });
      }
      break;
    }
    case Rule::Kind::RopeToHalf:
    case Rule::Kind::RopeToInterleaved: {
      const bool to_half = r.kind == Rule::Kind::RopeToHalf;
      const int64_t heads = resolve_heads(r, cfg);
      for (Node& n : g.nodes) {
        if (!glob_match(r.pattern, n.name)) continue;
        if (n.shape.empty())
          fail_data(cat(describe(r), ": tensor ", quote(n.name), " is a scalar, it has no rows to permute"));
        if (heads > 0 && (n.shape[0] % heads != 0 || (n.shape[0] / heads) % 2 != 0))
          fail_data(cat(describe(r), ": shape mismatch: tensor ", quote(n.name), " has ", n.shape[0], " rows, not ", heads,
                        " heads of an even size"));
        const std::string what = r.heads == "q" || r.heads == "k" ? r.heads : cat(heads, " heads");
        n = derived(n.name, n.dtype, n.shape, {&n}, cat("rope ", what, to_half ? " to half-split" : " to interleaved"),
                    [heads, to_half](std::vector<Tensor>& in) {
                      if (heads <= 0) fail(ErrorKind::Runtime, "internal: RoPE permutation without a head count");
                      return rope_permute_rows(in[0], heads, to_half);
                    });
      }
      break;
    }
    case Rule::Kind::Split:
      apply_split(g, r, cfg);
      break;
    case Rule::Kind::Fuse:
      apply_fuse(g, r);
      break;
    case Rule::Kind::Cast:
      cast_all(g, r.dtype, false);
      break;
  }
}

void apply_rules(Graph& g, const std::vector<Rule>& rules, const ModelConfig* cfg) {
  for (const Rule& r : rules) apply_rule(g, r, cfg);
}

void cast_all(Graph& g, DType dtype, bool skip_1d) {
  for (Node& n : g.nodes) {
    if (!is_float(n.dtype))
      fail_data(cat("wrong dtype: cannot cast tensor ", quote(n.name), " (", dtype_name(n.dtype), ") to ", dtype_name(dtype),
                    ": only F32, F16 and BF16 tensors convert"));
    if (n.dtype == dtype || (skip_1d && n.shape.size() <= 1)) continue;
    n = derived(n.name, dtype, n.shape, {&n}, cat("cast ", dtype_option_name(dtype)),
                [dtype](std::vector<Tensor>& in) { return cast_tensor(in[0], dtype); });
  }
}

Tensor transpose_2d(const Tensor& t) {
  if (t.ndim() != 2) fail(ErrorKind::Runtime, "internal: transpose_2d of a tensor that is not 2-D");
  const int64_t R = t.dim(0), C = t.dim(1);
  uint8_t* dst;
  Tensor out = output_tensor(t.dtype(), {C, R}, &dst);
  const auto* src = static_cast<const uint8_t*>(t.raw());
  switch (dtype_size(t.dtype())) {
    case 1: transpose_typed<uint8_t>(src, dst, R, C); break;
    case 2: transpose_typed<uint16_t>(src, dst, R, C); break;
    case 4: transpose_typed<uint32_t>(src, dst, R, C); break;
    case 8: transpose_typed<uint64_t>(src, dst, R, C); break;
    default: fail(ErrorKind::Runtime, "internal: element size");
  }
  return out;
}

Tensor transpose_stacked(const Tensor& t, int64_t E) {
  const int64_t R = t.ndim() == 3 ? t.dim(1) : t.dim(0) / E, C = t.ndim() == 3 ? t.dim(2) : t.dim(1);
  if (E <= 0 || t.numel() != E * R * C) fail(ErrorKind::Runtime, "internal: transpose_stacked shape");
  uint8_t* dst;
  Tensor out = output_tensor(t.dtype(), {E, C, R}, &dst);
  const auto* src = static_cast<const uint8_t*>(t.raw());
  const size_t es = dtype_size(t.dtype()), slice = static_cast<size_t>(R * C) * es;
  for (int64_t e = 0; e < E; ++e) {
    const uint8_t* s = src + static_cast<size_t>(e) * slice;
    uint8_t* d = dst + static_cast<size_t>(e) * slice;
    switch (es) {
      case 1: transpose_typed<uint8_t>(s, d, R, C); break;
      case 2: transpose_typed<uint16_t>(s, d, R, C); break;
      case 4: transpose_typed<uint32_t>(s, d, R, C); break;
      case 8: transpose_typed<uint64_t>(s, d, R, C); break;
      default: fail(ErrorKind::Runtime, "internal: element size");
    }
  }
  return out;
}

Tensor rope_permute_rows(const Tensor& t, int64_t heads, bool to_half) {
  const int64_t rows = t.dim(0);
  const int64_t HS = rows / heads;
  const size_t row_bytes = t.numel() == 0 ? 0 : t.nbytes() / static_cast<size_t>(rows);
  uint8_t* dst;
  Tensor out = output_tensor(t.dtype(), t.shape(), &dst);
  const auto* src = static_cast<const uint8_t*>(t.raw());
  // Half-split row h*HS + j*HS/2 + i holds interleaved row h*HS + 2i + j.
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < HS / 2; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t half = h * HS + j * (HS / 2) + i, inter = h * HS + 2 * i + j;
        const int64_t from = to_half ? inter : half, to = to_half ? half : inter;
        std::memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
      }
  return out;
}

std::vector<Tensor> split_tensor(const Tensor& t, int dim, const std::vector<int64_t>& sizes) {
  const Shape& s = t.shape();
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (size_t i = dim + 1; i < s.size(); ++i) inner *= s[i];
  const size_t es = dtype_size(t.dtype());
  const auto* src = static_cast<const uint8_t*>(t.raw());
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t n : sizes) {
    Shape ps = s;
    ps[dim] = n;
    uint8_t* dst;
    Tensor p = output_tensor(t.dtype(), ps, &dst);
    const size_t chunk = static_cast<size_t>(n * inner) * es, stride = static_cast<size_t>(s[dim] * inner) * es;
    for (int64_t o = 0; o < outer; ++o)
      if (chunk) std::memcpy(dst + o * chunk, src + o * stride + static_cast<size_t>(start * inner) * es, chunk);
    parts.push_back(std::move(p));
    start += n;
  }
  return parts;
}

Tensor fuse_tensors(const std::vector<Tensor>& parts, int dim) {
  Shape s = parts[0].shape();
  int64_t total = 0;
  for (const Tensor& p : parts) total += p.dim(dim);
  s[dim] = total;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (size_t i = dim + 1; i < s.size(); ++i) inner *= s[i];
  const size_t es = dtype_size(parts[0].dtype());
  uint8_t* dst;
  Tensor out = output_tensor(parts[0].dtype(), s, &dst);
  const size_t stride = static_cast<size_t>(total * inner) * es;
  size_t offset = 0;
  for (const Tensor& p : parts) {
    const size_t chunk = static_cast<size_t>(p.dim(dim) * inner) * es;
    const auto* src = static_cast<const uint8_t*>(p.raw());
    for (int64_t o = 0; o < outer; ++o)
      if (chunk) std::memcpy(dst + o * stride + offset, src + o * chunk, chunk);
    offset += chunk;
  }
  return out;
}

Tensor cast_tensor(const Tensor& t, DType dtype) {
  if (!is_float(t.dtype()) || !is_float(dtype))
    fail_data(cat("wrong dtype: cannot cast ", dtype_name(t.dtype()), " to ", dtype_name(dtype)));
  uint8_t* dst;
  Tensor out = output_tensor(dtype, t.shape(), &dst);
  const auto* src = static_cast<const uint8_t*>(t.raw());
  const int64_t n = t.numel();
  const DType from = t.dtype();
  if (from == dtype) {
    if (n) std::memcpy(dst, src, t.nbytes());
    return out;
  }
  using U16 = uint16_t;
  using U32 = uint32_t;
  auto to_f32 = [](float f) {
    U32 u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  if (from == DType::F32 && dtype == DType::BF16)
    map_elements<U32, U16>(src, dst, n, [](U32 u) { return bits_to_bf16(u); });
  else if (from == DType::F32 && dtype == DType::F16) {
    constexpr int64_t kBlock = 4096;
#pragma omp parallel for schedule(static) if (n > (1 << 18))
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t m = std::min(n - b, kBlock);
      alignas(64) float in[kBlock];
      std::memcpy(in, src + 4 * b, 4 * m);
      f32_to_f16_block(in, reinterpret_cast<uint16_t*>(dst) + b, m);
    }
  }
  else if (from == DType::BF16 && dtype == DType::F32)
    map_elements<U16, U32>(src, dst, n, [](U16 h) { return static_cast<U32>(h) << 16; });
  else if (from == DType::F16 && dtype == DType::F32)
    map_elements<U16, U32>(src, dst, n, [&](U16 h) { return to_f32(f16_to_f32(h)); });
  else if (from == DType::F16 && dtype == DType::BF16)
    map_elements<U16, U16>(src, dst, n, [&](U16 h) { return bits_to_bf16(to_f32(f16_to_f32(h))); });
  else  // BF16 -> F16
    map_elements<U16, U16>(src, dst, n, [](U16 h) { return f32_to_f16(bf16_to_f32(h)); });
  return out;
}

}  // namespace lm::convert

namespace lm::convert {

void stack_experts(Graph& g, const std::string& pattern, size_t expert_group, const std::string& target) {
  const Regex re(pattern);
  struct Group {
    std::vector<std::pair<int64_t, size_t>> members;  // (expert, node index)
  };
  std::map<std::string, Group> groups;
  std::vector<bool> taken(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Regex::Match m;
    if (!re.full_match(g.nodes[i].name, &m)) continue;
    const std::string e = m.group(expert_group);
    if (e.empty() || e.size() > 6 || e.find_first_not_of("0123456789") != std::string::npos) continue;
    groups[Regex::format(m, target)].members.emplace_back(std::stoll(e), i);
    taken[i] = true;
  }
  if (groups.empty()) return;
  std::vector<Node> stacked;
  for (auto& [name, grp] : groups) {
    std::sort(grp.members.begin(), grp.members.end());
    const Node& first = g.nodes[grp.members[0].second];
    for (size_t k = 0; k < grp.members.size(); ++k) {
      const Node& n = g.nodes[grp.members[k].second];
      if (grp.members[k].first != static_cast<int64_t>(k))
        fail_data(cat("per-expert tensors of ", quote(name), ": expert ", k, " is missing (got ", grp.members[k].first, ")"));
      if (n.shape != first.shape || n.dtype != first.dtype)
        fail_data(cat("per-expert tensors of ", quote(name), ": ", quote(n.name), " is ", dtype_name(n.dtype), " ",
                      shape_str(n.shape), ", ", quote(first.name), " is ", dtype_name(first.dtype), " ", shape_str(first.shape)));
    }
    Node out;
    out.name = name;
    out.dtype = first.dtype;
    out.shape = first.shape;
    out.shape.insert(out.shape.begin(), static_cast<int64_t>(grp.members.size()));
    std::vector<std::function<Tensor()>> loads;
    std::vector<std::function<void()>> releases;
    for (const auto& [e, idx] : grp.members) {
      Node& n = g.nodes[idx];
      out.from.insert(out.from.end(), n.from.begin(), n.from.end());
      loads.push_back(n.load);
      if (n.release) releases.push_back(n.release);
    }
    out.ops.push_back(cat("stack ", grp.members.size(), " experts"));
    const Shape shape = out.shape;
    out.load = [loads, shape] {
      std::vector<Tensor> parts;
      for (const auto& load : loads) parts.push_back(load());
      auto fused = std::make_shared<Tensor>(fuse_tensors(parts, 0));
      return Tensor::view(fused->dtype(), shape, fused->raw(), fused);
    };
    if (!releases.empty())
      out.release = [releases] {
        for (const auto& r : releases) r();
      };
    stacked.push_back(std::move(out));
  }
  std::vector<Node> keep;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!taken[i]) keep.push_back(std::move(g.nodes[i]));
  for (Node& n : stacked) keep.push_back(std::move(n));
  g.nodes = std::move(keep);
}

}  // namespace lm::convert

namespace lm::convert {

void unstack_experts(Graph& g, const std::string& pattern, const std::string& target) {
  const Regex re(pattern);
  std::vector<Node> out;
  for (Node& n : g.nodes) {
    Regex::Match m;
    if (!re.full_match(n.name, &m) || n.shape.size() < 2) {
      out.push_back(std::move(n));
      continue;
    }
    const std::string templ = Regex::format(m, target);
    const size_t at = templ.find("{e}");
    const int64_t E = n.shape[0];
    const Shape part(n.shape.begin() + 1, n.shape.end());
    const size_t bytes = static_cast<size_t>(shape_numel(part)) * dtype_size(n.dtype);
    auto whole = std::make_shared<std::function<Tensor()>>(n.load);
    for (int64_t e = 0; e < E; ++e) {
      Node x;
      x.name = at == std::string::npos ? templ : templ.substr(0, at) + std::to_string(e) + templ.substr(at + 3);
      x.dtype = n.dtype;
      x.shape = part;
      x.from = n.from;
      x.ops = n.ops;
      x.ops.push_back(cat("expert ", e, " of ", E));
      x.load = [whole, e, bytes, part] {
        auto t = std::make_shared<Tensor>((*whole)());
        return Tensor::view(t->dtype(), part, static_cast<const uint8_t*>(t->raw()) + bytes * static_cast<size_t>(e), t);
      };
      if (e == E - 1) x.release = n.release;
      out.push_back(std::move(x));
    }
  }
  g.nodes = std::move(out);
}

}  // namespace lm::convert
