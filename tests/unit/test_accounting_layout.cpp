// The accounting's parameter count must equal what a checkpoint of the same config holds:
// the model's parameter table (every supported preset) and the tensors of every fixture file.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/accounting.h"
#include "model/config.h"
#include "model/params.h"
#include "model/presets.h"

namespace lm {
namespace {

TEST(AccountingMatchesLayout, EveryPresetTheModelRuns) {
  int checked = 0;
  for (const std::string& name : preset_names()) {
    const ModelConfig cfg = preset(name);
    if (!unsupported_features(cfg, Capabilities::none()).empty()) continue;  // e.g. MoE: accounting only, for now
    EXPECT_EQ(count_params(cfg).total, ParameterLayout(cfg).num_parameters()) << name;
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(AccountingMatchesLayout, EveryFixtureCheckpoint) {
  const std::filesystem::path dir = std::filesystem::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto model = entry.path() / "model.safetensors";
    if (!std::filesystem::exists(model)) continue;
    const auto st = SafeTensorsFile::open(model.string());
    const ModelConfig cfg = config_from_json(st.metadata_value("lmkit.config").value(), model.string());
    int64_t elements = 0;
    for (const auto& t : st.tensors()) elements += shape_numel(t.shape);
    EXPECT_EQ(count_params(cfg).total, elements) << model;
    EXPECT_EQ(ParameterLayout(cfg).num_parameters(), elements) << model;
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

}  // namespace
}  // namespace lm
