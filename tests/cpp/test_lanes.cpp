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

TEST(Lanes, ExpWithinOneUlpOfLibm) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-60.0, 60.0), small(-1e-3, 1e-3);
  std::int64_t worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const double x = i % 2 ? u(rng) : small(rng);
    worst = std::max(worst, ulp_distance(exp_bounded(x), std::exp(x)));
  }
  EXPECT_LE(worst, 1);
  EXPECT_EQ(exp_bounded(0.0), 1.0);
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
    const Vec2d x{u(rng) * 20.0 - 25.0, u(rng) * 10.0};
    const Vec2d ex = exp_bounded(x);
    EXPECT_EQ(ex[0], exp_bounded(x[0]));
    EXPECT_EQ(ex[1], exp_bounded(x[1]));
  }
}
#endif
