// Per-series EKF maths (docs/ekf.md), shared by the CPU loop and the CUDA kernel. The state is
// [level, velocity, acceleration, log_variance] of the log price; the log-squared-return
// observation log(exp(log_variance + m) + c) is the nonlinearity.
#pragma once

#include <cmath>

#include "himari/common/hd.h"
#include "himari/filters/ekf_params.h"

namespace himari {

constexpr int kEkfStates = 4;
constexpr double kMeanLogChiSquare1 = -1.27036284546147817;  // E[log z^2], z ~ N(0,1): -gamma - log 2

struct EkfState {
  double x[kEkfStates];
  double p[kEkfStates][kEkfStates];
};

HIMARI_HD void ekf_init(EkfState& s, double log_price, const EkfParams& prm) {
  s.x[0] = log_price;
  s.x[1] = 0.0;
  s.x[2] = 0.0;
  s.x[3] = prm.mu;
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = 0; j < kEkfStates; ++j) s.p[i][j] = 0.0;
  s.p[0][0] = prm.p0_level;
  s.p[1][1] = prm.p0_velocity;
  s.p[2][2] = prm.p0_acceleration;
  s.p[3][3] = prm.p0_log_variance;
}

// x' = F x (+ AR(1) mean for the log variance); P' = F P F' + Q, with
// F = [[1,1,.5,0],[0,1,1,0],[0,0,1,0],[0,0,0,phi]]. F is sparse, so F P F' is written out
// term by term on the upper triangle (P stays exactly symmetric).
HIMARI_HD void ekf_predict(EkfState& s, const EkfParams& prm) {
  const double phi = prm.phi;
  s.x[0] = s.x[0] + s.x[1] + 0.5 * s.x[2];
  s.x[1] = s.x[1] + s.x[2];
  s.x[3] = prm.mu + phi * (s.x[3] - prm.mu);
  double(&p)[kEkfStates][kEkfStates] = s.p;
  // A = F P (rows of F applied to P).
  double a[3][kEkfStates];
  for (int j = 0; j < kEkfStates; ++j) {
    a[0][j] = p[0][j] + p[1][j] + 0.5 * p[2][j];
    a[1][j] = p[1][j] + p[2][j];
    a[2][j] = p[2][j];
  }
  // P' = A F' on the upper triangle; row/column 3 only picks up phi.
  const double n00 = a[0][0] + a[0][1] + 0.5 * a[0][2];
  const double n01 = a[0][1] + a[0][2];
  const double n02 = a[0][2];
  const double n03 = phi * a[0][3];
  const double n11 = a[1][1] + a[1][2];
  const double n12 = a[1][2];
  const double n13 = phi * a[1][3];
  const double n22 = a[2][2];
  const double n23 = phi * a[2][3];
  const double n33 = phi * phi * p[3][3];
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
// triangle. Writes the innovations z - h(x_pred) to innov[0..1].
HIMARI_HD void ekf_update(EkfState& s, double log_price, double log_return, bool use_vol, const EkfParams& prm,
                          double* innov) {
  double(&p)[kEkfStates][kEkfStates] = s.p;
  const double e = std::exp(s.x[3] + kMeanLogChiSquare1);
  const double h = use_vol ? e / (e + prm.square_floor) : 0.0;  // 0: no second observation
  const double r0 = prm.r_level;
  const double r1 = prm.r_log_square;
  const double y0 = log_price - s.x[0];
  const double y1 = use_vol ? std::log(log_return * log_return + prm.square_floor) - std::log(e + prm.square_floor) : 0.0;
  innov[0] = y0;
  innov[1] = y1;
  // C = P H': column 0 is P[:,0], column 1 is h P[:,3].
  double c0[kEkfStates], c1[kEkfStates];
  for (int i = 0; i < kEkfStates; ++i) {
    c0[i] = p[i][0];
    c1[i] = h * p[i][3];
  }
  // S = H P H' + R and its inverse; with one observation S is 1x1 (s11 = 1 keeps it invertible).
  const double s00 = c0[0] + r0;
  const double s01 = c1[0];
  const double s11 = use_vol ? h * c1[3] + r1 : 1.0;
  const double det = s00 * s11 - s01 * s01;
  const double i00 = s11 / det, i01 = -s01 / det, i11 = s00 / det;
  // K = C S^-1.
  double k0[kEkfStates], k1[kEkfStates];
  for (int i = 0; i < kEkfStates; ++i) {
    k0[i] = c0[i] * i00 + c1[i] * i01;
    k1[i] = c0[i] * i01 + c1[i] * i11;
  }
  for (int i = 0; i < kEkfStates; ++i) s.x[i] += k0[i] * y0 + k1[i] * y1;
  // P -= K C' (K S K' = C S^-1 C' = K C'), upper triangle then mirrored.
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = i; j < kEkfStates; ++j) {
      const double v = p[i][j] - (k0[i] * c0[j] + k1[i] * c1[j]);
      p[i][j] = v;
      p[j][i] = v;
    }
}

}  // namespace himari
