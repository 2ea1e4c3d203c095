// lm-generate's work between its options and its output: the model and its tokenizer, the
// prompts (given, or read as they arrive), one completion per prompt written in the chosen
// format, and a JSON record per prompt for --json.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "generate/generate.h"
#include "generate/prompts.h"
#include "io/stream.h"

namespace lm {

enum class CompletionFormat { Text, Tokens, Ids };
// "text" (bytes, streamed), "tokens" (a token stream, one record per completion), "ids"
// (one line of decimal ids per completion).
std::optional<CompletionFormat> completion_format_from_name(std::string_view name);

struct SessionOptions {
  std::vector<std::string> prompts;  // text prompts; empty: read them from `input`
  std::string input = "-";
  PromptFormat input_format = PromptFormat::Auto;
  CompletionFormat format = CompletionFormat::Text;
  bool echo = false;  // text output: each prompt before its completion
  bool json = false;  // a record per prompt (on_json); text is then not streamed
  GenerateOptions generate;
  uint64_t seed = 0;  // prompt i uses seed + i
  // Sequences decoded together (BatchGenerator); the prompts are read up to this many ahead,
  // and the completions still come out in input order.
  int64_t batch = 1;
  // --vision: image features per prompt (VisionFile; record i = prompt i, counted from 0), or
  // empty: text only (a vision model then runs on its tokens alone).
  std::string vision;
  DType compute_dtype = DType::F32;  // the matmuls' operands (Transformer::set_compute_dtype)
  // The KV caches' element type (Transformer::set_kv_dtype); none: the weights' (weights_kv_dtype).
  std::optional<DType> kv_dtype;
  // materium: the conditions file, one JSON line per prompt (a text prompt is one record);
  // "": a model with conditions generates unconditionally (docs/materium.md).
  std::string conditions;
};

class GenerateSession {
 public:
  // Loads the checkpoint (Data error for non-finite weights) and its tokenizer (none for a
  // raw one, or when it is not at hand). `copy_weights`: out of the file's mapping into memory (--no-mmap).
  // `tokenizer_file` (--tokenizer, may be empty): see find_checkpoint_tokenizer. `panels`:
  // the matrices' panels for the row kernel (ModelWeights::add_panels; false: --no-panels).
  GenerateSession(const std::string& model_path, bool copy_weights, const std::string& tokenizer_file = {},
                  bool panels = true);
  ~GenerateSession();

  // Generates a completion for every prompt, in order, writing each to `out` as it is
  // produced (text streams through `out` byte by byte as decided; `flush` is called after
  // each piece) and handing --json records to `on_json`. Finishes `out`. Errors (Usage for
  // an output the model cannot give, Data for prompts it cannot read) name the checkpoint or
  // the prompt.
  void run(const SessionOptions& opts, ByteSink& out, const std::function<void()>& flush,
           const std::function<void(const nlohmann::json&)>& on_json);

 private:
  Tokenizer& need_tokenizer(const std::string& why);  // Unsupported error for a raw checkpoint

  std::string source_;  // the checkpoint, quoted
  std::unique_ptr<Transformer> model_;
  TokenizerSpec spec_;
  std::shared_ptr<Tokenizer> tokenizer_;  // null when none is at hand
};

}  // namespace lm
