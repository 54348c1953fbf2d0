// CUDA backend against the CPU core (label "cuda"; skipped without a CUDA build or device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "himari/backtest/backtest.h"
#include "himari/common/error.h"
#include "himari/cuda/api.h"
#include "himari/env/cuda_trading_env.h"
#include "himari/env/trading_env.h"
#include "backtest_cases.h"

namespace himari {
namespace {

bool have_device() { return cuda::compiled() && cuda::device_count() > 0; }

std::shared_ptr<MarketData> random_market(std::int64_t t, std::int64_t f, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> step(0.0, 0.01);
  auto m = std::make_shared<MarketData>();
  double p = 100.0;
  for (std::int64_t i = 0; i < t; ++i) {
    p *= std::exp(step(gen));
    m->close.push_back(p);
    m->open.push_back(p * std::exp(step(gen) * 0.2));
    for (std::int64_t j = 0; j < f; ++j) m->features.push_back(static_cast<float>(step(gen) * 100.0));
  }
  m->n_bars = t;
  m->n_features = f;
  return m;
}

template <typename T>
std::vector<T> to_host(const T* device_ptr, std::size_t n, int device) {
  std::vector<T> out(n);
  cuda::copy_to_host(out.data(), device_ptr, n * sizeof(T), device, 0);
  return out;
}

// Steps a CPU and a CUDA env with the same random actions and compares them after every step:
// bars, positions, rewards, observations, and the final observations of the envs whose
// episode ended (episode_length short enough for several ends per env).
void expect_cuda_matches_cpu(std::int64_t window, std::int64_t features, std::int64_t episode_length) {
  auto market = random_market(500, features, 3);
  EnvConfig cfg;
  cfg.num_envs = 77;
  cfg.episode_length = episode_length;
  cfg.window = window;
  cfg.seed = 9;
  cfg.costs.mode = PositionMode::kLongShort;
  RewardConfig reward;
  reward.drawdown_penalty = 0.3;
  TradingEnv cpu(market, cfg, reward);
  CudaTradingEnv gpu(upload_market(market, 0), cfg, reward, 0);
  ASSERT_NE(gpu.final_obs(), nullptr);
  std::shared_ptr<void> actions = cuda::allocate(cfg.num_envs * sizeof(std::int64_t), 0);
  std::mt19937_64 gen(1);
  std::uniform_int_distribution<std::int64_t> pick(0, 2);
  const auto n = static_cast<std::size_t>(cfg.num_envs);
  const std::size_t per_env = cpu.obs.size() / n;
  int ended = 0;
  for (int t = 0; t < 100; ++t) {
    std::vector<std::int64_t> a(n);
    for (auto& v : a) v = pick(gen);
    cpu.step(a.data());
    cuda::copy_to_device(actions.get(), a.data(), a.size() * sizeof(std::int64_t), 0, 0);
    gpu.step(static_cast<const std::int64_t*>(actions.get()), 0);
    const auto bars = to_host(gpu.bar(), n, 0);
    const auto pos = to_host(gpu.account_field(6), n, 0);
    const auto reward_out = to_host(gpu.reward(), n, 0);
    const auto done = to_host(gpu.flag(2), n, 0);
    const auto obs = to_host(gpu.obs(), cpu.obs.size(), 0);
    const auto final_obs = to_host(gpu.final_obs(), cpu.final_obs.size(), 0);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(bars[i], cpu.bar[i]) << "env " << i << " step " << t;
      ASSERT_EQ(pos[i], cpu.account_field(6)[i]) << "env " << i << " step " << t;
      ASSERT_NEAR(reward_out[i], cpu.reward[i], 1e-5 * std::fabs(cpu.reward[i]) + 1e-7);
      ASSERT_EQ(done[i], cpu.episode_done[i]) << "env " << i << " step " << t;
      if (!cpu.episode_done[i]) continue;
      ++ended;
      for (std::size_t k = i * per_env; k < (i + 1) * per_env; ++k)
        ASSERT_NEAR(final_obs[k], cpu.final_obs[k], 1e-5 * std::fabs(cpu.final_obs[k]) + 1e-6)
            << "final obs of env " << i << " step " << t;
    }
    for (std::size_t k = 0; k < obs.size(); ++k) ASSERT_NEAR(obs[k], cpu.obs[k], 1e-5 * std::fabs(cpu.obs[k]) + 1e-6);
  }
  EXPECT_GE(ended, cfg.num_envs * 2);
  gpu.check(0);
}

TEST(CudaEnv, MatchesCpuEnvStepForStep) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  expect_cuda_matches_cpu(3, 6, 40);  // the warp observation path
}

TEST(CudaEnv, MatchesCpuEnvOnTheRowPath) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  expect_cuda_matches_cpu(1, 8, 30);  // window 1, features a multiple of 4
}

TEST(CudaEnv, RejectsHostMemoryAsDevicePointer) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  std::vector<int> host(4);
  EXPECT_EQ(cuda::pointer_device(host.data()), -1);
  EXPECT_THROW(cuda::check_device_pointer(host.data(), 0, "x"), DeviceError);
}

// The chunked-scan backtester against the CPU kernel: counts identical, the rest to 1e-9
// relative, over chunk sizes from 1 up, with heavy fees and a rally that drive strategies to the
// bankruptcy floor (inside chunks, at their edges, and in the warp's sub-chunk re-run).
// tiles: let the scan stage signals in shared memory where rows allow (M % 4 == 0 for int8).
void expect_scan_matches_cpu(std::int64_t t, std::int64_t m, const CostConfig& costs, double drift,
                             std::int64_t chunk, bool tiles = true) {
  std::mt19937_64 gen(static_cast<unsigned>(t * 131 + m));
  std::normal_distribution<double> z(0.0, 0.01);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> open(static_cast<std::size_t>(t)), close(open.size());
  double p = 100.0;
  for (std::size_t i = 0; i < open.size(); ++i) {
    open[i] = p * std::exp(0.2 * z(gen));
    p *= std::exp(drift + z(gen));
    close[i] = p;
  }
  std::vector<std::int8_t> sig(static_cast<std::size_t>(t * m), 1);
  for (std::int64_t j = 0; j < m; ++j) {
    const double p_act = j % 4 == 0 ? 1.0 : j % 4 == 1 ? 0.1 : j % 4 == 2 ? 0.01 : 0.0;
    for (std::int64_t i = 0; i < t; ++i)
      if (u(gen) < p_act) sig[static_cast<std::size_t>(i * m + j)] = static_cast<std::int8_t>(gen() % 3);
    if (j % 4 == 3) sig[static_cast<std::size_t>(j)] = j % 8 == 3 ? 0 : 2;  // one action, then HOLD
  }
  BacktestInputs in;
  in.n_bars = t;
  in.n_strategies = m;
  in.costs = costs;
  in.open = open.data();
  in.close = close.data();
  std::vector<Metrics> want(static_cast<std::size_t>(m));
  backtest_signals_cpu(in, sig.data(), want.data(), nullptr);
  std::shared_ptr<void> d_prices = cuda::allocate(2 * open.size() * sizeof(double), 0);
  std::shared_ptr<void> d_sig = cuda::allocate(sig.size(), 0);
  std::shared_ptr<void> d_met = cuda::allocate(want.size() * sizeof(Metrics), 0);
  std::shared_ptr<void> d_err = cuda::allocate(sizeof(unsigned long long), 0);
  auto* dp = static_cast<double*>(d_prices.get());
  cuda::copy_to_device(dp, open.data(), open.size() * sizeof(double), 0, 0);
  cuda::copy_to_device(dp + open.size(), close.data(), close.size() * sizeof(double), 0, 0);
  cuda::copy_to_device(d_sig.get(), sig.data(), sig.size(), 0, 0);
  const unsigned long long none = ~0ull;
  cuda::copy_to_device(d_err.get(), &none, sizeof(none), 0, 0);
  in.open = dp;
  in.close = dp + open.size();
  cuda::backtest_signals_scan(in, static_cast<const std::int8_t*>(d_sig.get()), static_cast<Metrics*>(d_met.get()),
                              static_cast<unsigned long long*>(d_err.get()), chunk, 0, 0, nullptr, tiles);
  const auto got = to_host(static_cast<const Metrics*>(d_met.get()), want.size(), 0);
  EXPECT_EQ(to_host(static_cast<const unsigned long long*>(d_err.get()), 1, 0)[0], none);
  for (std::size_t j = 0; j < want.size(); ++j) {
    const Metrics& g = got[j];
    const Metrics& w = want[j];
    ASSERT_EQ(g.n_trades, w.n_trades) << "strategy " << j << " chunk " << chunk << " tiles " << tiles;
    ASSERT_EQ(g.turnover, w.turnover) << "strategy " << j << " chunk " << chunk << " tiles " << tiles;
    ASSERT_EQ(g.exposure, w.exposure) << "strategy " << j << " chunk " << chunk << " tiles " << tiles;
    ASSERT_EQ(g.win_rate, w.win_rate) << "strategy " << j << " chunk " << chunk << " tiles " << tiles;
    for (auto [a, b] : {std::pair{g.total_return, w.total_return}, std::pair{g.sharpe, w.sharpe},
                        std::pair{g.sortino, w.sortino}, std::pair{g.max_drawdown, w.max_drawdown},
                        std::pair{g.calmar, w.calmar}, std::pair{g.annual_return, w.annual_return}})
      ASSERT_TRUE(backtest_cases::close_enough(a, b))
          << a << " vs " << b << " strategy " << j << " of " << m << ", T " << t << ", chunk " << chunk << " tiles " << tiles;
  }
}

CostConfig scan_costs(double fee, double slippage, PositionMode mode) {
  CostConfig c;
  c.fee = fee;
  c.slippage = slippage;
  c.mode = mode;
  return c;
}

TEST(CudaBacktestScan, MatchesCpuForChunkSizes) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  for (PositionMode mode : {PositionMode::kLongFlat, PositionMode::kLongShort})
    for (std::int64_t t : {2, 9, 300, 2049})
      for (std::int64_t chunk : {1, 2, 7, 64, 0}) {
        expect_scan_matches_cpu(t, 45, scan_costs(1e-3, 5e-4, mode), 0.0, chunk);  // rows not in 4-byte words
        // staged in tiles (a last block of 4 strategies), and the same signals one action at a time
        for (bool tiles : {true, false}) expect_scan_matches_cpu(t, 132, scan_costs(1e-3, 5e-4, mode), 0.0, chunk, tiles);
      }
}

TEST(CudaBacktestScan, MatchesCpuWhenStrategiesHitTheFloor) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  for (PositionMode mode : {PositionMode::kLongFlat, PositionMode::kLongShort})
    for (std::int64_t chunk : {1, 2, 3, 5, 7, 11, 40, 333, 0})
      expect_scan_matches_cpu(700, 64, scan_costs(0.3, 0.01, mode), 0.002, chunk);
}

TEST(CudaStub, ReportsAbsenceCleanly) {
  if (cuda::compiled()) GTEST_SKIP() << "CUDA build";
  EXPECT_EQ(cuda::device_count(), 0);
  EXPECT_THROW(cuda::allocate(16, 0), CudaUnavailable);
}

}  // namespace
}  // namespace himari
