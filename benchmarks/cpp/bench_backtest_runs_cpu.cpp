// Does the held-run backtest pay on the CPU? By hand, not a test.
//
// backtest_signals_runs_cpu (himari/backtest/held_runs.h: long-flat, metrics only, account maths
// at fills only, held runs through prefix sums and a range tree shared by every strategy) against
// the sequential per-bar kernel (backtest_signals_cpu, threads = 1: one strategy per SIMD lane),
// both on one thread, over strategies that act on a share of the bars (a random BUY or SELL).
// Checks trades and total returns agree (bit for bit) and Sharpe to 1e-9.
//
// Prints a table and a JSON line: milliseconds (median of --repeats) and the ratio.
//
//   cmake -S . -B build/bench -DHIMARI_BUILD_BENCHMARKS=ON -DCMAKE_BUILD_TYPE=Release && cmake --build build/bench -j
//   build/bench/benchmarks/cpp/bench_backtest_runs_cpu [repeats]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_market.h"
#include "himari/backtest/backtest.h"

using namespace himari;
using namespace bench;

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 5;
  const Shape cases[] = {{100000, 1000, 1.0},  {100000, 1000, 0.1},   {100000, 1000, 0.02},
                         {100000, 1000, 0.002}, {1000000, 64, 0.02},  {10000, 10000, 0.02}};
  std::printf("held runs vs the sequential CPU kernel, one thread each, median of %d\n", repeats);
  std::printf("%9s %6s %6s %12s %12s %8s %16s\n", "bars", "strats", "acts", "sequential", "held runs", "speed-up",
              "bar-strategies/s");
  std::string json = "[";
  for (const auto& cs : cases) {
    const Market k = make_market(cs.bars, cs.strategies, cs.p_act, 7);
    const BacktestInputs in = inputs(k);
    std::vector<Metrics> want(static_cast<std::size_t>(k.m)), got(static_cast<std::size_t>(k.m));
    const double seq = median_ms([&] { backtest_signals_cpu(in, k.signals.data(), want.data(), nullptr); }, repeats);
    const double held = median_ms([&] { backtest_signals_runs_cpu(in, k.signals.data(), got.data(), 1); }, repeats);
    for (std::int64_t j = 0; j < k.m; ++j) {
      const auto& g = got[static_cast<std::size_t>(j)];
      const auto& w = want[static_cast<std::size_t>(j)];
      if (g.n_trades != w.n_trades || g.total_return != w.total_return ||
          std::fabs(g.sharpe - w.sharpe) > 1e-9 * std::fabs(w.sharpe) + 1e-12) {
        std::printf("MISMATCH: strategy %lld of case %lld x %lld\n", static_cast<long long>(j),
                    static_cast<long long>(cs.bars), static_cast<long long>(cs.strategies));
        return 1;
      }
    }
    const double rate = static_cast<double>(cs.bars - 1) * static_cast<double>(cs.strategies) / (held * 1e-3);
    std::printf("%9lld %6lld %5.1f%% %10.2fms %10.2fms %7.2fx %16.3g\n", static_cast<long long>(cs.bars),
                static_cast<long long>(cs.strategies), 100 * cs.p_act, seq, held, seq / held, rate);
    char row[256];
    std::snprintf(row, sizeof row,
                  "%s{\"bars\": %lld, \"strategies\": %lld, \"action_share\": %.3f, \"sequential_ms\": %.4f, "
                  "\"held_runs_ms\": %.4f}",
                  json.size() > 1 ? ", " : "", static_cast<long long>(cs.bars), static_cast<long long>(cs.strategies),
                  cs.p_act, seq, held);
    json += row;
  }
  std::printf("%s]\n", json.c_str());
  return 0;
}
