// The batched EKF on the GPU: one thread per series runs the shared per-step maths of
// ekf_math.h (T = double, the CPU's scalar path) along its series. A filter is a strict chain of
// dependent steps, so the parallelism is across series only: thousands of series fill the GPU,
// a handful do not (the CPU is the better device for a few series).
#include <cuda_runtime.h>

#include "check.cuh"
#include "himari/cuda/api.h"
#include "himari/filters/ekf_math.h"

namespace himari::cuda {

namespace {

constexpr int kThreads = 128;

template <typename P>
__global__ void ekf_kernel(const P* __restrict__ prices, std::int64_t batch, std::int64_t n_bars, EkfParams params,
                           double* states, double* innovations, unsigned long long* error) {
  const std::int64_t s_idx = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s_idx >= batch) return;
  const P* series = prices + s_idx * n_bars;
  // Bad prices are reported by the host after the launch (lowest flat index); the filter of such
  // a series still runs, on a safe stand-in price, so no NaN or trap spreads.
  auto price = [&](std::int64_t t) {
    const double v = static_cast<double>(series[t]);
    if (!(isfinite(v) && v > 0.0)) {
      atomicMin(error, static_cast<unsigned long long>(s_idx * n_bars + t));
      return 1.0;
    }
    return v;
  };
  EkfState s;
  double prev_log = ekf_log(price(0));
  ekf_init(s, prev_log, params);
  double innov[2];
  for (std::int64_t t = 0; t < n_bars; ++t) {
    const double y = ekf_log(price(t));
    if (t > 0) ekf_predict(s, params);
    ekf_update(s, y, y - prev_log, params.use_volatility_obs && t > 0, params, innov);
    prev_log = y;
    double* out = states + (s_idx * n_bars + t) * kEkfStates;
#pragma unroll
    for (int i = 0; i < kEkfStates; ++i) out[i] = s.x[i];
    if (innovations != nullptr) {
      double* inn = innovations + (s_idx * n_bars + t) * 2;
      inn[0] = innov[0];
      inn[1] = innov[1];
    }
  }
}

}  // namespace

template <typename P>
void ekf(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
         double* innovations, unsigned long long* error, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  const auto blocks = static_cast<unsigned>((batch + kThreads - 1) / kThreads);
  ekf_kernel<P><<<blocks, kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(prices, batch, n_bars, params,
                                                                                 states, innovations, error);
  HIMARI_CUDA_CHECK_LAUNCH("ekf_kernel");
}

template void ekf<float>(const float*, std::int64_t, std::int64_t, const EkfParams&, double*, double*, unsigned long long*,
                         int, Stream);
template void ekf<double>(const double*, std::int64_t, std::int64_t, const EkfParams&, double*, double*,
                          unsigned long long*, int, Stream);

}  // namespace himari::cuda
