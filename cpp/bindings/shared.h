// Small pieces shared by module.cpp and cuda_bindings.cpp.
#pragma once

#include <pybind11/pybind11.h>

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

// Registers the CUDA classes and functions (cuda_bindings.cpp); present in every build, they
// raise CudaUnavailableError where the build or machine has no CUDA.
void register_cuda(pybind11::module_& m);

}  // namespace himari::bind
