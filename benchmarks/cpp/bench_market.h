// What the CPU backtest benchmarks share: a random-walk market with random signals, the
// backtester's inputs for it, and a median timer.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "himari/backtest/backtest.h"

namespace bench {

using namespace himari;


// A benchmark case: bars, strategies and the share of bars with a BUY or SELL.
struct Shape {
  std::int64_t bars, strategies;
  double p_act;
};

struct Market {
  std::vector<double> open, close;
  std::vector<std::int8_t> signals;  // [T, M], bar-major like the kernels read it
  std::int64_t m = 0;
};

// A random walk and random signals: on a share `p_act` of the bars a BUY or SELL (0.02: a
// position change about every 100 bars; 1.0: every bar a random action, which at these costs
// drives every strategy to the bankruptcy floor).
inline Market make_market(std::int64_t t, std::int64_t m, double p_act, unsigned seed) {
  Market k;
  k.m = m;
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double p = 100.0;
  for (std::int64_t i = 0; i < t; ++i) {
    k.open.push_back(p);
    p *= std::exp(0.001 * z(gen));
    k.close.push_back(p);
  }
  k.signals.assign(static_cast<std::size_t>(t * m), 1);
  for (auto& s : k.signals)
    if (u(gen) < p_act) s = u(gen) < 0.5 ? 0 : 2;
  return k;
}

inline BacktestInputs inputs(const Market& k) {
  BacktestInputs in;
  in.open = k.open.data();
  in.close = k.close.data();
  in.n_bars = static_cast<std::int64_t>(k.close.size());
  in.n_strategies = k.m;
  in.bars_per_year = 105120.0;
  in.costs.fee = 0.001;
  in.costs.slippage = 0.0005;
  return in;
}

template <typename F>
double median_ms(F&& f, int repeats) {
  std::vector<double> ms;
  f();  // warm
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace bench
