// Per-series EKF maths (docs/ekf.md), shared by the CPU loops and the CUDA kernel, templated
// over the lane type like account_math.h: T = double filters one series, T = Vec4d four series
// at once. The state is [level, velocity, acceleration, log_variance] of the log price; the
// log-squared-return observation log(exp(log_variance + m) + c) is the nonlinearity.
#pragma once

#include <cmath>

#include "himari/common/hd.h"
#include "himari/common/lanes.h"
#include "himari/filters/ekf_params.h"

namespace himari {

constexpr int kEkfStates = 4;
constexpr double kMeanLogChiSquare1 = -1.27036284546147817;  // E[log z^2], z ~ N(0,1): -gamma - log 2

// exp and log for the filter: the vectorisable lane versions for vectors, the C library's
// (faster for a single value) for a scalar series.
template <typename T>
HIMARI_HD T ekf_exp(T x) {
  return lane_exp(x);
}
template <typename T>
HIMARI_HD T ekf_log(T x) {
  return lane_log(x);
}
HIMARI_HD double ekf_exp(double x) { return std::exp(x); }
HIMARI_HD double ekf_log(double x) { return std::log(x); }

template <typename T>
struct EkfStateT {
  T x[kEkfStates];
  T p[kEkfStates][kEkfStates];
};
using EkfState = EkfStateT<double>;

template <typename T>
HIMARI_HD void ekf_init(EkfStateT<T>& s, T log_price, const EkfParams& prm) {
  const T zero = splat<T>(0.0);
  s.x[0] = log_price;
  s.x[1] = zero;
  s.x[2] = zero;
  s.x[3] = splat<T>(prm.mu);
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = 0; j < kEkfStates; ++j) s.p[i][j] = zero;
  s.p[0][0] = splat<T>(prm.p0_level);
  s.p[1][1] = splat<T>(prm.p0_velocity);
  s.p[2][2] = splat<T>(prm.p0_acceleration);
  s.p[3][3] = splat<T>(prm.p0_log_variance);
}

// x' = F x (+ AR(1) mean for the log variance); P' = F P F' + Q, with
// F = [[1,1,.5,0],[0,1,1,0],[0,0,1,0],[0,0,0,phi]]. F is sparse, so F P F' is written out
// term by term on the upper triangle (P stays exactly symmetric).
template <typename T>
HIMARI_HD void ekf_predict(EkfStateT<T>& s, const EkfParams& prm) {
  const double phi = prm.phi;
  s.x[0] = s.x[0] + s.x[1] + 0.5 * s.x[2];
  s.x[1] = s.x[1] + s.x[2];
  s.x[3] = prm.mu + phi * (s.x[3] - prm.mu);
  T(&p)[kEkfStates][kEkfStates] = s.p;
  // A = F P (rows of F applied to P).
  T a[3][kEkfStates];
  for (int j = 0; j < kEkfStates; ++j) {
    a[0][j] = p[0][j] + p[1][j] + 0.5 * p[2][j];
    a[1][j] = p[1][j] + p[2][j];
    a[2][j] = p[2][j];
  }
  // P' = A F' on the upper triangle; row/column 3 only picks up phi.
  const T n00 = a[0][0] + a[0][1] + 0.5 * a[0][2];
  const T n01 = a[0][1] + a[0][2];
  const T n02 = a[0][2];
  const T n03 = phi * a[0][3];
  const T n11 = a[1][1] + a[1][2];
  const T n12 = a[1][2];
  const T n13 = phi * a[1][3];
  const T n22 = a[2][2];
  const T n23 = phi * a[2][3];
  const T n33 = phi * phi * p[3][3];
  p[0][0] = n00 + prm.q_level;
  p[0][1] = p[1][0] = n01;
  p[0][2] = p[2][0] = n02;
  p[0][3] = p[3][0] = n03;
  p[1][1] = n11 + prm.q_velocity;
  p[1][2] = p[2][1] = n12;
  p[1][3] = p[3][1] = n13;
  p[2][2] = n22 + prm.q_acceleration;
  p[2][3] = p[3][2] = n23;
  p[3][3] = n33 + prm.q_log_variance;
}

// Update with the level observation and, when use_vol, the log-squared-return observation
// z2 = log(r^2 + c) with h2(x) = log(exp(lv + m) + c), m = E[log chi^2_1]. Its slope
// dh2/dlv = e / (e + c), e = exp(lv + m), lies in (0, 1): unlike an observation of |r| (whose
// slope vanishes at low variance and so lets one big bar throw the variance estimate up by
// orders of magnitude), a surprise moves the log variance by a bounded amount. H rows:
// [1,0,0,0] and [0,0,0,slope], so P H' is two scaled columns of P. Covariance update in the
// symmetric form P - K S K' (= (I - K H) P for the optimal gain), computed on the upper
// triangle. Writes the innovations z - h(x_pred) to innov[0..1]. use_vol is the same for every
// lane (it depends on the bar index only).
template <typename T>
HIMARI_HD void ekf_update(EkfStateT<T>& s, T log_price, T log_return, bool use_vol, const EkfParams& prm, T* innov) {
  T(&p)[kEkfStates][kEkfStates] = s.p;
  const T zero = splat<T>(0.0);
  const T e = ekf_exp(s.x[3] + kMeanLogChiSquare1);
  const T h = use_vol ? e / (e + prm.square_floor) : zero;  // 0: no second observation
  const double r0 = prm.r_level;
  const double r1 = prm.r_log_square;
  const T y0 = log_price - s.x[0];
  const T y1 =
      use_vol ? ekf_log(log_return * log_return + prm.square_floor) - ekf_log(e + prm.square_floor) : zero;
  innov[0] = y0;
  innov[1] = y1;
  // C = P H': column 0 is P[:,0], column 1 is h P[:,3].
  T c0[kEkfStates], c1[kEkfStates];
  for (int i = 0; i < kEkfStates; ++i) {
    c0[i] = p[i][0];
    c1[i] = h * p[i][3];
  }
  // S = H P H' + R and its inverse; with one observation S is 1x1 (s11 = 1 keeps it invertible).
  const T s00 = c0[0] + r0;
  const T s01 = c1[0];
  const T s11 = use_vol ? h * c1[3] + r1 : splat<T>(1.0);
  const T det = s00 * s11 - s01 * s01;
  const T i00 = s11 / det, i01 = -s01 / det, i11 = s00 / det;
  // K = C S^-1.
  T k0[kEkfStates], k1[kEkfStates];
  for (int i = 0; i < kEkfStates; ++i) {
    k0[i] = c0[i] * i00 + c1[i] * i01;
    k1[i] = c0[i] * i01 + c1[i] * i11;
  }
  for (int i = 0; i < kEkfStates; ++i) s.x[i] += k0[i] * y0 + k1[i] * y1;
  // P -= K C' (K S K' = C S^-1 C' = K C'), upper triangle then mirrored.
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = i; j < kEkfStates; ++j) {
      const T v = p[i][j] - (k0[i] * c0[j] + k1[i] * c1[j]);
      p[i][j] = v;
      p[j][i] = v;
    }
}

}  // namespace himari
