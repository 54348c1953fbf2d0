// Host side of the CUDA env: validation, device allocations and launches (through the backend
// API of himari/cuda/api.h, so this file is plain C++ and builds without CUDA too, where every
// call throws CudaUnavailable).
#include "himari/env/cuda_trading_env.h"

#include <string>

#include "himari/common/error.h"

namespace himari {

std::shared_ptr<const DeviceMarket> upload_market(std::shared_ptr<const MarketData> market, int device) {
  HIMARI_CHECK(market != nullptr, "market: expected a Market, got None");
  cuda::require(device);
  auto d = std::make_shared<DeviceMarket>();
  d->host = market;
  d->device = device;
  const auto upload = [&](const void* src, std::size_t bytes) {
    std::shared_ptr<void> p = cuda::allocate(bytes, device);
    if (bytes > 0) cuda::copy_to_device(p.get(), src, bytes, device, 0);
    return p;
  };
  d->open = upload(market->open.data(), market->open.size() * sizeof(double));
  d->close = upload(market->close.data(), market->close.size() * sizeof(double));
  d->features = upload(market->features.data(), market->features.size() * sizeof(float));
  return d;
}

namespace {
std::shared_ptr<const DeviceMarket> require_market(std::shared_ptr<const DeviceMarket> market) {
  HIMARI_CHECK(market != nullptr, "market: expected a Market on a CUDA device, got None");
  return market;
}
}  // namespace

CudaTradingEnv::CudaTradingEnv(std::shared_ptr<const DeviceMarket> market, const EnvConfig& config,
                               const RewardConfig& reward_config, cuda::Stream stream)
    : market_(require_market(std::move(market))),
      config_(config),
      reward_config_(reward_config),
      bad_action_(market_->device, stream) {
  bounds_ = validate_env(*market_->host, config_, reward_config_);
  const int dev = market_->device;
  const auto n = static_cast<std::size_t>(config_.num_envs);
  stride_ = (config_.num_envs + 31) / 32 * 32;  // 256-byte aligned double arrays
  const auto s = static_cast<std::size_t>(stride_);
  const std::size_t obs_bytes = n * static_cast<std::size_t>(config_.window * obs_row()) * sizeof(float);
  obs_ = cuda::allocate(obs_bytes, dev);
  if (config_.final_obs) {
    final_obs_ = cuda::allocate(obs_bytes, dev);
    cuda::fill_zero(final_obs_.get(), obs_bytes, dev, stream);
  }
  reward_ = cuda::allocate(n * sizeof(float), dev);
  flags_ = cuda::allocate(3 * s, dev);
  real_ = cuda::allocate(kRealArrays * s * sizeof(double), dev);
  ints_ = cuda::allocate(5 * s * sizeof(std::int64_t), dev);
  cuda::fill_zero(real_.get(), kRealArrays * s * sizeof(double), dev, stream);
  cuda::fill_zero(ints_.get(), 5 * s * sizeof(std::int64_t), dev, stream);
  reset(true, config_.seed, stream);
}

EnvBuffers CudaTradingEnv::buffers() const {
  EnvBuffers b;
  b.open = static_cast<const double*>(market_->open.get());
  b.close = static_cast<const double*>(market_->close.get());
  b.features = static_cast<const float*>(market_->features.get());
  b.n_bars = market_->host->n_bars;
  b.n_features = market_->host->n_features;
  b.config = config_;
  b.reward = reward_config_;
  b.bounds = bounds_;
  for (int f = 0; f < kAccountFields; ++f) b.account[f] = account_field(f);
  b.dsr_a = real(kAccountFields);
  b.dsr_b = real(kAccountFields + 1);
  for (int f = 0; f < kTermFields; ++f) b.terms[f] = term_field(f);
  b.bar = ints(0);
  b.episode_step = ints(1);
  b.episode_len = ints(2);
  b.episode_index = ints(3);
  b.episode_length = ints(4);
  b.episode_return = episode_return();
  b.obs = obs();
  b.final_obs = final_obs();
  b.reward_out = reward();
  b.terminated = flag(0);
  b.truncated = flag(1);
  b.episode_done = flag(2);
  return b;
}

void CudaTradingEnv::reset(bool reseed, std::uint64_t seed, cuda::Stream stream) {
  const int dev = market_->device;
  const auto n = static_cast<std::size_t>(config_.num_envs);
  if (reseed) {  // as new with that seed (trading_env_cpu.cpp)
    config_.seed = seed;
    pristine_ = true;
  }
  if (pristine_) cuda::fill_zero(episode_index(), n * sizeof(std::int64_t), dev, stream);
  cuda::fill_zero(reward(), n * sizeof(float), dev, stream);
  cuda::fill_zero(flags_.get(), 3 * static_cast<std::size_t>(stride_), dev, stream);
  cuda::fill_zero(term_field(0), kTermFields * static_cast<std::size_t>(stride_) * sizeof(double), dev, stream);
  cuda::env_reset(buffers(), dev, stream);
}

template <typename A>
void CudaTradingEnv::step(const A* actions, cuda::Stream stream) {
  pristine_ = false;
  cuda::env_step(buffers(), actions, bad_action_.get(), market_->device, stream);
}

void CudaTradingEnv::check(cuda::Stream stream) {
  const auto first_bad = bad_action_.take(stream);
  if (!first_bad) return;
  throw InvalidArgument("actions: expected values in {0, 1, 2} (SELL, HOLD, BUY); env " + std::to_string(*first_bad) +
                        " (the lowest such index) got another value and held instead");
}

#define HIMARI_INSTANTIATE(A) template void CudaTradingEnv::step<A>(const A*, cuda::Stream);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE

}  // namespace himari
