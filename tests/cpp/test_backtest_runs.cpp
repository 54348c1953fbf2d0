// The long-flat held-run backtest (himari/backtest/held_runs.h, backtest_signals_runs_cpu)
// against the sequential per-bar kernel, the reference every backtest path is pinned to:
// fills, counts and the final equity bit for bit, return sums and drawdown to 1e-9, over
// strategies that trade every bar, hold for long runs, never act or hold to the end, block edges
// (63, 64, 65 strategies), threads, and strategies driven to the bankruptcy floor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/backtest/held_runs.h"
#include "backtest_cases.h"

using namespace himari;
using namespace himari::backtest_cases;

namespace {

// A random walk and the six habits of random_signals: an action every bar, one every ~10 or
// ~50 bars, never, BUY once then HOLD, SELL once then HOLD.
Case random_case(std::int64_t t, std::int64_t m, double vol, double drift, unsigned seed) {
  Case c;
  random_prices(c, t, vol, drift, seed);
  random_signals(c, m, seed + 1);
  return c;
}

BacktestInputs with_costs(const Case& c, const CostConfig& costs) {
  BacktestInputs in = c.in();
  in.costs = costs;
  return in;
}

CostConfig costs_of(double fee, double slippage) { return backtest_cases::costs_of(fee, slippage, PositionMode::kLongFlat); }

void expect_matches(const Case& c, const CostConfig& costs, int threads = 1) {
  BacktestInputs in = c.in();
  in.costs = costs;
  std::vector<Metrics> want(static_cast<std::size_t>(c.m)), got(static_cast<std::size_t>(c.m));
  backtest_signals_cpu(in, c.signals.data(), want.data(), nullptr);
  backtest_signals_runs_cpu(in, c.signals.data(), got.data(), threads);
  for (std::int64_t j = 0; j < c.m; ++j) {
    const Metrics& w = want[static_cast<std::size_t>(j)];
    const Metrics& g = got[static_cast<std::size_t>(j)];
    const std::string where = "strategy " + std::to_string(j) + " of " + std::to_string(c.m) + ", T " +
                              std::to_string(in.n_bars) + ", fee " + std::to_string(costs.fee);
    ASSERT_EQ(g.n_trades, w.n_trades) << where;
    ASSERT_EQ(g.turnover, w.turnover) << where;
    ASSERT_EQ(g.exposure, w.exposure) << where;
    ASSERT_EQ(g.win_rate, w.win_rate) << where;
    ASSERT_EQ(g.total_return, w.total_return) << where;  // fills and the last mark are the same expressions
    ASSERT_EQ(g.annual_return, w.annual_return) << where;
    ASSERT_PRED2(close_enough, g.sharpe, w.sharpe) << where;
    ASSERT_PRED2(close_enough, g.sortino, w.sortino) << where;
    ASSERT_PRED2(close_enough, g.max_drawdown, w.max_drawdown) << where;
    ASSERT_PRED2(close_enough, g.calmar, w.calmar) << where;
  }
}

}  // namespace

TEST(HeldRuns, MatchesTheSequentialKernelAcrossHabitsSizesAndCosts) {
  for (const std::int64_t t : {2, 3, 17, 40, 1000, 20000})
    for (const std::int64_t m : {1, 6, 63, 64, 65, 130}) {
      const Case c = random_case(t, m, 0.01, 0.0002, static_cast<unsigned>(t * 131 + m));
      expect_matches(c, costs_of(1e-3, 5e-4));
      expect_matches(c, costs_of(0.0, 0.0));
    }
}

TEST(HeldRuns, LongRunsUseTheSharedTablesAndStillMatch) {
  // Strategies that buy once and hold 50,000 bars, or hold long runs between rare fills: their
  // runs go through the prefix sums and the range tree; a trending and a falling market.
  for (const double drift : {0.0005, -0.0005}) {
    Case c = random_case(50000, 12, 0.002, drift, 7);
    expect_matches(c, costs_of(1e-3, 5e-4));
  }
}

TEST(HeldRuns, ADrawdownFromAnOlderPeakAndOneInsideARunAreBothFound) {
  // By hand: bar closes 100, 120, 90, 150, 60 ... (20 held bars each way). Strategy 0 buys at
  // bar 0 and holds: its worst fall is inside the run. Strategy 1 sells at a peak, buys back
  // lower and holds through a fall below its old peak: the fall is measured from the peak before
  // the run.
  Case c;
  const std::int64_t t = 100;
  for (std::int64_t i = 0; i < t; ++i) {
    const double p = i < 20 ? 100.0 + i : i < 40 ? 140.0 - 2.0 * (i - 20) : i < 60 ? 100.0 + 3.0 * (i - 40)
                                                                              : 160.0 - 2.5 * (i - 60);
    c.open.push_back(p);
    c.close.push_back(p);
  }
  c.m = 2;
  c.signals.assign(static_cast<std::size_t>(t * 2), 1);
  c.signals[0] = 2;                                 // strategy 0: BUY at bar 0, then HOLD
  c.signals[static_cast<std::size_t>(0 * 2 + 1)] = 2;   // strategy 1: BUY at bar 0,
  c.signals[static_cast<std::size_t>(19 * 2 + 1)] = 0;  // SELL at bar 19 (near the first peak),
  c.signals[static_cast<std::size_t>(39 * 2 + 1)] = 2;  // BUY at bar 39 (the trough), hold to the end
  expect_matches(c, costs_of(0.0, 0.0));
  expect_matches(c, costs_of(1e-3, 5e-4));
  const BacktestInputs in = with_costs(c, costs_of(0.0, 0.0));
  std::vector<Metrics> got(2);
  backtest_signals_runs_cpu(in, c.signals.data(), got.data(), 1);
  // Strategy 0, without costs, is the price: its worst fall is from 160 (bar 60) to 62.5 (bar 99).
  EXPECT_NEAR(got[0].max_drawdown, 1.0 - 62.5 / 160.0, 1e-12);
  EXPECT_NEAR(got[0].total_return, 62.5 / 101.0 - 1.0, 1e-12);  // filled at open[1] = 101
}

TEST(HeldRuns, BlocksThatTradeOnMostBarsGoBackToThePerBarKernel) {
  // Every strategy acts on every bar (a fill every ~3 bars): after the first density check the
  // blocks (64, 64 and a tail of 2) are handed to the per-bar kernel; the numbers are the same.
  Case c = random_case(6000, 130, 0.01, 0.0, 5);
  std::mt19937_64 gen(9);
  std::uniform_int_distribution<int> action(0, 2);
  for (auto& a : c.signals) a = static_cast<std::int8_t>(action(gen));
  expect_matches(c, costs_of(1e-4, 1e-4));
  expect_matches(c, costs_of(1e-4, 1e-4), 2);
}

TEST(HeldRuns, ThreadsGiveTheSameBitsAsOne) {
  const Case c = random_case(3000, 300, 0.01, 0.0, 11);
  const BacktestInputs in = with_costs(c, costs_of(1e-3, 5e-4));
  std::vector<Metrics> one(300), four(300);
  backtest_signals_runs_cpu(in, c.signals.data(), one.data(), 1);
  backtest_signals_runs_cpu(in, c.signals.data(), four.data(), 4);
  for (std::size_t j = 0; j < one.size(); ++j) {
    ASSERT_EQ(one[j].sharpe, four[j].sharpe) << j;
    ASSERT_EQ(one[j].max_drawdown, four[j].max_drawdown) << j;
    ASSERT_EQ(one[j].total_return, four[j].total_return) << j;
  }
}

TEST(HeldRuns, StrategiesThatReachTheBankruptcyFloorAreTheReferences) {
  // A market that falls 1e-3 of its value a bar for 40,000 bars: a strategy holding through it
  // (BUY once), or trading on every bar at a 10% fee, hits the floor; they are re-run by the
  // sequential loop, so even their return sums agree bit for bit.
  Case c = random_case(40000, 12, 0.0005, -0.001, 3);
  expect_matches(c, costs_of(0.1, 5e-4));
  const BacktestInputs in = with_costs(c, costs_of(0.1, 5e-4));
  std::vector<Metrics> want(12), got(12);
  backtest_signals_cpu(in, c.signals.data(), want.data(), nullptr);
  backtest_signals_runs_cpu(in, c.signals.data(), got.data(), 1);
  int floored = 0;
  for (std::size_t j = 0; j < want.size(); ++j)
    if (want[j].total_return <= kBankruptEquity - 1.0 + 1e-15) {
      ++floored;
      EXPECT_EQ(got[j].sharpe, want[j].sharpe) << j;
      EXPECT_EQ(got[j].max_drawdown, want[j].max_drawdown) << j;
    }
  EXPECT_GE(floored, 2);  // the buy-and-hold habit and the every-bar trader at least
}

TEST(HeldRuns, AHeldRunWithNoCashBesideThePositionFallingToTheFloor) {
  // No costs and a fill at an open of 1.0: the whole equity buys exactly `cash` units and no
  // cash is left beside them, so the 150-bar run goes through the shared tables, and the price
  // falls by a fifth a bar to below the floor (0.8^150 ~ 3e-15). The sequential kernel
  // liquidates at the floor and freezes; the held-run path must notice and defer to it.
  Case c;
  const std::int64_t t = 150;
  for (std::int64_t i = 0; i < t; ++i) {
    c.open.push_back(i <= 1 ? 1.0 : std::pow(0.8, static_cast<double>(i - 1)));
    c.close.push_back(std::pow(0.8, static_cast<double>(i)));
  }
  c.m = 1;
  c.signals.assign(static_cast<std::size_t>(t), 1);
  c.signals[0] = 2;
  const BacktestInputs in = with_costs(c, costs_of(0.0, 0.0));
  std::vector<Metrics> want(1), got(1);
  backtest_signals_cpu(in, c.signals.data(), want.data(), nullptr);
  backtest_signals_runs_cpu(in, c.signals.data(), got.data(), 1);
  ASSERT_EQ(want[0].total_return, kBankruptEquity - 1.0);  // the reference did hit the floor
  EXPECT_EQ(got[0].total_return, want[0].total_return);
  EXPECT_EQ(got[0].sharpe, want[0].sharpe);
  EXPECT_EQ(got[0].exposure, want[0].exposure);
}

TEST(HeldRuns, LongShortIsRefused) {
  const Case c = random_case(10, 1, 0.01, 0.0, 1);
  CostConfig costs = costs_of(1e-3, 5e-4);
  costs.mode = PositionMode::kLongShort;
  const BacktestInputs in = with_costs(c, costs);
  std::vector<Metrics> got(1);
  EXPECT_THROW(backtest_signals_runs_cpu(in, c.signals.data(), got.data(), 1), std::invalid_argument);
}

TEST(HeldRuns, TheRangeTreeComposesFallsInTimeOrder) {
  // closes 5, 10, 4, 8, 2: the largest fall over [0, 4] is 10 -> 2 (0.8); over [2, 3] none (4 -> 8
  // rises); over [3, 4] 8 -> 2 (0.75); a fall from a later high to an earlier low never counts.
  const std::vector<double> close = {5.0, 10.0, 4.0, 8.0, 2.0};
  const runs::MarketTables tables(close.data(), 5);
  EXPECT_DOUBLE_EQ(runs::range_closes(tables.view(), 0, 4).fall, 0.8);
  EXPECT_DOUBLE_EQ(runs::range_closes(tables.view(), 2, 3).fall, 0.0);
  EXPECT_DOUBLE_EQ(runs::range_closes(tables.view(), 3, 4).fall, 0.75);
  EXPECT_DOUBLE_EQ(runs::range_closes(tables.view(), 0, 2).fall, 0.6);
  EXPECT_DOUBLE_EQ(runs::range_closes(tables.view(), 1, 3).low, 4.0);
  EXPECT_DOUBLE_EQ(runs::range_closes(tables.view(), 1, 3).high, 10.0);
  double sums[3];
  runs::range_sums(tables.view(), 1, 2, sums);  // steps 1 and 2: returns 4/10 - 1 = -0.6 and 8/4 - 1 = +1
  EXPECT_NEAR(sums[0], 0.4, 1e-15);
  EXPECT_NEAR(sums[1], 0.36 + 1.0, 1e-15);
  EXPECT_NEAR(sums[2], 0.36, 1e-15);
}

TEST(HeldRuns, TheRangeTreeOverBlocksAgreesWithABruteForceForEveryRange) {
  // 203 closes: 13 blocks of 16 bars (the last partial), so ranges start and end inside blocks,
  // on block edges, and span whole blocks through the tree.
  std::mt19937_64 gen(4);
  std::normal_distribution<double> z(0.0, 0.02);
  std::vector<double> close(203);
  double p = 100.0;
  for (double& x : close) x = p *= std::exp(z(gen));
  const runs::MarketTables tables(close.data(), static_cast<std::int64_t>(close.size()));
  for (std::int64_t a = 0; a < 203; a += 3)
    for (std::int64_t b = a; b < 203; b += 5) {
      double low = close[static_cast<std::size_t>(a)], high = low, fall = 0.0;
      for (std::int64_t t = a; t <= b; ++t)  // the largest fall to bar t from any earlier bar of the range
        for (std::int64_t u = a; u < t; ++u)
          fall = std::max(fall, 1.0 - close[static_cast<std::size_t>(t)] / close[static_cast<std::size_t>(u)]);
      for (std::int64_t t = a; t <= b; ++t) {
        low = std::min(low, close[static_cast<std::size_t>(t)]);
        high = std::max(high, close[static_cast<std::size_t>(t)]);
      }
      const runs::RangeSummary got = runs::range_closes(tables.view(), a, b);
      ASSERT_EQ(got.low, low) << a << ".." << b;
      ASSERT_EQ(got.high, high) << a << ".." << b;
      ASSERT_EQ(got.fall, fall) << a << ".." << b;
    }
}
