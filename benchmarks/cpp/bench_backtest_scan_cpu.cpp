// Does the time-chunked scan pay on the CPU? By hand, not a test.
//
// The CUDA backtester runs a long-flat signal backtest as a chunked scan over time
// (himari/backtest/chunked_scan.h, docs/cuda.md); the CPU library runs the same three phases
// (backtest_signals_scan_cpu, what backtest_signals(threads > 1) picks for a few strategies over
// many bars). This times it on 1..P threads against the sequential CPU kernel
// (backtest_signals_cpu with threads = 1: one strategy per SIMD lane, one thread) and checks the
// trades and total returns agree.
//
// Prints a table and a JSON line: milliseconds (median of --repeats), the scan's work relative to
// the sequential kernel on one thread, and the speed-up at each thread count.
//
//   cmake -S . -B build/bench -DHIMARI_BUILD_BENCHMARKS=ON -DCMAKE_BUILD_TYPE=Release && cmake --build build/bench -j
//   build/bench/benchmarks/cpp/bench_backtest_scan_cpu [repeats]
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
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::int64_t chunk = 2048;
  const Shape cases[] = {{1000000, 1, 0.02}, {1000000, 4, 0.02}, {100000, 64, 0.02}, {100000, 1000, 0.02},
                         {1000000, 1, 1.0}, {100000, 1000, 1.0}};
  std::vector<int> thread_counts;
  for (int p = 1; p <= hw; p *= 2) thread_counts.push_back(p);
  std::printf("chunked scan vs the sequential CPU kernel: chunk %lld bars, %d hardware threads, median of %d\n",
              static_cast<long long>(chunk), hw, repeats);
  std::printf("%9s %6s %6s %11s", "bars", "strats", "acts", "sequential");
  for (int p : thread_counts) std::printf("  scan %2d thr", p);
  std::printf("  scan work x\n");
  std::string json = "[";
  for (const auto& cs : cases) {
    const Market k = make_market(cs.bars, cs.strategies, cs.p_act, 7);
    const BacktestInputs in = inputs(k);
    std::vector<Metrics> want(static_cast<std::size_t>(k.m)), got(static_cast<std::size_t>(k.m));
    const double seq = median_ms([&] { backtest_signals_cpu(in, k.signals.data(), want.data(), nullptr); }, repeats);
    std::vector<double> scan_ms;
    for (int p : thread_counts) {
      scan_ms.push_back(
          median_ms([&] { backtest_signals_scan_cpu(in, k.signals.data(), got.data(), chunk, p); }, repeats));
      for (std::int64_t j = 0; j < k.m; ++j) {  // the scan must agree with the kernel it would replace
        const auto& g = got[static_cast<std::size_t>(j)];
        const auto& w = want[static_cast<std::size_t>(j)];
        if (g.n_trades != w.n_trades || std::fabs(g.total_return - w.total_return) > 1e-9 * (1 + std::fabs(w.total_return))) {
          std::printf("MISMATCH: strategy %lld of case %lld x %lld\n", static_cast<long long>(j),
                      static_cast<long long>(cs.bars), static_cast<long long>(cs.strategies));
          return 1;
        }
      }
    }
    std::printf("%9lld %6lld %5.0f%% %9.2fms", static_cast<long long>(cs.bars), static_cast<long long>(cs.strategies),
                100 * cs.p_act, seq);
    for (double ms : scan_ms) std::printf("  %9.2fms", ms);
    std::printf("  %10.2fx\n", scan_ms[0] / seq);
    char row[256];
    std::snprintf(row, sizeof row,
                  "%s{\"bars\": %lld, \"strategies\": %lld, \"action_share\": %.2f, \"sequential_ms\": %.4f, \"scan_ms\": {",
                  json.size() > 1 ? ", " : "", static_cast<long long>(cs.bars), static_cast<long long>(cs.strategies),
                  cs.p_act, seq);
    json += row;
    for (std::size_t i = 0; i < thread_counts.size(); ++i) {
      std::snprintf(row, sizeof row, "%s\"%d\": %.4f", i ? ", " : "", thread_counts[i], scan_ms[i]);
      json += row;
    }
    json += "}}";
  }
  std::printf("%s]\n", json.c_str());
  return 0;
}
