// The EKF kernel compiled for AVX2 (four series per vector); ekf_cpu.cpp calls it when the CPU
// supports AVX2 and the batch has at least four series. (Eight series as two interleaved vectors
// was tried: the doubled state no longer fits the registers and it ran at half the speed.)
#include <cmath>

#include "himari/filters/ekf.h"
#include "himari/filters/ekf_math.h"

namespace himari::avx2 {
namespace {
#include "ekf_kernel.h"
}  // namespace

template <typename P>
void ekf(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
         double* innovations) {
  filter_all<Vec4d>(prices, batch, n_bars, params, states, innovations);
}

template void ekf<float>(const float*, std::int64_t, std::int64_t, const EkfParams&, double*, double*);
template void ekf<double>(const double*, std::int64_t, std::int64_t, const EkfParams&, double*, double*);

}  // namespace himari::avx2
