// Per-series EKF maths (docs/ekf.md), shared by the CPU loop and the CUDA kernel. The state is
// [level, velocity, acceleration, log_variance] of the log price; the absolute-return
// observation sqrt(2/pi) * exp(log_variance / 2) is the nonlinearity.
#pragma once

#include <cmath>

#include "himari/common/hd.h"
#include "himari/filters/ekf_params.h"

namespace himari {

constexpr int kEkfStates = 4;
constexpr double kSqrtTwoOverPi = 0.79788456080286535588;  // E|N(0,1)|
constexpr double kAbsVarianceFactor = 0.36338022763241865692;  // Var|N(0,1)| = 1 - 2/pi

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
// F = [[1,1,.5,0],[0,1,1,0],[0,0,1,0],[0,0,0,phi]].
HIMARI_HD void ekf_predict(EkfState& s, const EkfParams& prm) {
  const double f[kEkfStates][kEkfStates] = {
      {1.0, 1.0, 0.5, 0.0}, {0.0, 1.0, 1.0, 0.0}, {0.0, 0.0, 1.0, 0.0}, {0.0, 0.0, 0.0, prm.phi}};
  double x[kEkfStates];
  x[0] = s.x[0] + s.x[1] + 0.5 * s.x[2];
  x[1] = s.x[1] + s.x[2];
  x[2] = s.x[2];
  x[3] = prm.mu + prm.phi * (s.x[3] - prm.mu);
  double fp[kEkfStates][kEkfStates];
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = 0; j < kEkfStates; ++j) {
      double acc = 0.0;
      for (int k = 0; k < kEkfStates; ++k) acc += f[i][k] * s.p[k][j];
      fp[i][j] = acc;
    }
  const double q[kEkfStates] = {prm.q_level, prm.q_velocity, prm.q_acceleration, prm.q_log_variance};
  for (int i = 0; i < kEkfStates; ++i) {
    s.x[i] = x[i];
    for (int j = 0; j < kEkfStates; ++j) {
      double acc = 0.0;
      for (int k = 0; k < kEkfStates; ++k) acc += fp[i][k] * f[j][k];
      s.p[i][j] = acc + (i == j ? q[i] : 0.0);
    }
  }
}

// Update with m = 1 (level only) or m = 2 (level and absolute return) observations.
// h rows: H0 = [1,0,0,0]; H1 = [0,0,0,g/2] with g = sqrt(2/pi) exp(lv/2).
// Writes the innovations z - h(x_pred) to innov[0..1] (innov[1] = 0 when m = 1).
HIMARI_HD void ekf_update(EkfState& s, double log_price, double abs_return, bool use_abs, const EkfParams& prm,
                          double* innov) {
  const int m = use_abs ? 2 : 1;
  const double g = kSqrtTwoOverPi * std::exp(0.5 * s.x[3]);
  double hm[2][kEkfStates] = {{1.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.5 * g}};
  const double r[2] = {prm.r_level, kAbsVarianceFactor * std::exp(s.x[3]) + prm.r_abs_floor};
  const double y[2] = {log_price - s.x[0], use_abs ? abs_return - g : 0.0};
  innov[0] = y[0];
  innov[1] = y[1];
  // PH' [4 x m] and S = H P H' + R [m x m].
  double ph[kEkfStates][2];
  for (int i = 0; i < kEkfStates; ++i)
    for (int a = 0; a < 2; ++a) {
      double acc = 0.0;
      for (int k = 0; k < kEkfStates; ++k) acc += s.p[i][k] * hm[a][k];
      ph[i][a] = acc;
    }
  double sm[2][2] = {{0.0, 0.0}, {0.0, 1.0}};
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) {
      double acc = 0.0;
      for (int k = 0; k < kEkfStates; ++k) acc += hm[a][k] * ph[k][b];
      sm[a][b] = acc + (a == b ? r[a] : 0.0);
    }
  // S^-1 (1x1 or 2x2 closed form).
  double si[2][2];
  if (m == 1) {
    si[0][0] = 1.0 / sm[0][0];
    si[0][1] = si[1][0] = si[1][1] = 0.0;
  } else {
    const double det = sm[0][0] * sm[1][1] - sm[0][1] * sm[1][0];
    si[0][0] = sm[1][1] / det;
    si[1][1] = sm[0][0] / det;
    si[0][1] = -sm[0][1] / det;
    si[1][0] = -sm[1][0] / det;
  }
  // K = P H' S^-1 [4 x m].
  double kg[kEkfStates][2];
  for (int i = 0; i < kEkfStates; ++i)
    for (int b = 0; b < 2; ++b) {
      double acc = 0.0;
      for (int a = 0; a < m; ++a) acc += ph[i][a] * si[a][b];
      kg[i][b] = b < m ? acc : 0.0;
    }
  for (int i = 0; i < kEkfStates; ++i) {
    double acc = 0.0;
    for (int a = 0; a < m; ++a) acc += kg[i][a] * y[a];
    s.x[i] += acc;
  }
  // Joseph form: P = (I - K H) P (I - K H)' + K R K'.
  double ikh[kEkfStates][kEkfStates];
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = 0; j < kEkfStates; ++j) {
      double acc = 0.0;
      for (int a = 0; a < m; ++a) acc += kg[i][a] * hm[a][j];
      ikh[i][j] = (i == j ? 1.0 : 0.0) - acc;
    }
  double tmp[kEkfStates][kEkfStates];
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = 0; j < kEkfStates; ++j) {
      double acc = 0.0;
      for (int k = 0; k < kEkfStates; ++k) acc += ikh[i][k] * s.p[k][j];
      tmp[i][j] = acc;
    }
  for (int i = 0; i < kEkfStates; ++i)
    for (int j = 0; j < kEkfStates; ++j) {
      double acc = 0.0;
      for (int k = 0; k < kEkfStates; ++k) acc += tmp[i][k] * ikh[j][k];
      double krk = 0.0;
      for (int a = 0; a < m; ++a) krk += kg[i][a] * r[a] * kg[j][a];
      s.p[i][j] = acc + krk;
    }
}

}  // namespace himari
