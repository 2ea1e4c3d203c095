// lm-tokenize: bytes to a token stream and back (--decode) with the soma V1 byte-level
// tokenizer, a SentencePiece model or a tokenizer.json. Each input file (or stdin), or
// each line with --lines, is one document; see man/lm-tokenize.1.
#include <cstdio>
#include <string>
#include <vector>

#include "cli.h"
#include "io/tokstream.h"
#include "tokenizer/byte_v1.h"
#include "tokenizer/tokenize_job.h"

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-tokenize",
                     "Tokenize files (each one document) into a token stream with the soma V1 byte-level "
                     "tokenizer, a SentencePiece tokenizer.model or a tokenizer.json BPE, or turn token streams "
                     "back into bytes with --decode.");
  CLI::App& app = tool.app();

  lm::TokenizeJob job;
  job.encode.max_seq_len = lm::byte_v1::kMaxSeqLen;  // byte-v1's; the other tokenizers keep 8192 (below)
  job.encode.threads = 0;  // all, or --threads
  std::string eos_name = "soma", format_name = "stream", input_format_name = "auto", kind_name;
  bool no_eos = false, force = false, add_eos = false;

  app.add_option("FILE", job.inputs, "Input files, each one document ('-' = stdin; default: stdin)");
  app.add_option("-t,--tokenizer", job.tokenizer_path, "Tokenizer file: a SentencePiece tokenizer.model or a "
                                                    "tokenizer.json (default: the byte-level V1 tokenizer)")
      ->type_name("FILE");
  app.add_option("--kind", kind_name, "Tokenizer kind: byte-v1, sentencepiece or hf-bpe (default: detected "
                                      "from the --tokenizer file)")
      ->type_name("KIND")
      ->check(CLI::IsMember({"byte-v1", "sentencepiece", "hf-bpe"}));
  app.add_option("-o,--output", job.output, "Write to FILE (atomically: temporary file, then rename); '-' = stdout")
      ->type_name("FILE");
  CLI::Option* seq_opt =
      app.add_option("--max-seq-len", job.encode.max_seq_len, "Tokens per record (sequence), 1..2147483647 (default: 1024 for byte-v1, soma V1's tokenize; "
                                                     "8192 for the others)")
          ->type_name("N")
          ->check(CLI::Range(size_t{1}, size_t{lm::tokstream::kMaxRecordTokens}));
  CLI::Option* eos_opt = app.add_option("--eos", eos_name, "End-of-document token: soma (after a final chunk with "
                                                            "room), always, never (default: soma for byte-v1, "
                                                            "else never)")
                             ->type_name("MODE")
                             ->check(CLI::IsMember({"soma", "always", "never"}));
  CLI::Option* no_eos_opt = app.add_flag("--no-eos", no_eos, "No end-of-document token (same as --eos never)")
                                ->excludes(eos_opt);
  CLI::Option* add_eos_opt = app.add_flag("--add-eos", add_eos, "End every document with EOS (same as --eos always)")
                                 ->excludes(eos_opt)
                                 ->excludes(no_eos_opt);
  CLI::Option* add_bos_opt = app.add_flag("--add-bos", job.encode.add_bos, "Begin every document with the tokenizer's BOS");
  CLI::Option* lines_opt = app.add_flag("--lines", job.encode.lines, "Each line of the input is one document (the line break "
                                                          "is not part of it)");
  CLI::Option* format_opt = app.add_option("--format", format_name, "Output: stream (binary token stream), text "
                                                                    "(one record per line), jsonl (soma sequences)")
                                ->type_name("FORMAT")
                                ->check(CLI::IsMember({"stream", "text", "jsonl"}));
  app.add_flag("--zstd{3}", job.zstd_level, "Compress the output with zstd at LEVEL 1..19 (--zstd=LEVEL; default 3)")
      ->check(CLI::Range(1, 19));
  CLI::Option* decode_opt =
      app.add_flag("-d,--decode", job.decode, "Turn token streams, llm.c .bin or raw token files back into bytes")
          ->excludes(seq_opt)
          ->excludes(eos_opt)
          ->excludes(no_eos_opt)
          ->excludes(add_eos_opt)
          ->excludes(add_bos_opt)
          ->excludes(lines_opt)
          ->excludes(format_opt);
  app.add_option("--input-format", input_format_name, "With --decode: auto (token stream or llm.c), stream, llmc, "
                                                      "u16 or u32 (headerless nanoGPT tokens)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"auto", "stream", "llmc", "u16", "u32"}))
      ->needs(decode_opt);
  app.add_flag("-f,--force", force, "Write binary output even to a terminal");
  tool.add_threads_option();
  tool.add_quiet_option();

  return tool.run(argc, argv, [&]() -> int {
    job.kind = *lm::tokenizer_kind_from_name(kind_name.empty() ? "raw" : kind_name);
    const bool byte_v1 = job.tokenizer_path.empty() || kind_name == "byte-v1";
    if (!seq_opt->count() && !byte_v1) job.encode.max_seq_len = lm::EncodeOptions{}.max_seq_len;
    if (no_eos) job.eos = lm::EosMode::Never;
    else if (add_eos) job.eos = lm::EosMode::Always;
    else if (eos_opt->count()) job.eos = lm::eos_mode_from_name(eos_name);
    job.format = *lm::token_output_format_from_name(format_name);
    job.input_format = *lm::token_input_format_from_name(input_format_name);
    if (lm::writes_binary(job)) lm::cli::refuse_binary_on_terminal(job.output, force);
    const std::string done = lm::run_tokenize_job(job);
    if (tool.quiet == 0 && lm::cli::stderr_is_terminal()) std::fprintf(stderr, "lm-tokenize: %s\n", done.c_str());
    return 0;
  });
}
