// Small pieces shared by module.cpp and cuda_bindings.cpp.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "himari/common/error.h"
#include "himari/env/env_config.h"
#include "himari/env/market.h"
#include "himari/env/trading_env.h"

namespace himari::bind {

// The Python-side handle of a host market (himari._core.Market).
struct PyMarket {
  std::shared_ptr<MarketData> data;
};

inline PositionMode parse_mode(const std::string& mode) {
  if (mode == "long_flat") return PositionMode::kLongFlat;
  if (mode == "long_short") return PositionMode::kLongShort;
  throw InvalidArgument("mode: expected 'long_flat' or 'long_short', got '" + mode + "'");
}

inline CostConfig make_costs(double fee, double slippage, const std::string& mode) {
  CostConfig c;
  c.fee = fee;
  c.slippage = slippage;
  c.mode = parse_mode(mode);
  validate_costs(c);
  return c;
}

// The env configuration from the constructor arguments both env bindings (CPU and CUDA) take.
inline EnvConfig make_env_config(std::int64_t num_envs, std::int64_t episode_length, std::int64_t window,
                                 std::int64_t warmup, std::uint64_t seed, bool random_start, double fee,
                                 double slippage, const std::string& mode, bool final_obs) {
  EnvConfig cfg;
  cfg.costs = make_costs(fee, slippage, mode);
  cfg.num_envs = num_envs;
  cfg.episode_length = episode_length;
  cfg.window = window;
  cfg.warmup = warmup;
  cfg.seed = seed;
  cfg.random_start = random_start;
  cfg.final_obs = final_obs;
  return cfg;
}

// Registers the CUDA classes and functions (cuda_bindings.cpp); present in every build, they
// raise CudaUnavailableError where the build or machine has no CUDA.
void register_cuda(pybind11::module_& m);

}  // namespace himari::bind
