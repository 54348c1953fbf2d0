// CPU batched EKF: the shared per-step maths of ekf_math.h, several series per vector
// (ekf_kernel.h, compiled here for the baseline ISA and in ekf_cpu_avx2.cpp for AVX2).
#include <cmath>

#include "himari/common/cpu_features.h"
#include "himari/common/error.h"
#include "himari/filters/ekf.h"
#include "himari/filters/ekf_math.h"

namespace himari {

void validate_ekf_params(const EkfParams& p) {
  const double positive[] = {p.r_level, p.p0_level, p.p0_velocity, p.p0_acceleration, p.p0_log_variance};
  const char* positive_names[] = {"r_level", "p0_level", "p0_velocity", "p0_acceleration", "p0_log_variance"};
  for (int i = 0; i < 5; ++i)
    HIMARI_CHECK(std::isfinite(positive[i]) && positive[i] > 0.0, "params.", positive_names[i],
                 ": expected a finite value > 0, got ", positive[i]);
  const double nonneg[] = {p.q_level, p.q_velocity, p.q_acceleration, p.q_log_variance};
  const char* nonneg_names[] = {"q_level", "q_velocity", "q_acceleration", "q_log_variance"};
  for (int i = 0; i < 4; ++i)
    HIMARI_CHECK(std::isfinite(nonneg[i]) && nonneg[i] >= 0.0, "params.", nonneg_names[i],
                 ": expected a finite value >= 0, got ", nonneg[i]);
  HIMARI_CHECK(std::isfinite(p.phi) && std::fabs(p.phi) <= 1.0, "params.phi: expected a value in [-1, 1], got ",
               p.phi);
  HIMARI_CHECK(std::isfinite(p.mu), "params.mu: expected a finite value, got ", p.mu);
  HIMARI_CHECK(std::isfinite(p.r_log_square) && p.r_log_square > 0.0,
               "params.r_log_square: expected a finite value > 0, got ", p.r_log_square);
  HIMARI_CHECK(std::isfinite(p.square_floor) && p.square_floor > 0.0,
               "params.square_floor: expected a finite value > 0, got ", p.square_floor);
}

namespace {
namespace baseline {
#include "ekf_kernel.h"
}  // namespace baseline
}  // namespace

#if defined(HIMARI_HAVE_AVX2_KERNEL)
namespace avx2 {
template <typename P>
void ekf(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
         double* innovations);
}  // namespace avx2
#endif

template <typename P>
void ekf_cpu(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
             double* innovations) {
#if defined(HIMARI_HAVE_AVX2_KERNEL)
  if (batch >= 4 && cpu_kernel() >= CpuKernel::kAvx2) {
    avx2::ekf(prices, batch, n_bars, params, states, innovations);
    return;
  }
#endif
  baseline::filter_all<Vec2d>(prices, batch, n_bars, params, states, innovations);
}

template void ekf_cpu<float>(const float*, std::int64_t, std::int64_t, const EkfParams&, double*, double*);
template void ekf_cpu<double>(const double*, std::int64_t, std::int64_t, const EkfParams&, double*, double*);

}  // namespace himari
