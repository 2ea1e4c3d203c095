// lm-tokenize: bytes to a token stream and back (--decode) with the soma V1 byte-level
// tokenizer, a SentencePiece model or a tokenizer.json. Each input file (or stdin), or
// each line with --lines, is one document; see man/lm-tokenize.1.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "core/error.h"
#include "core/threads.h"
#include "io/stream.h"
#include "io/tokstream.h"
#include "tokenizer/byte_v1.h"
#include "tokenizer/registry.h"
#include "tokenizer/tokenizer.h"

namespace {

// Fails (Io) before any output is written when an input cannot be read.
void check_readable(const std::string& path) {
  if (path == "-") return;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || ::access(path.c_str(), R_OK) != 0) lm::fail_io("cannot open", path);
  if (S_ISDIR(st.st_mode)) lm::fail(lm::ErrorKind::Io, lm::cat("cannot read ", lm::quote(path), ": is a directory"));
}

}  // namespace

int main(int argc, char** argv) {
  lm::cli::Tool tool("lm-tokenize",
                     "Tokenize files (each one document) into a token stream with the soma V1 byte-level "
                     "tokenizer, a SentencePiece tokenizer.model or a tokenizer.json BPE, or turn token streams "
                     "back into bytes with --decode.");
  CLI::App& app = tool.app();

  std::vector<std::string> files;
  std::string output = "-";
  size_t max_seq_len = lm::byte_v1::kMaxSeqLen;
  std::string eos_name = "soma", format_name = "stream", input_format_name = "auto";
  std::string tokenizer_path, kind_name;
  bool no_eos = false, decode = false, force = false, add_bos = false, add_eos = false, lines = false;
  int zstd_level = 0;

  app.add_option("FILE", files, "Input files, each one document ('-' = stdin; default: stdin)");
  app.add_option("-t,--tokenizer", tokenizer_path, "Tokenizer file: a SentencePiece tokenizer.model or a "
                                                    "tokenizer.json (default: the byte-level V1 tokenizer)")
      ->type_name("FILE");
  app.add_option("--kind", kind_name, "Tokenizer kind: byte-v1, sentencepiece or hf-bpe (default: detected "
                                      "from the --tokenizer file)")
      ->type_name("KIND")
      ->check(CLI::IsMember({"byte-v1", "sentencepiece", "hf-bpe"}));
  app.add_option("-o,--output", output, "Write to FILE (atomically: temporary file, then rename); '-' = stdout")
      ->type_name("FILE");
  CLI::Option* seq_opt =
      app.add_option("--max-seq-len", max_seq_len, "Tokens per record (sequence), 1..2147483647 (default: 8192, soma V1)")
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
  CLI::Option* add_bos_opt = app.add_flag("--add-bos", add_bos, "Begin every document with the tokenizer's BOS");
  CLI::Option* lines_opt = app.add_flag("--lines", lines, "Each line of the input is one document (the line break "
                                                          "is not part of it)");
  CLI::Option* format_opt = app.add_option("--format", format_name, "Output: stream (binary token stream), text "
                                                                    "(one record per line), jsonl (soma sequences)")
                                ->type_name("FORMAT")
                                ->check(CLI::IsMember({"stream", "text", "jsonl"}));
  app.add_flag("--zstd{3}", zstd_level, "Compress the output with zstd at LEVEL 1..19 (--zstd=LEVEL; default 3)")
      ->check(CLI::Range(1, 19));
  CLI::Option* decode_opt =
      app.add_flag("-d,--decode", decode, "Turn token streams, llm.c .bin or raw token files back into bytes")
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
    if (files.empty()) files.push_back("-");
    for (const std::string& f : files) check_readable(f);
    const auto kind = lm::tokenizer_kind_from_name(kind_name.empty() ? "raw" : kind_name);
    std::unique_ptr<lm::Tokenizer> tokenizer;
    if (!tokenizer_path.empty()) {
      if (kind == lm::TokenizerKind::ByteV1) lm::fail_usage("--kind byte-v1 takes no --tokenizer file");
      tokenizer = lm::load_tokenizer(tokenizer_path, *kind);
      lm::remember_tokenizer(tokenizer_path, *tokenizer);  // so that --decode finds it by the stream's header
    } else if (!decode) {
      tokenizer = lm::make_tokenizer(kind == lm::TokenizerKind::Raw ? lm::TokenizerKind::ByteV1 : *kind);
    }
    const bool byte_v1 = !tokenizer || tokenizer->spec().kind == lm::TokenizerKind::ByteV1;
    const lm::EosMode eos = no_eos                        ? lm::EosMode::Never
                            : add_eos                     ? lm::EosMode::Always
                            : eos_opt->count() || byte_v1 ? *lm::eos_mode_from_name(eos_name)
                                                          : lm::EosMode::Never;
    const lm::TokenOutputFormat format = *lm::token_output_format_from_name(format_name);
    const bool binary = zstd_level > 0 || (!decode && format == lm::TokenOutputFormat::Stream);
    if (binary) lm::cli::refuse_binary_on_terminal(output, force);
    const bool report = tool.quiet == 0 && lm::cli::stderr_is_terminal();

    std::unique_ptr<lm::ByteSink> sink = lm::open_output(output);
    if (zstd_level > 0) sink = lm::zstd_sink(std::move(sink), zstd_level);

    if (decode) {
      lm::TokenReadOptions read_opts;
      read_opts.format = *lm::token_input_format_from_name(input_format_name);
      const lm::DecodeStats s = lm::decode_files(files, read_opts, *sink, tokenizer.get());
      sink->finish();
      if (report)
        std::fprintf(stderr, "lm-tokenize: %llu inputs, %llu tokens in %llu records -> %llu bytes\n",
                     (unsigned long long)s.inputs, (unsigned long long)s.tokens, (unsigned long long)s.records,
                     (unsigned long long)s.bytes);
      return 0;
    }

    lm::EncodeOptions opts;
    opts.max_seq_len = max_seq_len;
    opts.eos = eos;
    opts.add_bos = add_bos;
    opts.lines = lines;
    opts.threads = lm::thread_count();
    const auto records = lm::make_record_sink(format, *sink, *tokenizer, max_seq_len);
    const lm::EncodeStats s = lm::tokenize_files(*tokenizer, files, opts, *records);
    records->finish();
    if (report)
      std::fprintf(stderr, "lm-tokenize: %llu documents, %llu bytes -> %llu tokens in %llu records\n",
                   (unsigned long long)s.documents, (unsigned long long)s.bytes, (unsigned long long)s.tokens,
                   (unsigned long long)s.records);
    return 0;
  });
}
