// Frequency adaptive normalisation's causal half (FAN, Ye et al., NeurIPS 2024; docs/preprocessing.md):
// for each row t and column, the value at t of the trailing window minus its K largest-amplitude
// rFFT components. The windows of a run of bars are one sliding DFT, so a row costs O(bins) per
// column instead of an FFT.
#pragma once

#include <cstdint>

namespace himari {

// Rows between two recomputations of the sliding spectrum from the window itself: bounds the
// rounding the recurrence accumulates (about sqrt(R) ulps of the window's spectrum).
inline constexpr std::int64_t kFanRecomputeRows = 1024;

// window >= 2, 1 <= top_k <= window / 2; each piece [a, b) within [0, n_rows) with a < b.
// Scratch of one FAN pass (allocated by fan_residuals_cpu): the spectrum of the current window
// per bin and column, the kept components per slot and column, the window's twiddles and weights.
struct FanWorkspace {
  std::int64_t cols = 0, top_k = 0;
  double* re = nullptr;      // [bins][cols]
  double* im = nullptr;      // [bins][cols]
  double* best_p = nullptr;  // [top_k][cols]: power of each kept component
  double* best_v = nullptr;  // [top_k][cols]: its value at the window's last row
  double* cos_t = nullptr;   // [window]: cos(2 pi j / m)
  double* sin_t = nullptr;   // [window]: sin(2 pi j / m)
  double* wr = nullptr;      // [bins]: the last-row weights of the components (real part)
  double* wi = nullptr;      // [bins]: (imaginary part)
  double* diff = nullptr;    // [cols]: x[t] - x[t - m]
  double* power = nullptr;   // [cols]: |X_k|^2 of the bin being ranked
  double* value = nullptr;   // [cols]: its value at the window's last row
};

void validate_fan_args(std::int64_t n_rows, std::int64_t window, std::int64_t top_k, const std::int64_t* pieces,
                       std::int64_t n_pieces);

// x: [n_rows, n_cols] row-major. For every row t of a piece [a, b): out[t, c] = x[t, c] minus the
// value at t of the K components of largest amplitude (ties: the lower frequency) of the rFFT of
// x[max(a, t - window + 1) .. t, c]. A window truncated at the piece start (m < window rows) uses
// an FFT of length m; when it has K or fewer components all are removed. Rows outside every
// piece are not written.
void fan_residuals_cpu(const double* x, std::int64_t n_rows, std::int64_t n_cols, const std::int64_t* pieces,
                       std::int64_t n_pieces, std::int64_t window, std::int64_t top_k, double* out);

}  // namespace himari
