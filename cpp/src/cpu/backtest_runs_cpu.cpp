// The long-flat, metrics-only signal backtest by held runs on the CPU: the scan's held-run
// account (chunked_scan.h: relative_step at fills, hold_relative for held runs over the shared
// tables of held_runs.h), each strategy as one chunk of all its bars. Strategies go in blocks of
// 64: for each bar the block's 64 actions (one cache line of int8 signals) are compared with the
// one action that would change each strategy's position (BUY when flat, SELL when long) into a
// bit mask, and only the set bits do account maths.
#include <cstdint>
#include <stdexcept>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "himari/backtest/backtest.h"
#include "himari/backtest/chunked_scan.h"
#include "himari/backtest/held_runs.h"
#include "thread_parts.h"

namespace himari {
namespace {

constexpr std::int64_t kRunsBlock = 64;

// Bit j set where row[j] == wanted[j], for j < nb.
template <typename A>
std::uint64_t changes_of(const A* row, const A* wanted, std::int64_t nb) {
#if defined(__SSE2__)
  if constexpr (sizeof(A) == 1) {
    if (nb == kRunsBlock) {  // one cache line of int8 actions: four 16-byte compares
      std::uint64_t bits = 0;
      for (int k = 0; k < 4; ++k) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * k));
        const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wanted + 16 * k));
        bits |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(a, w))))
                << (16 * k);
      }
      return bits;
    }
  }
#endif
  std::uint64_t bits = 0;
  for (std::int64_t j = 0; j < nb; ++j) bits |= static_cast<std::uint64_t>(row[j] == wanted[j]) << j;
  return bits;
}

// Blocks whose strategies change position on more than this share of their bars go back to the
// per-bar kernel (each fill costs the held-run path a scalar account step and a range query,
// the per-bar kernel a vector step shared by four strategies).
constexpr double kDenseFills = 0.125;
constexpr std::int64_t kDensityCheck = 2048;  // bars between density checks

template <typename A>
void run_block(const BacktestInputs& in, const A* signals, std::int64_t m0, std::int64_t nb,
               const runs::TablesView& tables, Metrics* metrics) {
  // Each strategy of the block as one chunk of all its bars, entering flat: its account in units
  // of its starting equity (1, so the units are the account's own) and the summary so far.
  const scan::HeldRunWalk flat(scan::PositionCarry{}, in.open, in.close, 0, in.costs, tables);
  std::vector<scan::HeldRunWalk> lanes(static_cast<std::size_t>(nb), flat);
  // The action that changes each position: BUY (2) when flat, SELL (0) when long; 3 (never an
  // action) for lanes past the block and for strategies that may reach the bankruptcy floor
  // (the sequential loop re-runs them below).
  alignas(16) A wanted[kRunsBlock];
  for (std::int64_t j = 0; j < kRunsBlock; ++j) wanted[j] = static_cast<A>(j < nb ? 2 : 3);
  const std::int64_t steps = in.n_bars - 1;
  std::int64_t fills = 0;
  for (std::int64_t t = 0; t < steps; ++t) {
    std::uint64_t changes = changes_of(signals + t * in.n_strategies + m0, wanted, nb);
    while (changes != 0) {
      const int j = __builtin_ctzll(changes);
      changes &= changes - 1;
      scan::HeldRunWalk& l = lanes[static_cast<std::size_t>(j)];
      l.fill(static_cast<long long>(wanted[j]), t);
      ++fills;
      wanted[j] = static_cast<A>(scan::needs_exact_run(scan::Composer{}, l.out) ? 3 : l.held_from >= 0 ? 0 : 2);
    }
    if ((t + 1) % kDensityCheck == 0 && static_cast<double>(fills) > kDenseFills * static_cast<double>((t + 1) * nb)) {
      backtest_range(in, signals, m0, m0 + nb, metrics, nullptr);
      return;
    }
  }
  for (std::int64_t j = 0; j < nb; ++j) {
    scan::Composer c;
    // a strategy that may touch the floor (wanted 3) is re-run by the sequential kernel's loop
    // whatever its summary says, so its last held run is not summed
    scan::HeldRunWalk& l = lanes[static_cast<std::size_t>(j)];
    const scan::ChunkSummary summary = wanted[j] != 3 ? l.finish(steps) : l.out;
    if (scan::needs_exact_run(c, summary))
      scan::exact_run(c, scan::PositionCarry{}, signals, in.n_strategies, m0 + j, 0, steps, in.open, in.close,
                      in.costs);
    else
      scan::compose(c, summary);
    metrics[m0 + j] = scan::finish(c, in.n_bars, in.bars_per_year);
  }
}

}  // namespace

template <typename A>
void backtest_signals_runs_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, int threads) {
  if (in.costs.mode != PositionMode::kLongFlat)
    throw std::invalid_argument("the held-run backtest is long-flat only");
  if (in.n_strategies < 1) return;
  if (in.n_bars < 2) {  // no step: what the per-bar kernel reports for an empty run
    backtest_range(in, signals, 0, in.n_strategies, metrics, nullptr);
    return;
  }
  const runs::MarketTables tables(in.close, in.n_bars);
  const std::int64_t blocks = (in.n_strategies + kRunsBlock - 1) / kRunsBlock;
  // Threads as the per-bar kernel decides them (none for small work), each taking whole blocks.
  std::int64_t workers = threads < 1 ? hardware_threads() : threads;
  const std::int64_t by_work = (in.n_bars - 1) * in.n_strategies / kMinStepsPerThread;
  workers = workers < by_work ? workers : by_work;
  workers = workers < 1 ? 1 : workers;
  parallel_parts(blocks, static_cast<int>(workers), 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t b = first; b < last; ++b) {
      const std::int64_t m0 = b * kRunsBlock;
      const std::int64_t nb = in.n_strategies - m0 < kRunsBlock ? in.n_strategies - m0 : kRunsBlock;
      run_block(in, signals, m0, nb, tables.view(), metrics);
    }
  });
}

#define HIMARI_INSTANTIATE_RUNS(A) \
  template void backtest_signals_runs_cpu<A>(const BacktestInputs&, const A*, Metrics*, int);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE_RUNS)
#undef HIMARI_INSTANTIATE_RUNS

}  // namespace himari
