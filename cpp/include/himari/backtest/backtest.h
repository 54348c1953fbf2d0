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
template <typename A>
void backtest_signals_cpu(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity);

// The env's reward function over fixed action sequences [T, M]: rewards [T-1, M] (double),
// equity [T, M], position [T, M], account [T, M, 4] (float, the env's observation columns).
template <typename A>
void replay_actions_cpu(const BacktestInputs& in, const RewardConfig& reward, const A* actions, double* rewards,
                        double* equity, double* position, float* account);

}  // namespace himari
