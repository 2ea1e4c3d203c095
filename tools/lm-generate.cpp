// lm-generate: sample from a checkpoint with a KV cache. Prompts as text (-p, or one per
// line from the input) or token input (one per record); text streams to stdout as it is
// produced, or a token stream / token ids; see man/lm-generate.1 and lib/generate.
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "generate/session.h"

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-generate", "Generate text from a checkpoint: prompts as text or tokens, one completion per "
                                    "prompt, streamed as it is produced.");
  CLI::App& app = tool.app();
  std::string model_path, input_format = "auto", format = "text", output = "-";
  lm::SessionOptions opts;
  lm::GenerateOptions& gen = opts.generate;
  bool ignore_eos = false, force = false, no_mmap = false, no_panels = false;

  app.add_option("-m,--model", model_path, "Checkpoint (safetensors with lmkit.config metadata)")
      ->type_name("FILE")
      ->required();
  CLI::Option* prompt_opt = app.add_option("-p,--prompt", opts.prompts, "Prompt text (repeatable: one completion each)")
                                ->type_name("TEXT")
                                ->allow_extra_args(false);
  app.add_option("-i,--input", opts.input, "Read prompts from FILE ('-' = stdin) when no --prompt is given")
      ->type_name("FILE")
      ->excludes(prompt_opt);
  app.add_option("--input-format", input_format, "auto (token stream or llm.c file, else lines), lines (one prompt "
                                                 "per line), text (the whole input is one prompt), tokens (one "
                                                 "prompt per record)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "lines", "text", "tokens"}));
  app.add_option("--conditions", opts.conditions, "Condition values of a materium model, one JSON line per prompt "
                                                   "(default: unconditional)")
      ->type_name("FILE");
  app.add_option("-n,--max-new-tokens", gen.max_new_tokens, "Tokens to generate per prompt at most")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", opts.batch, "Decode up to N sequences together (one forward per step for all; "
                                        "the same tokens as one at a time, in input order)")
      ->type_name("N")
      ->check(CLI::PositiveNumber);
  app.add_option("--temperature", gen.sampling.temperature, "Softmax temperature; 0 = greedy (argmax)")->type_name("X");
  app.add_option("--top-k", gen.sampling.top_k, "Sample from the K most likely tokens only (0 = all)")
      ->type_name("K")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", gen.sampling.top_p, "Nucleus sampling: the smallest set of tokens with probability >= P")
      ->type_name("P");
  app.add_option("--min-p", gen.sampling.min_p, "Keep only tokens at least P times as likely as the most likely "
                                               "one (0 = off)")
      ->type_name("P");
  app.add_option("--repeat-penalty", gen.sampling.repeat_penalty, "Divide the positive logits (multiply the "
                                                                  "negative ones) of tokens in the last "
                                                                  "--repeat-last-n by X (llama.cpp; 1 = off)")
      ->type_name("X");
  app.add_option("--presence-penalty", gen.sampling.presence_penalty, "Subtract X from the logit of every token "
                                                                      "in the last --repeat-last-n (OpenAI; 0 = off)")
      ->type_name("X");
  app.add_option("--frequency-penalty", gen.sampling.frequency_penalty, "Subtract X times its count there from "
                                                                        "each such token's logit (OpenAI; 0 = off)")
      ->type_name("X");
  app.add_option("--repeat-last-n", gen.sampling.repeat_last_n, "The penalties' window: the last N tokens of "
                                                                "prompt and completion (0 = no penalties, -1 = "
                                                                "all; default 64)")
      ->type_name("N");
  app.add_option("--logprobs", gen.logprobs, "With --json: each kept token's log-probability and the K most "
                                             "likely alternatives' (the model's distribution)")
      ->type_name("K")
      ->check(CLI::NonNegativeNumber);
  CLI::Option* seed_opt = app.add_option("--seed", opts.seed, "Random seed; prompt i uses SEED + i (default: random)")
                              ->type_name("N")
                              ->default_str("random");
  app.add_option("--stop", gen.stop, "Stop when the output contains STRING (repeatable; not printed)")
      ->type_name("STRING")
      ->allow_extra_args(false);
  app.add_flag("--ignore-eos", ignore_eos, "Keep generating past the end-of-sequence token");
  app.add_option("--format", format, "Output: text (streamed), tokens (a token stream, one record per completion), "
                                     "ids (one line of token ids per completion)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "tokens", "ids"}));
  app.add_option("-o,--output", output, "Write the completions to FILE ('-' = stdout)")->type_name("FILE");
  app.add_option("--vision", opts.vision, "Image features per prompt (safetensors record.{i} [N, vision_dim] for "
                                          "prompt i + 1, see docs/llama4.md; default: text only)")
      ->type_name("FILE");
  std::string tokenizer_file;
  app.add_option("--tokenizer", tokenizer_file, "Tokenizer file (tokenizer.model or tokenizer.json) for a checkpoint that does "
                 "not carry its own; it must be the checkpoint's tokenizer when the checkpoint names one")
      ->type_name("FILE");
  app.add_flag("--echo", opts.echo, "Print each text prompt before its completion");
  app.add_flag("--json", opts.json, "Print one JSON object per prompt (completion and stats) instead of text");
  app.add_flag("-f,--force", force, "Write a token stream even to a terminal");
  app.add_flag("--no-mmap", no_mmap, "Copy the weights into memory instead of reading them from the checkpoint's "
                                     "mapping: slower to open, about 10% faster to generate (huge pages)");
  app.add_flag("--no-panels", no_panels, "Multiply the matrices as stored instead of from panels made at open (a second "
                                         "copy of every matrix): half the memory, slower (batched) decode");
  tool.add_dtype_option(opts.compute_dtype, "Matmul operands: f32, or bf16 (the weights and activations rounded to "
                                            "bfloat16, f32 accumulation; decode is not faster than f32 yet)");
  tool.add_kv_dtype_option(opts.kv_dtype, "The KV caches' elements");
  tool.add_threads_option();
  tool.add_quiet_option();

  return tool.run(argc, argv, [&]() -> int {
    gen.stop_at_eos = !ignore_eos;
    lm::validate(gen.sampling);
    opts.input_format = *lm::prompt_format_from_name(input_format);
    opts.format = *lm::completion_format_from_name(format);
    if (!seed_opt->count()) opts.seed = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
    if (gen.logprobs >= 0 && !opts.json) lm::fail_usage("--logprobs goes with --json (the JSON records carry them)");
    if (opts.json && format != "text" && output == "-") lm::fail_usage("--json and --format tokens|ids both want stdout");
    if (format == "tokens") lm::cli::refuse_binary_on_terminal(output, force);
    lm::GenerateSession session(model_path, no_mmap, tokenizer_file, !no_panels);
    const std::unique_ptr<lm::ByteSink> sink = lm::open_output(output);
    session.run(
        opts, *sink, [&] { if (output == "-") std::fflush(stdout); },
        [](const nlohmann::json& j) {
          std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n' << std::flush;
        });
    return 0;
  });
}
