// lm-generate: sample from a checkpoint with a KV cache. Prompts as text (-p, or one per
// line from the input) or token input (one per record); text streams to stdout as it is
// produced, or a token stream / token ids; see man/lm-generate.1.
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "eval/model_tokenizer.h"
#include "generate/generate.h"
#include "generate/prompts.h"
#include "io/stream.h"
#include "io/tokstream.h"
#include "model/params.h"
#include "model/transformer.h"

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-generate", "Generate text from a checkpoint: prompts as text or tokens, one completion per "
                                    "prompt, streamed as it is produced.");
  CLI::App& app = tool.app();
  std::string model_path, input = "-", input_format = "auto", format = "text", output = "-";
  std::vector<std::string> prompts;
  lm::GenerateOptions opts;
  uint64_t seed = 0;
  bool ignore_eos = false, json = false, echo = false, force = false, no_mmap = false;

  app.add_option("-m,--model", model_path, "Checkpoint (safetensors with lmkit.config metadata)")
      ->type_name("FILE")
      ->required();
  CLI::Option* prompt_opt = app.add_option("-p,--prompt", prompts, "Prompt text (repeatable: one completion each)")
                                ->type_name("TEXT")
                                ->allow_extra_args(false);
  app.add_option("-i,--input", input, "Read prompts from FILE ('-' = stdin) when no --prompt is given")
      ->type_name("FILE")
      ->excludes(prompt_opt);
  app.add_option("--input-format", input_format, "auto (token stream or llm.c file, else lines), lines (one prompt "
                                                 "per line), text (the whole input is one prompt), tokens (one "
                                                 "prompt per record)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "lines", "text", "tokens"}));
  app.add_option("-n,--max-new-tokens", opts.max_new_tokens, "Tokens to generate per prompt at most")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", opts.sampling.temperature, "Softmax temperature; 0 = greedy (argmax)")
      ->type_name("X")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", opts.sampling.top_k, "Sample from the K most likely tokens only (0 = all)")
      ->type_name("K")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", opts.sampling.top_p, "Nucleus sampling: the smallest set of tokens with probability >= P")
      ->type_name("P")
      ->check(CLI::Range(0.0, 1.0));
  CLI::Option* seed_opt = app.add_option("--seed", seed, "Random seed; prompt i uses SEED + i (default: random)")
                              ->type_name("N")
                              ->default_str("random");
  app.add_option("--stop", opts.stop, "Stop when the output contains STRING (repeatable; not printed)")
      ->type_name("STRING")
      ->allow_extra_args(false);
  app.add_flag("--ignore-eos", ignore_eos, "Keep generating past the end-of-sequence token");
  app.add_option("--format", format, "Output: text (streamed), tokens (a token stream, one record per completion), "
                                     "ids (one line of token ids per completion)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "tokens", "ids"}));
  app.add_option("-o,--output", output, "Write the completions to FILE ('-' = stdout)")->type_name("FILE");
  app.add_flag("--echo", echo, "Print each text prompt before its completion");
  app.add_flag("--json", json, "Print one JSON object per prompt (completion and stats) instead of text");
  app.add_flag("-f,--force", force, "Write a token stream even to a terminal");
  app.add_flag("--no-mmap", no_mmap, "Copy the weights into memory instead of reading them from the checkpoint's "
                                     "mapping: slower to open, about 10% faster to generate (huge pages)");
  tool.add_threads_option();
  tool.add_quiet_option();

  return tool.run(argc, argv, [&]() -> int {
    opts.stop_at_eos = !ignore_eos;
    if (opts.sampling.top_p <= 0) lm::fail_usage("--top-p must be in (0, 1]");
    lm::validate(opts.sampling);
    if (!seed_opt->count()) seed = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
    if (json && format != "text" && output == "-") lm::fail_usage("--json and --format tokens|ids both want stdout");
    if (format == "tokens") lm::cli::refuse_binary_on_terminal(output, force);

    lm::ModelWeights weights = lm::ModelWeights::load(model_path);
    // Decode reads every weight once per token; a private copy sits on transparent huge pages,
    // the file's page cache mostly on 4 KiB ones (9 to 17% slower decode on stories110m).
    if (no_mmap) weights.make_writable();
    lm::Transformer model(std::move(weights));
    lm::require_supported(model.config(), lm::program_capabilities(), "lm-generate");
    const lm::ModelConfig& cfg = model.config();
    const lm::TokenizerSpec spec = lm::model_tokenizer_spec(model.weights(), lm::quote(model_path));
    std::unique_ptr<lm::Tokenizer> tokenizer;
    if (spec.kind != lm::TokenizerKind::Raw) tokenizer = lm::make_model_tokenizer(spec, lm::quote(model_path));
    auto need_tokenizer = [&](const char* what) {
      if (!tokenizer) lm::make_model_tokenizer(spec, lm::quote(model_path) + " (" + what + ")");  // throws
    };
    if (format == "text" || json) {
      if (!tokenizer && format == "text" && !json) need_tokenizer("text output; try --format ids or tokens");
    }

    std::unique_ptr<lm::PromptReader> reader;
    if (prompts.empty()) {
      reader = std::make_unique<lm::PromptReader>(input, *lm::prompt_format_from_name(input_format),
                                                  static_cast<uint32_t>(cfg.vocab_size));
      if (reader->token_reader()) lm::require_tokens_for_model(spec, cfg.vocab_size, *reader->token_reader());
    }
    std::unique_ptr<lm::ByteSink> sink = lm::open_output(output);
    lm::TokenizerSpec out_spec = spec;
    std::unique_ptr<lm::TokenStreamWriter> writer;
    if (format == "tokens") writer = std::make_unique<lm::TokenStreamWriter>(*sink, out_spec);
    const bool stream_text = format == "text" && !json;
    auto write = [&](std::string_view s) {
      sink->write(s.data(), s.size());
      if (output == "-") std::fflush(stdout);
    };

    lm::Generator gen(model, tokenizer.get());
    lm::Prompt p;
    for (size_t i = 0;; ++i) {
      if (reader ? !reader->next(p) : i >= prompts.size()) break;
      if (!reader) p = lm::Prompt{prompts[i], {}, false, 0};
      const std::string what = "prompt " + std::to_string(i + 1);
      if (!p.is_tokens) {
        need_tokenizer("text prompts; give token input instead");
        p.tokens = lm::encode_prompt(*tokenizer, p.text);
      }
      if (echo && stream_text) {
        if (p.is_tokens) {
          std::vector<uint8_t> b;
          std::vector<uint32_t> ids(p.tokens.begin(), p.tokens.end());
          tokenizer->decode(ids.data(), ids.size(), b);
          write(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
        } else {
          write(p.text);
        }
      }
      const lm::Completion c = gen.generate(p.tokens, opts, seed + i, stream_text ? std::function<void(std::string_view)>(write) : nullptr, what);
      if (stream_text) write("\n");
      if (format == "ids") {
        std::string line;
        for (size_t k = 0; k < c.tokens.size(); ++k) line += (k ? " " : "") + std::to_string(c.tokens[k]);
        write(line + "\n");
      } else if (writer) {
        std::vector<uint32_t> ids(c.tokens.begin(), c.tokens.end());
        writer->write_record(ids.data(), ids.size(), p.start + p.tokens.size());
      }
      if (json) {
        nlohmann::json j{{"prompt", i},
                         {"prompt_tokens", c.prompt_tokens},
                         {"tokens", static_cast<int64_t>(c.tokens.size())},
                         {"generated", c.generated},
                         {"stop_reason", c.stop_reason},
                         {"time_to_first_token_s", c.time_to_first_token},
                         {"seconds", c.seconds},
                         {"tokens_per_second", c.tokens_per_second()},
                         {"decode_tokens_per_second", c.decode_tokens_per_second()},
                         {"seed", seed + i},
                         {"token_ids", c.tokens}};
        if (tokenizer) j["text"] = c.text;
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n' << std::flush;
      }
    }
    if (writer) writer->finish();
    else sink->finish();
    return 0;
  });
}
