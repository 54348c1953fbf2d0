// The backtest kernel compiled for AVX2 (four doubles per vector); backtest_cpu.cpp calls it
// when the CPU supports AVX2. Built only with GCC or Clang on x86-64.
#include <cmath>

#include "himari/backtest/backtest.h"
#include "himari/backtest/backtest_math.h"
#include "himari/env/account_math.h"

namespace himari::avx2 {
#include "backtest_kernel.h"

template <typename A>
void backtest(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity) {
  run_all<Vec4d>(in, signals, metrics, equity);
}

template void backtest<std::int8_t>(const BacktestInputs&, const std::int8_t*, Metrics*, double*);
template void backtest<std::uint8_t>(const BacktestInputs&, const std::uint8_t*, Metrics*, double*);
template void backtest<std::int16_t>(const BacktestInputs&, const std::int16_t*, Metrics*, double*);
template void backtest<std::int32_t>(const BacktestInputs&, const std::int32_t*, Metrics*, double*);
template void backtest<std::int64_t>(const BacktestInputs&, const std::int64_t*, Metrics*, double*);

}  // namespace himari::avx2
