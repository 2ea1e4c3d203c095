#include "model/conditions_file.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "io/stream.h"

namespace lm {

using nlohmann::json;

namespace {

// A JSON value as shown in a message: compact, cut at 60 bytes.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// An integer JSON value (not 1.0, not "1"), clamped into int64 (range checks follow).
bool as_integer(const json& v, int64_t& out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    out = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                         : static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    out = v.get<int64_t>();
    return true;
  }
  return false;
}

}  // namespace

std::string condition_names(const ModelConfig& cfg) {
  std::string s;
  for (const ConditionConfig& c : cfg.conditions) s += (s.empty() ? "" : ", ") + c.name;
  return s;
}

void parse_condition_record(const std::string& line, ConditionBatch& cb, int64_t b, const std::string& where) {
  json obj;
  try {
    obj = parse_json_strict(line, "");
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind("duplicate key", 0) == 0) fail_data(cat(where, what));
    fail_data(cat(where, "not a JSON object: ", what));
  }
  if (!obj.is_object()) fail_data(cat(where, "not a JSON object: got ", shown(obj)));
  const std::vector<ConditionConfig>& conds = cb.conditions();
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (cb.find(it.key()) < 0) {
      std::string names;
      for (const ConditionConfig& c : conds) names += (names.empty() ? "" : ", ") + c.name;
      fail_data(cat(where, "unknown condition ", quote(it.key()), " (the model's: ", names, ")"));
    }
  for (size_t i = 0; i < conds.size(); ++i) {
    const ConditionConfig& c = conds[i];
    const auto it = obj.find(c.name);
    if (it == obj.end()) fail_data(cat(where, "missing ", quote(c.name), " (null marks an unknown value)"));
    const json& v = *it;
    const std::string at = cat(where, quote(c.name), ": ");
    if (v.is_null()) {
      cb.set_null(i, b);
      continue;
    }
    switch (c.proj_layer_type) {
      case ProjLayerType::Linear: {
        bool ok = v.is_array() && static_cast<int64_t>(v.size()) == c.input_dim;
        std::vector<float> x;
        if (ok)
          for (const json& e : v) {
            const double d = e.is_number() ? e.get<double>() : std::nan("");
            const float f = static_cast<float>(d);
            if (!std::isfinite(d) || !std::isfinite(f)) {
              ok = false;
              break;
            }
            x.push_back(f);
          }
        if (!ok)
          fail_data(cat(at, "expected an array of ", c.input_dim, c.input_dim == 1 ? " finite number" : " finite numbers",
                        ", got ", shown(v)));
        cb.set_linear(i, b, x.data());
        break;
      }
      case ProjLayerType::Embedding: {
        int64_t k = 0;
        if (!as_integer(v, k) || k < 0 || k >= c.input_dim)
          fail_data(cat(at, "expected an integer class in 0..", c.input_dim - 1, ", got ", shown(v)));
        cb.set_class(i, b, k);
        break;
      }
      case ProjLayerType::Formula: {
        const int64_t S = c.positions();
        const std::string shape = cat("expected 1..", S, " [element id, count] pairs, got ");
        if (!v.is_array() || v.empty() || static_cast<int64_t>(v.size()) > S) fail_data(cat(at, shape, shown(v)));
        std::vector<std::pair<int64_t, int64_t>> pairs;
        std::set<int64_t> seen;
        const int64_t V = static_cast<int64_t>(cb.vocab_size());
        for (const json& p : v) {
          int64_t e = 0, n = 0;
          if (!p.is_array() || p.size() != 2 || !as_integer(p[0], e) || !as_integer(p[1], n))
            fail_data(cat(at, shape, shown(v)));
          if (e < 0 || e >= V) fail_data(cat(at, "element id ", e, " is not below vocab_size ", V));
          if (n < 1 || n > c.input_dim)
            fail_data(cat(at, "count ", n, " of element ", e, " is not in 1..", c.input_dim));
          if (!seen.insert(e).second) fail_data(cat(at, "element ", e, " appears twice"));
          pairs.emplace_back(e, n);
        }
        cb.set_formula(i, b, pairs);
        break;
      }
    }
  }
}

ConditionsReader::ConditionsReader(const std::string& path, const ModelConfig& cfg)
    : ConditionsReader(open_input(path), cfg) {
  name_ = path == "-" ? "<stdin>" : display_name(path);
}

ConditionsReader::ConditionsReader(std::unique_ptr<ByteSource> src, const ModelConfig& cfg)
    : src_(std::move(src)), cfg_(cfg) {
  name_ = src_->name();
}

ConditionsReader::~ConditionsReader() = default;

bool ConditionsReader::read_line(std::string& line) {
  line.clear();
  while (true) {
    const size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      line.append(buf_, pos_, nl - pos_);
      pos_ = nl + 1;
      break;
    }
    line.append(buf_, pos_, std::string::npos);
    buf_.clear();
    pos_ = 0;
    if (line.size() > kMaxConditionsLine)
      fail_data(cat(name_, ": line ", lines_ + 1, " (record ", lines_, "): longer than ", kMaxConditionsLine,
                    " bytes"));
    if (eof_) {
      if (line.empty()) return false;
      break;  // a last line without its newline
    }
    buf_.resize(64 << 10);
    const size_t n = src_->read_some(buf_.data(), buf_.size());
    buf_.resize(n);
    if (n == 0) eof_ = true;
  }
  if (line.size() > kMaxConditionsLine)
    fail_data(cat(name_, ": line ", lines_ + 1, " (record ", lines_, "): longer than ", kMaxConditionsLine, " bytes"));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

bool ConditionsReader::next(ConditionBatch& cb, int64_t b) {
  if (!read_line(line_)) return false;
  const int64_t record = lines_++;
  parse_condition_record(line_, cb, b, cat(name_, ": line ", record + 1, " (record ", record, "): "));
  return true;
}

void ConditionsReader::expect_records(int64_t records) {
  std::string scratch;
  while (read_line(scratch)) ++lines_;  // to the end: the message gives the count
  if (lines_ != records)
    fail(ErrorKind::Data, cat(name_, ": ", lines_, lines_ == 1 ? " line" : " lines", " for ", records,
                              records == 1 ? " record" : " records"),
              "the conditions file has one line per record of its token stream");
}

ConditionBatch read_conditions(const std::vector<std::string>& paths, const std::vector<int64_t>& records,
                               const ModelConfig& cfg) {
  if (paths.size() != records.size())
    fail_usage(cat(paths.size(), " conditions files for ", records.size(), " token streams: give one per stream"));
  int64_t total = 0;
  for (const int64_t r : records) total += r;
  ConditionBatch cb(cfg, std::max<int64_t>(total, 1));
  int64_t row = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    ConditionsReader reader(paths[f], cfg);
    for (int64_t r = 0; r < records[f]; ++r)
      if (!reader.next(cb, row + r)) break;
    reader.expect_records(records[f]);
    row += records[f];
  }
  return cb;
}

void copy_condition_row(const ConditionBatch& src, int64_t r, ConditionBatch& dst, int64_t b) {
  const std::vector<ConditionConfig>& conds = src.conditions();
  for (size_t i = 0; i < conds.size(); ++i) {
    const ConditionConfig& c = conds[i];
    const ConditionBatch::Values& v = src.values(i);
    if (v.null[static_cast<size_t>(r)]) {
      dst.set_null(i, b);
      continue;
    }
    switch (c.proj_layer_type) {
      case ProjLayerType::Linear:
        dst.set_linear(i, b, v.linear.data() + r * c.input_dim);
        break;
      case ProjLayerType::Embedding:
        dst.set_class(i, b, v.classes[static_cast<size_t>(r)]);
        break;
      case ProjLayerType::Formula: {
        std::vector<std::pair<int64_t, int64_t>> pairs;
        const int32_t* slot = v.formula.data() + r * c.positions() * 2;
        for (int64_t j = 0; j < c.positions() && slot[2 * j] >= 0; ++j) pairs.emplace_back(slot[2 * j], slot[2 * j + 1]);
        dst.set_formula(i, b, pairs);
        break;
      }
    }
  }
}

}  // namespace lm
