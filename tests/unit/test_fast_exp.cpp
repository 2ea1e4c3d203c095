// exp_fast (core/fast_exp.h) against its reference twin std::exp, in double.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/fast_exp.h"

namespace {

// |exp_fast(x) - e^x| in units in the last place of the float nearest e^x.
double ulp_error(float x) {
  const double want = std::exp(static_cast<double>(x));
  const float wf = static_cast<float>(want);
  const double ulp = std::nextafter(wf, std::numeric_limits<float>::infinity()) - wf;
  return std::abs(static_cast<double>(lm::exp_fast(x)) - want) / ulp;
}

TEST(FastExp, WithinTwoUlpOverTheNormalRange) {
  // Every float from -87 to 88.7 in steps of about a millionth of its size (tens of millions
  // of points), and the values around 0 where the polynomial does all the work.
  double worst = 0;
  float at = 0;
  int64_t points = 0;
  for (float x = -87.0f; x < 88.7f; x = std::nextafter(x, 100.0f) + std::max(std::abs(x) * 4e-6f, 1e-6f)) {
    const double e = ulp_error(x);
    if (e > worst) worst = e, at = x;
    ++points;
  }
  for (float x = -1e-3f; x < 1e-3f; x = std::nextafter(x, 1.0f) + 1e-8f) worst = std::max(worst, ulp_error(x));
  EXPECT_LE(worst, 2.0) << "at " << at;
  EXPECT_GT(points, 1000000);
  EXPECT_EQ(lm::exp_fast(0.0f), 1.0f);
}

TEST(FastExp, EdgesUnderflowOverflowAndNaN) {
  EXPECT_EQ(lm::exp_fast(-87.5f), 0.0f);
  EXPECT_EQ(lm::exp_fast(-1000.0f), 0.0f);
  EXPECT_EQ(lm::exp_fast(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(lm::exp_fast(89.0f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(lm::exp_fast(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(lm::exp_fast(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_GT(lm::exp_fast(-87.3f), 0.0f);  // still a normal float there
  EXPECT_LE(ulp_error(-87.3f), 2.0);
  EXPECT_LE(ulp_error(88.7f), 2.0);
}

}  // namespace
