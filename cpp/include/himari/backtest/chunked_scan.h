// The signal backtester as a scan over time: the pieces that let many threads share one
// strategy's bars, shared by the CUDA kernel (src/cuda/backtest_scan_cuda.cu) and by a CPU
// driver (chunked_backtest below) that the GoogleTests run with tiny chunks against the
// sequential kernel. Everything is HIMARI_HD: __host__ __device__ under nvcc, inline in g++.
//
// Why it is exact enough: a strategy's bars are cut into chunks; a chunk's result depends on
// what came before only through
//   * the position entering it and the bar that position was opened at ("the last non-HOLD
//     action" is a segmented scan: phase 1, PositionSummary + carry_positions, which reads a
//     chunk backwards from its end only as far as its last run of equal targets), and
//   * the equity entering it (a scale: every fill and mark is linear in the account, so a chunk
//     is run once in units of its entry equity: phase 2, summarize_chunk), except for
//   * the bankruptcy floor, which is absolute. Phase 3 (Composer) multiplies the chunk growths
//     in order and finds the first chunk whose lowest relative equity times the entry equity can
//     reach the floor (with a margin far above rounding); that chunk alone is re-run from the
//     account rebuilt at its start (sequentially, or split again into sub-chunks, the same three
//     phases one level down), and once the floor is hit the strategy is frozen flat at the floor
//     for the rest of the bars, so the chunks after it contribute nothing.
// Positions and all counts (trades, turnover, closed trades, exposure) come out identical to the
// sequential kernel; equity-derived numbers agree to rounding (products and sums taken in
// another order: ~1e-15 relative on equity, up to ~1e-12 on returns and ratios near zero). A
// round trip whose closing cash equals its entry equity to the last bit is a rounding-level tie
// that can count as a win in one and not the other.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/backtest/backtest_math.h"
#include "himari/backtest/held_runs.h"
#include "himari/common/hd.h"
#include "himari/env/account_math.h"
#include "himari/env/env_config.h"

namespace himari::scan {

// A chunk whose lowest equity comes within this factor of the floor is re-run exactly. Rounding
// in the relative run is ~1e-15 per chunk; the margin only costs a re-run of a chunk near the
// floor.
constexpr double kFloorMargin = 1e-6;

HIMARI_HD bool valid_action(long long a) { return a >= 0 && a <= 2; }

// Position targeted by a non-HOLD action (target_position of account_math.h, in integers).
HIMARI_HD int action_target(long long a, PositionMode mode) {
  return a == 2 ? 1 : (mode == PositionMode::kLongShort ? -1 : 0);
}

// ---- phase 1: positions ---------------------------------------------------------------------

constexpr std::int16_t kNoTarget = 2;

// What a chunk's actions do to the position, whatever position enters it.
struct PositionSummary {
  std::int32_t run_start = 0;           // chunk offset of the first action of the last run of equal targets
  std::int16_t last_target = kNoTarget;  // target of the last non-HOLD action, kNoTarget if none
  std::int16_t first_run = 1;            // 1 while every non-HOLD target in the chunk is the same
};

// The position entering a chunk and the bar whose decision opened it (-1 when flat).
struct PositionCarry {
  std::int64_t entry_bar = -1;
  std::int32_t position = 0;
  std::int32_t pad = 0;
};

// Feeds the actions of steps [t0, t1) of strategy m to `walk.feed(action, step)` in order, the
// loads kAhead bars ahead of the feeds that use them (the CPU's and the scalar GPU path; the
// CUDA kernels feed the same walks from tiles staged in shared memory).
constexpr int kAhead = 8;

template <typename A, typename Walk>
HIMARI_HD void feed_forward(const A* signals, std::int64_t n_strategies, std::int64_t m, std::int64_t t0,
                            std::int64_t t1, Walk& walk) {
  for (std::int64_t u = t0; u < t1; u += kAhead) {
    const A* row = signals + u * n_strategies + m;  // bar u; bar u + j is j rows on
    long long a[kAhead];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int j = 0; j < kAhead; ++j) a[j] = u + j < t1 ? static_cast<long long>(row[j * n_strategies]) : 1;
    for (int j = 0; j < kAhead && u + j < t1; ++j) walk.feed(a[j], u + j);
  }
}

// The same backwards from step t1 - 1, stopping once `walk.feed` returns false.
template <typename A, typename Walk>
HIMARI_HD void feed_backward(const A* signals, std::int64_t n_strategies, std::int64_t m, std::int64_t t0,
                             std::int64_t t1, Walk& walk) {
  for (std::int64_t u = t1 - 1; u >= t0; u -= kAhead) {
    const A* row = signals + u * n_strategies + m;
    long long a[kAhead];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int j = 0; j < kAhead; ++j) a[j] = u - j >= t0 ? static_cast<long long>(row[-j * n_strategies]) : 1;
    for (int j = 0; j < kAhead && u - j >= t0; ++j)
      if (!walk.feed(a[j], u - j)) return;
  }
}

// Phase 1 of one chunk, fed its actions backwards from its end: it stops at the first action
// before the last run of equal targets. With signals that act often that is a few bars, so
// this pass costs little next to phase 2, which reads every bar (and reports actions outside
// {0, 1, 2}; both read them as HOLD, as the sequential kernels do). With sparse signals the walk
// covers most of the chunk, which is why its loads go out ahead of the tests (one dependent load
// per bar left a GPU thread waiting on memory for each).
struct PositionWalk {
  PositionSummary s;
  std::int64_t t0;
  PositionMode mode;
  HIMARI_HD_METHOD PositionWalk(std::int64_t chunk_start, PositionMode position_mode) : t0(chunk_start), mode(position_mode) {}
  // The action at step t (descending); false once the summary is final.
  HIMARI_HD_METHOD bool feed(long long a, std::int64_t t) {
    if (!valid_action(a) || a == 1) return true;
    const int target = action_target(a, mode);
    if (s.last_target == kNoTarget) {
      s.last_target = static_cast<std::int16_t>(target);
    } else if (target != s.last_target) {
      s.first_run = 0;
      return false;
    }
    s.run_start = static_cast<std::int32_t>(t - t0);
    return true;
  }
};

template <typename A>
HIMARI_HD PositionSummary summarize_positions(const A* signals, std::int64_t n_strategies, std::int64_t m,
                                              std::int64_t t0, std::int64_t t1, PositionMode mode) {
  PositionWalk walk(t0, mode);
  feed_backward(signals, n_strategies, m, t0, t1, walk);
  return walk.s;
}

// The carry after a chunk starting at step t0, from the carry before it (the scan's operator).
HIMARI_HD PositionCarry carry_positions(PositionCarry in, PositionSummary s, std::int64_t t0) {
  if (s.last_target == kNoTarget) return in;
  if (s.first_run != 0 && s.last_target == in.position) return in;  // never traded: same position, same entry
  PositionCarry out;
  out.position = s.last_target;
  out.entry_bar = s.last_target == 0 ? -1 : t0 + s.run_start;
  return out;
}

// ---- phase 2: a chunk in units of its entry equity -----------------------------------------

struct ChunkSummary {
  double growth = 1.0;    // equity at the chunk's end / equity at its start
  double low = 1.0;       // lowest mark in the chunk / start equity (1 when it has no bar)
  double high = 1.0;      // highest mark / start equity
  double drawdown = 0.0;  // max drawdown within the chunk against a peak that starts at its start equity
  double sum = 0.0;       // the MetricAccumulator sums of its steps
  double sum_sq = 0.0;
  double down_sq = 0.0;
  std::uint32_t trades = 0;
  std::uint32_t turnover = 0;
  std::uint32_t closed_trades = 0;
  std::uint32_t wins = 0;
  std::uint32_t exposed = 0;
};

// An account in units of the chunk's start equity. The floor is not applied here (phase 3 does).
struct RelativeAccount {
  double cash = 1.0;
  double units = 0.0;
  double entry_equity = 1.0;
  double equity = 1.0;
  double peak = 1.0;
  int position = 0;
};

// The account entering a chunk that starts at step t0 (equity marked at close[t0]), rebuilt from
// the carried position and its entry bar with the fill maths of account_step, scaled so that its
// equity is 1.
HIMARI_HD RelativeAccount start_account(PositionCarry carry, const double* open, const double* close, std::int64_t t0,
                                        const CostConfig& costs) {
  RelativeAccount s;
  if (carry.position == 0) return s;
  const double p = static_cast<double>(carry.position);
  const double open_px = open[carry.entry_bar + 1] * (1.0 + costs.slippage * p);
  const double qty = 1.0 / (open_px * (1.0 + costs.fee));
  const double notional = qty * open_px;
  const double cash = 1.0 - p * notional - costs.fee * notional;
  const double units = p * qty;
  const double equity = cash + units * close[t0];
  s.cash = cash / equity;
  s.units = units / equity;
  s.entry_equity = 1.0 / equity;
  s.position = carry.position;
  return s;
}

// One step of account_step's fill and mark maths (same expressions, so the same rounding for the
// same state), without the floor, accumulating into the chunk summary.
HIMARI_HD void relative_step(RelativeAccount& s, ChunkSummary& out, long long action, double next_open,
                             double next_close, const CostConfig& costs) {
  const int target = valid_action(action) && action != 1 ? action_target(action, costs.mode) : s.position;
  if (target != s.position) {
    const double p = static_cast<double>(s.position);
    const double q = static_cast<double>(target);
    double cash = s.cash;
    double units = s.units;
    out.trades += 1;
    out.turnover += static_cast<std::uint32_t>(target > s.position ? target - s.position : s.position - target);
    if (s.position != 0) {
      const double close_px = next_open * (1.0 - costs.slippage * p);
      const double cash_after_close = cash + units * close_px - costs.fee * std::fabs(units) * close_px;
      out.closed_trades += 1;
      out.wins += cash_after_close > s.entry_equity ? 1u : 0u;
      cash = cash_after_close;
      units = 0.0;
    }
    if (target != 0) {
      const double open_px = next_open * (1.0 + costs.slippage * q);
      const double qty = cash / (open_px * (1.0 + costs.fee));
      const double notional = qty * open_px;
      s.entry_equity = cash;
      cash = cash - q * notional - costs.fee * notional;
      units = q * qty;
    }
    s.cash = cash;
    s.units = units;
    s.position = target;
  }
  const double marked = s.cash + s.units * next_close;
  const double r = marked / s.equity - 1.0;
  out.sum += r;
  out.sum_sq += r * r;
  const double down = r < 0.0 ? r : 0.0;
  out.down_sq += down * down;
  out.exposed += s.position != 0 ? 1u : 0u;
  s.equity = marked;
  out.low = marked < out.low ? marked : out.low;
  out.high = marked > out.high ? marked : out.high;
  s.peak = marked > s.peak ? marked : s.peak;
  // A division only when the drawdown may grow (a multiply screens the other steps).
  if (marked < s.peak * (1.0 - out.drawdown)) {
    const double dd = 1.0 - marked / s.peak;
    out.drawdown = dd > out.drawdown ? dd : out.drawdown;
  }
}

// Phase 2 of one chunk, fed its actions in order, entering with `carry`: relative_step per bar,
// except bars flat that stay flat, which change nothing (their mark is the cash, their return
// exactly 0). `first_bad` is the first step with an action outside {0, 1, 2}, else -1.
struct ChunkWalk {
  ChunkSummary out;
  RelativeAccount s;
  std::int64_t first_bad = -1;
  const double* open;
  const double* close;
  CostConfig costs;
  HIMARI_HD_METHOD ChunkWalk(PositionCarry carry, const double* open_px, const double* close_px, std::int64_t t0,
                      const CostConfig& cost_config)
      : s(start_account(carry, open_px, close_px, t0, cost_config)), open(open_px), close(close_px), costs(cost_config) {}
  HIMARI_HD_METHOD void feed(long long v, std::int64_t t) {
    const int a = valid_action(v) ? static_cast<int>(v) : -1;
    if (a < 0 && first_bad < 0) first_bad = t;
    if (s.position == 0 && a != 2 && (a != 0 || costs.mode != PositionMode::kLongShort)) return;
    relative_step(s, out, a, open[t + 1], close[t + 1], costs);
  }
  HIMARI_HD_METHOD ChunkSummary finish() {
    out.growth = s.equity;
    return out;
  }
};

// Phase 2 over steps [t0, t1) of strategy m. `first_bad` gets the flat index (t * M + m) of the
// first action outside {0, 1, 2}, else -1.
template <typename A>
HIMARI_HD ChunkSummary summarize_chunk(const A* signals, std::int64_t n_strategies, std::int64_t m, std::int64_t t0,
                                       std::int64_t t1, PositionCarry carry, const double* open, const double* close,
                                       const CostConfig& costs, std::int64_t* first_bad) {
  ChunkWalk walk(carry, open, close, t0, costs);
  feed_forward(signals, n_strategies, m, t0, t1, walk);
  *first_bad = walk.first_bad < 0 ? -1 : walk.first_bad * n_strategies + m;
  return walk.finish();
}

// Steps [a, b] of a long held with no fill, in the chunk's relative account: the summary
// relative_step would build bar by bar, from the shared tables (held_runs.h) when the run is
// long enough and the cash beside the position negligible, else bar by bar.
HIMARI_HD void hold_relative(RelativeAccount& s, ChunkSummary& out, std::int64_t a, std::int64_t b,
                             const double* open, const double* close, const CostConfig& costs,
                             const runs::TablesView& tables) {
  if (a > b) return;
  const std::int64_t n = b - a + 1;
  runs::RangeSummary run;
  if (n >= runs::kExactRun) run = runs::range_closes(tables, a + 1, b + 1);
  const double low = s.cash + s.units * run.low, high = s.cash + s.units * run.high;
  if (runs::is_empty(run) || std::fabs(s.cash) > runs::kResidueShare * low) {
    for (std::int64_t t = a; t <= b; ++t) relative_step(s, out, 1, open[t + 1], close[t + 1], costs);
    return;
  }
  double sums[3];
  runs::range_sums(tables, a, b, sums);
  out.sum += sums[0];
  out.sum_sq += sums[1];
  out.down_sq += sums[2];
  out.exposed += static_cast<std::uint32_t>(n);
  out.low = low < out.low ? low : out.low;
  out.high = high > out.high ? high : out.high;
  // drawdown at a step: max(1 - mark / peak before the run, 1 - mark / highest mark of the run so far)
  const double from_peak = 1.0 - low / s.peak;
  const double worst = from_peak > run.fall ? from_peak : run.fall;
  out.drawdown = worst > out.drawdown ? worst : out.drawdown;
  s.peak = high > s.peak ? high : s.peak;
  s.equity = s.cash + s.units * close[b + 1];
}

// Phase 2 in long-flat mode by held runs: the summary ChunkWalk builds, with account maths only
// at fills (relative_step, the same expressions), flat bars skipped (they change nothing: their
// mark is the fill's) and held runs through hold_relative. Per bar a strategy only checks
// whether its action changes its position.
struct HeldRunWalk {
  ChunkSummary out;
  RelativeAccount s;
  std::int64_t first_bad = -1;
  std::int64_t held_from;  // first step of the long being held, -1 when flat
  const double* open;
  const double* close;
  CostConfig costs;
  runs::TablesView tables;
  HIMARI_HD_METHOD HeldRunWalk(PositionCarry carry, const double* open_px, const double* close_px, std::int64_t t0,
                        const CostConfig& cost_config, const runs::TablesView& market)
      : s(start_account(carry, open_px, close_px, t0, cost_config)),
        open(open_px),
        close(close_px),
        costs(cost_config),
        tables(market) {
    held_from = s.position != 0 ? t0 : -1;
  }
  HIMARI_HD_METHOD void feed(long long v, std::int64_t t) {
    if (!valid_action(v)) {  // read as HOLD, reported
      if (first_bad < 0) first_bad = t;
      return;
    }
    if (v != (s.position == 0 ? 2 : 0)) return;  // BUY opens when flat, SELL closes when long
    fill(v, t);
  }
  // The held run before step t, then the fill at t.
  HIMARI_HD_METHOD_OUTLINED void fill(long long v, std::int64_t t) {
    if (held_from >= 0) hold_relative(s, out, held_from, t - 1, open, close, costs, tables);
    relative_step(s, out, v, open[t + 1], close[t + 1], costs);
    held_from = s.position != 0 ? t + 1 : -1;
  }
  HIMARI_HD_METHOD ChunkSummary finish(std::int64_t t1) {
    if (held_from >= 0) hold_relative(s, out, held_from, t1 - 1, open, close, costs, tables);
    out.growth = s.equity;
    return out;
  }
};

template <typename A>
HIMARI_HD ChunkSummary summarize_chunk_runs(const A* signals, std::int64_t n_strategies, std::int64_t m,
                                            std::int64_t t0, std::int64_t t1, PositionCarry carry, const double* open,
                                            const double* close, const CostConfig& costs,
                                            const runs::TablesView& tables, std::int64_t* first_bad) {
  HeldRunWalk walk(carry, open, close, t0, costs, tables);
  feed_forward(signals, n_strategies, m, t0, t1, walk);
  *first_bad = walk.first_bad < 0 ? -1 : walk.first_bad * n_strategies + m;
  return walk.finish(t1);
}

// ---- phase 3: chunks in order, in absolute equity ------------------------------------------

struct Composer {
  MetricAccumulator acc{};
  double equity = 1.0;
  double peak = 1.0;
  double turnover = 0.0;
  double trades = 0.0;
  double closed_trades = 0.0;
  double wins = 0.0;
  int bankrupt = 0;  // 1 once the floor was hit: the rest of the bars change nothing
};

// True when the chunk may touch the floor and must be re-run exactly (NaN counts as true).
HIMARI_HD bool needs_exact_run(const Composer& c, const ChunkSummary& s) {
  return !(c.equity * s.low > kBankruptEquity * (1.0 + kFloorMargin));
}

// Appends a chunk that does not touch the floor.
HIMARI_HD void compose(Composer& c, const ChunkSummary& s) {
  const double from_peak = 1.0 - c.equity * s.low / c.peak;  // the chunk's lows against the peak carried in
  double dd = s.drawdown > from_peak ? s.drawdown : from_peak;
  c.acc.max_dd = dd > c.acc.max_dd ? dd : c.acc.max_dd;
  const double high = c.equity * s.high;
  c.peak = high > c.peak ? high : c.peak;
  c.equity *= s.growth;
  c.acc.sum += s.sum;
  c.acc.sum_sq += s.sum_sq;
  c.acc.down_sq += s.down_sq;
  c.acc.exposed += static_cast<double>(s.exposed);
  c.turnover += static_cast<double>(s.turnover);
  c.trades += static_cast<double>(s.trades);
  c.closed_trades += static_cast<double>(s.closed_trades);
  c.wins += static_cast<double>(s.wins);
}

// The sequential kernel's account at the start of a chunk (step t0), rebuilt from the composer
// and the carried position.
HIMARI_HD AccountState resume_account(const Composer& c, PositionCarry carry, const double* open, const double* close,
                                      std::int64_t t0, const CostConfig& costs) {
  const RelativeAccount r = start_account(carry, open, close, t0, costs);
  AccountState a{};
  a.cash = c.equity * r.cash;
  a.units = c.equity * r.units;
  a.entry_equity = c.equity * r.entry_equity;
  a.equity = carry.position == 0 ? a.cash : a.cash + a.units * close[t0];
  a.peak = a.equity > c.peak ? a.equity : c.peak;
  a.drawdown = 1.0 - a.equity / a.peak;
  a.position = static_cast<double>(carry.position);
  a.turnover = c.turnover;
  a.trades = c.trades;
  a.closed_trades = c.closed_trades;
  a.wins = c.wins;
  return a;
}

HIMARI_HD void absorb_account(Composer& c, const AccountState& a) {
  c.equity = a.equity;
  c.peak = a.peak;
  c.turnover = a.turnover;
  c.trades = a.trades;
  c.closed_trades = a.closed_trades;
  c.wins = a.wins;
  c.bankrupt = a.bankrupt > 0.5 ? 1 : 0;
}

// Runs steps [t0, t1) of strategy m with the sequential kernel's account_step, from the
// composer's state; stops at the floor (the frozen bars after it add nothing).
template <typename A>
HIMARI_HD void exact_run(Composer& c, PositionCarry carry, const A* signals, std::int64_t n_strategies, std::int64_t m,
                         std::int64_t t0, std::int64_t t1, const double* open, const double* close,
                         const CostConfig& costs) {
  AccountState a = resume_account(c, carry, open, close, t0, costs);
  for (std::int64_t t = t0; t < t1 && a.bankrupt < 0.5; ++t) {
    long long act = static_cast<long long>(signals[t * n_strategies + m]);
    if (!valid_action(act)) act = 1;
    const StepOutcome o = account_step(a, static_cast<double>(act), open[t + 1], close[t + 1], costs);
    accumulate(c.acc, o.prev_equity, a.equity, a.drawdown, a.position);
  }
  absorb_account(c, a);
}

HIMARI_HD Metrics finish(const Composer& c, std::int64_t n_bars, double bars_per_year) {
  const double n = static_cast<double>(n_bars > 1 ? n_bars - 1 : 0);
  return finalize_metrics(c.acc, c.equity, c.turnover, c.trades, c.closed_trades, c.wins, n, bars_per_year);
}

// ---- a CPU driver of the three phases, for tests ------------------------------------------

// Runs steps [t0, t1) of strategy m in chunks of `chunk` steps from (c, carry); a chunk that may
// touch the floor is run again the same way with `sub_chunk` (0: sequentially), its sub-chunks
// sequentially. The CUDA kernel does the same with one thread per chunk and, for a chunk near
// the floor, one warp lane per sub-chunk.
// With `tables` (long-flat mode only), phase 2 runs by held runs (summarize_chunk_runs).
template <typename A>
void chunked_range(const BacktestInputs& in, const A* signals, std::int64_t m, std::int64_t t0, std::int64_t t1,
                   std::int64_t chunk, std::int64_t sub_chunk, Composer& c, PositionCarry carry,
                   const runs::TablesView* tables = nullptr) {
  if (chunk <= 0) {
    exact_run(c, carry, signals, in.n_strategies, m, t0, t1, in.open, in.close, in.costs);
    return;
  }
  const std::int64_t n_chunks = (t1 - t0 + chunk - 1) / chunk;
  std::vector<PositionCarry> carries(static_cast<std::size_t>(n_chunks) + 1);
  carries[0] = carry;
  for (std::int64_t k = 0; k < n_chunks; ++k) {  // phase 1 and the scan of its carries
    const std::int64_t a = t0 + k * chunk, b = a + chunk < t1 ? a + chunk : t1;
    const PositionSummary s = summarize_positions(signals, in.n_strategies, m, a, b, in.costs.mode);
    carries[static_cast<std::size_t>(k) + 1] = carry_positions(carries[static_cast<std::size_t>(k)], s, a);
  }
  std::vector<ChunkSummary> sums(static_cast<std::size_t>(n_chunks));
  for (std::int64_t k = 0; k < n_chunks; ++k) {  // phase 2, independent per chunk
    const std::int64_t a = t0 + k * chunk, b = a + chunk < t1 ? a + chunk : t1;
    std::int64_t bad;
    sums[static_cast<std::size_t>(k)] =
        tables != nullptr
            ? summarize_chunk_runs(signals, in.n_strategies, m, a, b, carries[static_cast<std::size_t>(k)], in.open,
                                   in.close, in.costs, *tables, &bad)
            : summarize_chunk(signals, in.n_strategies, m, a, b, carries[static_cast<std::size_t>(k)], in.open,
                              in.close, in.costs, &bad);
  }
  for (std::int64_t k = 0; k < n_chunks && c.bankrupt == 0; ++k) {  // phase 3
    const std::int64_t a = t0 + k * chunk, b = a + chunk < t1 ? a + chunk : t1;
    const auto i = static_cast<std::size_t>(k);
    if (needs_exact_run(c, sums[i]))
      chunked_range(in, signals, m, a, b, sub_chunk, 0, c, carries[i], tables);
    else
      compose(c, sums[i]);
  }
}

// held_runs (long-flat mode): phase 2 by held runs over tables built here.
template <typename A>
void chunked_backtest(const BacktestInputs& in, const A* signals, Metrics* metrics, std::int64_t chunk,
                      std::int64_t sub_chunk, bool held_runs = false) {
  const bool by_runs = held_runs && in.costs.mode == PositionMode::kLongFlat && in.n_bars > 1;
  std::unique_ptr<runs::MarketTables> tables;  // the one set every strategy reads
  if (by_runs) tables = std::make_unique<runs::MarketTables>(in.close, in.n_bars);
  for (std::int64_t m = 0; m < in.n_strategies; ++m) {
    Composer c;
    chunked_range(in, signals, m, 0, in.n_bars - 1, chunk, sub_chunk, c, PositionCarry{},
                  by_runs ? &tables->view() : nullptr);
    metrics[m] = finish(c, in.n_bars, in.bars_per_year);
  }
}

}  // namespace himari::scan
