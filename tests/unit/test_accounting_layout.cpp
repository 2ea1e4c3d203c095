// The accounting's parameter count must equal what a checkpoint of the same config holds:
// the model's parameter table (every supported preset) and the tensors of every fixture file.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "fixture_util.h"

#include "core/error.h"
#include "io/safetensors.h"
#include "model/accounting.h"
#include "model/config.h"
#include "model/params.h"
#include "model/presets.h"
#include "model/transformer.h"

namespace lm {
namespace {

TEST(AccountingMatchesLayout, EveryPresetTheModelRuns) {
  int checked = 0;
  for (const std::string& name : preset_names()) {
    const ModelConfig cfg = preset(name);
    if (!unsupported_features(cfg, model_capabilities()).empty()) continue;  // features the model does not run yet
    EXPECT_EQ(count_params(cfg).total, ParameterLayout(cfg).num_parameters()) << name;
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(AccountingMatchesLayout, EveryFixtureCheckpoint) {
  const std::filesystem::path dir = std::filesystem::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures";
  int checked = 0;
  std::vector<std::filesystem::path> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) dirs.push_back(entry.path());
  for (const std::string& name : fixture::llama4_fixtures()) dirs.push_back(dir / name);
  for (const auto& d : dirs) {
    const auto model = d / "model.safetensors";
    if (!std::filesystem::exists(model)) continue;
    const auto st = SafeTensorsFile::open(model.string());
    const ModelConfig cfg = config_from_json(st.metadata_value("lmkit.config").value(), model.string());
    int64_t elements = 0;
    for (const auto& t : st.tensors()) elements += shape_numel(t.shape);
    EXPECT_EQ(count_params(cfg).total, elements) << model;
    EXPECT_EQ(ParameterLayout(cfg).num_parameters(), elements) << model;
    ++checked;
  }
  EXPECT_GE(checked, 14);
}

}  // namespace
}  // namespace lm
