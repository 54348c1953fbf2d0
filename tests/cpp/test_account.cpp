// Hand-computed fills: every number below was worked out on paper from docs/semantics.md.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "himari/env/account_math.h"

using namespace himari;

namespace {
CostConfig costs(double fee, double slip, PositionMode mode = PositionMode::kLongFlat) {
  CostConfig c;
  c.fee = fee;
  c.slippage = slip;
  c.mode = mode;
  return c;
}
// Actions as the enum the tests read best; the maths takes them as doubles.
StepOutcome step(AccountState& s, int action, double next_open, double next_close, const CostConfig& c) {
  return account_step<double>(s, action, next_open, next_close, c);
}
}  // namespace

TEST(Account, BuyThenSellToTheCent) {
  // $10,000 account: equity 1 scaled by 10,000. Buy decided at bar 0, filled at open[1] = 100
  // with 0.1% slippage (pays 100.10) and 0.1% fee: qty = 10000 / (100.10 * 1.001) = 99.8003
  const CostConfig c = costs(0.001, 0.001);
  AccountState s;
  s.cash = s.equity = s.peak = s.entry_equity = 10000.0;
  StepOutcome o = step(s, kBuy, 100.0, 101.0, c);
  const double qty = 10000.0 / (100.10 * 1.001);
  EXPECT_NEAR(s.units, qty, 1e-12);
  EXPECT_NEAR(s.cash, 0.0, 1e-9);
  EXPECT_NEAR(s.equity, qty * 101.0, 1e-9);  // 10,079.83
  EXPECT_NEAR(s.equity, 10079.83, 0.005);
  EXPECT_EQ(o.traded, 1.0);
  EXPECT_EQ(s.trades, 1.0);
  // Sell decided at bar 1, filled at open[2] = 110 less slippage (109.89), fee 0.1% of notional.
  o = step(s, kSell, 110.0, 111.0, c);
  const double proceeds = qty * 109.89;
  EXPECT_NEAR(s.cash, proceeds * 0.999, 1e-9);  // 10,956.09
  EXPECT_NEAR(s.equity, 10956.09, 0.005);
  EXPECT_EQ(s.units, 0.0);
  EXPECT_EQ(s.position, 0.0);
  EXPECT_EQ(s.closed_trades, 1.0);
  EXPECT_EQ(s.wins, 1.0);
  EXPECT_EQ(s.turnover, 2.0);
}

TEST(Account, HoldKeepsPositionAndCountsBars) {
  const CostConfig c = costs(0.001, 0.0005);
  AccountState s;
  step(s, kBuy, 10.0, 10.0, c);
  EXPECT_EQ(s.bars_in_position, 1.0);
  step(s, kHold, 10.0, 10.5, c);
  step(s, kHold, 10.0, 11.0, c);
  EXPECT_EQ(s.bars_in_position, 3.0);
  EXPECT_EQ(s.position, 1.0);
  EXPECT_EQ(s.trades, 1.0);
  step(s, kBuy, 10.0, 11.0, c);  // already long: no trade
  EXPECT_EQ(s.trades, 1.0);
}

TEST(Account, FeesAndSlippageNeverRaiseEquity) {
  // Against the same action path without costs, equity with costs is never higher.
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> act(0, 2);
  std::normal_distribution<double> ret(0.0, 0.01);
  for (int mode = 0; mode < 2; ++mode) {
    AccountState with, without;
    const CostConfig c = costs(0.002, 0.001, static_cast<PositionMode>(mode));
    const CostConfig free = costs(0.0, 0.0, static_cast<PositionMode>(mode));
    double price = 100.0;
    for (int t = 0; t < 2000; ++t) {
      const int a = act(rng);
      const double open = price * std::exp(ret(rng) * 0.1);
      price = open * std::exp(ret(rng));
      step(with, a, open, price, c);
      step(without, a, open, price, free);
      ASSERT_LE(with.equity, without.equity * (1.0 + 1e-12)) << "bar " << t;
    }
    EXPECT_LT(with.equity, without.equity);
  }
}

TEST(Account, LongShortAccounting) {
  // Short 1.0 equity at 100 (fill 99.9 with 0.1% slippage), fee 0.1%; price falls to 90.
  const CostConfig c = costs(0.001, 0.001, PositionMode::kLongShort);
  AccountState s;
  step(s, kSell, 100.0, 95.0, c);
  const double px = 99.9;
  const double qty = 1.0 / (px * 1.001);
  EXPECT_EQ(s.position, -1.0);
  EXPECT_NEAR(s.units, -qty, 1e-15);
  EXPECT_NEAR(s.cash, 1.0 + qty * px * (1.0 - 0.001), 1e-12);
  EXPECT_NEAR(s.equity, s.cash - qty * 95.0, 1e-12);
  EXPECT_GT(s.equity, 1.0);  // profit from the fall
  // BUY from short: close (buy back at 90.09) then open long with everything: traded = 2.
  const double cash_before = s.cash;
  const StepOutcome o = step(s, kBuy, 90.0, 91.0, c);
  EXPECT_EQ(o.traded, 2.0);
  EXPECT_EQ(s.trades, 2.0);
  EXPECT_EQ(s.position, 1.0);
  const double after_close = cash_before - qty * 90.09 - 0.001 * qty * 90.09;
  const double long_qty = after_close / (90.09 * 1.001);
  EXPECT_NEAR(s.units, long_qty, 1e-12);
  EXPECT_NEAR(s.equity, long_qty * 91.0, 1e-12);
  EXPECT_EQ(s.wins, 1.0);
}

TEST(Account, LongFlatSellWhenFlatDoesNothing) {
  const CostConfig c = costs(0.001, 0.001);
  AccountState s;
  const StepOutcome o = step(s, kSell, 100.0, 50.0, c);
  EXPECT_EQ(o.traded, 0.0);
  EXPECT_EQ(s.equity, 1.0);
  EXPECT_EQ(s.trades, 0.0);
}

TEST(Account, ShortBlowUpIsLiquidatedAndFrozen) {
  const CostConfig c = costs(0.0, 0.0, PositionMode::kLongShort);
  AccountState s;
  step(s, kSell, 100.0, 100.0, c);
  const StepOutcome o = step(s, kHold, 100.0, 250.0, c);  // price x2.5: equity < 0
  EXPECT_EQ(o.broke, 1.0);
  EXPECT_EQ(s.equity, kBankruptEquity);
  EXPECT_EQ(s.position, 0.0);
  const StepOutcome o2 = step(s, kBuy, 100.0, 300.0, c);  // frozen: cannot trade
  EXPECT_EQ(o2.broke, 0.0);
  EXPECT_EQ(s.position, 0.0);
  EXPECT_EQ(s.equity, kBankruptEquity);
}

TEST(Account, DrawdownTracksPeak) {
  const CostConfig c = costs(0.0, 0.0);
  AccountState s;
  step(s, kBuy, 100.0, 120.0, c);  // equity 1.2
  step(s, kHold, 120.0, 90.0, c);  // equity 0.9, peak 1.2 -> dd 0.25
  EXPECT_NEAR(s.peak, 1.2, 1e-15);
  EXPECT_NEAR(s.drawdown, 0.25, 1e-15);
  EXPECT_NEAR(unrealised_pnl(s), -0.1, 1e-15);
}
