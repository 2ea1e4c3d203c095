// lm-convert-checkpoint: convert a checkpoint between layouts (lmkit, meta, hf, flax, soma,
// soma-torch, gguf, llama2c) and containers, with generic rules for layouts nobody named.
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli.h"
#include "convert/convert.h"
#include "core/error.h"

namespace cv = lm::convert;

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-convert-checkpoint",
                     "Convert a checkpoint between layouts and containers: rename and remap tensors, transpose, split, "
                     "fuse, permute q/k rows for RoPE, cast; safetensors (single or sharded), GGUF and llama2.c.");
  CLI::App& app = tool.app();
  cv::ConvertOptions opts;
  std::string output, rules_file, shard_size;
  std::vector<std::string> rule_args[7];
  bool dry_run = false, list = false, json = false, force = false, show_rules = false;

  app.add_option("input", opts.input, "Checkpoint to read: a file ('-' = stdin), a *.index.json, or a directory");
  app.add_option("output", output, "Where to write: a file ('-' = stdout) or a directory (sharded, with the target's config file)");
  app.add_option("--from", opts.from, "Layout of the input: auto, " + cv::layout_names())->type_name("LAYOUT");
  app.add_option("--to", opts.to, "Layout to write: " + cv::layout_names())->type_name("LAYOUT");
  app.add_option("--config", opts.config, "Model config: a preset, or an lmkit config JSON, HF config.json or Meta params.json "
                                          "(default: the checkpoint's own, a config.json/params.json beside it, or inferred)")
      ->type_name("FILE|PRESET");
  app.add_option("--config-format", opts.config_format, "Format of a --config JSON file: auto (by its keys), lmkit, hf, "
                                                        "meta, materium, xlstm-jax, mobilellm, soma")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "lmkit", "hf", "meta", "materium", "xlstm-jax", "mobilellm", "soma"}));
  app.add_option("--generation-config", opts.generation_config,
                 "Hugging Face generation_config.json whose eos ids join the config's, or 'none' (default: the one beside "
                 "the Hugging Face config.json read, the input's or --config's)")
      ->type_name("FILE|none");
  app.add_option("--set", opts.sets, "Override a config field: KEY=VALUE (see lm-inspect-config)")
      ->type_name("KEY=VALUE")->default_str("")->allow_extra_args(false);
  const char* rule_names[7] = {"rename", "drop", "transpose", "split", "fuse", "rope-to-half", "rope-to-interleaved"};
  const char* rule_help[7] = {
      "Rename tensors matching REGEX (sed-like; \\1 or $1 for groups)",
      "Drop tensors whose name matches GLOB",
      "Transpose 2-D tensors matching GLOB ([in, out] <-> [out, in]); 3-D stacks [E, R, C] slice by slice; GLOB=E "
      "first views 2-D [E*R, C] as [E, R, C] (E a number or 'experts')",
      "Split NAME (a regex) along DIM into parts A,B[,C] (sizes from the config, A:N, or equal)",
      "Concatenate A (a regex), B[,C] (templates with \\1) along DIM into NAME",
      "Permute rows of GLOB from Meta's interleaved RoPE pairs to the half-split layout (q: n_heads, k: n_kv_heads, or N heads)",
      "The inverse of --rope-to-half"};
  const char* rule_types[7] = {"REGEX=REPL", "GLOB", "GLOB[=E]", "NAME=A,B[,C][@DIM]", "A,B[,C]=NAME[@DIM]", "GLOB=q|k|N", "GLOB=q|k|N"};
  std::map<const CLI::Option*, int> rule_option;
  for (int i = 0; i < 7; ++i)
    rule_option[app.add_option(std::string("--") + rule_names[i], rule_args[i], rule_help[i])
                    ->type_name(rule_types[i])->default_str("")->allow_extra_args(false)] = i;
  const CLI::Option* rules_opt =
      app.add_option("--rules", rules_file, "JSON rules file: [{\"rename\": \"a=b\"}, {\"drop\": \"*.x\"}, ...], applied in place")
          ->type_name("FILE");
  app.add_option("--cast", opts.cast, "Cast every tensor at the end: f32, f16, bf16 (round to nearest even); q8_0, q4_0, q4_K, q6_K: matrices in ggml's blocks")
      ->type_name("TYPE");
  app.add_option("--shard-size", shard_size, "Write OUTPUT as a directory of safetensors shards of at most SIZE (5GB, 500MB)")
      ->type_name("SIZE");
  app.add_option("--tokenizer", opts.tokenizer, "Tokenizer file (tokenizer.model or tokenizer.json) whose vocabulary the GGUF "
                 "or lmkit output carries (default: the checkpoint's own)")
      ->type_name("FILE");
  app.add_flag("--allow-unmapped", opts.allow_unmapped, "Drop tensors the layout does not map and allow missing ones (noted on stderr)");
  app.add_flag("--dry-run", dry_run, "Print the mapping (source name, shape, dtype -> target name, shape, dtype) and write nothing");
  app.add_flag("--list", list, "Print the input's tensors (name, dtype, shape) and exit");
  app.add_flag("--show-rules", show_rules, "Print every rule the conversion runs as a rules file (a start for your own layout)");
  app.add_flag("--json", json, "With --list or --dry-run: one JSON object");
  app.add_flag("-f,--force", force, "Write binary data to a terminal");
  tool.add_quiet_option();
  tool.add_threads_option();
  app.footer("Layouts:\n" + [] {
    std::string s;
    for (const auto& l : cv::layouts()) s += "  " + std::string(l.name) + ": " + l.summary + "\n";
    return s;
  }() + "Rules run in command-line order between the two layouts, on lmkit's names. See man lm-convert-checkpoint.");

  return tool.run(argc, argv, [&] {
    // The rules in the order given (CLI11 collects each option apart; parse_order keeps the sequence).
    std::map<int, size_t> used;
    for (const CLI::Option* o : app.parse_order()) {
      if (o == rules_opt) {
        for (auto& r : cv::parse_rules_file(rules_file)) opts.rules.push_back(std::move(r));
      } else if (auto it = rule_option.find(o); it != rule_option.end()) {
        opts.rules.push_back(cv::parse_rule(rule_names[it->second], rule_args[it->second].at(used[it->second]++)));
      }
    }
    if (!shard_size.empty()) opts.shard_size = cv::parse_size(shard_size);
    if (show_rules) {
      std::cout << cv::show_rules(opts.from, opts.to, opts.rules);
      return 0;
    }
    if (json && !list && !dry_run) lm::fail_usage("--json goes with --list or --dry-run");
    if (opts.input.empty())
      lm::fail(lm::ErrorKind::Usage, "no input: give INPUT (a file, '-' for stdin, or a directory)", "run 'lm-convert-checkpoint --help' for usage");
    if (list) {
      const cv::Source src = cv::open_source(opts.input, opts.from == "gguf" || opts.from == "llama2c"
                                                             ? std::optional(cv::parse_layout(opts.from))
                                                             : std::nullopt);
      std::cout << (json ? cv::list_json(src) : cv::list_text(src));
      return 0;
    }
    if (output.empty() && !dry_run)
      lm::fail(lm::ErrorKind::Usage, "no output: give OUTPUT (a file, '-' or a directory)", "or --dry-run / --list to look");
    if (!dry_run && !cv::is_directory_output(cv::Plan{}, output)) lm::cli::refuse_binary_on_terminal(output, force);
    const auto start = std::chrono::steady_clock::now();
    const cv::Plan plan = opts.input == "-" ? cv::plan_conversion(opts)  // stdin cannot be planned twice
                                            : lm::blame_overrides(opts.sets, [&](const std::vector<std::string>& sets) {
                                                cv::ConvertOptions o = opts;
                                                o.sets = sets;
                                                return cv::plan_conversion(o);
                                              });
    if (!tool.quiet)
      for (const auto& note : plan.notes) std::cerr << tool.name() << ": note: " << note << '\n';
    if (dry_run) {
      std::cout << (json ? cv::plan_json(plan) : cv::plan_text(plan));
      return 0;
    }
    const auto files = cv::write_plan(plan, output);
    if (!tool.quiet && lm::cli::stderr_is_terminal()) {
      uint64_t bytes = 0;
      for (const auto& n : plan.graph.nodes) bytes += lm::shape_numel(n.shape) * lm::dtype_size(n.dtype);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cerr << tool.name() << ": wrote " << (files.size() == 1 ? files[0] : output) << " (" << cv::layout_name(plan.from)
                << " -> " << cv::layout_name(plan.to) << ", " << plan.graph.nodes.size() << " tensors, "
                << cv::human_bytes(bytes) << ", " << static_cast<int>(s * 1000) / 1000.0 << " s)\n";
    }
    return 0;
  });
}
