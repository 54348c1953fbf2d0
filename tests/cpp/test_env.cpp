// The env's reward, shaping, observation and episode mechanics.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "himari/common/error.h"
#include "himari/env/trading_env.h"

using namespace himari;

namespace {
std::shared_ptr<MarketData> make_market(std::int64_t t_bars, std::int64_t f, unsigned seed) {
  auto m = std::make_shared<MarketData>();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> ret(0.0, 0.01);
  double p = 100;
  for (std::int64_t t = 0; t < t_bars; ++t) {
    m->open.push_back(p);
    p *= std::exp(ret(rng));
    m->close.push_back(p);
    for (std::int64_t j = 0; j < f; ++j) m->features.push_back(static_cast<float>(t * 10 + j));
  }
  m->n_bars = t_bars;
  m->n_features = f;
  return m;
}
}  // namespace

TEST(Env, RewardIsLogReturnWithoutShaping) {
  auto market = make_market(50, 2, 1);
  EnvConfig cfg;
  cfg.num_envs = 1;
  cfg.episode_length = 40;
  cfg.random_start = false;
  TradingEnv env(market, cfg, RewardConfig{});
  const std::int32_t buy = kBuy;
  const double before = env.account(0).equity;
  env.step(&buy);
  EXPECT_NEAR(env.reward[0], std::log(env.account(0).equity / before), 1e-7);
  EXPECT_EQ(env.term_field(0)[0], std::log(env.account(0).equity / before));
}

TEST(Env, ShapingTermsAreReportedAndApplied) {
  auto market = make_market(60, 1, 2);
  EnvConfig cfg;
  cfg.num_envs = 1;
  cfg.episode_length = 50;
  cfg.random_start = false;
  RewardConfig rc;
  rc.turnover_penalty = 0.01;
  rc.drawdown_penalty = 2.0;
  rc.dsr_weight = 0.5;
  rc.dsr_decay = 0.1;
  TradingEnv env(market, cfg, rc);
  DsrState dsr;
  double peak = 1.0, equity = 1.0;
  for (int t = 0; t < 30; ++t) {
    const std::int32_t a = t % 3 == 0 ? kBuy : (t % 5 == 0 ? kSell : kHold);
    const double position_before = env.account(0).position;
    env.step(&a);
    const AccountState s = env.account(0);
    const double lr = std::log(s.equity / equity);
    const double dd_before = 1 - equity / peak;
    peak = std::max(peak, s.equity);
    const double dd_after = 1 - s.equity / peak;
    equity = s.equity;
    const double traded = std::fabs(s.position - position_before);
    const double d = dsr_update(dsr, lr, rc.dsr_decay);
    const double expect = lr - rc.drawdown_penalty * std::max(0.0, dd_after - dd_before) -
                          rc.turnover_penalty * traded + rc.dsr_weight * d;
    ASSERT_NEAR(env.reward[0], expect, 1e-6 * (1 + std::fabs(expect))) << "t=" << t;
    ASSERT_EQ(env.term_field(2)[0], rc.turnover_penalty * traded);
    ASSERT_EQ(env.term_field(3)[0], d);
  }
}

TEST(Env, ObservationWindowAndAccountHistory) {
  auto market = make_market(40, 2, 3);
  EnvConfig cfg;
  cfg.num_envs = 1;
  cfg.window = 3;
  cfg.episode_length = 30;
  cfg.random_start = false;
  TradingEnv env(market, cfg, RewardConfig{});
  // Start at bar window-1 = 2: rows are bars 0, 1, 2; account columns zero.
  const std::int64_t row = 2 + kAccountColumns;
  for (int w = 0; w < 3; ++w) {
    EXPECT_EQ(env.obs[w * row + 0], static_cast<float>(w * 10));
    EXPECT_EQ(env.obs[w * row + 2], 0.0f);
  }
  const std::int32_t buy = kBuy, hold = kHold;
  env.step(&buy);
  EXPECT_EQ(env.bar[0], 3);
  EXPECT_EQ(env.obs[2 * row + 0], 30.0f);    // newest row is bar 3
  EXPECT_EQ(env.obs[2 * row + 2], 1.0f);     // position long
  EXPECT_EQ(env.obs[1 * row + 2], 0.0f);     // the row before: flat
  EXPECT_NEAR(env.obs[2 * row + 5], std::log1p(1.0), 1e-7);
  env.step(&hold);
  EXPECT_EQ(env.obs[1 * row + 2], 1.0f);     // history shifted
  EXPECT_NEAR(env.obs[2 * row + 5], std::log1p(2.0), 1e-7);
}

TEST(Env, FinalObservationOfATruncatedEpisode) {
  // Window 2, start at bar 1, 3 steps: the episode ends at bar 4. The final observation holds
  // features of bars 3 and 4 and the account history after steps 2 and 3, while obs already
  // shows the next episode (bars 0 and 1, zero account columns).
  auto market = make_market(40, 2, 7);
  EnvConfig cfg;
  cfg.num_envs = 1;
  cfg.window = 2;
  cfg.episode_length = 3;
  cfg.random_start = false;
  TradingEnv env(market, cfg, RewardConfig{});
  const std::int64_t row = 2 + kAccountColumns;
  ASSERT_EQ(env.final_obs.size(), env.obs.size());
  const std::int32_t buy = kBuy, hold = kHold;
  env.step(&buy);
  env.step(&hold);
  const AccountState before_last = env.account(0);
  env.step(&hold);
  ASSERT_TRUE(env.truncated[0]);
  ASSERT_TRUE(env.episode_done[0]);
  EXPECT_EQ(env.final_obs[0 * row + 0], 30.0f);  // bar 3
  EXPECT_EQ(env.final_obs[1 * row + 0], 40.0f);  // bar 4, where the episode ended
  EXPECT_EQ(env.final_obs[1 * row + 1], 41.0f);
  EXPECT_EQ(env.final_obs[0 * row + 2], 1.0f);   // long after step 2 ...
  EXPECT_NEAR(env.final_obs[0 * row + 3], before_last.equity / before_last.entry_equity - 1.0, 1e-6);
  EXPECT_NEAR(env.final_obs[0 * row + 5], std::log1p(2.0), 1e-7);
  EXPECT_EQ(env.final_obs[1 * row + 2], 1.0f);   // ... and after step 3
  EXPECT_NEAR(env.final_obs[1 * row + 5], std::log1p(3.0), 1e-7);
  EXPECT_NEAR(env.final_obs[1 * row + 3], std::exp(env.episode_return[0]) - 1.0, 1e-6);  // entry equity 1 (no cost before the buy)
  EXPECT_EQ(env.obs[0 * row + 0], 0.0f);  // the next episode's first observation
  EXPECT_EQ(env.obs[1 * row + 0], 10.0f);
  for (int w = 0; w < 2; ++w)
    for (int c = 0; c < kAccountColumns; ++c) EXPECT_EQ(env.obs[w * row + 2 + c], 0.0f);
}

TEST(Env, FinalObservationCanBeTurnedOff) {
  auto market = make_market(40, 2, 8);
  EnvConfig cfg;
  cfg.final_obs = false;
  TradingEnv env(market, cfg, RewardConfig{});
  EXPECT_TRUE(env.final_obs.empty());
  const std::int32_t hold = kHold;
  for (int k = 0; k < 40; ++k) env.step(&hold);  // crosses episode ends without a buffer
  EXPECT_GE(env.episode_index[0], 2);
}

TEST(Env, TruncatesAndAutoResets) {
  auto market = make_market(30, 1, 4);
  EnvConfig cfg;
  cfg.num_envs = 2;
  cfg.episode_length = 5;
  cfg.seed = 11;
  TradingEnv env(market, cfg, RewardConfig{});
  const std::int32_t acts[2] = {kBuy, kHold};
  for (int k = 0; k < 4; ++k) {
    env.step(acts);
    EXPECT_FALSE(env.truncated[0]);
  }
  env.step(acts);
  EXPECT_TRUE(env.truncated[0]);
  EXPECT_TRUE(env.episode_done[1]);
  EXPECT_EQ(env.episode_length[0], 5);
  EXPECT_EQ(env.account(0).equity, 1.0);  // fresh episode
  EXPECT_EQ(env.episode_index[0], 2);
  env.reset(false, 0);  // after steps, a reset without a seed continues the episode count
  EXPECT_EQ(env.episode_index[0], 3);
}

TEST(Env, SameSeedSameStartsDifferentSeedDifferentStarts) {
  auto market = make_market(2000, 1, 5);
  EnvConfig cfg;
  cfg.num_envs = 16;
  cfg.episode_length = 10;
  cfg.seed = 7;
  TradingEnv a(market, cfg, RewardConfig{}), b(market, cfg, RewardConfig{});
  EXPECT_EQ(a.bar.vec(), b.bar.vec());
  cfg.seed = 8;
  TradingEnv c(market, cfg, RewardConfig{});
  EXPECT_NE(a.bar.vec(), c.bar.vec());
  a.reset(true, 8);
  EXPECT_EQ(a.bar.vec(), c.bar.vec());
  b.reset(false, 0);  // the first reset of a fresh env starts from episode 0 again
  EXPECT_EQ(b.bar.vec(), TradingEnv(market, [&] { auto k = cfg; k.seed = 7; return k; }(), RewardConfig{}).bar.vec());
}

TEST(Env, ASeededResetMakesTheEnvAsNewWhateverItDidBefore) {
  // the episodes after reset(seed) are a function of the seed alone: an env stepped through
  // several episodes and a fresh one, both reset with the same seed, start the same episodes on
  // every later reset, before a step (the same first episode) and after one (the next)
  auto market = make_market(2000, 1, 5);
  EnvConfig cfg;
  cfg.num_envs = 4;
  cfg.episode_length = 5;
  cfg.seed = 7;
  TradingEnv used(market, cfg, RewardConfig{}), fresh(market, cfg, RewardConfig{});
  const std::int32_t acts[4] = {kBuy, kHold, kSell, kHold};
  for (int k = 0; k < 12; ++k) used.step(acts);
  used.reset(true, 3);
  fresh.reset(true, 3);
  const auto first = fresh.bar.vec();
  for (int k = 0; k < 2; ++k) {
    used.reset(false, 0);
    fresh.reset(false, 0);
    EXPECT_EQ(used.bar.vec(), first);
    EXPECT_EQ(fresh.bar.vec(), first);
  }
  used.step(acts);
  fresh.step(acts);
  used.reset(false, 0);
  fresh.reset(false, 0);
  EXPECT_EQ(used.bar.vec(), fresh.bar.vec());
  EXPECT_NE(used.bar.vec(), first);
  EXPECT_EQ(used.episode_index.vec(), fresh.episode_index.vec());
}

TEST(Env, RejectsBadConfiguration) {
  auto market = make_market(10, 1, 6);
  EnvConfig cfg;
  cfg.window = 10;
  EXPECT_THROW(TradingEnv(market, cfg, RewardConfig{}), InvalidArgument);
  cfg.window = 1;
  cfg.costs.fee = -0.1;
  EXPECT_THROW(TradingEnv(market, cfg, RewardConfig{}), InvalidArgument);
  cfg.costs.fee = 0.001;
  RewardConfig rc;
  rc.dsr_decay = 0.0;
  EXPECT_THROW(TradingEnv(market, cfg, rc), InvalidArgument);
  const std::int32_t bad = 5;
  EXPECT_THROW(TradingEnv::check_actions(&bad, 1), InvalidArgument);
}
