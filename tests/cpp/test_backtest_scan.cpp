// The chunked-scan backtest (himari/backtest/chunked_scan.h, what the CUDA kernel runs) against
// the sequential CPU kernel, on the CPU with tiny chunks: every chunk edge, sub-chunk re-runs,
// strategies that hit the bankruptcy floor inside a chunk and at its edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/backtest/chunked_scan.h"
#include "backtest_cases.h"

using namespace himari;
using namespace himari::backtest_cases;

namespace {

// Compares the chunked run with the sequential kernel: counts bit for bit, the rest to 1e-9.
// threads > 0 runs the library's threaded CPU scan (backtest_signals_scan_cpu) instead of the
// test driver; it has no sub-chunks (a chunk near the floor is re-run sequentially).
void expect_matches(const Case& c, const CostConfig& costs, std::int64_t chunk, std::int64_t sub_chunk,
                    int threads = 0) {
  BacktestInputs in = c.in();
  in.costs = costs;
  std::vector<Metrics> want(static_cast<std::size_t>(c.m)), got(static_cast<std::size_t>(c.m));
  backtest_signals_cpu(in, c.signals.data(), want.data(), nullptr);
  // the test driver twice in long-flat mode: phase 2 per bar, then by held runs
  for (const bool held_runs : {false, true}) {
  if (held_runs && (threads > 0 || costs.mode != PositionMode::kLongFlat)) break;
  if (threads > 0)
    backtest_signals_scan_cpu(in, c.signals.data(), got.data(), chunk, threads);
  else
    scan::chunked_backtest(in, c.signals.data(), got.data(), chunk, sub_chunk, held_runs);
  for (std::int64_t j = 0; j < c.m; ++j) {
    const Metrics& w = want[static_cast<std::size_t>(j)];
    const Metrics& g = got[static_cast<std::size_t>(j)];
    const std::string where = "strategy " + std::to_string(j) + " chunk " + std::to_string(chunk) + " sub " +
                              std::to_string(sub_chunk) + " threads " + std::to_string(threads) + " T " +
                              std::to_string(in.n_bars) + (held_runs ? " held runs" : "");
    ASSERT_EQ(g.n_trades, w.n_trades) << where;
    ASSERT_EQ(g.turnover, w.turnover) << where;
    ASSERT_EQ(g.exposure, w.exposure) << where;
    ASSERT_EQ(g.win_rate, w.win_rate) << where;
    ASSERT_PRED2(close_enough, g.total_return, w.total_return) << where;
    ASSERT_PRED2(close_enough, g.annual_return, w.annual_return) << where;
    ASSERT_PRED2(close_enough, g.sharpe, w.sharpe) << where;
    ASSERT_PRED2(close_enough, g.sortino, w.sortino) << where;
    ASSERT_PRED2(close_enough, g.max_drawdown, w.max_drawdown) << where;
    ASSERT_PRED2(close_enough, g.calmar, w.calmar) << where;
  }
  }
}

// Bars (1-based step count) at which each strategy's equity first sits on the floor, -1 if never.
std::vector<std::int64_t> bankrupt_steps(const Case& c, const CostConfig& costs) {
  BacktestInputs in = c.in();
  in.costs = costs;
  std::vector<Metrics> met(static_cast<std::size_t>(c.m));
  std::vector<double> eq(static_cast<std::size_t>(in.n_bars * c.m));
  backtest_signals_cpu(in, c.signals.data(), met.data(), eq.data());
  std::vector<std::int64_t> out(static_cast<std::size_t>(c.m), -1);
  for (std::int64_t j = 0; j < c.m; ++j)
    for (std::int64_t t = 0; t < in.n_bars && out[static_cast<std::size_t>(j)] < 0; ++t)
      if (eq[static_cast<std::size_t>(t * c.m + j)] <= kBankruptEquity) out[static_cast<std::size_t>(j)] = t;
  return out;
}

}  // namespace

TEST(ChunkedScan, CarryIsTheLastNonHoldActionAndItsRunStart) {
  // Chunk of 6 steps starting at bar 10: HOLD SELL BUY HOLD BUY HOLD (long-short).
  const std::vector<std::int8_t> a = {1, 0, 2, 1, 2, 1};
  const scan::PositionSummary s = scan::summarize_positions(a.data(), 1, 0, 0, 6, PositionMode::kLongShort);
  EXPECT_EQ(s.last_target, 1);
  EXPECT_EQ(s.run_start, 2);  // the BUY at offset 2 opened the long; the BUY at 4 kept it
  EXPECT_EQ(s.first_run, 0);
  const scan::PositionCarry out = scan::carry_positions(scan::PositionCarry{}, s, 10);
  EXPECT_EQ(out.position, 1);
  EXPECT_EQ(out.entry_bar, 12);
  // A chunk of only BUYs keeps a long carried in, with its old entry bar.
  const std::vector<std::int8_t> buys = {1, 2, 2};
  const scan::PositionSummary sb = scan::summarize_positions(buys.data(), 1, 0, 0, 3, PositionMode::kLongShort);
  const scan::PositionCarry kept = scan::carry_positions(out, sb, 20);
  EXPECT_EQ(kept.position, 1);
  EXPECT_EQ(kept.entry_bar, 12);
  // ...but opens a new long (entry at the first BUY) when a short or nothing was carried in.
  const scan::PositionCarry opened = scan::carry_positions(scan::PositionCarry{-1, -1, 0}, sb, 20);
  EXPECT_EQ(opened.entry_bar, 21);
  // In long-flat, SELL after BUY targets flat: no entry bar.
  const scan::PositionSummary sf = scan::summarize_positions(a.data(), 1, 0, 0, 5, PositionMode::kLongFlat);
  EXPECT_EQ(scan::carry_positions(scan::PositionCarry{}, sf, 0).position, 1);
  const std::vector<std::int8_t> sell = {2, 1, 0, 1};
  const scan::PositionSummary ss = scan::summarize_positions(sell.data(), 1, 0, 0, 4, PositionMode::kLongFlat);
  EXPECT_EQ(scan::carry_positions(scan::PositionCarry{}, ss, 0).entry_bar, -1);
  // An invalid action is read as HOLD by both phases and reported by phase 2 at its flat index.
  const std::vector<std::int8_t> two = {1, 2, 7, 1, 9, 1};  // [3, 2]: 7 at [1, 0], 9 at [2, 0]
  const scan::PositionSummary sv = scan::summarize_positions(two.data(), 2, 0, 0, 3, PositionMode::kLongFlat);
  EXPECT_EQ(sv.last_target, scan::kNoTarget);
  std::int64_t bad = 0;
  const std::vector<double> px = {1.0, 1.0, 1.0, 1.0};
  scan::summarize_chunk(two.data(), 2, 0, 0, 3, scan::PositionCarry{}, px.data(), px.data(), CostConfig{}, &bad);
  EXPECT_EQ(bad, 2);
  scan::summarize_chunk(two.data(), 2, 1, 0, 3, scan::PositionCarry{}, px.data(), px.data(), CostConfig{}, &bad);
  EXPECT_EQ(bad, -1);
  // the held-run summary reports the same
  const runs::MarketTables tables(px.data(), 4);
  scan::summarize_chunk_runs(two.data(), 2, 0, 0, 3, scan::PositionCarry{}, px.data(), px.data(), CostConfig{},
                             tables.view(), &bad);
  EXPECT_EQ(bad, 2);
  scan::summarize_chunk_runs(two.data(), 2, 1, 0, 3, scan::PositionCarry{}, px.data(), px.data(), CostConfig{},
                             tables.view(), &bad);
  EXPECT_EQ(bad, -1);
}

TEST(ChunkedScan, BackwardPositionSummaryMatchesAForwardWalk) {
  // The summary read backwards against the definition walked forwards, on random sequences with
  // HOLD-heavy, invalid and long-run stretches.
  std::mt19937_64 gen(3);
  for (int rep = 0; rep < 3000; ++rep) {
    const int n = 1 + static_cast<int>(gen() % 12);
    std::vector<std::int8_t> a(static_cast<std::size_t>(n));
    for (auto& v : a) {
      const int r = static_cast<int>(gen() % 10);
      v = static_cast<std::int8_t>(r < 5 ? 1 : r < 7 ? 0 : r < 9 ? 2 : 5);
    }
    for (PositionMode mode : {PositionMode::kLongFlat, PositionMode::kLongShort}) {
      int last = scan::kNoTarget, start = 0, first_run = 1;
      for (int t = 0; t < n; ++t) {
        if (a[static_cast<std::size_t>(t)] == 1 || a[static_cast<std::size_t>(t)] > 2) continue;
        const int target = scan::action_target(a[static_cast<std::size_t>(t)], mode);
        if (last != scan::kNoTarget && target != last) first_run = 0;
        if (target != last) start = t;
        last = target;
      }
      const scan::PositionSummary s = scan::summarize_positions(a.data(), 1, 0, 0, n, mode);
      ASSERT_EQ(s.last_target, last);
      if (last == scan::kNoTarget) continue;
      ASSERT_EQ(s.run_start, start);
      ASSERT_EQ(s.first_run, first_run);
    }
  }
}

TEST(ChunkedScan, MatchesSequentialKernelForEveryChunkSize) {
  for (std::int64_t t : {2, 3, 10, 65, 258}) {
    Case c;
    random_prices(c, t, 0.01, 0.0, static_cast<unsigned>(t));
    random_signals(c, 12, static_cast<unsigned>(t) + 1);
    for (const CostConfig& costs : {costs_of(1e-3, 5e-4, PositionMode::kLongFlat),
                                    costs_of(1e-3, 5e-4, PositionMode::kLongShort),
                                    costs_of(0.0, 0.0, PositionMode::kLongShort), costs_of(2e-3, 0.0, PositionMode::kLongFlat)})
      for (std::int64_t chunk : {1, 2, 7, 64, 1000})
        for (std::int64_t sub : {0, 1, 3}) expect_matches(c, costs, chunk, sub);
  }
}

TEST(ChunkedScan, MatchesSequentialKernelOverLongSeries) {
  Case c;
  random_prices(c, 5001, 0.004, 0.0, 11);
  random_signals(c, 18, 12);
  for (PositionMode mode : {PositionMode::kLongFlat, PositionMode::kLongShort})
    for (std::int64_t chunk : {64, 333, 1024}) expect_matches(c, costs_of(1e-3, 5e-4, mode), chunk, 8);
}

TEST(ChunkedScan, FloorHitInsideAndAtTheEdgesOfChunks) {
  // Heavy fees drain frequent traders to the floor after ~80 fills; a steady rally liquidates
  // the shorts. Every chunk size from 1 to 40 puts some of those bars at a chunk's first and
  // last step.
  Case c;
  random_prices(c, 700, 0.01, 0.002, 5);
  random_signals(c, 48, 6);
  for (PositionMode mode : {PositionMode::kLongFlat, PositionMode::kLongShort}) {
    const CostConfig costs = costs_of(0.3, 0.01, mode);
    const std::vector<std::int64_t> broke = bankrupt_steps(c, costs);
    const auto n_broke = std::count_if(broke.begin(), broke.end(), [](std::int64_t b) { return b > 0; });
    ASSERT_GE(n_broke, 6) << "the case must drive strategies to the floor";
    int at_start = 0, at_end = 0;
    for (std::int64_t chunk = 1; chunk <= 40; ++chunk) {
      for (std::int64_t b : broke) {
        if (b <= 0) continue;
        const std::int64_t step = b - 1;  // the step that hit the floor
        at_start += step % chunk == 0 ? 1 : 0;
        at_end += step % chunk == chunk - 1 ? 1 : 0;
      }
      for (std::int64_t sub : {0, 1, 2, 5}) expect_matches(c, costs, chunk, sub);
    }
    EXPECT_GT(at_start, 0);
    EXPECT_GT(at_end, 0);
  }
}

TEST(ChunkedScan, ShortLiquidatedByAPriceSpike) {
  // Short from bar 0; the price triples at bar 40: equity goes through zero in one bar.
  Case c;
  for (int i = 0; i < 80; ++i) {
    const double p = i < 40 ? 100.0 + 0.1 * i : 300.0;
    c.open.push_back(p);
    c.close.push_back(p);
  }
  c.m = 3;
  c.signals.assign(80 * 3, 1);
  c.signals[0] = 0;          // short and hold
  c.signals[1] = 0;          // short, then buy back after the spike
  c.signals[45 * 3 + 1] = 2;
  c.signals[2 * 3 + 2] = 2;  // long from bar 2
  const CostConfig costs = costs_of(1e-3, 5e-4, PositionMode::kLongShort);
  const std::vector<std::int64_t> broke = bankrupt_steps(c, costs);
  ASSERT_GT(broke[0], 0);
  ASSERT_GT(broke[1], 0);
  ASSERT_EQ(broke[2], -1);
  for (std::int64_t chunk : {1, 2, 7, 39, 40, 41, 64})
    for (std::int64_t sub : {0, 1, 4}) expect_matches(c, costs, chunk, sub);
}

TEST(ChunkedScan, ThreadedCpuScanMatchesSequentialKernel) {
  // The library's CPU scan: phase 2 items split unevenly between threads (more threads than
  // strategies, than chunks, and counts that divide neither), floors hit inside chunks.
  Case c;
  random_prices(c, 3001, 0.004, 0.0, 21);
  random_signals(c, 7, 22);
  Case broke;
  random_prices(broke, 700, 0.01, 0.002, 5);
  random_signals(broke, 24, 6);
  for (PositionMode mode : {PositionMode::kLongFlat, PositionMode::kLongShort})
    for (int threads : {1, 2, 3, 5, 16})
      for (std::int64_t chunk : {1, 7, 64, 5000}) {
        expect_matches(c, costs_of(1e-3, 5e-4, mode), chunk, 0, threads);
        expect_matches(broke, costs_of(0.3, 0.01, mode), chunk, 0, threads);
      }
  const std::vector<std::int64_t> steps = bankrupt_steps(broke, costs_of(0.3, 0.01, PositionMode::kLongFlat));
  ASSERT_GE(std::count_if(steps.begin(), steps.end(), [](std::int64_t b) { return b > 0; }), 4)
      << "the case must drive strategies to the floor";
}
