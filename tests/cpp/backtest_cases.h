// Random cases for the backtest GoogleTests that compare a backtest path with the sequential
// kernel: a random-walk market, strategies with different habits, costs, a tolerance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "himari/backtest/backtest.h"

namespace himari::backtest_cases {

struct Case {
  std::vector<double> open, close;
  std::vector<std::int8_t> signals;  // [T, M]
  std::int64_t m = 0;
  BacktestInputs in() const {
    BacktestInputs b;
    b.open = open.data();
    b.close = close.data();
    b.n_bars = static_cast<std::int64_t>(close.size());
    b.n_strategies = m;
    b.bars_per_year = 252.0;
    return b;
  }
};

// A random walk (vol per bar `vol`, drift `drift`), opens near the previous close.
inline void random_prices(Case& c, std::int64_t t, double vol, double drift, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  double p = 100.0;
  for (std::int64_t i = 0; i < t; ++i) {
    c.open.push_back(p * std::exp(0.2 * vol * z(gen)));
    p *= std::exp(drift + vol * z(gen));
    c.close.push_back(p);
  }
}

// Strategies with different habits: uniform actions, sticky runs, mostly HOLD, all HOLD, one
// BUY or SELL then HOLD forever.
inline void random_signals(Case& c, std::int64_t m, unsigned seed) {
  const auto t = static_cast<std::int64_t>(c.close.size());
  c.m = m;
  c.signals.assign(static_cast<std::size_t>(t * m), 1);
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> action(0, 2);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t j = 0; j < m; ++j) {
    const int habit = static_cast<int>(j % 6);
    const double p_act = habit == 0 ? 1.0 : habit == 1 ? 0.1 : habit == 2 ? 0.02 : 0.0;
    for (std::int64_t i = 0; i < t; ++i) {
      std::int8_t a = 1;
      if (habit == 4 && i == 0) a = 2;
      if (habit == 5 && i == 0) a = 0;
      if (u(gen) < p_act) a = static_cast<std::int8_t>(action(gen));
      c.signals[static_cast<std::size_t>(i * m + j)] = a;
    }
  }
}

// 1e-9 relative (1e-12 absolute near zero); infinities and NaNs only equal themselves (a
// relative bound would take inf against a finite value, and refuse inf against inf).
inline bool close_enough(double got, double want) {
  if (!std::isfinite(got) || !std::isfinite(want)) return got == want || (std::isnan(got) && std::isnan(want));
  return std::fabs(got - want) <= 1e-9 * std::max(std::fabs(got), std::fabs(want)) + 1e-12;
}

inline CostConfig costs_of(double fee, double slip, PositionMode mode) {
  CostConfig c;
  c.fee = fee;
  c.slippage = slip;
  c.mode = mode;
  return c;
}

}  // namespace himari::backtest_cases
