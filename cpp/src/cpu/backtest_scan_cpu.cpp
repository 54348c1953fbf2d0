// The signal backtester as a time-chunked scan on the CPU (the CUDA kernel's three phases,
// chunked_scan.h), for threaded runs over few strategies: one strategy's bars are cut into chunks
// that threads summarise independently, then composed in order. Measured against the sequential
// kernel in benchmarks/cpp/bench_backtest_scan_cpu.cpp: with a position change every ~100 bars
// the scan does less work than the sequential kernel even on one thread; with an action on every
// bar (and the bankruptcy floor's exact re-runs) up to about twice as much.
#include <utility>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/backtest/chunked_scan.h"
#include "thread_parts.h"

namespace himari {

template <typename A>
void backtest_signals_scan_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, std::int64_t chunk,
                               int threads) {
  const std::int64_t steps = in.n_bars > 1 ? in.n_bars - 1 : 0;
  const std::int64_t m_total = in.n_strategies;
  if (chunk < 1) chunk = 1;
  if (threads < 1) threads = 1;
  const std::int64_t n_chunks = (steps + chunk - 1) / chunk;
  const auto at = [m_total](std::int64_t c, std::int64_t m) { return static_cast<std::size_t>(c * m_total + m); };
  const auto bounds = [&](std::int64_t c) {
    const std::int64_t a = c * chunk;
    return std::pair<std::int64_t, std::int64_t>{a, a + chunk < steps ? a + chunk : steps};
  };
  // Phase 1 and the carry scan, per strategy: the position entering each chunk.
  std::vector<scan::PositionCarry> carries(static_cast<std::size_t>((n_chunks + 1) * m_total));
  parallel_parts(m_total, threads, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t m = first; m < last; ++m) {
      carries[at(0, m)] = scan::PositionCarry{};
      for (std::int64_t c = 0; c < n_chunks; ++c) {
        const auto [a, b] = bounds(c);
        const auto s = scan::summarize_positions(signals, m_total, m, a, b, in.costs.mode);
        carries[at(c + 1, m)] = scan::carry_positions(carries[at(c, m)], s, a);
      }
    }
  });
  // Phase 2, the bulk of the work: every (chunk, strategy) in units of its entry equity.
  std::vector<scan::ChunkSummary> sums(static_cast<std::size_t>(n_chunks * m_total));
  parallel_parts(n_chunks * m_total, threads, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t i = first; i < last; ++i) {
      const std::int64_t c = i / m_total, m = i % m_total;
      const auto [a, b] = bounds(c);
      std::int64_t bad;  // the caller has checked the actions
      sums[static_cast<std::size_t>(i)] =
          scan::summarize_chunk(signals, m_total, m, a, b, carries[static_cast<std::size_t>(i)], in.open, in.close,
                                in.costs, &bad);
    }
  });
  // Phase 3, per strategy: the chunks in order; a chunk that may reach the bankruptcy floor is
  // run again exactly from the account rebuilt at its start.
  parallel_parts(m_total, threads, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t m = first; m < last; ++m) {
      scan::Composer comp;
      for (std::int64_t c = 0; c < n_chunks && comp.bankrupt == 0; ++c) {
        const auto [a, b] = bounds(c);
        if (scan::needs_exact_run(comp, sums[at(c, m)]))
          scan::exact_run(comp, carries[at(c, m)], signals, m_total, m, a, b, in.open, in.close, in.costs);
        else
          scan::compose(comp, sums[at(c, m)]);
      }
      metrics[m] = scan::finish(comp, in.n_bars, in.bars_per_year);
    }
  });
}

#define HIMARI_INSTANTIATE_SCAN(A) \
  template void backtest_signals_scan_cpu<A>(const BacktestInputs&, const A*, Metrics*, std::int64_t, int);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE_SCAN)
#undef HIMARI_INSTANTIATE_SCAN

}  // namespace himari
