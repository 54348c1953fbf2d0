// The shared tables of the long-flat signal backtest by held runs: work per position change, not
// per bar.
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
// This header holds those tables; the account that uses them is the scan's relative account
// (chunked_scan.h: summarize_chunk_runs, hold_relative), on the GPU per (chunk, strategy) and on
// the CPU (backtest_runs_cpu.cpp) per strategy over all its bars. Fills use the sequential
// kernel's own expressions, so fills, counts and the final equity agree with it bit for bit; the
// return sums and the drawdown to rounding (~1e-15 relative per held run).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/backtest/backtest_math.h"
#include "himari/common/hd.h"
#include "himari/env/account_math.h"

namespace himari::runs {

// Held runs shorter than this are marked bar by bar (exactly as the sequential kernel); longer
// ones through the shared tables.
constexpr std::int64_t kExactRun = 16;
// Held runs take the market's returns for the account's while the cash beside the position is
// below this share of the run's lowest equity (the difference is at most about this, relative).
constexpr double kResidueShare = 1e-13;

// min, max and largest fall (1 - later / earlier peak) of closes over a range of bars; no bar is
// (+inf, -inf, 0).
struct RangeSummary {
  double low = HUGE_VAL;
  double high = -HUGE_VAL;
  double fall = 0.0;
};

HIMARI_HD bool is_empty(const RangeSummary& r) { return !(r.low <= r.high); }  // closes are finite

// `first` followed by `second` in time.
HIMARI_HD RangeSummary then(const RangeSummary& first, const RangeSummary& second) {
  if (is_empty(first)) return second;
  if (is_empty(second)) return first;
  RangeSummary r;
  r.low = first.low < second.low ? first.low : second.low;
  r.high = first.high > second.high ? first.high : second.high;
  const double across = 1.0 - second.low / first.high;
  const double inside = first.fall > second.fall ? first.fall : second.fall;
  r.fall = across > inside ? across : inside;
  return r;
}

// Bars per leaf of the range tree: the tree takes about 3 bytes a bar, and a query scans at most
// kLeafBars - 1 closes at each end of its range.
constexpr std::int64_t kLeafBars = 16;

// The shared tables as plain pointers (host or device memory). `sums` holds, for each step count
// k = 0..steps, the sums over steps 0..k-1 of the market's return r, r^2 and min(r, 0)^2, each as
// a (sum, compensation) pair: 6 doubles per k. Step t (decided at bar t) marks at close[t + 1];
// its market return is close[t + 1] / close[t] - 1. `tree` is a complete binary tree over blocks
// of kLeafBars bars: node 1 the root, nodes size.. the blocks.
struct TablesView {
  const double* sums = nullptr;        // [6 * (steps + 1)]
  const RangeSummary* tree = nullptr;  // [2 * size]
  const double* close = nullptr;
  std::int64_t n_bars = 0;
  std::int64_t size = 1;  // the smallest power of two >= the number of blocks
};

// Sums over steps [a, b] of the market return r, r^2 and min(r, 0)^2.
HIMARI_HD void range_sums(const TablesView& v, std::int64_t a, std::int64_t b, double out[3]) {
  const double* hi = v.sums + 6 * (b + 1);
  const double* lo = v.sums + 6 * a;
  for (int k = 0; k < 3; ++k) out[k] = (hi[2 * k] - lo[2 * k]) + (hi[2 * k + 1] - lo[2 * k + 1]);
}

// The closes of bars [a, b] one by one.
HIMARI_HD RangeSummary scan_closes(const double* close, std::int64_t a, std::int64_t b) {
  RangeSummary r;
  for (std::int64_t i = a; i <= b; ++i) {
    const double x = close[i];
    if (i == a) {
      r.low = r.high = x;
      continue;
    }
    const double fall = 1.0 - x / r.high;
    r.fall = fall > r.fall ? fall : r.fall;
    r.low = x < r.low ? x : r.low;
    r.high = x > r.high ? x : r.high;
  }
  return r;
}

// The closes of bars [a, b] (inclusive), in time order: the partial blocks at its ends scanned,
// the whole blocks between them from the tree.
HIMARI_HD RangeSummary range_closes(const TablesView& v, std::int64_t a, std::int64_t b) {
  const std::int64_t first = a / kLeafBars, last = b / kLeafBars;
  if (first == last) return scan_closes(v.close, a, b);
  const RangeSummary head = scan_closes(v.close, a, first * kLeafBars + kLeafBars - 1);
  const RangeSummary tail = scan_closes(v.close, last * kLeafBars, b);
  RangeSummary left, right;
  std::int64_t lo = first + 1 + v.size, hi = last + v.size;  // blocks [first + 1, last)
  while (lo < hi) {
    if (lo & 1) left = then(left, v.tree[lo++]);
    if (hi & 1) right = then(v.tree[--hi], right);
    lo >>= 1;
    hi >>= 1;
  }
  return then(then(head, then(left, right)), tail);
}

// The tables of one price series, built on the host (about 50 bytes a bar).
class MarketTables {
 public:
  MarketTables(const double* close, std::int64_t n_bars) {
    const std::int64_t steps = n_bars > 1 ? n_bars - 1 : 0;
    sums_count_ = static_cast<std::size_t>(6 * (steps + 1));
    sums_.reset(new double[sums_count_]);  // every element written below
    double acc[3][2] = {{0.0, 0.0}, {0.0, 0.0}, {0.0, 0.0}};  // (sum, compensation) per quantity
    for (int k = 0; k < 6; ++k) sums_[static_cast<std::size_t>(k)] = 0.0;
    for (std::int64_t t = 0; t < steps; ++t) {
      const double r = close[t + 1] / close[t] - 1.0;
      const double d = r < 0.0 ? r : 0.0;
      const double x[3] = {r, r * r, d * d};
      double* row = sums_.get() + 6 * (t + 1);
      for (int q = 0; q < 3; ++q) {
        add(acc[q], x[q]);
        row[2 * q] = acc[q][0];
        row[2 * q + 1] = acc[q][1];
      }
    }
    const std::int64_t blocks = (n_bars + kLeafBars - 1) / kLeafBars;
    while (view_.size < blocks) view_.size *= 2;
    tree_count_ = static_cast<std::size_t>(2 * view_.size);
    tree_.reset(new RangeSummary[tree_count_]);  // default: empty
    for (std::int64_t j = 0; j < blocks; ++j) {
      const std::int64_t last = (j + 1) * kLeafBars < n_bars ? (j + 1) * kLeafBars - 1 : n_bars - 1;
      tree_[static_cast<std::size_t>(view_.size + j)] = scan_closes(close, j * kLeafBars, last);
    }
    for (std::int64_t i = view_.size - 1; i >= 1; --i)
      tree_[static_cast<std::size_t>(i)] =
          then(tree_[static_cast<std::size_t>(2 * i)], tree_[static_cast<std::size_t>(2 * i + 1)]);
    view_.sums = sums_.get();
    view_.tree = tree_.get();
    view_.close = close;
    view_.n_bars = n_bars;
  }
  MarketTables(const MarketTables&) = delete;  // the view points into this object
  MarketTables& operator=(const MarketTables&) = delete;

  const TablesView& view() const { return view_; }
  std::size_t sums_bytes() const { return sums_count_ * sizeof(double); }
  std::size_t tree_bytes() const { return tree_count_ * sizeof(RangeSummary); }

 private:
  // Neumaier's compensated sum: acc[0] the sum, acc[1] the rounding it lost.
  static void add(double acc[2], double x) {
    const double s = acc[0] + x;
    acc[1] += std::fabs(acc[0]) >= std::fabs(x) ? (acc[0] - s) + x : (x - s) + acc[0];
    acc[0] = s;
  }

  std::unique_ptr<double[]> sums_;
  std::unique_ptr<RangeSummary[]> tree_;
  std::size_t sums_count_ = 0, tree_count_ = 0;
  TablesView view_;
};

}  // namespace himari::runs
