// The backtest kernel compiled for AVX2 (four doubles per vector); backtest_cpu.cpp calls it
// when the CPU supports AVX2. Built only with GCC or Clang on x86-64.
#include <cmath>

#include "himari/backtest/backtest.h"
#include "himari/backtest/backtest_math.h"
#include "himari/env/account_math.h"

namespace himari::avx2 {
#include "backtest_kernel.h"

template <typename A>
void backtest(const BacktestInputs& in, const A* signals, std::int64_t m_begin, std::int64_t m_end, Metrics* metrics,
              double* equity) {
  run_range<Vec4d>(in, signals, m_begin, m_end, metrics, equity);
}

#define HIMARI_INSTANTIATE(A) \
  template void backtest<A>(const BacktestInputs&, const A*, std::int64_t, std::int64_t, Metrics*, double*);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE

}  // namespace himari::avx2
