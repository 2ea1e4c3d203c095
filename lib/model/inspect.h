// lm-inspect-config's report: the resolved config and its accounting (model/accounting.h),
// as a text table for people or one JSON object with stable snake_case keys.
#pragma once

#include <cstdint>
#include <string>

#include "model/config_input.h"

namespace lm {

struct InspectOptions {
  int64_t context = 0;  // keys attended for FLOPs; 0 = max_seq_len
  int64_t batch = 8;    // training memory: batch x seq tokens
  int64_t seq = 0;      // 0 = max_seq_len
};

inline constexpr int kInspectReportVersion = 1;  // bump when a JSON key changes meaning or goes away

std::string inspect_text(const ConfigInput& input, const InspectOptions& options);
std::string inspect_json(const ConfigInput& input, const InspectOptions& options);

// The preset table for --list-presets: "name  summary" lines.
std::string preset_list_text();

}  // namespace lm
