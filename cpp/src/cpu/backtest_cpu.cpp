// CPU signal backtester. Strategies are processed in blocks of kBlock whose state lives in
// structure-of-arrays form; time is the outer loop and the strategies of a block the inner one,
// so each bar's signals are read once, contiguously, and the inner loop (the shared, branch-free
// account_step) auto-vectorises across strategies.
#include <algorithm>
#include <cmath>

#include "himari/backtest/backtest.h"
#include "himari/env/account_math.h"
#include "himari/env/episode_math.h"
#include "himari/reward/reward_math.h"

namespace himari {
namespace {

constexpr std::int64_t kBlock = 64;

// Structure-of-arrays state of one block of accounts.
struct BlockState {
  double cash[kBlock], units[kBlock], equity[kBlock], peak[kBlock], entry_equity[kBlock], turnover[kBlock];
  double position[kBlock], bars_in_position[kBlock], trades[kBlock], closed_trades[kBlock], wins[kBlock];
  double bankrupt[kBlock], drawdown[kBlock];
  double sum[kBlock], sum_sq[kBlock], down_sq[kBlock], max_dd[kBlock], exposed[kBlock];

  void init(std::int64_t n) {
    const AccountState a{};
    for (std::int64_t j = 0; j < n; ++j) {
      cash[j] = a.cash, units[j] = a.units, equity[j] = a.equity, peak[j] = a.peak;
      entry_equity[j] = a.entry_equity, turnover[j] = a.turnover, position[j] = a.position;
      bars_in_position[j] = a.bars_in_position, trades[j] = a.trades, closed_trades[j] = a.closed_trades;
      wins[j] = a.wins, bankrupt[j] = a.bankrupt, drawdown[j] = a.drawdown;
      sum[j] = sum_sq[j] = down_sq[j] = max_dd[j] = exposed[j] = 0.0;
    }
  }
  AccountState load(std::int64_t j) const {
    return AccountState{cash[j], units[j], equity[j], peak[j], entry_equity[j], turnover[j], position[j],
                        bars_in_position[j], trades[j], closed_trades[j], wins[j], bankrupt[j], drawdown[j]};
  }
  void store(std::int64_t j, const AccountState& a) {
    cash[j] = a.cash, units[j] = a.units, equity[j] = a.equity, peak[j] = a.peak;
    entry_equity[j] = a.entry_equity, turnover[j] = a.turnover, position[j] = a.position;
    bars_in_position[j] = a.bars_in_position, trades[j] = a.trades, closed_trades[j] = a.closed_trades;
    wins[j] = a.wins, bankrupt[j] = a.bankrupt, drawdown[j] = a.drawdown;
  }
  MetricAccumulator load_metrics(std::int64_t j) const {
    return MetricAccumulator{sum[j], sum_sq[j], down_sq[j], max_dd[j], exposed[j]};
  }
  void store_metrics(std::int64_t j, const MetricAccumulator& m) {
    sum[j] = m.sum, sum_sq[j] = m.sum_sq, down_sq[j] = m.down_sq, max_dd[j] = m.max_dd, exposed[j] = m.exposed;
  }
};

template <typename A>
void run_block(const BacktestInputs& in, const A* signals, std::int64_t m0, std::int64_t nb, BlockState& st,
               Metrics* metrics, double* equity) {
  const std::int64_t m_total = in.n_strategies;
  st.init(nb);
  if (equity != nullptr) {
    for (std::int64_t j = 0; j < nb; ++j) equity[m0 + j] = 1.0;
  }
  for (std::int64_t t = 0; t + 1 < in.n_bars; ++t) {
    const A* row = signals + t * m_total + m0;
    const double next_open = in.open[t + 1];
    const double next_close = in.close[t + 1];
    for (std::int64_t j = 0; j < nb; ++j) {
      AccountState a = st.load(j);
      const StepOutcome o = account_step(a, static_cast<std::int32_t>(row[j]), next_open, next_close, in.costs);
      MetricAccumulator m = st.load_metrics(j);
      accumulate(m, o.prev_equity, a.equity, a.drawdown, a.position);
      st.store(j, a);
      st.store_metrics(j, m);
    }
    if (equity != nullptr) {
      double* out = equity + (t + 1) * m_total + m0;
      for (std::int64_t j = 0; j < nb; ++j) out[j] = st.equity[j];
    }
  }
  const double n = static_cast<double>(in.n_bars - 1);
  for (std::int64_t j = 0; j < nb; ++j) {
    metrics[m0 + j] = finalize_metrics(st.load_metrics(j), st.equity[j], st.turnover[j], st.trades[j],
                                       st.closed_trades[j], st.wins[j], n, in.bars_per_year);
  }
}

}  // namespace

template <typename A>
void backtest_signals_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity) {
  BlockState st;
  for (std::int64_t m0 = 0; m0 < in.n_strategies; m0 += kBlock) {
    run_block(in, signals, m0, std::min(kBlock, in.n_strategies - m0), st, metrics, equity);
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
      const StepOutcome o = account_step(a, static_cast<std::int32_t>(actions[t * m_total + m]), in.open[t + 1],
                                         in.close[t + 1], in.costs);
      const double log_return = std::log(a.equity / o.prev_equity);
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
  template void backtest_signals_cpu<A>(const BacktestInputs&, const A*, Metrics*, double*);            \
  template void replay_actions_cpu<A>(const BacktestInputs&, const RewardConfig&, const A*, double*, double*, \
                                      double*, float*);
HIMARI_INSTANTIATE_BACKTEST(std::int8_t)
HIMARI_INSTANTIATE_BACKTEST(std::uint8_t)
HIMARI_INSTANTIATE_BACKTEST(std::int16_t)
HIMARI_INSTANTIATE_BACKTEST(std::int32_t)
HIMARI_INSTANTIATE_BACKTEST(std::int64_t)
#undef HIMARI_INSTANTIATE_BACKTEST

}  // namespace himari
