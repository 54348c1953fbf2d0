// CPU implementation of the vectorised trading env: state management, episode starts and
// observation writing here; the per-step maths in the lane kernels of env_kernel.h (this file's
// baseline build and trading_env_cpu_avx2.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "himari/common/cpu_features.h"
#include "himari/common/error.h"
#include "himari/env/trading_env.h"
#include "env_obs.h"

namespace himari {

const char* const kAccountFieldNames[kAccountFields] = {
    "cash", "units", "equity", "peak", "entry_equity", "turnover", "position", "bars_in_position",
    "trades", "closed_trades", "wins", "bankrupt", "drawdown"};
const char* const kTermFieldNames[kTermFields] = {"log_return", "drawdown_penalty", "turnover_penalty", "dsr"};

namespace {

namespace baseline {
#include "env_kernel.h"
}  // namespace baseline

}  // namespace

void validate_costs(const CostConfig& costs) {
  HIMARI_CHECK(std::isfinite(costs.fee) && costs.fee >= 0.0 && costs.fee < 1.0,
               "fee: expected a fraction in [0, 1), got ", costs.fee);
  HIMARI_CHECK(std::isfinite(costs.slippage) && costs.slippage >= 0.0 && costs.slippage < 1.0,
               "slippage: expected a fraction in [0, 1), got ", costs.slippage);
  HIMARI_CHECK(costs.mode == PositionMode::kLongFlat || costs.mode == PositionMode::kLongShort,
               "mode: expected long_flat or long_short, got ", static_cast<int>(costs.mode));
}

void validate_reward(const RewardConfig& r) {
  HIMARI_CHECK(std::isfinite(r.drawdown_penalty) && r.drawdown_penalty >= 0.0,
               "reward.drawdown_penalty: expected a finite value >= 0, got ", r.drawdown_penalty);
  HIMARI_CHECK(std::isfinite(r.turnover_penalty) && r.turnover_penalty >= 0.0,
               "reward.turnover_penalty: expected a finite value >= 0, got ", r.turnover_penalty);
  HIMARI_CHECK(std::isfinite(r.dsr_weight), "reward.dsr_weight: expected a finite value, got ", r.dsr_weight);
  HIMARI_CHECK(std::isfinite(r.dsr_decay) && r.dsr_decay > 0.0 && r.dsr_decay <= 1.0,
               "reward.dsr_decay: expected a value in (0, 1], got ", r.dsr_decay);
}

EpisodeBounds validate_env(const MarketData& market, const EnvConfig& config, const RewardConfig& reward) {
  validate_costs(config.costs);
  validate_reward(reward);
  HIMARI_CHECK(config.num_envs >= 1, "n_envs: expected >= 1, got ", config.num_envs);
  HIMARI_CHECK(config.num_envs <= (std::int64_t{1} << 31), "n_envs: expected <= 2^31, got ", config.num_envs);
  HIMARI_CHECK(config.episode_length >= 1, "episode_length: expected >= 1, got ", config.episode_length);
  HIMARI_CHECK(config.window >= 1, "window: expected >= 1, got ", config.window);
  HIMARI_CHECK(config.warmup >= 0, "warmup: expected >= 0, got ", config.warmup);
  const EpisodeBounds bounds = episode_bounds(market.n_bars, config.window, config.warmup, config.episode_length);
  HIMARI_CHECK(bounds.start_min <= market.n_bars - 2, "market: expected at least ",
               static_cast<std::uint64_t>(bounds.start_min) + 2,  // unsigned: window = 2^63 - 1 must not wrap
               " bars for window=", config.window, " and warmup=", config.warmup, ", got ", market.n_bars);
  const auto row = static_cast<std::size_t>(market.n_features + kAccountColumns);
  HIMARI_CHECK(row * static_cast<std::size_t>(config.window) * static_cast<std::size_t>(config.num_envs) <
                   (std::size_t{1} << 40),
               "n_envs * window * (n_features + 4): observation buffer too large");
  return bounds;
}

TradingEnv::TradingEnv(std::shared_ptr<const MarketData> market, const EnvConfig& config,
                       const RewardConfig& reward_config)
    : market_(std::move(market)), config_(config), reward_(reward_config) {
  HIMARI_CHECK(market_ != nullptr, "market: expected a Market, got None");
  bounds_ = validate_env(*market_, config_, reward_);
  const auto n = static_cast<std::size_t>(config_.num_envs);
  const auto row = static_cast<std::size_t>(obs_row());
  obs.assign(n * static_cast<std::size_t>(config_.window) * row, 0.0f);
  if (config_.final_obs) final_obs.assign(obs.size(), 0.0f);
  reward.assign(n, 0.0f);
  terminated.assign(n, 0);
  truncated.assign(n, 0);
  episode_done.assign(n, 0);
  stride_ = (config_.num_envs + 7) / 8 * 8 + 8;
  constexpr int kReal = kAccountFields + 2 + kTermFields + 1;
  real_.assign(static_cast<std::size_t>(kReal * stride_), 0.0);
  ints_.assign(static_cast<std::size_t>(5 * stride_), 0);
  auto int_span = [&](int k) { return Span<std::int64_t>{ints_.data() + k * stride_, n}; };
  bar = int_span(0);
  episode_step = int_span(1);
  episode_len = int_span(2);
  episode_index = int_span(3);
  episode_length = int_span(4);
  episode_return = real_span(kReal - 1);
  reset(true, config_.seed);
}

EnvBuffers TradingEnv::buffers() {
  EnvBuffers b;
  b.open = market_->open.data();
  b.close = market_->close.data();
  b.features = market_->features.data();
  b.n_bars = market_->n_bars;
  b.n_features = market_->n_features;
  b.config = config_;
  b.reward = reward_;
  b.bounds = bounds_;
  for (int f = 0; f < kAccountFields; ++f) b.account[f] = account_field(f).data();
  b.dsr_a = real_span(kAccountFields).data();
  b.dsr_b = real_span(kAccountFields + 1).data();
  for (int f = 0; f < kTermFields; ++f) b.terms[f] = term_field(f).data();
  b.bar = bar.data();
  b.episode_step = episode_step.data();
  b.episode_len = episode_len.data();
  b.episode_index = episode_index.data();
  b.episode_return = episode_return.data();
  b.episode_length = episode_length.data();
  b.obs = obs.data();
  b.final_obs = final_obs.empty() ? nullptr : final_obs.data();
  b.reward_out = reward.data();
  b.terminated = terminated.data();
  b.truncated = truncated.data();
  b.episode_done = episode_done.data();
  return b;
}

AccountState TradingEnv::account(std::int64_t i) const {
  double v[kAccountFields];
  for (int f = 0; f < kAccountFields; ++f) v[f] = real_[static_cast<std::size_t>(f * stride_ + i)];
  return AccountState{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
}

void TradingEnv::reset(bool reseed, std::uint64_t seed) {
  // A seeded reset makes the env as new with that seed: until its next step, every reset starts the
  // same first episode, whatever the env did before (its episodes are a function of the seed alone).
  if (reseed) {
    config_.seed = seed;
    pristine_ = true;
  }
  if (pristine_) std::fill(episode_index.data(), episode_index.data() + episode_index.size(), 0);
  std::fill(reward.begin(), reward.end(), 0.0f);
  std::fill(terminated.begin(), terminated.end(), 0);
  std::fill(truncated.begin(), truncated.end(), 0);
  std::fill(episode_done.begin(), episode_done.end(), 0);
  for (int f = 0; f < kTermFields; ++f) std::fill(term_field(f).data(), term_field(f).data() + num_envs(), 0.0);
  const EnvBuffers b = buffers();
  for (std::int64_t i = 0; i < config_.num_envs; ++i) obs::begin_episode(b, i);
}

namespace cpu {

template <typename A>
void env_step_baseline(const EnvBuffers& b, const A* actions) {
  baseline::step_all<Vec2d>(b, actions);
}

}  // namespace cpu

template <typename A>
void TradingEnv::check_actions(const A* actions, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const auto a = static_cast<std::int64_t>(actions[i]);
    HIMARI_CHECK(a >= 0 && a <= 2, "actions: expected values in {0, 1, 2} (SELL, HOLD, BUY), got ", a,
                 " at index ", i);
  }
}

template <typename A>
void TradingEnv::step(const A* actions) {
  pristine_ = false;
  const EnvBuffers b = buffers();
#if defined(HIMARI_HAVE_AVX2_KERNEL)
  if (cpu_kernel() >= CpuKernel::kAvx2) {
    cpu::env_step_avx2(b, actions);
    return;
  }
#endif
  cpu::env_step_baseline(b, actions);
}

#define HIMARI_INSTANTIATE_STEP(A)                                   \
  template void TradingEnv::step<A>(const A*);                       \
  template void TradingEnv::check_actions<A>(const A*, std::int64_t); \
  template void cpu::env_step_baseline<A>(const EnvBuffers&, const A*);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE_STEP)
#undef HIMARI_INSTANTIATE_STEP

}  // namespace himari
