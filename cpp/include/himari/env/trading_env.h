// Vectorised trading env on the CPU: N accounts stepping in lock-step over one shared market,
// writing observations, rewards and flags into persistent buffers that Python views without
// copies (the madrona pattern: allocate once, never return new arrays).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "himari/env/account_math.h"
#include "himari/env/env_config.h"
#include "himari/env/episode_math.h"
#include "himari/env/market.h"
#include "himari/reward/reward_config.h"
#include "himari/reward/reward_math.h"

namespace himari {

// Reward terms of the last step, reported per env (a user sees what shaped the reward).
struct RewardReport {
  double log_return = 0.0;
  double drawdown_penalty = 0.0;
  double turnover_penalty = 0.0;
  double dsr = 0.0;
};

class TradingEnv {
 public:
  TradingEnv(std::shared_ptr<const MarketData> market, const EnvConfig& config, const RewardConfig& reward);

  // Restart every env's episode. When `reseed` is true, `seed` replaces the seed and every
  // env's episode counter restarts at 0, so the same seed reproduces the same starts. The first
  // reset after construction always restarts the counters (the constructor's own reset, which
  // makes the buffers valid at once, does not use up episode 0).
  void reset(bool reseed, std::uint64_t seed);

  // One step of all envs. `actions` holds num_envs values; the caller has checked the range.
  template <typename A>
  void step(const A* actions);

  // Validates actions[0..n) are in {0,1,2}; throws InvalidArgument naming the first offender.
  template <typename A>
  static void check_actions(const A* actions, std::int64_t n);

  const EnvConfig& config() const { return config_; }
  const RewardConfig& reward_config() const { return reward_; }
  const MarketData& market() const { return *market_; }
  std::int64_t num_envs() const { return config_.num_envs; }
  std::int64_t obs_row() const { return market_->n_features + kAccountColumns; }

  // Persistent buffers (sizes fixed at construction).
  std::vector<float> obs;                   // [N, W, F + 4]
  std::vector<float> reward;                // [N]
  std::vector<std::uint8_t> terminated;     // [N]
  std::vector<std::uint8_t> truncated;      // [N]
  std::vector<std::uint8_t> episode_done;   // [N]
  std::vector<AccountState> accounts;       // [N]
  std::vector<DsrState> dsr;                // [N]
  std::vector<RewardReport> terms;          // [N]
  std::vector<std::int64_t> bar;            // [N] bar the current observation ends at
  std::vector<std::int64_t> episode_step;   // [N] steps taken in the current episode
  std::vector<std::int64_t> episode_len;    // [N] steps the current episode will take
  std::vector<std::int64_t> episode_index;  // [N] episodes started by this env since the last reseed
  std::vector<double> episode_return;       // [N] log final equity of the last finished episode
  std::vector<std::int64_t> episode_length; // [N] length of the last finished episode

 private:
  void begin_episode(std::int64_t env);
  void write_observation(std::int64_t env, bool fresh);

  std::shared_ptr<const MarketData> market_;
  EnvConfig config_;
  RewardConfig reward_;
  EpisodeBounds bounds_;
  bool pristine_ = true;  // no step since construction
};

// Checks shared by the env constructor and the backtester.
void validate_costs(const CostConfig& costs);
void validate_reward(const RewardConfig& reward);

}  // namespace himari
