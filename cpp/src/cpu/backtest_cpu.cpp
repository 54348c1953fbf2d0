// CPU signal backtester and action replay. The kernel (backtest_kernel.h) is compiled twice:
// here for the baseline x86-64 ISA (SSE2, two doubles per vector) and in backtest_cpu_avx2.cpp
// with AVX2 (four doubles); the CPU picks one at run time. (An AVX-512 build, eight doubles, ran
// 13% slower than AVX2 on the Zen 4 it was measured on, and was dropped.) FMA stays off in both (see
// CMakeLists.txt), so both round exactly like the env.
#include <cmath>
#include <thread>
#if defined(__linux__)
#include <sched.h>
#endif

#include "himari/backtest/backtest.h"
#include "himari/common/cpu_features.h"
#include "himari/backtest/backtest_math.h"
#include "himari/env/account_math.h"
#include "himari/env/episode_math.h"
#include "himari/reward/reward_math.h"
#include "thread_parts.h"

namespace himari {
namespace baseline {
#include "backtest_kernel.h"
}  // namespace baseline

#if defined(HIMARI_HAVE_AVX2_KERNEL)
namespace avx2 {
template <typename A>
void backtest(const BacktestInputs& in, const A* signals, std::int64_t m_begin, std::int64_t m_end, Metrics* metrics,
              double* equity);
}  // namespace avx2
#endif

// Strategies [m_begin, m_end) with the widest kernel this CPU runs.
template <typename A>
void backtest_range(const BacktestInputs& in, const A* signals, std::int64_t m_begin, std::int64_t m_end,
                    Metrics* metrics, double* equity) {
#if defined(HIMARI_HAVE_AVX2_KERNEL)
  if (cpu_kernel() >= CpuKernel::kAvx2) {
    avx2::backtest(in, signals, m_begin, m_end, metrics, equity);
    return;
  }
#endif
  baseline::run_range<Vec2d>(in, signals, m_begin, m_end, metrics, equity);
}

namespace {

// Strategy ranges start at multiples of this: whole AVX2 groups (and SSE2 pairs) per thread.
constexpr std::int64_t kStrategyAlign = 4;

}  // namespace

int hardware_threads() {
#if defined(__linux__)
  // The CPUs this process may run on (taskset, a container's cpuset, a sweep trial's share),
  // not every CPU of the machine, so threads=0 does not oversubscribe a restricted process.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

BacktestPlan plan_backtest_threads(std::int64_t n_bars, std::int64_t n_strategies, bool with_equity, int threads) {
  BacktestPlan plan;
  const std::int64_t steps = n_bars > 1 ? n_bars - 1 : 0;
  std::int64_t want = threads == 0 ? hardware_threads() : threads;
  const std::int64_t by_work = steps * n_strategies / kMinStepsPerThread;
  want = want < by_work ? want : by_work;
  if (want < 2) return plan;
  if (with_equity || n_strategies >= 2 * kStrategyAlign * want) {
    const std::int64_t groups = (n_strategies + kStrategyAlign - 1) / kStrategyAlign;
    const std::int64_t workers = want < groups ? want : groups;
    if (workers < 2) return plan;
    plan.split = BacktestSplit::kStrategies;
    plan.workers = static_cast<int>(workers);
    return plan;
  }
  const std::int64_t chunks = (steps + kCpuScanChunk - 1) / kCpuScanChunk;
  if (chunks * n_strategies < 2 * want) return plan;
  plan.split = BacktestSplit::kTimeScan;
  plan.workers = static_cast<int>(want);
  return plan;
}

template <typename A>
void backtest_signals_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity, int threads) {
  const BacktestPlan plan = plan_backtest_threads(in.n_bars, in.n_strategies, equity != nullptr, threads);
  switch (plan.split) {
    case BacktestSplit::kSequential:
      backtest_range(in, signals, 0, in.n_strategies, metrics, equity);
      return;
    case BacktestSplit::kStrategies:
      parallel_parts(in.n_strategies, plan.workers, kStrategyAlign, [&](std::int64_t a, std::int64_t b) {
        backtest_range(in, signals, a, b, metrics, equity);
      });
      return;
    case BacktestSplit::kTimeScan:
      backtest_signals_scan_cpu(in, signals, metrics, kCpuScanChunk, plan.workers);
      return;
  }
}

template <typename A>
void replay_actions_cpu(const BacktestInputs& in, const RewardConfig& reward, const A* actions, double* rewards,
                        double* equity, double* position, float* account) {
  const std::int64_t m_total = in.n_strategies;
  for (std::int64_t m = 0; m < m_total; ++m) {
    AccountState a{};
    DsrState dsr{};
    equity[m] = a.equity;
    position[m] = 0.0;
    float* acc0 = account + m * kAccountColumns;
    acc0[0] = acc0[1] = acc0[2] = acc0[3] = 0.0f;
    for (std::int64_t t = 0; t + 1 < in.n_bars; ++t) {
      const double prev_drawdown = drawdown_of(a);
      const StepOutcome o = account_step(a, static_cast<double>(actions[t * m_total + m]), in.open[t + 1],
                                         in.close[t + 1], in.costs);
      const double log_return = lane_log(a.equity / o.prev_equity);
      const RewardTerms rt = shape_reward(log_return, prev_drawdown, drawdown_of(a), o.traded, dsr, reward);
      rewards[t * m_total + m] = rt.total;
      const std::int64_t k = (t + 1) * m_total + m;
      equity[k] = a.equity;
      position[k] = a.position;
      float* acc = account + k * kAccountColumns;
      acc[0] = static_cast<float>(a.position);
      acc[1] = static_cast<float>(unrealised_pnl(a));
      acc[2] = static_cast<float>(-drawdown_of(a));
      acc[3] = static_cast<float>(std::log1p(a.bars_in_position));
    }
  }
}

#define HIMARI_INSTANTIATE_BACKTEST(A)                                                                  \
  template void backtest_signals_cpu<A>(const BacktestInputs&, const A*, Metrics*, double*, int);       \
  template void backtest_range<A>(const BacktestInputs&, const A*, std::int64_t, std::int64_t, Metrics*, double*); \
  template void replay_actions_cpu<A>(const BacktestInputs&, const RewardConfig&, const A*, double*, double*, \
                                      double*, float*);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE_BACKTEST)
#undef HIMARI_INSTANTIATE_BACKTEST

}  // namespace himari
