// The FAN residual kernel, included by fan_cpu.cpp (baseline ISA) and fan_cpu_avx2.cpp (-mavx2)
// inside their own namespaces. The inner loops run over the columns of a row, which are
// independent: the compiler vectorises them (one column per lane), with the top-K selection as
// branch-free compare-and-swap chains.
// Requires: <cmath>, <cstdint> and himari/filters/fan.h (FanWorkspace) included before. No
// std:: containers here: their inline instantiations are shared between translation units, and
// the linker could keep the AVX2-compiled copy for the baseline kernel too.

// Component weights for the value at the window's last row: irfft(X, m)[m - 1] = sum_k Re(w_k X_k),
// w_k = (c_k / m) e^{2 pi i k (m - 1) / m}, c_k = 1 for the mean and the Nyquist bin of an even m.
inline void fan_weights(std::int64_t m, std::int64_t bins, FanWorkspace& ws) {
  const double two_pi = 6.283185307179586476925286766559;
  for (std::int64_t k = 0; k < bins; ++k) {
    const double c = (k == 0 || (m % 2 == 0 && k == m / 2)) ? 1.0 : 2.0;
    const double angle = two_pi * static_cast<double>((k * (m - 1)) % m) / static_cast<double>(m);
    ws.wr[k] = c / static_cast<double>(m) * std::cos(angle);
    ws.wi[k] = c / static_cast<double>(m) * std::sin(angle);
  }
}

inline void fan_angles(std::int64_t m, FanWorkspace& ws) {
  const double two_pi = 6.283185307179586476925286766559;
  for (std::int64_t j = 0; j < m; ++j) {
    ws.cos_t[j] = std::cos(two_pi * static_cast<double>(j) / static_cast<double>(m));
    ws.sin_t[j] = std::sin(two_pi * static_cast<double>(j) / static_cast<double>(m));
  }
}

// X_k = sum_j x[first + j] e^{-2 pi i k j / m} for every column, from the window itself.
inline void fan_direct_dft(const double* x, std::int64_t first, std::int64_t m, std::int64_t bins, FanWorkspace& ws) {
  const std::int64_t nc = ws.cols;
  for (std::int64_t k = 0; k < bins; ++k) {
    double* __restrict re = ws.re + k * nc;
    double* __restrict im = ws.im + k * nc;
    for (std::int64_t c = 0; c < nc; ++c) re[c] = im[c] = 0.0;
    for (std::int64_t j = 0; j < m; ++j) {
      const std::int64_t a = (k * j) % m;
      const double cr = ws.cos_t[a], ci = -ws.sin_t[a];
      const double* __restrict row = x + (first + j) * nc;
#pragma omp simd
      for (std::int64_t c = 0; c < nc; ++c) {
        re[c] += row[c] * cr;
        im[c] += row[c] * ci;
      }
    }
  }
}

// Keeps, per column, the top_k components by power (strictly larger wins, so of equal powers the
// lower frequency stays first) and writes x_last minus the sum of their values.
inline void fan_select_and_write(const double* x_last, std::int64_t bins, FanWorkspace& ws, double* out_row) {
  const std::int64_t nc = ws.cols, kk = ws.top_k;
  double* __restrict bp = ws.best_p;
  double* __restrict bv = ws.best_v;
  for (std::int64_t i = 0; i < kk * nc; ++i) {
    bp[i] = -1.0;  // below every power: the first bins always enter
    bv[i] = 0.0;
  }
  double* __restrict power = ws.power;
  double* __restrict value = ws.value;
  double* __restrict last = bp + (kk - 1) * nc;  // the smallest kept power of each column
  for (std::int64_t k = 0; k < bins; ++k) {
    const double* __restrict re = ws.re + k * nc;
    const double* __restrict im = ws.im + k * nc;
    const double w_r = ws.wr[k], w_i = ws.wi[k];
#pragma omp simd
    for (std::int64_t c = 0; c < nc; ++c) {
      power[c] = re[c] * re[c] + im[c] * im[c];
      value[c] = w_r * re[c] - w_i * im[c];
    }
    // Most bins are not among the K largest so far: one compare each. The rest are inserted in
    // place (strictly larger moves up, so of equal powers the lower frequency stays first).
    for (std::int64_t c = 0; c < nc; ++c) {
      if (!(power[c] > last[c])) continue;
      std::int64_t s = kk - 1;
      while (s > 0 && power[c] > bp[(s - 1) * nc + c]) {
        bp[s * nc + c] = bp[(s - 1) * nc + c];
        bv[s * nc + c] = bv[(s - 1) * nc + c];
        --s;
      }
      bp[s * nc + c] = power[c];
      bv[s * nc + c] = value[c];
    }
  }
  for (std::int64_t c = 0; c < nc; ++c) {
    double removed = 0.0;
    for (std::int64_t s = 0; s < kk; ++s) removed += bv[s * nc + c];
    out_row[c] = x_last[c] - removed;
  }
}

inline void fan_piece(const double* x, std::int64_t a, std::int64_t b, std::int64_t window, FanWorkspace& ws,
                      double* out) {
  const std::int64_t nc = ws.cols;
  // Rows whose window is cut at the piece start: an FFT of the shorter length, from the rows.
  for (std::int64_t m = 1; m < window && a + m - 1 < b; ++m) {
    const std::int64_t bins = m / 2 + 1;
    fan_angles(m, ws);
    fan_weights(m, bins, ws);
    fan_direct_dft(x, a, m, bins, ws);
    fan_select_and_write(x + (a + m - 1) * nc, bins, ws, out + (a + m - 1) * nc);
  }
  if (b - a < window) return;
  // Full windows: the sliding DFT X_k(t) = e^{2 pi i k / m} (X_k(t - 1) + x[t] - x[t - m]),
  // recomputed from the window every kFanRecomputeRows rows (counted from the piece start, so a
  // row's value never depends on rows after it).
  const std::int64_t m = window, bins = m / 2 + 1, first_full = a + m - 1;
  fan_angles(m, ws);
  fan_weights(m, bins, ws);
  for (std::int64_t t = first_full; t < b; ++t) {
    if ((t - first_full) % kFanRecomputeRows == 0) {
      fan_direct_dft(x, t - m + 1, m, bins, ws);
    } else {
      const double* __restrict in = x + t * nc;
      const double* __restrict old = x + (t - m) * nc;
      double* __restrict d = ws.diff;
      for (std::int64_t c = 0; c < nc; ++c) d[c] = in[c] - old[c];
      for (std::int64_t k = 0; k < bins; ++k) {
        const double rr = ws.cos_t[k], ri = ws.sin_t[k];
        double* __restrict re = ws.re + k * nc;
        double* __restrict im = ws.im + k * nc;
#pragma omp simd
        for (std::int64_t c = 0; c < nc; ++c) {
          const double sr = re[c] + d[c], si = im[c];
          re[c] = sr * rr - si * ri;
          im[c] = sr * ri + si * rr;
        }
      }
    }
    fan_select_and_write(x + t * nc, bins, ws, out + t * nc);
  }
}

inline void fan_all(const double* x, const std::int64_t* pieces, std::int64_t n_pieces, std::int64_t window,
                    FanWorkspace& ws, double* out) {
  for (std::int64_t p = 0; p < n_pieces; ++p) fan_piece(x, pieces[2 * p], pieces[2 * p + 1], window, ws, out);
}
