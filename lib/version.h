#pragma once

namespace lm {
// "0.1.0 (abc1234)": the project version and the commit the build was made from (git describe;
// "-dirty" for uncommitted changes), set at every build by cmake/version.cmake.
extern const char* const kVersion;
}  // namespace lm
