// The EKF against closed forms: with the volatility observation off it is a linear Kalman
// filter, which must match the textbook matrix equations and, for a local-level model, the
// closed-form steady-state gain.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "himari/filters/ekf.h"
#include "himari/filters/ekf_math.h"

using namespace himari;

namespace {
std::vector<double> random_prices(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> ret(0.0, 0.002);
  std::vector<double> p(n);
  double x = std::log(100.0);
  for (auto& v : p) v = std::exp(x += ret(rng));
  return p;
}

// Textbook KF on the 3-D constant-acceleration model with a scalar observation of the level.
struct LinearKf {
  double x[3], p[3][3];
};
}  // namespace

TEST(Ekf, LinearCaseMatchesTextbookKalmanFilter) {
  EkfParams prm;
  prm.use_volatility_obs = false;
  prm.q_level = 4e-6;
  prm.q_velocity = 1e-9;
  prm.q_acceleration = 1e-12;
  const auto prices = random_prices(500, 1);
  std::vector<double> states(prices.size() * 4);
  ekf_cpu(prices.data(), 1, static_cast<std::int64_t>(prices.size()), prm, states.data(), nullptr);

  const double f[3][3] = {{1, 1, 0.5}, {0, 1, 1}, {0, 0, 1}};
  const double q[3] = {prm.q_level, prm.q_velocity, prm.q_acceleration};
  LinearKf kf{{std::log(prices[0]), 0, 0}, {{prm.p0_level, 0, 0}, {0, prm.p0_velocity, 0}, {0, 0, prm.p0_acceleration}}};
  for (std::size_t t = 0; t < prices.size(); ++t) {
    if (t > 0) {  // x = F x, P = F P F' + Q
      double x[3] = {0, 0, 0}, fp[3][3] = {}, p[3][3] = {};
      for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k) x[i] += f[i][k] * kf.x[k];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          for (int k = 0; k < 3; ++k) fp[i][j] += f[i][k] * kf.p[k][j];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
          for (int k = 0; k < 3; ++k) p[i][j] += fp[i][k] * f[j][k];
          p[i][j] += i == j ? q[i] : 0.0;
        }
      for (int i = 0; i < 3; ++i) {
        kf.x[i] = x[i];
        for (int j = 0; j < 3; ++j) kf.p[i][j] = p[i][j];
      }
    }
    // K = P H' / (H P H' + r), x += K (y - x0), P = (I - K H) P
    const double s = kf.p[0][0] + prm.r_level;
    const double k[3] = {kf.p[0][0] / s, kf.p[1][0] / s, kf.p[2][0] / s};
    const double innov = std::log(prices[t]) - kf.x[0];
    double p[3][3];
    for (int i = 0; i < 3; ++i) {
      kf.x[i] += k[i] * innov;
      for (int j = 0; j < 3; ++j) p[i][j] = kf.p[i][j] - k[i] * kf.p[0][j];
    }
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) kf.p[i][j] = p[i][j];
    for (int i = 0; i < 3; ++i)
      ASSERT_NEAR(states[t * 4 + i], kf.x[i], 1e-9 * (1.0 + std::fabs(kf.x[i]))) << "t=" << t << " i=" << i;
  }
}

TEST(Ekf, LocalLevelReachesClosedFormSteadyStateGain) {
  // Velocity and acceleration pinned at 0: a random walk observed in noise, whose steady-state
  // prior variance is P = (q + sqrt(q^2 + 4 q r)) / 2 and gain K = P / (P + r).
  EkfParams prm;
  prm.use_volatility_obs = false;
  prm.q_level = 1e-6;
  prm.r_level = 4e-6;
  prm.q_velocity = prm.q_acceleration = 0.0;
  prm.p0_velocity = prm.p0_acceleration = 1e-300;
  const auto prices = random_prices(400, 2);
  const auto n = static_cast<std::int64_t>(prices.size());
  std::vector<double> states(prices.size() * 4), innov(prices.size() * 2);
  ekf_cpu(prices.data(), 1, n, prm, states.data(), innov.data());
  const double q = prm.q_level, r = prm.r_level;
  const double p_star = (q + std::sqrt(q * q + 4 * q * r)) / 2;
  const double k_star = p_star / (p_star + r);
  for (std::int64_t t = 300; t < n; ++t) {
    const double gain = (states[t * 4] - states[(t - 1) * 4]) / innov[t * 2];
    ASSERT_NEAR(gain, k_star, 1e-6) << "t=" << t;
  }
}

TEST(Ekf, VolatilityStateFollowsRealisedVolatility) {
  // A calm half then a wild half: the log-variance estimate must rise by about log(100).
  std::mt19937_64 rng(3);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<double> prices(4000);
  double x = std::log(100.0);
  for (std::size_t t = 0; t < prices.size(); ++t) {
    const double sd = t < 2000 ? 0.001 : 0.01;
    prices[t] = std::exp(x += sd * z(rng));
  }
  std::vector<double> states(prices.size() * 4);
  EkfParams prm;
  ekf_cpu(prices.data(), 1, static_cast<std::int64_t>(prices.size()), prm, states.data(), nullptr);
  double calm = 0, wild = 0;
  for (int t = 1500; t < 2000; ++t) calm += states[t * 4 + 3] / 500;
  for (int t = 3500; t < 4000; ++t) wild += states[t * 4 + 3] / 500;
  EXPECT_NEAR(calm, std::log(0.001 * 0.001), 1.0);
  EXPECT_NEAR(wild, std::log(0.01 * 0.01), 1.0);
}

TEST(Ekf, BatchEqualsSeriesOneByOne) {
  // Five series: a full vector group (2 or 4 lanes, by ISA) plus a remainder filtered alone.
  // Lanes agree with the scalar filter to a few ulps, not bit for bit: vector lanes use the
  // vectorisable exp/log of lanes.h, a single series the C library's (faster for one value);
  // the two differ by at most an ulp per call (test_lanes.cpp).
  const std::int64_t n = 300, batch = 5;
  std::vector<double> all;
  for (unsigned k = 0; k < batch; ++k) {
    const auto series = random_prices(n, 4 + k);
    all.insert(all.end(), series.begin(), series.end());
  }
  EkfParams prm;
  std::vector<double> s_all(batch * n * 4), s_one(n * 4), i_all(batch * n * 2), i_one(n * 2);
  ekf_cpu(all.data(), batch, n, prm, s_all.data(), i_all.data());
  for (std::int64_t k = 0; k < batch; ++k) {
    ekf_cpu(all.data() + k * n, 1, n, prm, s_one.data(), i_one.data());
    for (std::int64_t i = 0; i < n * 4; ++i)
      ASSERT_NEAR(s_all[k * n * 4 + i], s_one[i], 1e-12 * (1.0 + std::fabs(s_one[i]))) << "series " << k;
    for (std::int64_t i = 0; i < n * 2; ++i)
      ASSERT_NEAR(i_all[k * n * 2 + i], i_one[i], 1e-12 * (1.0 + std::fabs(i_one[i]))) << "series " << k;
  }
}
