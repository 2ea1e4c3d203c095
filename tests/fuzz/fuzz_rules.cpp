// libFuzzer target: a conversion rules file (lm-convert-checkpoint --rules). Rules that parse
// must survive rules_to_json and back unchanged, then are applied to a small Llama-like
// tensor graph (names and shapes only; nothing is loaded). Only lm::Error may escape.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "convert/rules.h"
#include "core/error.h"
#include "model/presets.h"

namespace {

lm::convert::Graph small_graph() {
  lm::convert::Graph g;
  auto add = [&](const char* name, lm::Shape shape) {
    lm::convert::Node n;
    n.name = name;
    n.shape = std::move(shape);
    g.nodes.push_back(std::move(n));
  };
  add("tok_embeddings.weight", {256, 64});
  add("layers.0.attention.wq.weight", {64, 64});
  add("layers.0.attention.wk.weight", {32, 64});
  add("layers.0.attention.wqkv.weight", {128, 64});
  add("layers.0.feed_forward.w1.weight", {96, 64});
  add("layers.0.attention_norm.weight", {64});
  add("model.layers.1.self_attn.q_proj.weight", {64, 64});
  add("model.layers.1.self_attn.rotary_emb.inv_freq", {8});
  add("output.weight", {256, 64});
  add("scalar", {});
  return g;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<lm::convert::Rule> rules;
  try {
    rules = lm::convert::parse_rules_json(text, "rules.json");
  } catch (const lm::Error&) {
    return 0;
  }
  const std::vector<lm::convert::Rule> again = lm::convert::parse_rules_json(lm::convert::rules_to_json(rules), "again");
  if (again.size() != rules.size()) __builtin_trap();
  for (size_t i = 0; i < rules.size(); ++i)
    if (std::string(again[i].option()) != rules[i].option() || again[i].arg != rules[i].arg) __builtin_trap();
  static const lm::ModelConfig cfg = [] {
    lm::ModelConfig c = lm::preset("tiny");
    c.dim = 64;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    return c;
  }();
  lm::convert::Graph g = small_graph();
  try {
    lm::convert::apply_rules(g, rules, &cfg);
  } catch (const lm::Error&) {
  }
  return 0;
}
