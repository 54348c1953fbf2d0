// Reward shaping coefficients. All zero gives the plain log return of equity.
#pragma once

namespace himari {

struct RewardConfig {
  double drawdown_penalty = 0.0;  // times the increase of drawdown (fraction of peak) this step
  double turnover_penalty = 0.0;  // times |change of position| this step (0, 1 or 2)
  double dsr_weight = 0.0;        // times the differential Sharpe ratio (Moody and Saffell 1998)
  double dsr_decay = 0.01;        // eta, the adaptation rate of the DSR moving moments, in (0, 1]
};

}  // namespace himari
