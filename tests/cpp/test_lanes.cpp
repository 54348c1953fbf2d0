// The lane helpers: the vectorisable log against the C library, and the lane types agreeing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "himari/common/lanes.h"

using namespace himari;

namespace {
std::int64_t ulp_distance(double a, double b) {
  std::int64_t ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  return ia > ib ? ia - ib : ib - ia;
}
}  // namespace

TEST(Lanes, LogWithinOneUlpOfLibm) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> near_one(0.9, 1.1), exponent(-40.0, 40.0);
  std::int64_t worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const double x = i % 2 ? near_one(rng) : std::exp(exponent(rng));
    worst = std::max(worst, ulp_distance(log_positive(x), std::log(x)));
  }
  EXPECT_LE(worst, 1);
  EXPECT_EQ(log_positive(1.0), 0.0);
  EXPECT_NEAR(log_positive(1e-12), std::log(1e-12), 1e-15 * 28);
}

#if defined(HIMARI_HAVE_VECTOR_LANES)
TEST(Lanes, VectorLogEqualsScalarLog) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> u(0.5, 2.0);
  for (int i = 0; i < 1000; ++i) {
    Vec2d v{u(rng), u(rng)};
    const Vec2d r = log_positive(v);
    EXPECT_EQ(r[0], log_positive(v[0]));
    EXPECT_EQ(r[1], log_positive(v[1]));
  }
}
#endif
