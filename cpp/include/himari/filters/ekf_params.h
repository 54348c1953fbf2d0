// Parameters of the batched EKF (docs/ekf.md). Defaults suit 5-minute crypto bars.
#pragma once

namespace himari {

struct EkfParams {
  double q_level = 1e-6;
  double q_velocity = 1e-10;
  double q_acceleration = 1e-14;
  double q_log_variance = 0.05;
  double r_level = 2.5e-7;
  double r_log_square = 4.934802200544679;  // Var[log chi^2_1] = pi^2 / 2
  double square_floor = 1e-10;              // c in log(r^2 + c): keeps flat bars finite
  double phi = 0.99;
  double mu = -13.0;
  double p0_level = 1e-4;
  double p0_velocity = 1e-8;
  double p0_acceleration = 1e-12;
  double p0_log_variance = 1.0;
  bool use_volatility_obs = true;
};

}  // namespace himari
