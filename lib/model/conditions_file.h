// materium's conditions file (docs/materium.md, "The conditions file"): JSON Lines, line n
// holding the condition values of record n - 1 of the token stream beside it. Read line by
// line (one line in memory at a time, at most kMaxConditionsLine bytes), each value checked
// against the model's conditions; every error is a Data error naming the file, the line and
// the record ("conds.jsonl: line 3 (record 2): missing 'band_gap' (null marks an unknown value)").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/conditions.h"

namespace lm {

class ByteSource;

// The longest line a conditions file may have (a record's values are a few hundred bytes).
constexpr size_t kMaxConditionsLine = size_t{1} << 20;

class ConditionsReader {
 public:
  // `path` "-" = stdin (zstd input is decompressed); its messages name display_name(path).
  ConditionsReader(const std::string& path, const ModelConfig& cfg);
  ConditionsReader(std::unique_ptr<ByteSource> src, const ModelConfig& cfg);
  ~ConditionsReader();

  // Reads the next line into row b of `cb` (made for the same model): false at the end of
  // the file (the final line may lack its newline).
  bool next(ConditionBatch& cb, int64_t b);
  // The lines read so far (= the next record's index).
  int64_t lines() const { return lines_; }
  // Reads on to the end (one line in memory at a time): a Data error "<file>: 10 lines for
  // 12 records" unless the file has exactly `records` lines.
  void expect_records(int64_t records);
  const std::string& name() const { return name_; }

 private:
  bool read_line(std::string& line);

  std::unique_ptr<ByteSource> src_;
  ModelConfig cfg_;
  std::string name_, buf_, line_;
  size_t pos_ = 0;
  bool eof_ = false;
  int64_t lines_ = 0;
};

// One JSON object (`line`, the values of one record) into row b of `cb`; `where` starts every
// message ("conds.jsonl: line 3 (record 2): "). What ConditionsReader::next does per line.
void parse_condition_record(const std::string& line, ConditionBatch& cb, int64_t b, const std::string& where);

// Every record of the files, one per token stream in order, whose streams have the given
// record counts: a batch of sum(records) rows. A count mismatch names the file.
ConditionBatch read_conditions(const std::vector<std::string>& paths, const std::vector<int64_t>& records,
                               const ModelConfig& cfg);

// Row r of `src` into row b of `dst` (both made for the same conditions; presence is `dst`'s).
void copy_condition_row(const ConditionBatch& src, int64_t r, ConditionBatch& dst, int64_t b);

// The condition names of `cfg`, "space_group, reduced_formula, band_gap".
std::string condition_names(const ModelConfig& cfg);

}  // namespace lm
