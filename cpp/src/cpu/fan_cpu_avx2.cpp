// The FAN kernel compiled for AVX2 (four columns per vector); fan_cpu.cpp calls it when the CPU
// supports AVX2.
#include <cmath>
#include <cstdint>

#include "himari/filters/fan.h"

namespace himari::avx2 {
namespace {
#include "fan_kernel.h"
}  // namespace

void fan(const double* x, const std::int64_t* pieces, std::int64_t n_pieces, std::int64_t window, FanWorkspace& ws,
         double* out) {
  fan_all(x, pieces, n_pieces, window, ws, out);
}

}  // namespace himari::avx2
