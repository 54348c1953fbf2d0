// Metrics on known equity paths, and agreement between the backtester and the env.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/env/trading_env.h"

using namespace himari;

namespace {
BacktestInputs inputs(const std::vector<double>& open, const std::vector<double>& close, std::int64_t m,
                      double fee = 0.0, double slip = 0.0) {
  BacktestInputs in;
  in.open = open.data();
  in.close = close.data();
  in.n_bars = static_cast<std::int64_t>(close.size());
  in.n_strategies = m;
  in.costs.fee = fee;
  in.costs.slippage = slip;
  in.bars_per_year = 252.0;
  return in;
}
}  // namespace

TEST(Backtest, BuyAndHoldWithoutCostsFollowsPrice) {
  // Buy at bar 0 -> fill at open[1] = close[0]; equity follows close / open[1].
  const std::vector<double> close = {100, 110, 99, 120, 108};
  std::vector<double> open = {100, 100, 110, 99, 120};
  std::vector<std::int8_t> sig = {2, 1, 1, 1, 1};
  std::vector<Metrics> met(1);
  std::vector<double> eq(close.size());
  backtest_signals_cpu(inputs(open, close, 1), sig.data(), met.data(), eq.data());
  const std::vector<double> expect = {1.0, 1.10, 0.99, 1.20, 1.08};
  for (std::size_t t = 0; t < close.size(); ++t) EXPECT_NEAR(eq[t], expect[t], 1e-12);
  EXPECT_NEAR(met[0].total_return, 0.08, 1e-12);
  EXPECT_NEAR(met[0].max_drawdown, 0.10, 1e-12);  // 1.10 -> 0.99
  // Sharpe by hand: returns .10, -.10, .2121..., -.10
  std::vector<double> r = {0.10, 0.99 / 1.10 - 1, 1.20 / 0.99 - 1, 1.08 / 1.20 - 1};
  const double mean = std::accumulate(r.begin(), r.end(), 0.0) / 4;
  double ss = 0;
  for (double x : r) ss += (x - mean) * (x - mean);
  const double sd = std::sqrt(ss / 3);
  EXPECT_NEAR(met[0].sharpe, mean / sd * std::sqrt(252.0), 1e-9);
  const double down = std::sqrt((r[1] * r[1] + r[3] * r[3]) / 4);
  EXPECT_NEAR(met[0].sortino, mean / down * std::sqrt(252.0), 1e-9);
  EXPECT_NEAR(met[0].annual_return, std::pow(1.08, 252.0 / 4) - 1, 1e-6);
  EXPECT_NEAR(met[0].calmar, met[0].annual_return / 0.10, 1e-6);
  EXPECT_EQ(met[0].n_trades, 1.0);
  EXPECT_EQ(met[0].exposure, 1.0);
}

TEST(Backtest, NeverTradeIsFlat) {
  const std::vector<double> close = {100, 50, 200, 10};
  const std::vector<double> open = close;
  std::vector<std::int32_t> sig(close.size(), 1);
  std::vector<Metrics> met(1);
  backtest_signals_cpu(inputs(open, close, 1, 0.001, 0.001), sig.data(), met.data(), nullptr);
  EXPECT_EQ(met[0].total_return, 0.0);
  EXPECT_EQ(met[0].sharpe, 0.0);
  EXPECT_EQ(met[0].max_drawdown, 0.0);
  EXPECT_EQ(met[0].calmar, 0.0);
  EXPECT_EQ(met[0].exposure, 0.0);
}

TEST(Backtest, AgreesExactlyWithEnv) {
  // Many strategies (more than one block) against one env each, bit for bit.
  const std::int64_t t_bars = 400, m = 70;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> ret(0.0, 0.01);
  auto market = std::make_shared<MarketData>();
  double p = 100;
  for (std::int64_t t = 0; t < t_bars; ++t) {
    market->open.push_back(p * std::exp(0.001 * ret(rng)));
    p = market->open.back() * std::exp(ret(rng));
    market->close.push_back(p);
  }
  market->n_bars = t_bars;
  std::uniform_int_distribution<int> act(0, 2);
  std::vector<std::int64_t> sig(static_cast<std::size_t>(t_bars * m));
  for (auto& s : sig) s = act(rng);
  for (int mode = 0; mode < 2; ++mode) {
    BacktestInputs in = inputs(market->open, market->close, m, 0.001, 0.0005);
    in.costs.mode = static_cast<PositionMode>(mode);
    std::vector<Metrics> met(m);
    std::vector<double> eq(static_cast<std::size_t>(t_bars * m));
    backtest_signals_cpu(in, sig.data(), met.data(), eq.data());
    EnvConfig cfg;
    cfg.costs = in.costs;
    cfg.num_envs = m;
    cfg.episode_length = t_bars - 1;
    cfg.random_start = false;
    TradingEnv env(market, cfg, RewardConfig{});
    std::vector<std::int64_t> row(m);
    for (std::int64_t t = 0; t + 1 < t_bars; ++t) {
      for (std::int64_t j = 0; j < m; ++j) row[j] = sig[t * m + j];
      env.step(row.data());
      for (std::int64_t j = 0; j < m; ++j) {
        if (t + 2 < t_bars) {
          ASSERT_EQ(env.account(j).equity, eq[(t + 1) * m + j]) << "t=" << t << " j=" << j;
        } else {
          ASSERT_EQ(env.episode_return[j], std::log(eq[(t + 1) * m + j]));  // final step auto-reset
        }
      }
    }
  }
}

TEST(BacktestThreads, PlanFollowsTheDocumentedRules) {
  const std::int64_t per = kMinStepsPerThread;
  // Too little work for two threads: one thread, whatever was asked.
  EXPECT_EQ(plan_backtest_threads(1000, 10, false, 8).split, BacktestSplit::kSequential);
  EXPECT_EQ(plan_backtest_threads(per + 1, 1, false, 8).split, BacktestSplit::kSequential);
  EXPECT_EQ(plan_backtest_threads(100000, 1000, false, 1).split, BacktestSplit::kSequential);
  // Many strategies: split between as many threads as were asked and the work pays for.
  BacktestPlan p = plan_backtest_threads(5001, 128, false, 8);  // 640,000 steps: two threads' worth
  EXPECT_EQ(p.split, BacktestSplit::kStrategies);
  EXPECT_EQ(p.workers, 2);
  p = plan_backtest_threads(100001, 1000, false, 3);
  EXPECT_EQ(p.split, BacktestSplit::kStrategies);
  EXPECT_EQ(p.workers, 3);
  // Few strategies, metrics only: the scan over time.
  p = plan_backtest_threads(600001, 3, false, 2);
  EXPECT_EQ(p.split, BacktestSplit::kTimeScan);
  EXPECT_EQ(p.workers, 2);
  // ...but an equity curve needs the sequential kernel per strategy: split the strategies if
  // there are groups of four to share, else one thread.
  EXPECT_EQ(plan_backtest_threads(600001, 3, true, 2).split, BacktestSplit::kSequential);
  p = plan_backtest_threads(600001, 9, true, 4);
  EXPECT_EQ(p.split, BacktestSplit::kStrategies);
  EXPECT_EQ(p.workers, 3);  // 9 strategies are three groups of at most four
  // 0: every hardware thread.
  const BacktestPlan all = plan_backtest_threads(100001, 1000, false, 0);
  if (hardware_threads() >= 2) {
    EXPECT_EQ(all.split, BacktestSplit::kStrategies);
    EXPECT_EQ(all.workers, std::min(hardware_threads(), 381));  // 1e8 steps are 381 threads' worth
  } else {
    EXPECT_EQ(all.split, BacktestSplit::kSequential);
  }
}

TEST(BacktestThreads, SplittingStrategiesGivesTheBitsOfOneThread) {
  // 131 strategies (not a multiple of any vector width) over 8,001 bars: the plan splits them
  // into unequal ranges; every metric and every equity value must equal the one-thread run's.
  const std::int64_t t = 8001, m = 131;
  std::mt19937_64 gen(17);
  std::normal_distribution<double> z(0.0, 1.0);
  std::uniform_int_distribution<int> act(0, 2);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> open(t), close(t);
  double px = 100.0;
  for (std::int64_t i = 0; i < t; ++i) {
    open[i] = px * std::exp(0.001 * z(gen));
    px *= std::exp(0.003 * z(gen));
    close[i] = px;
  }
  std::vector<std::int8_t> sig(static_cast<std::size_t>(t * m), 1);
  for (std::int64_t i = 0; i < t; ++i)
    for (std::int64_t j = 0; j < m; ++j)
      if (u(gen) < (j % 3 == 0 ? 1.0 : 0.02))
        sig[static_cast<std::size_t>(i * m + j)] = static_cast<std::int8_t>(act(gen));
  BacktestInputs in;
  in.open = open.data();
  in.close = close.data();
  in.n_bars = t;
  in.n_strategies = m;
  in.costs.fee = 1e-3;
  in.costs.slippage = 5e-4;
  std::vector<Metrics> want(m), got(m);
  std::vector<double> want_eq(static_cast<std::size_t>(t * m)), got_eq(static_cast<std::size_t>(t * m));
  backtest_signals_cpu(in, sig.data(), want.data(), want_eq.data(), 1);
  for (int threads : {2, 3}) {
    ASSERT_EQ(plan_backtest_threads(t, m, true, threads).split, BacktestSplit::kStrategies);
    ASSERT_EQ(plan_backtest_threads(t, m, true, threads).workers, threads);
    for (bool with_equity : {true, false}) {
      std::fill(got.begin(), got.end(), Metrics{-7, -7, -7, -7, -7, -7, -7, -7, -7, -7});
      std::fill(got_eq.begin(), got_eq.end(), -7.0);
      backtest_signals_cpu(in, sig.data(), got.data(), with_equity ? got_eq.data() : nullptr, threads);
      for (std::int64_t j = 0; j < m; ++j)
        ASSERT_EQ(0, std::memcmp(&got[j], &want[j], sizeof(Metrics))) << "strategy " << j << " threads " << threads;
      if (with_equity) ASSERT_EQ(got_eq, want_eq) << "threads " << threads;
    }
  }
}
