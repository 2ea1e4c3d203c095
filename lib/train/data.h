// Training data: token streams viewed in place, and batches drawn from them either as
// random windows (nanoGPT: a uniform start anywhere in the concatenated tokens, positions
// 0..T-1) or as sequential chunks (soma V1: each record cut into windows of T tokens in
// order, with the record's position ids, padded with PAD). Deterministic from a seed; the
// whole position is a small state that a checkpoint saves.
//
// Memory: the tokens are never copied whole. An uncompressed regular file is mapped as it
// is; a pipe, stdin or a zstd-compressed input is decompressed once into an unlinked
// temporary file in $TMPDIR (default /tmp) and that is mapped (random windows need random
// access, which a zstd frame does not give, and a file's pages are the kernel's to drop
// when memory is short, so corpora larger than RAM train). What stays in the process is the
// record table (40 bytes a record) and whatever pages of the mappings the kernel keeps.
// Shape letters: B batch rows, T time (tokens per row).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/rng.h"
#include "io/tokstream.h"
#include "model/conditions.h"
#include "model/vision.h"

namespace lm::train {

// What identifies an input's content cheaply: its (decompressed) size and a hash of its
// first and last 64 KiB and 64 blocks of 4 KiB spread evenly in between. A run records one
// per training stream, so a resume can tell that the data changed under it.
struct DataFingerprint {
  std::string source;  // the path as given (messages only: content decides equality)
  uint64_t bytes = 0;
  uint64_t hash = 0;
  bool same_content(const DataFingerprint& o) const { return bytes == o.bytes && hash == o.hash; }
};
nlohmann::json fingerprint_to_json(const DataFingerprint& f);
DataFingerprint fingerprint_from_json(const nlohmann::json& j);  // Data errors for a malformed object
// The fingerprint of `size` bytes at `data`. `after_block` (may be empty) is told each range
// [begin, end) once it is read (to hand a mapping's pages back at once).
DataFingerprint fingerprint_bytes(const uint8_t* data, uint64_t size, std::string source,
                                  const std::function<void(uint64_t, uint64_t)>& after_block = {});

// The tokens of one or more inputs, concatenated, with the record table.
class TokenData {
 public:
  struct Record {
    int64_t begin = 0;              // index of the record's first token in the concatenation
    int64_t size = 0;               // tokens (> 0)
    uint64_t start = 0;             // position of the first token
    const uint8_t* data = nullptr;  // the tokens, `width` bytes each, little-endian
    uint32_t width = 4;             // 2 or 4
  };

  TokenizerSpec spec;  // of the first input (all inputs must agree); kind Raw when headerless
  std::vector<std::string> sources;
  std::vector<DataFingerprint> fingerprints;  // one per source
  // Records (with tokens: an empty record is no record here) each source gave, in order:
  // what a conditions file per source is paired with (docs/materium.md).
  std::vector<int64_t> source_records;

  int64_t size() const { return size_; }  // tokens
  const std::vector<Record>& records() const { return records_; }
  // Token i of the concatenation, 0 <= i < size().
  uint32_t at(int64_t i) const;
  // Tokens [begin, begin + n) of the concatenation (across records) into out [n].
  void read(int64_t begin, int64_t n, int32_t* out) const;
  // Token i of record r, 0 <= i < its size.
  uint32_t at(const Record& r, int64_t i) const;

  // The largest token id and the index of its first occurrence (-1 when empty): the
  // vocabulary check of headerless inputs needs no second pass over the data.
  uint32_t max_token() const { return max_token_; }
  int64_t max_token_index() const { return max_token_index_; }

  // Appends a record of n tokens (a copy: tests and small inputs). Empty records are dropped.
  void append(const uint32_t* tokens, size_t n, uint64_t start);
  // Appends a record of n tokens of `width` bytes at `data`, which `owner` keeps alive.
  void append_view(const uint8_t* data, uint32_t width, size_t n, uint64_t start, std::shared_ptr<const void> owner);
  // Extends the last record by n tokens that follow it in memory (a record read in chunks).
  void extend_last(size_t n);

 private:
  void note_max(const uint32_t* tokens, size_t n, int64_t first_index);
  friend TokenData load_tokens(const std::vector<std::string>&, const TokenReadOptions&);

  std::vector<Record> records_;
  int64_t size_ = 0;
  uint32_t max_token_ = 0;
  int64_t max_token_index_ = -1;
  std::vector<std::shared_ptr<const void>> storage_;  // mappings and copies the records point into
};

// Reads every input ("-" = stdin, at most once) in bounded memory (see above). Inputs must
// name the same tokenizer (Data error otherwise). Headerless inputs (llm.c) have kind Raw
// and vocab 0.
TokenData load_tokens(const std::vector<std::string>& paths, const TokenReadOptions& opts = {});

// Refuses (Data) tokens that do not fit a model of vocabulary `vocab` (stream header
// vocab size differs, or for headerless inputs a token >= vocab); `what` names the data.
void check_vocab(const TokenData& data, int64_t vocab, const std::string& what);

enum class SampleMode { Random, Sequential };
const char* sample_mode_name(SampleMode m);  // "random", "sequential"
std::optional<SampleMode> sample_mode_from_name(std::string_view name);

// One batch: inputs, targets and positions, each [B, T]. Targets equal to `pad` are padding
// (the loss ignores them when the model's pad_id is `pad`).
struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> inputs;   // [B, T]
  std::vector<int32_t> targets;  // [B, T]
  std::vector<int64_t> pos;      // [B, T]
  bool has_pos = false;          // false: positions are 0..T-1 (random windows)
  std::vector<int64_t> records;  // [B] sequential: the record of each row (its window's)
  // materium: the rows' condition values (their records', from the conditions file), when
  // the model has conditions; has_conditions false otherwise.
  ConditionBatch conditions;
  bool has_conditions = false;
  // Vision models (docs/llama4.md §8): each row's image features, the places of its record's
  // features that fall among the row's window (sequential windows only), when lm-train has
  // --vision; has_vision false otherwise. vision[b].places points into vision_places[b].
  std::vector<VisionRow> vision;                     // [B]
  std::vector<std::vector<int64_t>> vision_places;   // [B] places relative to the window
  bool has_vision = false;
  int64_t tokens() const { return B * T; }
};

// Where a loader is: saved in checkpoints so a resumed run draws the same batches.
struct LoaderState {
  Rng::State rng{};     // random windows
  uint64_t cursor = 0;  // sequential: the next window's index (wraps each epoch)
  uint64_t epoch = 0;   // sequential: completed passes over the data
};

class DataLoader {
 public:
  // Throws Data when the data cannot fill one window: random mode needs at least T + 1
  // tokens, sequential mode at least one token; `pad` is the PAD id for sequential padding
  // (required there when a record is not a multiple of T: Usage error if < 0 and needed).
  DataLoader(const TokenData* data, SampleMode mode, int64_t B, int64_t T, uint64_t seed, int32_t pad,
             const std::string& what);
  // materium (docs/materium.md, "Rows, records and decoding"): every row is one whole record
  // from its first token, padded with PAD. Sequential mode only (Usage error otherwise); a
  // record longer than T, or one that does not start at position 0 (a chunk of a longer
  // document), is a Data error naming it. Call before the first batch.
  void require_whole_records();

  void next(Batch& out);

  // Deterministic evaluation windows: non-overlapping windows of T tokens (stride T) from
  // the start of the data, regardless of mode; false when exhausted. `index` counts batches.
  // Sequential mode uses the records' windows in order.
  bool eval_batch(int64_t index, Batch& out) const;
  int64_t eval_batches() const;  // how many eval_batch calls return true

  LoaderState state() const { return {rng_.state(), cursor_, epoch_}; }
  void set_state(const LoaderState& s);
  SampleMode mode() const { return mode_; }
  uint64_t windows() const;  // sequential: windows per epoch; random: possible starts

 private:
  void fill_window(int64_t row, uint64_t window, Batch& out) const;  // sequential window
  void fill_span(int64_t row, int64_t begin, Batch& out) const;      // tokens[begin .. begin+T]
  void resize(Batch& out, bool has_pos) const;

  const TokenData* data_;
  SampleMode mode_;
  int64_t B_, T_;
  int32_t pad_;
  Rng rng_;
  uint64_t cursor_ = 0, epoch_ = 0;
  std::vector<uint64_t> record_windows_;  // sequential: prefix sums of windows per record [R + 1]
  mutable std::vector<int32_t> span_;     // random: one window of T + 1 tokens
};

}  // namespace lm::train
