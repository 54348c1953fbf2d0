// The market shared by every env of a VecTradingEnv: prices and the causal feature matrix.
#pragma once

#include <cstdint>
#include <vector>

namespace himari {

struct MarketData {
  std::vector<double> open;     // [T], > 0
  std::vector<double> close;    // [T], > 0
  std::vector<float> features;  // [T, F] row-major
  std::int64_t n_bars = 0;      // T
  std::int64_t n_features = 0;  // F
};

}  // namespace himari
