// Training data: token streams read into memory, and batches drawn from them either as
// random windows (nanoGPT: a uniform start anywhere in the concatenated tokens, positions
// 0..T-1) or as sequential chunks (soma V1: each record cut into windows of T tokens in
// order, with the record's position ids, padded with PAD). Deterministic from a seed; the
// whole position is a small state that a checkpoint saves.
// Shape letters: B batch rows, T time (tokens per row).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "io/tokstream.h"

namespace lm::train {

// All tokens of one or more inputs, concatenated, with the record table.
struct TokenData {
  struct Record {
    int64_t begin = 0;   // index of the first token in `tokens`
    int64_t size = 0;    // tokens
    uint64_t start = 0;  // position of the first token
  };
  TokenizerSpec spec;            // of the first input (all inputs must agree); kind Raw when headerless
  std::vector<uint32_t> tokens;  // [n]
  std::vector<Record> records;
  std::vector<std::string> sources;
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

// Reads every input ("-" = stdin, at most once). Inputs must name the same tokenizer
// (Data error otherwise). Headerless inputs (llm.c) have kind Raw and vocab 0.
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
};

}  // namespace lm::train
