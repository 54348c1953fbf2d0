// Vectorised trading env on the CPU: N accounts stepping in lock-step over one shared market,
// writing observations, rewards and flags into persistent buffers that Python views without
// copies (the madrona pattern: allocate once, never return new arrays). Account state is kept
// as structure-of-arrays, so a step advances several envs per vector instruction and every
// per-env quantity is one contiguous array (a zero-copy numpy view).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "himari/common/action_types.h"
#include "himari/env/account_math.h"
#include "himari/env/env_config.h"
#include "himari/env/episode_math.h"
#include "himari/env/market.h"
#include "himari/reward/reward_config.h"
#include "himari/reward/reward_math.h"

namespace himari {

// The account fields, one array each, in AccountState order.
constexpr int kAccountFields = 13;
extern const char* const kAccountFieldNames[kAccountFields];

// Reward terms reported per env (a user sees what shaped the reward).
constexpr int kTermFields = 4;
extern const char* const kTermFieldNames[kTermFields];  // log_return, drawdown_penalty, turnover_penalty, dsr

// Raw pointers to everything a step reads and writes: what a kernel (CPU lanes or CUDA) gets.
struct EnvBuffers {
  const double* open;
  const double* close;
  const float* features;
  std::int64_t n_bars, n_features;
  EnvConfig config;
  RewardConfig reward;
  EpisodeBounds bounds;
  double* account[kAccountFields];  // [field][N]
  double* dsr_a;                    // [N]
  double* dsr_b;                    // [N]
  double* terms[kTermFields];       // [field][N]
  std::int64_t* bar;                // [N] bar the current observation ends at
  std::int64_t* episode_step;       // [N] steps taken in the current episode
  std::int64_t* episode_len;        // [N] steps the current episode will take
  std::int64_t* episode_index;      // [N] episodes started since the last reseed
  double* episode_return;           // [N] log final equity of the last finished episode
  std::int64_t* episode_length;     // [N] length of the last finished episode
  float* obs;                       // [N, W, F + 4]
  float* final_obs;                 // [N, W, F + 4], or nullptr (config.final_obs false)
  float* reward_out;                // [N]
  std::uint8_t* terminated;         // [N]
  std::uint8_t* truncated;          // [N]
  std::uint8_t* episode_done;       // [N]
};

// A non-owning view of one per-env array.
template <typename T>
struct Span {
  T* ptr = nullptr;
  std::size_t n = 0;
  T& operator[](std::size_t i) const { return ptr[i]; }
  T* data() const { return ptr; }
  std::size_t size() const { return n; }
  std::vector<T> vec() const { return std::vector<T>(ptr, ptr + n); }
};

class TradingEnv {
 public:
  TradingEnv(std::shared_ptr<const MarketData> market, const EnvConfig& config, const RewardConfig& reward_config);

  // Restart every env's episode. When `reseed` is true, `seed` replaces the seed and every
  // env's episode counter restarts at 0, so the same seed reproduces the same starts. The first
  // reset after construction always restarts the counters (the constructor's own reset, which
  // makes the buffers valid at once, does not use up episode 0).
  void reset(bool reseed, std::uint64_t seed);

  // One step of all envs. `actions` holds num_envs values; check_actions has vetted them.
  // A is one of HIMARI_FOR_EACH_ACTION_TYPE (common/action_types.h), as for every action template.
  template <typename A>
  void step(const A* actions);

  // Validates actions[0..n) are in {0,1,2}; throws InvalidArgument naming the first offender.
  template <typename A>
  static void check_actions(const A* actions, std::int64_t n);

  const EnvConfig& config() const { return config_; }
  const MarketData& market() const { return *market_; }
  std::int64_t num_envs() const { return config_.num_envs; }
  std::int64_t obs_row() const { return market_->n_features + kAccountColumns; }

  // Scalar copy of env i's account (tests and reports).
  AccountState account(std::int64_t i) const;
  // The array of one account field, by index into kAccountFieldNames; likewise reward terms.
  Span<double> account_field(int field) { return real_span(field); }
  Span<double> term_field(int field) { return real_span(kAccountFields + 2 + field); }

  // Persistent output buffers (sizes fixed at construction). final_obs is empty unless
  // config.final_obs; its row of env i is valid after a step where episode_done[i].
  std::vector<float> obs, final_obs;
  std::vector<float> reward;
  std::vector<std::uint8_t> terminated, truncated, episode_done;
  // Per-env episode bookkeeping, views into the skewed storage below.
  Span<std::int64_t> bar, episode_step, episode_len, episode_index, episode_length;
  Span<double> episode_return;

 private:
  EnvBuffers buffers();
  Span<double> real_span(int k) { return Span<double>{real_.data() + k * stride_, static_cast<std::size_t>(config_.num_envs)}; }

  std::shared_ptr<const MarketData> market_;
  EnvConfig config_;
  RewardConfig reward_;
  EpisodeBounds bounds_;
  // Every per-env array lives in one of two blocks, `stride_` elements apart, where stride_ is
  // N rounded up to a cache line plus one extra line. Separately allocated arrays of 2^k bytes
  // start at the same offset within a page and fight over the same L1 sets when a step touches
  // index i of twenty of them (measured: N = 1024 ran at half the speed of N = 4096).
  std::int64_t stride_ = 0;
  std::vector<double> real_;       // account fields, dsr a/b, reward terms, episode_return
  std::vector<std::int64_t> ints_; // bar, episode_step, episode_len, episode_index, episode_length
  bool pristine_ = true;  // no step since construction or the last seeded reset
};

// Checks shared by the env constructors (CPU and CUDA) and the backtester.
void validate_costs(const CostConfig& costs);
void validate_reward(const RewardConfig& reward);
// Validates an env configuration against its market; returns the episode-start bounds.
EpisodeBounds validate_env(const MarketData& market, const EnvConfig& config, const RewardConfig& reward);

namespace cpu {
// The step kernels: baseline ISA, and AVX2 when compiled in (picked at run time).
template <typename A>
void env_step_baseline(const EnvBuffers& b, const A* actions);
template <typename A>
void env_step_avx2(const EnvBuffers& b, const A* actions);
}  // namespace cpu

}  // namespace himari
