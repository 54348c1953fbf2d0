// Per-strategy metric accumulators of the signal backtester, shared by CPU and CUDA, templated
// over the lane type like account_math.h. One pass over the equity curve: sums for the mean and
// std of returns, downside squares, the running max drawdown and exposure.
// Definitions: docs/semantics.md.
#pragma once

#include <cmath>

#include "himari/common/hd.h"
#include "himari/common/lanes.h"

namespace himari {

template <typename T>
struct MetricAccumulatorT {
  T sum = splat<T>(0.0);      // sum of simple returns R_t
  T sum_sq = splat<T>(0.0);   // sum of R_t^2
  T down_sq = splat<T>(0.0);  // sum of min(R_t, 0)^2
  T max_dd = splat<T>(0.0);   // max drawdown fraction
  T exposed = splat<T>(0.0);  // steps ending with a position
};
using MetricAccumulator = MetricAccumulatorT<double>;

template <typename T>
HIMARI_HD void accumulate(MetricAccumulatorT<T>& m, T prev_equity, T equity, T drawdown, T position) {
  const T r = equity / prev_equity - 1.0;
  m.sum += r;
  m.sum_sq += r * r;
  const T down = select(r < 0.0, r, splat<T>(0.0));
  m.down_sq += down * down;
  m.max_dd = select(drawdown > m.max_dd, drawdown, m.max_dd);
  m.exposed += lane_abs(position);  // positions are -1, 0, +1: |p| is the in-market indicator
}

struct Metrics {
  double total_return;
  double annual_return;
  double sharpe;
  double sortino;
  double max_drawdown;
  double calmar;
  double turnover;
  double n_trades;
  double win_rate;
  double exposure;
};

// n = number of returns (T - 1).
HIMARI_HD Metrics finalize_metrics(const MetricAccumulator& m, double final_equity, double turnover, double trades,
                                   double closed_trades, double wins, double n, double bars_per_year) {
  Metrics out;
  out.total_return = final_equity - 1.0;
  out.annual_return = n > 0.0 ? std::pow(final_equity, bars_per_year / n) - 1.0 : 0.0;
  const double mean = n > 0.0 ? m.sum / n : 0.0;
  double var = n > 1.0 ? (m.sum_sq - m.sum * mean) / (n - 1.0) : 0.0;
  var = var > 0.0 ? var : 0.0;
  const double ann = std::sqrt(bars_per_year);
  out.sharpe = var > 0.0 ? mean / std::sqrt(var) * ann : 0.0;
  const double down = n > 0.0 ? std::sqrt(m.down_sq / n) : 0.0;
  out.sortino = down > 0.0 ? mean / down * ann : 0.0;
  out.max_drawdown = m.max_dd;
  out.calmar = m.max_dd > 0.0 ? out.annual_return / m.max_dd : 0.0;
  out.turnover = turnover;
  out.n_trades = trades;
  out.win_rate = closed_trades > 0.0 ? wins / closed_trades : 0.0;
  out.exposure = n > 0.0 ? m.exposed / n : 0.0;
  return out;
}

}  // namespace himari
