// lm-inspect-config: resolve a model config (preset, config JSON or checkpoint, plus --set
// overrides), validate it, and report parameter, FLOP and memory accounting.
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/config_formats.h"
#include "model/config_input.h"
#include "model/finite.h"
#include "model/inspect.h"
#include "model/presets.h"
#include "model/user_config.h"

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-inspect-config",
                     "Resolve and validate a model config (a preset, a config JSON file or a safetensors checkpoint) "
                     "and report its parameter, FLOP and memory accounting.");
  CLI::App& app = tool.app();

  std::string input;
  std::vector<std::string> sets;
  bool json = false, list_presets = false, print_config = false;
  lm::InspectOptions options;

  app.add_option("input", input, "Preset name, config JSON file, or safetensors checkpoint ('-' = stdin)");
  app.add_option("--set", sets, "Override a config field: KEY=VALUE, nested keys with dots (rope_scaling.type=llama3); "
                                "VALUE is JSON when it parses, else a string")
      ->type_name("KEY=VALUE")
      ->default_str("")
      ->allow_extra_args(false);
  app.add_flag("--json", json, "Print one JSON object: the resolved config and its accounting");
  app.add_flag("--config", print_config, "Print only the resolved config as JSON (all fields), e.g. to edit and reuse");
  std::string config_format = "auto", write_format = "lmkit";
  app.add_option("--config-format", config_format, "Format of a config JSON input: auto (by its keys), lmkit, materium, "
                                                   "xlstm-jax, mobilellm, soma")
      ->type_name("FORMAT")
      ->check(CLI::IsMember(lm::config_format_names()));
  app.add_option("--write-format", write_format, "With --config: write the config in this format: lmkit, materium, "
                                                 "xlstm-jax, mobilellm, soma")
      ->type_name("FORMAT")
      ->check(CLI::IsMember([] {
        std::vector<std::string> names = {"lmkit"};
        for (const std::string& n : lm::seed_format_names()) names.push_back(n);
        return names;
      }()));
  app.add_option("--context", options.context, "Context length for the FLOP accounting (default: max_seq_len)")
      ->type_name("N")
      ->default_str("")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", options.batch, "Batch size for the training memory estimate (default: 8)")
      ->type_name("B")
      ->default_str("")
      ->check(CLI::PositiveNumber);
  app.add_option("--seq", options.seq, "Sequence length for the training memory estimate (default: max_seq_len)")
      ->type_name("T")
      ->default_str("")
      ->check(CLI::PositiveNumber);
  app.add_flag("--list-presets", list_presets, "List the preset names and what they are, then exit");
  app.footer("Presets: " + [] {
    std::string s;
    for (const auto& n : lm::preset_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }() + "\nSee man lm-inspect-config for the accounting conventions.");

  return tool.run(argc, argv, [&] {
    if (list_presets) {
      std::cout << lm::preset_list_text();
      return 0;
    }
    if (input.empty())
      lm::fail(lm::ErrorKind::Usage, "no input: give a preset name, a config JSON file or a checkpoint",
               "run 'lm-inspect-config --list-presets' for the presets");
    if (json && print_config) lm::fail_usage("--json and --config are exclusive");
    if (write_format != "lmkit" && !print_config) lm::fail_usage("--write-format goes with --config");
    const lm::ConfigInput in = lm::load_user_config(input, sets, config_format);
    if (in.kind == lm::ConfigInput::Kind::Checkpoint && in.file)  // the checkpoint as read (stdin too)
      if (const auto bad = lm::first_non_finite(*in.file))
        tool.warn(lm::quote(in.name) + ": non-finite weights: " + bad->describe());
    for (const std::string& key : in.noted)
      if (tool.quiet == 0) tool.warn(lm::quote(in.name) + ": " + key + " has no effect on the math (accepted, not kept)");
    if (print_config && write_format != "lmkit")
      std::cout << lm::config_to_seed_json(in.config, *lm::seed_format_from_name(write_format)) << '\n';
    else if (print_config)
      std::cout << lm::config_to_json(in.config) << '\n';
    else if (json)
      std::cout << lm::inspect_json(in, options);
    else
      std::cout << lm::inspect_text(in, options);
    return 0;
  });
}
