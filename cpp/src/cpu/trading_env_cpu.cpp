// CPU implementation of the vectorised trading env: a loop over envs calling the shared
// per-account maths (account_math.h, reward_math.h, episode_math.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "himari/common/error.h"
#include "himari/env/trading_env.h"

namespace himari {
namespace {

// log1p(bars) as float for the bars-in-position observation column, tabulated because it is
// evaluated for every env at every step; values past the table are computed directly.
constexpr std::int64_t kLog1pTable = 4096;
const float* log1p_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(kLog1pTable);
    for (std::int64_t k = 0; k < kLog1pTable; ++k) t[k] = static_cast<float>(std::log1p(static_cast<double>(k)));
    return t;
  }();
  return table.data();
}

float log1p_bars(double bars) {
  const auto k = static_cast<std::int64_t>(bars);
  return k < kLog1pTable ? log1p_table()[k] : static_cast<float>(std::log1p(bars));
}

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

TradingEnv::TradingEnv(std::shared_ptr<const MarketData> market, const EnvConfig& config,
                       const RewardConfig& reward_config)
    : market_(std::move(market)), config_(config), reward_(reward_config) {
  HIMARI_CHECK(market_ != nullptr, "market: expected a Market, got None");
  validate_costs(config_.costs);
  validate_reward(reward_);
  HIMARI_CHECK(config_.num_envs >= 1, "n_envs: expected >= 1, got ", config_.num_envs);
  HIMARI_CHECK(config_.num_envs <= (std::int64_t{1} << 31), "n_envs: expected <= 2^31, got ", config_.num_envs);
  HIMARI_CHECK(config_.episode_length >= 1, "episode_length: expected >= 1, got ", config_.episode_length);
  HIMARI_CHECK(config_.window >= 1, "window: expected >= 1, got ", config_.window);
  HIMARI_CHECK(config_.warmup >= 0, "warmup: expected >= 0, got ", config_.warmup);
  bounds_ = episode_bounds(market_->n_bars, config_.window, config_.warmup, config_.episode_length);
  HIMARI_CHECK(bounds_.start_min <= market_->n_bars - 2, "market: expected at least ", bounds_.start_min + 2,
               " bars for window=", config_.window, " and warmup=", config_.warmup, ", got ", market_->n_bars);
  const auto n = static_cast<std::size_t>(config_.num_envs);
  const auto row = static_cast<std::size_t>(obs_row());
  HIMARI_CHECK(row * static_cast<std::size_t>(config_.window) * n < (std::size_t{1} << 40),
               "n_envs * window * (n_features + 4): observation buffer too large");
  obs.assign(n * static_cast<std::size_t>(config_.window) * row, 0.0f);
  reward.assign(n, 0.0f);
  terminated.assign(n, 0);
  truncated.assign(n, 0);
  episode_done.assign(n, 0);
  accounts.assign(n, AccountState{});
  dsr.assign(n, DsrState{});
  terms.assign(n, RewardReport{});
  bar.assign(n, 0);
  episode_step.assign(n, 0);
  episode_len.assign(n, 0);
  episode_index.assign(n, 0);
  episode_return.assign(n, 0.0);
  episode_length.assign(n, 0);
  reset(true, config_.seed);
}

void TradingEnv::reset(bool reseed, std::uint64_t seed) {
  if (reseed) config_.seed = seed;
  if (reseed || pristine_) std::fill(episode_index.begin(), episode_index.end(), 0);
  std::fill(reward.begin(), reward.end(), 0.0f);
  std::fill(terminated.begin(), terminated.end(), 0);
  std::fill(truncated.begin(), truncated.end(), 0);
  std::fill(episode_done.begin(), episode_done.end(), 0);
  std::fill(terms.begin(), terms.end(), RewardReport{});
  for (std::int64_t i = 0; i < config_.num_envs; ++i) begin_episode(i);
}

void TradingEnv::begin_episode(std::int64_t i) {
  const std::int64_t start =
      episode_start(bounds_, config_.random_start, config_.seed, static_cast<std::uint64_t>(i),
                    static_cast<std::uint64_t>(episode_index[i]));
  episode_index[i] += 1;
  accounts[i] = AccountState{};
  dsr[i] = DsrState{};
  bar[i] = start;
  episode_step[i] = 0;
  episode_len[i] = episode_steps(market_->n_bars, start, config_.episode_length);
  write_observation(i, true);
}

void TradingEnv::write_observation(std::int64_t i, bool fresh) {
  const std::int64_t f = market_->n_features;
  const std::int64_t row = f + kAccountColumns;
  const std::int64_t w_count = config_.window;
  float* base = obs.data() + i * w_count * row;
  const float* feat = market_->features.data() + (bar[i] - w_count + 1) * f;
  for (std::int64_t w = 0; w < w_count; ++w) {
    float* dst = base + w * row;
    const float* src = feat + w * f;
    for (std::int64_t j = 0; j < f; ++j) dst[j] = src[j];  // short rows: a loop beats a memcpy call
    float* acc = base + w * row + f;
    if (fresh) {
      acc[0] = acc[1] = acc[2] = acc[3] = 0.0f;
    } else if (w + 1 < w_count) {  // history rows shift one step older
      const float* newer = base + (w + 1) * row + f;
      acc[0] = newer[0];
      acc[1] = newer[1];
      acc[2] = newer[2];
      acc[3] = newer[3];
    }
  }
  if (!fresh) {
    const AccountState& s = accounts[i];
    float* acc = base + (w_count - 1) * row + f;
    acc[0] = static_cast<float>(s.position);
    acc[1] = static_cast<float>(unrealised_pnl(s));
    acc[2] = static_cast<float>(-drawdown_of(s));
    acc[3] = log1p_bars(s.bars_in_position);
  }
}

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
  const double* open = market_->open.data();
  const double* close = market_->close.data();
  for (std::int64_t i = 0; i < config_.num_envs; ++i) {
    AccountState& s = accounts[i];
    const std::int64_t t = bar[i];
    const double prev_drawdown = drawdown_of(s);
    const StepOutcome o = account_step(s, static_cast<double>(actions[i]), open[t + 1], close[t + 1], config_.costs);
    const double log_return = std::log(s.equity / o.prev_equity);
    const RewardTerms rt = shape_reward(log_return, prev_drawdown, drawdown_of(s), o.traded, dsr[i], reward_);
    reward[i] = static_cast<float>(rt.total);
    terms[i] = RewardReport{rt.log_return, rt.drawdown_penalty, rt.turnover_penalty, rt.dsr};
    bar[i] = t + 1;
    episode_step[i] += 1;
    const bool term = o.broke > 0.5;
    const bool trunc = !term && episode_step[i] >= episode_len[i];
    terminated[i] = term;
    truncated[i] = trunc;
    episode_done[i] = term || trunc;
    if (term || trunc) {
      episode_return[i] = std::log(s.equity);
      episode_length[i] = episode_step[i];
      begin_episode(i);
    } else {
      write_observation(i, false);
    }
  }
}

#define HIMARI_INSTANTIATE_STEP(A)                                   \
  template void TradingEnv::step<A>(const A*);                       \
  template void TradingEnv::check_actions<A>(const A*, std::int64_t);
HIMARI_INSTANTIATE_STEP(std::int8_t)
HIMARI_INSTANTIATE_STEP(std::uint8_t)
HIMARI_INSTANTIATE_STEP(std::int16_t)
HIMARI_INSTANTIATE_STEP(std::int32_t)
HIMARI_INSTANTIATE_STEP(std::int64_t)
#undef HIMARI_INSTANTIATE_STEP

}  // namespace himari
