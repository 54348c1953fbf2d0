// The long-flat signal backtest by held runs: work per position change, not per bar.
//
// Why: the per-bar kernels spend ~20 double-precision instructions on every bar of every
// strategy, HOLD or not (the mark, the return's division, the sums, the drawdown). In long-flat
// mode almost all of that is the same for every strategy that holds the asset over a bar:
//   * flat bars change nothing (equity, peak and sums stay as they are: the return is exactly 0);
//   * over a run of held bars with no fill, equity is cash + units * close, so the per-bar
//     returns are the market's own close-to-close returns (to rounding: the cash left after a
//     fill is a rounding residue) and their sums over the run are differences of prefix sums
//     shared by every strategy; the run's lowest and highest equity are cash + units * (the
//     lowest, highest close), exact, since rounding is monotone; its drawdown inside the run
//     is the close series' own, from a range tree shared by every strategy.
// So a strategy reads one byte per bar (is this the action that changes my position?) and does
// the account maths only at its fills. Fills, fees, cash, units, trades, round trips and wins are
// computed with the sequential kernel's own expressions in the same order (account_math.h), so
// they, the final equity and the total return agree bit for bit; the return sums and the drawdown
// agree to rounding (~1e-15 relative per held run). Runs shorter than kExactRun bars are marked
// bar by bar exactly as the sequential kernel does.
//
// The bankruptcy floor: a strategy whose equity could come within kFloorMargin of the floor
// (its lowest equity over a run, or the cash after a fill) is run again from the start by the
// sequential per-bar loop, so its numbers are the reference's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/backtest/backtest_math.h"
#include "himari/env/account_math.h"

namespace himari::runs {

// Held runs shorter than this are marked bar by bar (exactly as the sequential kernel); longer
// ones through the shared tables.
constexpr std::int64_t kExactRun = 16;
// Held runs take the market's returns for the account's while the cash beside the position is
// below this share of the run's lowest equity (the difference is at most about this, relative).
constexpr double kResidueShare = 1e-13;
// A strategy whose equity may come within this factor of the bankruptcy floor is re-run by the
// sequential loop.
constexpr double kFloorMargin = 1e-6;

// min, max and largest fall (1 - later / earlier peak) of closes over a range of bars.
struct RangeSummary {
  double low = std::numeric_limits<double>::infinity();
  double high = -std::numeric_limits<double>::infinity();
  double fall = 0.0;
  bool empty() const { return !(low <= high); }  // no bar (+inf, -inf); closes are finite
};

// `first` followed by `second` in time.
inline RangeSummary then(const RangeSummary& first, const RangeSummary& second) {
  if (first.empty()) return second;
  if (second.empty()) return first;
  RangeSummary r;
  r.low = std::min(first.low, second.low);
  r.high = std::max(first.high, second.high);
  r.fall = std::max({first.fall, second.fall, 1.0 - second.low / first.high});
  return r;
}

// What every strategy shares: prefix sums of the market's close-to-close returns (compensated)
// and a range tree over the closes. Step t (decided at bar t) marks at close[t + 1]; its market
// return is close[t + 1] / close[t] - 1.
class MarketTables {
 public:
  MarketTables(const double* close, std::int64_t n_bars) {
    const std::int64_t steps = n_bars > 1 ? n_bars - 1 : 0;
    for (auto* v : {&sum_, &sq_, &down_}) v->assign(static_cast<std::size_t>(2 * (steps + 1)), 0.0);
    double acc[3][2] = {{0.0, 0.0}, {0.0, 0.0}, {0.0, 0.0}};  // (sum, compensation) per quantity
    for (std::int64_t t = 0; t < steps; ++t) {
      const double r = close[t + 1] / close[t] - 1.0;
      const double d = r < 0.0 ? r : 0.0;
      const double x[3] = {r, r * r, d * d};
      for (int q = 0; q < 3; ++q) add(acc[q], x[q]);
      for (int q = 0; q < 3; ++q) {
        std::vector<double>& v = q == 0 ? sum_ : q == 1 ? sq_ : down_;
        v[static_cast<std::size_t>(2 * (t + 1))] = acc[q][0];
        v[static_cast<std::size_t>(2 * (t + 1) + 1)] = acc[q][1];
      }
    }
    close_ = close;
    n_bars_ = n_bars;
    size_ = 1;
    while (size_ < n_bars) size_ *= 2;
    tree_.assign(static_cast<std::size_t>(size_), RangeSummary{});  // inner nodes; the leaves are the closes
    for (std::int64_t i = size_ - 1; i >= 1; --i) tree_[static_cast<std::size_t>(i)] = then(node(2 * i), node(2 * i + 1));
  }

  // Sums over steps [a, b] of the market return r, r^2 and min(r, 0)^2.
  void sums(std::int64_t a, std::int64_t b, double out[3]) const {
    const auto diff = [&](const std::vector<double>& v) {
      const std::size_t hi = static_cast<std::size_t>(2 * (b + 1)), lo = static_cast<std::size_t>(2 * a);
      return (v[hi] - v[lo]) + (v[hi + 1] - v[lo + 1]);
    };
    out[0] = diff(sum_);
    out[1] = diff(sq_);
    out[2] = diff(down_);
  }

  // The closes of bars [a, b] (inclusive), in time order.
  RangeSummary closes(std::int64_t a, std::int64_t b) const {
    RangeSummary left, right;
    std::int64_t lo = a + size_, hi = b + size_ + 1;
    while (lo < hi) {
      if (lo & 1) left = then(left, node(lo++));
      if (hi & 1) right = then(node(--hi), right);
      lo >>= 1;
      hi >>= 1;
    }
    return then(left, right);
  }

 private:
  // Node i of the complete tree: an inner node, or (i >= size_) the close of bar i - size_.
  RangeSummary node(std::int64_t i) const {
    if (i < size_) return tree_[static_cast<std::size_t>(i)];
    RangeSummary leaf;
    if (i - size_ < n_bars_) leaf.low = leaf.high = close_[i - size_];
    return leaf;
  }

  // Neumaier's compensated sum: acc[0] the sum, acc[1] the rounding it lost.
  static void add(double acc[2], double x) {
    const double s = acc[0] + x;
    acc[1] += std::fabs(acc[0]) >= std::fabs(x) ? (acc[0] - s) + x : (x - s) + acc[0];
    acc[0] = s;
  }

  std::vector<double> sum_, sq_, down_;  // [steps + 1] pairs (sum, compensation) of steps before
  std::vector<RangeSummary> tree_;       // inner nodes of a complete binary tree over the closes
  const double* close_ = nullptr;
  std::int64_t n_bars_ = 0, size_ = 1;
};

// One strategy's account between fills, in long-flat mode.
struct HeldRunAccount {
  double cash = 1.0, units = 0.0, equity = 1.0, peak = 1.0, entry_equity = 1.0;
  double trades = 0.0, closed_trades = 0.0, wins = 0.0;
  MetricAccumulator acc{};
  std::int64_t held_from = -1;  // first step after the opening fill while long, else -1
  bool near_floor = false;      // equity may reach the bankruptcy floor: re-run sequentially
};

namespace detail {

inline void mark(HeldRunAccount& s, double marked) {
  if (marked <= kBankruptEquity * (1.0 + kFloorMargin)) s.near_floor = true;
  const double r = marked / s.equity - 1.0;
  s.acc.sum += r;
  s.acc.sum_sq += r * r;
  const double down = r < 0.0 ? r : 0.0;
  s.acc.down_sq += down * down;
  s.equity = marked;
  s.peak = marked > s.peak ? marked : s.peak;
  const double drawdown = 1.0 - s.equity / s.peak;
  s.acc.max_dd = drawdown > s.acc.max_dd ? drawdown : s.acc.max_dd;
}

}  // namespace detail

// Steps [a, b] held long with no fill: marked at close[a + 1] .. close[b + 1].
inline void hold(HeldRunAccount& s, std::int64_t a, std::int64_t b, const double* close, const MarketTables& tables) {
  if (a > b) return;
  s.acc.exposed += static_cast<double>(b - a + 1);
  const RangeSummary run = b - a + 1 < kExactRun ? RangeSummary{} : tables.closes(a + 1, b + 1);
  const double low = s.cash + s.units * run.low, high = s.cash + s.units * run.high;
  // The market's returns are the account's only while the cash left by the opening fill (a
  // rounding residue, ~1e-17 of the equity then) stays negligible against the equity: not so
  // after a fall of many orders of magnitude towards the floor. Short runs and those go bar by bar.
  if (run.empty() || std::fabs(s.cash) > kResidueShare * low) {
    for (std::int64_t t = a; t <= b; ++t) detail::mark(s, s.cash + s.units * close[t + 1]);
    return;
  }
  if (low <= kBankruptEquity * (1.0 + kFloorMargin)) s.near_floor = true;
  double sums[3];
  tables.sums(a, b, sums);
  s.acc.sum += sums[0];
  s.acc.sum_sq += sums[1];
  s.acc.down_sq += sums[2];
  // drawdown at step t: 1 - E_t / max(peak before the run, highest E of the run so far)
  //                   = max(1 - E_t / peak before, 1 - E_t / highest so far)
  const double from_peak = 1.0 - low / s.peak;
  const double worst = std::max(from_peak, run.fall);
  s.acc.max_dd = worst > s.acc.max_dd ? worst : s.acc.max_dd;
  s.peak = high > s.peak ? high : s.peak;
  s.equity = s.cash + s.units * close[b + 1];
}

// The fill of step t (decided at bar t, at open[t + 1], marked at close[t + 1]): opening a long
// when flat, closing it when long. The expressions are account_step's with target 1 or 0.
inline void fill(HeldRunAccount& s, std::int64_t t, const double* open, const double* close, const CostConfig& costs) {
  const double next_open = open[t + 1];
  if (s.held_from < 0) {  // open long with all equity: qty * px * (1 + fee) == cash
    const double open_px = next_open * (1.0 + costs.slippage * 1.0);
    const double qty = s.cash / (open_px * (1.0 + costs.fee));
    const double notional = qty * open_px;
    s.entry_equity = s.cash;
    s.cash = s.cash - 1.0 * notional - costs.fee * notional;
    s.units = 1.0 * qty;
    s.held_from = t + 1;
    s.acc.exposed += 1.0;
  } else {  // close the long in full
    const double close_px = next_open * (1.0 - costs.slippage * 1.0);
    const double cash_after = s.cash + s.units * close_px - costs.fee * std::fabs(s.units) * close_px;
    s.closed_trades += 1.0;
    s.wins += cash_after > s.entry_equity ? 1.0 : 0.0;
    s.cash = cash_after;
    s.units = 0.0;
    s.held_from = -1;
  }
  s.trades += 1.0;
  detail::mark(s, s.cash + s.units * close[t + 1]);
}

// The metrics once every step is accounted for (a long still open is marked to the last close).
inline Metrics finish(HeldRunAccount& s, std::int64_t n_bars, const double* close, const MarketTables& tables,
                      double bars_per_year) {
  const std::int64_t steps = n_bars > 1 ? n_bars - 1 : 0;
  if (s.held_from >= 0) hold(s, s.held_from, steps - 1, close, tables);
  return finalize_metrics(s.acc, s.equity, s.trades, s.trades, s.closed_trades, s.wins, static_cast<double>(steps),
                          bars_per_year);
}

}  // namespace himari::runs
