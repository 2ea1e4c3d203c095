// lm-eval-loss: a checkpoint and token input (streamed) to the mean cross-entropy ignoring
// PAD, perplexity, bits per token and per byte, and soma V1's SIGReg term; see
// man/lm-eval-loss.1 and lib/eval/eval.h for the windowing.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "eval/eval.h"
#include "eval/report.h"
#include "version.h"

namespace {

std::string fixed6(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%.6f", v);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-eval-loss",
                     "Evaluate a checkpoint on token input: mean cross-entropy (ignoring PAD), perplexity, bits per "
                     "token and per byte, SIGReg when the model has it.");
  CLI::App& app = tool.app();

  std::string model_path, input_format = "auto", embedding_out, vision_path, hidden_out, conditions;
  std::vector<std::string> inputs;
  lm::EvalOptions opts;
  int64_t bytes = -1;
  double fail_above = 0;
  bool json = false;

  app.add_option("FILE", inputs, "Token inputs (token stream, llm.c .bin, raw with --input-format), read in order "
                                 "('-' = stdin; default: stdin)");
  app.add_option("-m,--model", model_path, "Checkpoint (safetensors with lmkit.config metadata)")
      ->type_name("FILE")
      ->required();
  app.add_option("-b,--batch", opts.batch, "Windows per forward pass")->type_name("B")->check(CLI::Range(1, 1 << 20));
  app.add_option("--seq", opts.seq, "Window length T in tokens (default: the model's max_seq_len)")
      ->type_name("T")
      ->default_str("max_seq_len")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-windows", opts.max_windows, "Stop after N windows (default: the whole input)")
      ->type_name("N")
      ->default_str("all")
      ->check(CLI::PositiveNumber);
  app.add_option("--input-format", input_format, "auto (token stream or llm.c), stream, llmc, u16, u32")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "stream", "llmc", "u16", "u32"}));
  app.add_option("--bytes", bytes, "Bytes of the evaluated text, for bits per byte when the tokenizer cannot tell")
      ->type_name("N")
      ->default_str("")
      ->check(CLI::PositiveNumber);
  CLI::Option* fail_opt = app.add_option("--fail-above", fail_above, "Exit with status 1 when the loss is above X, or "
                                                                     "not a finite number (after the report)")
                              ->type_name("X")
                              ->default_str("");
  app.add_option("--embedding-out", embedding_out, "Write the mean embedding (soma V1 compute_loss) as safetensors")
      ->type_name("FILE");
  app.add_option("--vision", vision_path, "Image features per record of the input (safetensors record.{i} [N, "
                                          "vision_dim], see docs/llama4.md; default: text only)")
      ->type_name("FILE");
  app.add_option("--hidden-out", hidden_out, "Write the final hidden states per token (after the final norm) of every "
                                             "window as safetensors")
      ->type_name("FILE");
  app.add_option("--conditions", conditions, "Condition values of a materium model, one JSON line per record of the "
                                              "inputs ('-' = stdin)")
      ->type_name("FILE");
  app.add_option("--sigreg-seed", opts.sigreg_seed, "Seed of the SIGReg projection noise")->type_name("N");
  tool.add_dtype_option(opts.compute_dtype, "Matmul operands: f32, or bf16 (the weights and activations rounded to "
                                            "bfloat16, f32 accumulation)");
  app.add_option("--tokenizer", opts.tokenizer, "Tokenizer file (tokenizer.model or tokenizer.json) for a checkpoint that "
                 "does not carry its own: it tells the bytes of the text for bits per byte")
      ->type_name("FILE");
  app.add_flag("--json", json, "Print one JSON object instead of text");
  tool.add_threads_option();
  tool.add_quiet_option();

  return tool.run(argc, argv, [&]() -> int {
    if (inputs.empty()) inputs.push_back("-");
    if (fail_opt->count() && !std::isfinite(fail_above))
      lm::fail_usage(lm::cat("--fail-above must be a finite number, got ", fail_above));
    opts.embedding = !embedding_out.empty();
    opts.hidden = !hidden_out.empty();
    if (conditions == "-" && std::find(inputs.begin(), inputs.end(), "-") != inputs.end())
      lm::fail_usage("stdin ('-') given as the input and as --conditions");
    const bool progress = !json && tool.quiet == 0 && lm::cli::stderr_is_terminal();
    lm::EvalResult r = lm::evaluate_files(model_path, inputs, *lm::token_input_format_from_name(input_format), opts,
                                          bytes < 0, [&](const lm::EvalResult& b) {
                                            if (progress)
                                              std::fprintf(stderr, "\rlm-eval-loss: %lld windows, %lld tokens, loss %.4f",
                                                           (long long)b.windows, (long long)b.tokens, b.loss());
                                          }, vision_path, conditions);
    if (progress) std::fputc('\n', stderr);
    if (bytes > 0) r.bytes = bytes;
    if (!embedding_out.empty()) lm::save_embedding(embedding_out, r);
    if (!hidden_out.empty()) lm::save_hidden_states(hidden_out, r);
    if (json) {
      nlohmann::json j{{"version", lm::kVersion},
                       {"model", model_path},
                       {"inputs", inputs},
                       {"dtype", opts.compute_dtype == lm::DType::BF16 ? "bf16" : "f32"}};
      j.update(lm::eval_report_json(r));
      std::cout << j.dump(2) << '\n';
    } else {
      std::cout << lm::eval_report_text(r);
    }
    if (fail_opt->count() && !lm::loss_within(r.loss(), fail_above)) {  // after the report, as the error
      std::string on;
      for (const std::string& in : inputs) on += (on.empty() ? "" : ", ") + lm::quote(lm::display_name(in));
      const std::string what = lm::cat("loss of ", lm::quote(lm::display_name(model_path)), " on ", on, ": ");
      const double loss = r.loss();
      if (std::isfinite(loss)) lm::fail(lm::ErrorKind::Data, what + lm::cat(fixed6(loss), " is above --fail-above ", fail_above));
      lm::fail(lm::ErrorKind::Data, what + (std::isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf") +
                                         lm::cat(" is not a finite number (fails --fail-above ", fail_above, ")"));
    }
    return 0;
  });
}
