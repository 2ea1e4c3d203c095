// lm-convert-checkpoint's library side: plan a conversion (open the input, resolve the
// layouts and the model config, run the layout and user rules, check the result against the
// config), then write it one tensor at a time into the target container.
//
// The pipeline: input tensors -> the --from layout's import rules (to lmkit's names) -> the
// user's rules, in command-line order -> [check against the config's tensor table] -> the
// --to layout's export rules -> --cast -> the writer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "convert/names.h"
#include "convert/rules.h"
#include "convert/source.h"
#include "io/gguf.h"
#include "model/config.h"

namespace lm::convert {

struct ConvertOptions {
  std::string input;
  std::string from = "auto";          // a layout name or "auto" (told from the tensor names)
  std::string to = "lmkit";
  std::string config;                 // --config FILE|PRESET
  std::string config_format = "auto"; // --config-format: what a --config JSON file is
  // --generation-config FILE|none: the Hugging Face generation_config.json whose eos ids join the
  // config's; "" = the one beside the Hugging Face config read (config.json beside the input,
  // or a --config file in Hugging Face's convention), when there is one; "none" = no file.
  std::string generation_config;
  std::vector<std::string> sets;      // --set KEY=VALUE on top of the config
  std::vector<Rule> rules;            // user rules, in order
  std::string cast;                   // "", "f32", "f16", "bf16", "q8_0" (GGUF only)
  bool allow_unmapped = false;        // drop unmapped tensors, tolerate missing ones
  uint64_t shard_size = 0;            // > 0: a directory of shards of at most this many bytes
  std::string tokenizer;              // --tokenizer FILE: the vocabulary to write (GGUF, lmkit.vocab)
};

struct Plan {
  Source source;
  Layout from = Layout::Raw, to = Layout::Lmkit;
  std::optional<ModelConfig> config;
  std::string config_origin;
  std::string config_json;            // the config as written: the input's own text when unchanged
  Graph graph;                        // the output tensors, under the target's names
  std::vector<std::string> notes;     // what the user should know (printed on stderr unless -q)
  std::string cast;
  uint64_t shard_size = 0;
  // The tokenizer's GGUF vocabulary keys (tokenizer/gguf_vocab.h) for a GGUF or lmkit output,
  // empty when there is none to write (plan_vocabulary).
  std::vector<std::pair<std::string, GGUFValue>> vocab;
};

Plan plan_conversion(const ConvertOptions& opts);
// The vocabulary a GGUF or lmkit output carries (vocab_plan.cpp): the --tokenizer file (which
// must be the checkpoint's tokenizer when it names one), else the one the input carries, else
// (GGUF output) the checkpoint's tokenizer kept in the tokenizer store (tokenizer/registry.h).
void plan_vocabulary(Plan& plan, const std::string& tokenizer_file);

// Writes the plan to `output` ("-" = stdout, for single-file outputs): a safetensors file, a
// directory (sharded, with the target's config file: config.json for hf, params.json for meta)
// when `output` is a directory, ends in '/' or --shard-size is given, a GGUF file, or a llama2.c
// v0 file. Every file is written to a temporary name and renamed. Returns the files written.
std::vector<std::string> write_plan(const Plan& plan, const std::string& output);
bool is_directory_output(const Plan& plan, const std::string& output);

// --dry-run: one line per output tensor "source [shape] DTYPE -> target [shape] DTYPE (ops)",
// dropped inputs as "-> (dropped)"; or one JSON object.
std::string plan_text(const Plan& plan);
std::string plan_json(const Plan& plan);
// --list: the input's tensors as found (name, dtype, shape), or one JSON object.
std::string list_text(const Source& src);
std::string list_json(const Source& src);
// --show-rules: the whole rule list a conversion from `from` to `to` runs, as a rules file.
std::string show_rules(const std::string& from, const std::string& to, const std::vector<Rule>& user);

// "5GB", "500MB", "2GiB", "1000000" -> bytes; Usage error otherwise.
uint64_t parse_size(const std::string& text);
std::string human_bytes(uint64_t n);

}  // namespace lm::convert
