#include "tokenizer/tokenize_job.h"

#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "core/error.h"
#include "core/threads.h"
#include "io/stream.h"
#include "tokenizer/registry.h"

namespace lm {

namespace {

// Fails (Io) before any output is written when an input cannot be read.
void check_readable(const std::string& path) {
  if (path == "-") return;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || ::access(path.c_str(), R_OK) != 0) fail_io("cannot open", path);
  if (S_ISDIR(st.st_mode)) fail(ErrorKind::Io, cat("cannot read ", quote(path), ": is a directory"));
}

}  // namespace

bool writes_binary(const TokenizeJob& job) {
  return job.zstd_level > 0 || (!job.decode && job.format == TokenOutputFormat::Stream);
}

std::string run_tokenize_job(const TokenizeJob& job) {
  const std::vector<std::string> inputs = job.inputs.empty() ? std::vector<std::string>{"-"} : job.inputs;
  for (const std::string& f : inputs) check_readable(f);
  std::unique_ptr<Tokenizer> tokenizer;
  if (!job.tokenizer_path.empty()) {
    if (job.kind == TokenizerKind::ByteV1) fail_usage("--kind byte-v1 takes no --tokenizer file");
    tokenizer = load_tokenizer(job.tokenizer_path, job.kind);
    remember_tokenizer(job.tokenizer_path, *tokenizer);
  } else if (!job.decode) {
    tokenizer = make_tokenizer(job.kind == TokenizerKind::Raw ? TokenizerKind::ByteV1 : job.kind);
  }

  std::unique_ptr<ByteSink> sink = open_output(job.output);
  if (job.zstd_level > 0) sink = zstd_sink(std::move(sink), job.zstd_level);
  if (job.decode) {
    TokenReadOptions read;
    read.format = job.input_format;
    const DecodeStats s = decode_files(inputs, read, *sink, tokenizer.get());
    sink->finish();
    return cat(s.inputs, " inputs, ", s.tokens, " tokens in ", s.records, " records -> ", s.bytes, " bytes");
  }
  EncodeOptions opts = job.encode;
  const bool byte_v1 = tokenizer->spec().kind == TokenizerKind::ByteV1;
  opts.eos = job.eos ? *job.eos : byte_v1 ? EosMode::Soma : EosMode::Never;
  if (opts.threads == 0) opts.threads = thread_count();
  const auto records = make_record_sink(job.format, *sink, *tokenizer, opts.max_seq_len);
  const EncodeStats s = tokenize_files(*tokenizer, inputs, opts, *records);
  records->finish();
  return cat(s.documents, " documents, ", s.bytes, " bytes -> ", s.tokens, " tokens in ", s.records, " records");
}

}  // namespace lm
