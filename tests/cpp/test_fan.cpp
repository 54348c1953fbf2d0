// FAN residuals (himari/filters/fan.h) against hand-worked values and a direct DFT of every window.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <complex>
#include <cstdint>
#include <random>
#include <vector>

#include "himari/common/error.h"
#include "himari/filters/fan.h"

namespace {

using himari::fan_residuals_cpu;

std::vector<double> run(const std::vector<double>& x, std::int64_t cols, std::vector<std::int64_t> pieces,
                        std::int64_t window, std::int64_t k) {
  const auto rows = static_cast<std::int64_t>(x.size()) / cols;
  std::vector<double> out(x.size(), 0.0);
  fan_residuals_cpu(x.data(), rows, cols, pieces.data(), static_cast<std::int64_t>(pieces.size() / 2), window, k,
                    out.data());
  return out;
}

// The definition, one window at a time: a DFT by its sum, the K largest |X_k| (stable), and the
// inverse of those K at the last position.
double direct(const std::vector<double>& w, std::int64_t k) {
  const auto m = static_cast<std::int64_t>(w.size());
  const std::int64_t bins = m / 2 + 1;
  const double pi = std::acos(-1.0);
  std::vector<std::complex<double>> spec(static_cast<std::size_t>(bins));
  for (std::int64_t b = 0; b < bins; ++b)
    for (std::int64_t j = 0; j < m; ++j)
      spec[static_cast<std::size_t>(b)] += w[static_cast<std::size_t>(j)] * std::polar(1.0, -2 * pi * b * j / m);
  std::vector<bool> kept(static_cast<std::size_t>(bins), false);
  for (std::int64_t pass = 0; pass < std::min(k, bins); ++pass) {
    std::int64_t best = -1;
    for (std::int64_t b = 0; b < bins; ++b)
      if (!kept[static_cast<std::size_t>(b)] &&
          (best < 0 || std::norm(spec[static_cast<std::size_t>(b)]) > std::norm(spec[static_cast<std::size_t>(best)])))
        best = b;
    kept[static_cast<std::size_t>(best)] = true;
  }
  double removed = 0.0;
  for (std::int64_t b = 0; b < bins; ++b) {
    if (!kept[static_cast<std::size_t>(b)]) continue;
    const double c = (b == 0 || (m % 2 == 0 && b == m / 2)) ? 1.0 : 2.0;
    removed += c / m * (spec[static_cast<std::size_t>(b)] * std::polar(1.0, 2 * pi * b * (m - 1) / m)).real();
  }
  return w.back() - removed;
}

TEST(Fan, HandWorkedWindowOfFour) {
  // x = 1 2 3 4, window 4, K 1: rows 0..3 leave 0, 0.5, 1, 1.5 (test_fan_reference.py works them).
  const auto out = run({1, 2, 3, 4}, 1, {0, 4}, 4, 1);
  const double want[] = {0.0, 0.5, 1.0, 1.5};
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(out[static_cast<std::size_t>(t)], want[t], 1e-12) << t;
  EXPECT_NEAR(run({1, 2, 3, 4}, 1, {0, 4}, 4, 2)[3], 0.5, 1e-12);
}

TEST(Fan, EveryRowMatchesADirectDftAcrossRecomputations) {
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal;
  const std::int64_t rows = himari::kFanRecomputeRows * 2 + 300, cols = 3, window = 21, k = 3;
  std::vector<double> x(static_cast<std::size_t>(rows * cols));
  double level = 100.0;
  for (std::int64_t t = 0; t < rows; ++t) {
    level += normal(gen);
    x[static_cast<std::size_t>(t * cols)] = level;
    x[static_cast<std::size_t>(t * cols + 1)] = normal(gen);
    x[static_cast<std::size_t>(t * cols + 2)] = std::sin(0.3 * static_cast<double>(t));
  }
  const std::int64_t split = 700;
  const auto out = run(x, cols, {0, split, split, rows}, window, k);
  for (std::int64_t t = 0; t < rows; ++t)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t start = t < split ? 0 : split, lo = std::max(start, t - window + 1);
      std::vector<double> w;
      for (std::int64_t r = lo; r <= t; ++r) w.push_back(x[static_cast<std::size_t>(r * cols + c)]);
      ASSERT_NEAR(out[static_cast<std::size_t>(t * cols + c)], direct(w, k), 1e-9) << "row " << t << " col " << c;
    }
}

TEST(Fan, RefusesBadArguments) {
  std::vector<double> x(8, 1.0), out(8);
  const std::vector<std::int64_t> ok = {0, 8}, outside = {2, 9};
  EXPECT_THROW(fan_residuals_cpu(x.data(), 8, 1, ok.data(), 1, 1, 1, out.data()), himari::InvalidArgument);
  EXPECT_THROW(fan_residuals_cpu(x.data(), 8, 1, ok.data(), 1, 4, 3, out.data()), himari::InvalidArgument);
  EXPECT_THROW(fan_residuals_cpu(x.data(), 8, 1, outside.data(), 1, 4, 1, out.data()), himari::InvalidArgument);
}

}  // namespace
