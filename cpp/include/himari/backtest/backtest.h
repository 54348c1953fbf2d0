// Fused many-strategy signal backtester: M accounts over one price series in a single pass,
// with the env's exact account maths (so env and backtester agree bit for bit).
#pragma once

#include <cstdint>

#include "himari/backtest/backtest_math.h"
#include "himari/common/action_types.h"
#include "himari/env/env_config.h"
#include "himari/reward/reward_config.h"

namespace himari {

struct BacktestInputs {
  const double* open;   // [T]
  const double* close;  // [T]
  std::int64_t n_bars;  // T
  std::int64_t n_strategies;  // M
  CostConfig costs;
  double bars_per_year = 105120.0;
};

// signals: [T, M] row-major actions in {0,1,2} (checked by the caller); A is one of
// HIMARI_FOR_EACH_ACTION_TYPE (common/action_types.h).
// metrics: [M]; equity: [T, M] or nullptr.
// threads: 1 runs the sequential kernel on the calling thread (the reference every other path is
// pinned to); 0 means every hardware thread; n > 1 spreads the work over up to n threads as
// plan_backtest_threads says. Splitting the strategies gives the same bits as one thread; the
// time scan (few strategies, metrics only) the same positions and counts and equity-derived
// metrics to rounding (chunked_scan.h).
template <typename A>
void backtest_signals_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity,
                          int threads = 1);

// The sequential kernel over strategies [m_begin, m_end) of `signals` (row stride n_strategies),
// on the calling thread: what threads = 1 runs, for callers that split the strategies themselves.
template <typename A>
void backtest_range(const BacktestInputs& in, const A* signals, std::int64_t m_begin, std::int64_t m_end,
                    Metrics* metrics, double* equity);

// How a threaded CPU backtest shares its work.
enum class BacktestSplit { kSequential, kStrategies, kTimeScan };
struct BacktestPlan {
  BacktestSplit split = BacktestSplit::kSequential;
  int workers = 1;
};

// Below this many account steps (bars x strategies) a backtest runs on one thread: starting
// threads would cost more than they save (about 1 ms of work on one core).
constexpr std::int64_t kMinStepsPerThread = std::int64_t{1} << 18;
// Bars per chunk of the CPU time scan.
constexpr std::int64_t kCpuScanChunk = 2048;

// The split for `threads` threads (0: every hardware thread): the strategies, in contiguous
// ranges, when each thread gets at least two vector groups of them or an equity curve is asked
// for; else a scan over time, when there are enough bars for two chunks per thread; else one
// thread.
BacktestPlan plan_backtest_threads(std::int64_t n_bars, std::int64_t n_strategies, bool with_equity, int threads);

// The time-chunked scan (chunked_scan.h) on the CPU, metrics only: chunks of `chunk` steps, the
// per-chunk phase over (chunk, strategy) items on `threads` threads (>= 1).
template <typename A>
void backtest_signals_scan_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, std::int64_t chunk,
                               int threads);

// Long-flat mode, metrics only, by held runs (held_runs.h): per bar a strategy only checks
// whether its action changes its position, and does account maths at its fills; held runs use
// prefix sums and a range tree over the closes shared by every strategy. Counts, fills and the
// final equity bit for bit as the sequential kernel, return sums and drawdown to rounding.
// Blocks of 64 strategies over `threads` threads (0: every hardware thread). Throws
// std::invalid_argument in long-short mode.
template <typename A>
void backtest_signals_runs_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, int threads);

// The CPUs this process may run on (its affinity mask on Linux, else
// std::thread::hardware_concurrency()), at least 1: what threads = 0 means.
int hardware_threads();

// The env's reward function over fixed action sequences [T, M]: rewards [T-1, M] (double),
// equity [T, M], position [T, M], account [T, M, 4] (float, the env's observation columns).
template <typename A>
void replay_actions_cpu(const BacktestInputs& in, const RewardConfig& reward, const A* actions, double* rewards,
                        double* equity, double* position, float* account);

}  // namespace himari
