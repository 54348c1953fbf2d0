// The vectorised trading env on a CUDA device: the same semantics as TradingEnv (the kernels
// run the same *_math.h code), with the market and every per-env array in device memory. The
// output buffers are allocated once and stay put, so a framework can view them without copies
// (the bindings export them through DLPack) and a policy can hand its actions over as a device
// pointer. Nothing here waits for the GPU except check() and the host copies.
#pragma once

#include <cstdint>
#include <memory>

#include "himari/cuda/api.h"
#include "himari/cuda/bad_index.h"
#include "himari/env/trading_env.h"

namespace himari {

// A market's prices and features copied once to one device (shared by every env built on it).
struct DeviceMarket {
  std::shared_ptr<const MarketData> host;
  int device = 0;
  std::shared_ptr<void> open, close, features;
};

std::shared_ptr<const DeviceMarket> upload_market(std::shared_ptr<const MarketData> market, int device);

class CudaTradingEnv {
 public:
  CudaTradingEnv(std::shared_ptr<const DeviceMarket> market, const EnvConfig& config,
                 const RewardConfig& reward_config, cuda::Stream stream);

  // As TradingEnv::reset, on `stream`.
  void reset(bool reseed, std::uint64_t seed, cuda::Stream stream);
  // One step; `actions` is device memory of this env's device (checked by the caller).
  template <typename A>
  void step(const A* actions, cuda::Stream stream);
  // Waits for `stream` and throws InvalidArgument if a step since the last check saw an action
  // outside {0, 1, 2} (those envs held instead).
  void check(cuda::Stream stream);

  int device() const { return market_->device; }
  const EnvConfig& config() const { return config_; }
  std::int64_t num_envs() const { return config_.num_envs; }
  std::int64_t obs_row() const { return market_->host->n_features + kAccountColumns; }

  // Device pointers of the persistent buffers.
  float* obs() const { return static_cast<float*>(obs_.get()); }
  float* final_obs() const { return static_cast<float*>(final_obs_.get()); }  // nullptr unless config.final_obs
  float* reward() const { return static_cast<float*>(reward_.get()); }
  std::uint8_t* flag(int k) const { return static_cast<std::uint8_t*>(flags_.get()) + k * stride_; }  // 0 term, 1 trunc, 2 done
  double* real(int k) const { return static_cast<double*>(real_.get()) + k * stride_; }
  std::int64_t* ints(int k) const { return static_cast<std::int64_t*>(ints_.get()) + k * stride_; }
  double* account_field(int f) const { return real(f); }
  double* term_field(int f) const { return real(kAccountFields + 2 + f); }
  double* episode_return() const { return real(kRealArrays - 1); }
  std::int64_t* bar() const { return ints(0); }
  std::int64_t* episode_index() const { return ints(3); }
  std::int64_t* episode_length() const { return ints(4); }

  static constexpr int kRealArrays = kAccountFields + 2 + kTermFields + 1;

 private:
  EnvBuffers buffers() const;

  std::shared_ptr<const DeviceMarket> market_;
  EnvConfig config_;
  RewardConfig reward_config_;
  EpisodeBounds bounds_;
  std::int64_t stride_ = 0;  // elements between per-env arrays (N rounded up to 32)
  std::shared_ptr<void> obs_, final_obs_, reward_, flags_, real_, ints_;
  cuda::BadIndex bad_action_;
  bool pristine_ = true;
};

}  // namespace himari
