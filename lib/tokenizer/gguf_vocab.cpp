#include "tokenizer/gguf_vocab.h"

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/sentencepiece.h"

namespace lm {

namespace {

using nlohmann::json;

// llama.cpp's LLAMA_TOKEN_TYPE_* (the same numbers as SentencePiece's piece types).
enum TokenType : int32_t { kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

GGUFValue i32_value(int64_t v) {
  GGUFValue x;
  x.type = GGUFValue::I32;
  x.i = v;
  return x;
}

GGUFValue array_of(GGUFValue::Type elem, std::vector<GGUFValue> items) {
  GGUFValue x;
  x.type = GGUFValue::Array;
  x.elem = elem;
  x.array = std::move(items);
  return x;
}

std::string pad_token(int64_t id) { return cat("[PAD", id, "]"); }

struct Vocab {
  std::vector<GGUFValue> tokens, scores, types;
  void add(std::string text, float score, int32_t type) {
    tokens.push_back(GGUFValue::str(std::move(text)));
    scores.push_back(GGUFValue::f32(score));
    types.push_back(i32_value(type));
  }
};

// Which llama.cpp pre-tokenizer name an hf-bpe tokenizer's steps are, or "" when none.
std::string pre_name(const HfBpeTokenizer& t) {
  const auto& steps = t.pre_tokenizer_steps();
  const auto& last = steps.back();  // ByteLevel (the loader requires it)
  if (last.add_prefix_space) return {};
  if (steps.size() == 1 && last.use_regex) return t.ignores_merges() ? "" : "gpt-2";
  if (steps.size() == 2 && !last.use_regex && steps[0].kind == hf::PreTokenizerStep::Split) {
    if (steps[0].pattern == hf::kLlama3Pattern) return t.ignores_merges() ? "llama-bpe" : "smaug-bpe";
    if (steps[0].pattern == hf::kGpt2Pattern && !t.ignores_merges()) return "gpt-2";
  }
  return {};
}

std::string describe_steps(const HfBpeTokenizer& t) {
  std::string s;
  for (const auto& step : t.pre_tokenizer_steps()) {
    if (!s.empty()) s += ", ";
    if (step.kind == hf::PreTokenizerStep::Split) s += "Split " + quote(step.pattern);
    else s += cat("ByteLevel (add_prefix_space ", step.add_prefix_space, ", use_regex ", step.use_regex, ")");
  }
  return s + cat("; ignore_merges ", t.ignores_merges());
}

const GGUFValue* find_array(const GGUFLookup& f, const std::string& key, GGUFValue::Type elem, size_t n, const std::string& q,
                            bool required) {
  const GGUFValue* v = f(key);
  if (!v) {
    if (required) fail_data(cat(q, ": GGUF key ", quote(key), " is missing"));
    return nullptr;
  }
  if (v->type != GGUFValue::Array || (elem != GGUFValue::Array && v->elem != elem))
    fail_data(cat(q, ": GGUF key ", quote(key), ": expected an array of ", gguf_value_type_name(elem)));
  if (n != SIZE_MAX && v->array.size() != n)
    fail_data(cat(q, ": GGUF key ", quote(key), " has ", v->array.size(), " entries for ", n, " tokens"));
  return v;
}

int64_t special_id(const GGUFLookup& f, const char* key, size_t n) {
  const GGUFValue* v = f(key);
  if (!v) return -1;
  const int64_t id = v->as_int(key);
  if (id < 0 || static_cast<size_t>(id) >= n) return -1;  // llama.cpp ignores an id outside the vocabulary
  return id;
}

bool flag(const GGUFLookup& f, const char* key, bool dflt) {
  const GGUFValue* v = f(key);
  return v ? v->as_int(key) != 0 : dflt;
}

}  // namespace

bool is_gguf_path(const std::string& path) {
  if (path == "-") return false;
  std::ifstream in(path, std::ios::binary);
  uint8_t magic[4] = {};
  return in.read(reinterpret_cast<char*>(magic), 4) && GGUFFile::has_magic(magic, 4);
}

std::string gguf_pre_tokenizer_pattern(const std::string& pre) {
  for (const char* n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe"})
    if (pre == n) return hf::kLlama3Pattern;
  for (const char* n : {"gpt-2", "phi-2", "roberta-bpe", "mpt", "olmo", "jais", "jina-es", "jina-de", "gigachat", "jina-v1-en",
                        "jina-v2-es", "jina-v2-de", "jina-v2-code"})
    if (pre == n) return hf::kGpt2Pattern;
  return {};
}

std::vector<std::pair<std::string, GGUFValue>> gguf_vocab_keys(const Tokenizer& tok, int64_t model_vocab) {
  const TokenizerSpec& spec = tok.spec();
  if (spec.kind == TokenizerKind::ByteV1)
    fail(ErrorKind::Unsupported, "a GGUF vocabulary for the byte-v1 tokenizer: llama.cpp has no tokenizer whose ids are bytes",
         "convert without a tokenizer (token ids in and out), or train with a SentencePiece or tokenizer.json tokenizer");
  if (spec.kind != TokenizerKind::SentencePiece && spec.kind != TokenizerKind::HfBpe)
    fail(ErrorKind::Unsupported, cat("a GGUF vocabulary for the ", tokenizer_kind_name(spec.kind), " tokenizer"));
  if (model_vocab < static_cast<int64_t>(spec.vocab_size))
    fail_data(cat("the tokenizer has ", spec.vocab_size, " tokens, more than the model's vocab_size ", model_vocab));

  std::vector<std::pair<std::string, GGUFValue>> kv;
  Vocab v;
  if (const auto* sp = dynamic_cast<const SentencePieceTokenizer*>(&tok)) {
    const auto& proto = sp->proto();
    for (const auto& p : proto.pieces) v.add(p.text, p.score, static_cast<int32_t>(p.type));
    for (int64_t id = static_cast<int64_t>(proto.pieces.size()); id < model_vocab; ++id) v.add(pad_token(id), 0, kUnused);
    kv.emplace_back("tokenizer.ggml.model", GGUFValue::str("llama"));
    kv.emplace_back("tokenizer.ggml.tokens", array_of(GGUFValue::String, std::move(v.tokens)));
    kv.emplace_back("tokenizer.ggml.scores", array_of(GGUFValue::F32, std::move(v.scores)));
    kv.emplace_back("tokenizer.ggml.token_type", array_of(GGUFValue::I32, std::move(v.types)));
    kv.emplace_back("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(proto.add_dummy_prefix));
    kv.emplace_back("tokenizer.ggml.remove_extra_whitespaces", GGUFValue::boolean(proto.remove_extra_whitespaces));
  } else if (const auto* bpe = dynamic_cast<const HfBpeTokenizer*>(&tok)) {
    const std::string pre = pre_name(*bpe);
    if (pre.empty())
      fail(ErrorKind::Unsupported,
           cat("a GGUF vocabulary for this tokenizer.json: llama.cpp has no pre-tokenizer that splits text as it does (",
               describe_steps(*bpe), ")"),
           "lmkit writes Llama 3's pre-tokenizer (\"llama-bpe\") and GPT-2's (\"gpt-2\")");
    for (uint32_t id = 0; id < spec.vocab_size; ++id) {
      switch (bpe->token_kind(id)) {
        case 0: v.add(pad_token(id), 0, kUnused); break;
        case 1: v.add(bpe->token_text(id), 0, kNormal); break;
        case 2: v.add(bpe->token_text(id), 0, kUserDefined); break;
        default: v.add(bpe->token_text(id), 0, kControl); break;
      }
    }
    for (int64_t id = spec.vocab_size; id < model_vocab; ++id) v.add(pad_token(id), 0, kUnused);
    std::vector<GGUFValue> merges;
    for (const auto& [a, b] : bpe->merges_by_rank()) merges.push_back(GGUFValue::str(bpe->token_text(a) + " " + bpe->token_text(b)));
    kv.emplace_back("tokenizer.ggml.model", GGUFValue::str("gpt2"));
    kv.emplace_back("tokenizer.ggml.pre", GGUFValue::str(pre));
    kv.emplace_back("tokenizer.ggml.tokens", array_of(GGUFValue::String, std::move(v.tokens)));
    kv.emplace_back("tokenizer.ggml.token_type", array_of(GGUFValue::I32, std::move(v.types)));
    kv.emplace_back("tokenizer.ggml.merges", array_of(GGUFValue::String, std::move(merges)));
  } else {
    fail(ErrorKind::Runtime, "internal: a tokenizer of an unknown class");
  }
  auto id_key = [&kv](const char* key, int32_t id) {
    if (id >= 0) kv.emplace_back(key, GGUFValue::u32(static_cast<uint32_t>(id)));
  };
  id_key("tokenizer.ggml.bos_token_id", spec.bos_id);
  id_key("tokenizer.ggml.eos_token_id", spec.eos_id);
  id_key("tokenizer.ggml.unknown_token_id", spec.unk_id);
  id_key("tokenizer.ggml.padding_token_id", spec.pad_id);
  kv.emplace_back("tokenizer.ggml.add_bos_token", GGUFValue::boolean(spec.bos_id >= 0));
  kv.emplace_back("tokenizer.ggml.add_eos_token", GGUFValue::boolean(false));
  return kv;
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GGUFFile& file, const std::string& name) {
  return tokenizer_from_gguf_keys([&file](const std::string& key) { return file.find(key); }, name);
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf_keys(const GGUFLookup& f, const std::string& name) {
  const std::string q = quote(name);
  const GGUFValue* model = f("tokenizer.ggml.model");
  if (!model) return nullptr;
  const std::string& kind = model->as_string("tokenizer.ggml.model");
  if (kind == "none" || kind == "no_vocab") return nullptr;
  if (kind != "llama" && kind != "gpt2")
    fail(ErrorKind::Unsupported, cat(q, ": the ", quote(kind), " tokenizer (tokenizer.ggml.model) is not supported"),
         "lmkit reads \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE) vocabularies");
  const GGUFValue* tokens = find_array(f, "tokenizer.ggml.tokens", GGUFValue::String, SIZE_MAX, q, true);
  size_t n = tokens->array.size();
  if (n == 0) fail_data(cat(q, ": GGUF key 'tokenizer.ggml.tokens' is empty"));
  const GGUFValue* types = find_array(f, "tokenizer.ggml.token_type", GGUFValue::I32, n, q, false);
  auto type_of = [&](size_t i) -> int32_t { return types ? static_cast<int32_t>(types->array[i].i) : kNormal; };
  auto text_of = [&](size_t i) -> const std::string& { return tokens->array[i].s; };
  // Trailing "[PAD<id>]" unused tokens fill a model's vocabulary beyond its tokenizer's.
  while (n > 1 && type_of(n - 1) == kUnused && text_of(n - 1) == pad_token(static_cast<int64_t>(n - 1))) --n;
  const int64_t bos = special_id(f, "tokenizer.ggml.bos_token_id", n);
  const int64_t eos = special_id(f, "tokenizer.ggml.eos_token_id", n);
  const int64_t pad = special_id(f, "tokenizer.ggml.padding_token_id", n);
  const int64_t unk = special_id(f, "tokenizer.ggml.unknown_token_id", n);

  if (kind == "llama") {
    const GGUFValue* scores = find_array(f, "tokenizer.ggml.scores", GGUFValue::F32, tokens->array.size(), q, false);
    sentencepiece::ModelProto proto;
    proto.model_type = 2;  // BPE, which is what llama.cpp runs for "llama"
    proto.pieces.resize(n);
    for (size_t i = 0; i < n; ++i) {
      auto& p = proto.pieces[i];
      p.text = text_of(i);
      p.score = scores ? static_cast<float>(scores->array[i].f) : 0.0f;
      const int32_t t = type_of(i);
      if (t < kUndefined || t > kByte) fail_data(cat(q, ": token ", i, " has unknown token_type ", t));
      p.type = t == kUndefined ? sentencepiece::PieceType::Normal : static_cast<sentencepiece::PieceType>(t);
      if (p.type == sentencepiece::PieceType::Byte) proto.byte_fallback = true;
    }
    // The pieces SentencePiece takes its special ids from, named by the ids llama.cpp uses
    // (its defaults for "llama": BOS 1, EOS 2, UNK 0, when the keys are absent).
    auto piece_text = [&](int64_t id) {
      return id >= 0 && static_cast<size_t>(id) < n ? proto.pieces[static_cast<size_t>(id)].text : std::string();
    };
    proto.bos_piece = piece_text(bos >= 0 ? bos : 1);
    proto.eos_piece = piece_text(eos >= 0 ? eos : 2);
    proto.unk_piece = piece_text(unk >= 0 ? unk : 0);
    proto.pad_piece = pad >= 0 ? proto.pieces[static_cast<size_t>(pad)].text : std::string();
    proto.add_dummy_prefix = flag(f, "tokenizer.ggml.add_space_prefix", true);
    proto.remove_extra_whitespaces = false;  // llama.cpp's SentencePiece tokenizer never removes spaces
    return SentencePieceTokenizer::from_proto(std::move(proto), name);
  }

  // "gpt2": a tokenizer.json made of the vocabulary, for HfBpeTokenizer's loader.
  std::string pre;
  if (const GGUFValue* p = f("tokenizer.ggml.pre")) pre = p->as_string("tokenizer.ggml.pre");
  const std::string pattern = gguf_pre_tokenizer_pattern(pre);
  if (pattern.empty())
    fail(ErrorKind::Unsupported,
         cat(q, ": the pre-tokenizer ", quote(pre.empty() ? std::string("default") : pre), " (tokenizer.ggml.pre) is not supported"),
         "lmkit splits text as Llama 3 (llama-bpe, llama3, llama-v3, falcon3, dbrx, smaug-bpe) and GPT-2 (gpt-2, phi-2, "
         "roberta-bpe, mpt, olmo, ...) do");
  const bool ignore_merges = pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3";
  const GGUFValue* merges = find_array(f, "tokenizer.ggml.merges", GGUFValue::String, SIZE_MAX, q, true);
  json vocab = json::object(), added = json::array(), merge_list = json::array();
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = type_of(i);
    if (t == kControl || t == kUserDefined)
      added.push_back({{"id", i}, {"content", text_of(i)}, {"special", t == kControl}});
    else if (t != kUnused)
      vocab[text_of(i)] = i;
  }
  for (const auto& m : merges->array) merge_list.push_back(m.s);
  json pre_tok;
  if (pattern == hf::kGpt2Pattern)
    pre_tok = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  else
    pre_tok = {{"type", "Sequence"},
               {"pretokenizers",
                json::array({json{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                             json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  const json doc = {{"added_tokens", added},
                    {"pre_tokenizer", pre_tok},
                    {"decoder", {{"type", "ByteLevel"}}},
                    {"model", {{"type", "BPE"}, {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", merge_list}}}};
  json config = json::object();
  auto token = [&](int64_t id) { return id >= 0 ? json(text_of(static_cast<size_t>(id))) : json(nullptr); };
  config["bos_token"] = token(bos);
  config["eos_token"] = token(eos);
  config["pad_token"] = token(pad);
  (void)unk;
  return HfBpeTokenizer::from_json(doc.dump(), config.dump(), name);
}

std::string gguf_vocab_to_json(const std::vector<std::pair<std::string, GGUFValue>>& kv) {
  json j = json::object();
  auto scalar = [](const GGUFValue& v) -> json {
    switch (v.type) {
      case GGUFValue::String: return v.s;
      case GGUFValue::Bool: return v.u != 0;
      case GGUFValue::F32: case GGUFValue::F64: return v.f;
      case GGUFValue::U8: case GGUFValue::U16: case GGUFValue::U32: case GGUFValue::U64: return v.u;
      default: return v.i;
    }
  };
  for (const auto& [key, v] : kv) {
    if (v.type != GGUFValue::Array) {
      j[key] = scalar(v);
      continue;
    }
    json a = json::array();
    for (const auto& e : v.array) a.push_back(scalar(e));
    j[key] = std::move(a);
  }
  return j.dump();
}

std::unique_ptr<Tokenizer> tokenizer_from_vocab_json(const std::string& text, const std::string& name) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) fail_data(cat(quote(name), ": the vocabulary is not a JSON object"));
  std::map<std::string, GGUFValue> kv;
  auto scalar = [&](const json& v, const std::string& key) {
    GGUFValue x;
    if (v.is_string()) x = GGUFValue::str(v.get<std::string>());
    else if (v.is_boolean()) x = GGUFValue::boolean(v.get<bool>());
    else if (v.is_number_integer()) x = i32_value(v.get<int64_t>());
    else if (v.is_number()) x = GGUFValue::f32(v.get<float>());
    else fail_data(cat(quote(name), ": vocabulary key ", quote(key), ": unexpected value"));
    return x;
  };
  for (const auto& [key, v] : j.items()) {
    if (!v.is_array()) {
      kv[key] = scalar(v, key);
      continue;
    }
    GGUFValue a;
    a.type = GGUFValue::Array;
    // scores are floats (an integral score comes back as one), token types integers
    a.elem = key == "tokenizer.ggml.scores" ? GGUFValue::F32 : v.empty() || v[0].is_string() ? GGUFValue::String : GGUFValue::I32;
    a.array.reserve(v.size());
    for (const auto& e : v) {
      GGUFValue x = scalar(e, key);
      if (a.elem == GGUFValue::F32 && x.type != GGUFValue::F32) x = GGUFValue::f32(static_cast<float>(x.i));
      if (x.type != a.elem) fail_data(cat(quote(name), ": vocabulary key ", quote(key), ": mixed value types"));
      a.array.push_back(std::move(x));
    }
    kv[key] = std::move(a);
  }
  return tokenizer_from_gguf_keys(
      [&kv](const std::string& key) -> const GGUFValue* {
        auto it = kv.find(key);
        return it == kv.end() ? nullptr : &it->second;
      },
      name);
}

}  // namespace lm
