// Plain configuration structs shared by the env and the backtester (no Python, no CUDA).
#pragma once

#include <cstdint>

namespace himari {

// Actions, also the label encoding of the data pipeline.
enum Action : int { kSell = 0, kHold = 1, kBuy = 2 };

// long_flat: BUY targets +1, SELL targets 0. long_short: BUY +1, SELL -1. HOLD keeps.
enum class PositionMode : int { kLongFlat = 0, kLongShort = 1 };

// Execution costs, identical for the env and the backtester.
struct CostConfig {
  double fee = 1e-3;       // fraction of traded notional paid on every fill
  double slippage = 5e-4;  // fill price moved against the trader by this fraction
  PositionMode mode = PositionMode::kLongFlat;
};

struct EnvConfig {
  CostConfig costs;
  std::int64_t num_envs = 1;
  std::int64_t episode_length = 2048;  // steps per episode (shorter at the end of data)
  std::int64_t window = 1;             // bars of features per observation
  std::int64_t warmup = 0;             // first bar an episode may start at (feature warm-up)
  std::uint64_t seed = 0;
  bool random_start = true;  // false: every episode starts at the first admissible bar
  // Keep a final-observation buffer [N, W, F + 4]: for the envs whose episode ended at a step,
  // the observation that step would have shown had the episode gone on (what a value function
  // bootstraps a truncated episode from). It costs the memory of a second observation buffer.
  bool final_obs = true;
};

}  // namespace himari
