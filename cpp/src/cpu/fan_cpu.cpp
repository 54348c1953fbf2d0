// FAN residuals on the CPU (fan_kernel.h), compiled here for the baseline ISA and in
// fan_cpu_avx2.cpp for AVX2, picked at run time.
#include "himari/filters/fan.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "himari/common/cpu_features.h"
#include "himari/common/error.h"

namespace himari {

void validate_fan_args(std::int64_t n_rows, std::int64_t window, std::int64_t top_k, const std::int64_t* pieces,
                       std::int64_t n_pieces) {
  HIMARI_CHECK(window >= 2, "window: expected >= 2, got ", window);
  HIMARI_CHECK(top_k >= 1 && top_k <= window / 2, "top_k: expected 1 .. window / 2 = ", window / 2, ", got ", top_k);
  for (std::int64_t p = 0; p < n_pieces; ++p) {
    const std::int64_t a = pieces[2 * p], b = pieces[2 * p + 1];
    HIMARI_CHECK(0 <= a && a < b && b <= n_rows, "pieces[", p, "]: expected 0 <= start < end <= ", n_rows, ", got (",
                 a, ", ", b, ")");
  }
}

namespace {
namespace baseline {
#include "fan_kernel.h"
}  // namespace baseline
}  // namespace

#if defined(HIMARI_HAVE_AVX2_KERNEL)
namespace avx2 {
void fan(const double* x, const std::int64_t* pieces, std::int64_t n_pieces, std::int64_t window, FanWorkspace& ws,
         double* out);
}  // namespace avx2
#endif

void fan_residuals_cpu(const double* x, std::int64_t n_rows, std::int64_t n_cols, const std::int64_t* pieces,
                       std::int64_t n_pieces, std::int64_t window, std::int64_t top_k, double* out) {
  validate_fan_args(n_rows, window, top_k, pieces, n_pieces);
  if (n_cols == 0 || n_pieces == 0) return;
  const std::int64_t bins = window / 2 + 1;
  std::vector<double> buffer(static_cast<std::size_t>(2 * bins * n_cols + 2 * top_k * n_cols + 2 * window + 2 * bins +
                                                      3 * n_cols));
  FanWorkspace ws;
  ws.cols = n_cols;
  ws.top_k = top_k;
  double* next = buffer.data();
  auto take = [&next](std::int64_t count) {
    double* p = next;
    next += count;
    return p;
  };
  ws.re = take(bins * n_cols);
  ws.im = take(bins * n_cols);
  ws.best_p = take(top_k * n_cols);
  ws.best_v = take(top_k * n_cols);
  ws.cos_t = take(window);
  ws.sin_t = take(window);
  ws.wr = take(bins);
  ws.wi = take(bins);
  ws.diff = take(n_cols);
  ws.power = take(n_cols);
  ws.value = take(n_cols);
#if defined(HIMARI_HAVE_AVX2_KERNEL)
  if (cpu_kernel() >= CpuKernel::kAvx2) {
    avx2::fan(x, pieces, n_pieces, window, ws, out);
    return;
  }
#endif
  baseline::fan_all(x, pieces, n_pieces, window, ws, out);
}

}  // namespace himari
