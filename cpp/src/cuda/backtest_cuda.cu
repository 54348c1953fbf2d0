// The per-strategy signal backtester on the GPU (the reference for backtest_scan_cuda.cu, and the
// kernel that writes equity curves): one thread per strategy runs the env's account maths
// over all T bars (the account state never leaves registers), reading its column of the
// bar-major signal matrix (a warp reads 32 consecutive strategies of a bar: coalesced) with the
// next kPrefetch bars' signals loaded ahead, so several loads are in flight while the dependent
// chain of account steps runs. The one price pair per bar is the same address for every thread.
#include <cuda_runtime.h>

#include "check.cuh"
#include "himari/backtest/backtest_math.h"
#include "himari/cuda/api.h"
#include "himari/env/account_math.h"

namespace himari::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kPrefetch = 8;

template <typename A>
__global__ void backtest_kernel(BacktestInputs in, const A* __restrict__ signals, Metrics* metrics, double* equity,
                                unsigned long long* error) {
  const std::int64_t m = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t m_total = in.n_strategies;
  if (m >= m_total) return;
  AccountState a{};
  MetricAccumulator acc{};
  if (equity != nullptr) equity[m] = 1.0;
  const std::int64_t steps = in.n_bars - 1;
  const double* __restrict__ open = in.open;
  const double* __restrict__ close = in.close;
  for (std::int64_t t0 = 0; t0 < steps; t0 += kPrefetch) {
    long long sig[kPrefetch];
#pragma unroll
    for (int k = 0; k < kPrefetch; ++k)
      sig[k] = t0 + k < steps ? static_cast<long long>(signals[(t0 + k) * m_total + m]) : 1;
#pragma unroll
    for (int k = 0; k < kPrefetch; ++k) {
      const std::int64_t t = t0 + k;
      if (t >= steps) break;
      double act = static_cast<double>(sig[k]);
      if (sig[k] < 0 || sig[k] > 2) {
        atomicMin(error, static_cast<unsigned long long>(t * m_total + m));
        act = 1.0;
      }
      const StepOutcome o = account_step(a, act, open[t + 1], close[t + 1], in.costs);
      accumulate(acc, o.prev_equity, a.equity, a.drawdown, a.position);
      if (equity != nullptr) equity[(t + 1) * m_total + m] = a.equity;
    }
  }
  metrics[m] = finalize_metrics(acc, a.equity, a.turnover, a.trades, a.closed_trades, a.wins,
                                static_cast<double>(steps), in.bars_per_year);
}

}  // namespace

template <typename A>
void backtest_signals_sequential(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity,
                                 unsigned long long* error, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  const auto blocks = static_cast<unsigned>((in.n_strategies + kThreads - 1) / kThreads);
  backtest_kernel<A><<<blocks, kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(in, signals, metrics, equity,
                                                                                      error);
  HIMARI_CUDA_CHECK_LAUNCH("backtest_kernel");
}

// The scan kernel does not produce the equity curve; with one requested, the sequential kernel
// writes it as it goes.
template <typename A>
void backtest_signals(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity,
                      unsigned long long* error, int device, Stream stream) {
  if (equity == nullptr)
    backtest_signals_scan(in, signals, metrics, error, 0, device, stream);
  else
    backtest_signals_sequential(in, signals, metrics, equity, error, device, stream);
}

#define HIMARI_INSTANTIATE(A)                                                                                 \
  template void backtest_signals<A>(const BacktestInputs&, const A*, Metrics*, double*, unsigned long long*, int, \
                                    Stream);                                                                  \
  template void backtest_signals_sequential<A>(const BacktestInputs&, const A*, Metrics*, double*,             \
                                               unsigned long long*, int, Stream);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE

}  // namespace himari::cuda
