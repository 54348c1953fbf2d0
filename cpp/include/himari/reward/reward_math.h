// Reward shaping terms, shared by the CPU env and the CUDA kernels.
#pragma once

#include <cmath>

#include "himari/common/hd.h"
#include "himari/env/account_math.h"
#include "himari/reward/reward_config.h"

namespace himari {

// Moving first and second moments of returns for the differential Sharpe ratio.
struct DsrState {
  double a = 0.0;  // EMA of returns
  double b = 0.0;  // EMA of squared returns
};

// Denominators at or below this make the DSR undefined; the term is then 0.
constexpr double kDsrMinVariance = 1e-18;

// Differential Sharpe ratio of Moody and Saffell (1998) for return r, computed from the moments
// before the update, then the moments are updated with rate eta.
//   D = (B dA - A dB / 2) / (B - A^2)^(3/2),  dA = r - A,  dB = r^2 - B.
HIMARI_HD double dsr_update(DsrState& st, double r, double eta) {
  const double da = r - st.a;
  const double db = r * r - st.b;
  const double var = st.b - st.a * st.a;
  const double d = var > kDsrMinVariance ? (st.b * da - 0.5 * st.a * db) / (var * std::sqrt(var)) : 0.0;
  st.a += eta * da;
  st.b += eta * db;
  return d;
}

struct RewardTerms {
  double log_return;
  double drawdown_penalty;  // >= 0, subtracted
  double turnover_penalty;  // >= 0, subtracted
  double dsr;               // raw DSR value (weighted in the total)
  double total;
};

// Terms of one step's reward. prev_drawdown/drawdown are 1 - equity/peak before and after it.
HIMARI_HD RewardTerms shape_reward(double log_return, double prev_drawdown, double drawdown, double traded,
                                   DsrState& dsr, const RewardConfig& cfg) {
  RewardTerms t;
  t.log_return = log_return;
  const double dd_increase = drawdown - prev_drawdown;
  t.drawdown_penalty = cfg.drawdown_penalty * (dd_increase > 0.0 ? dd_increase : 0.0);
  t.turnover_penalty = cfg.turnover_penalty * traded;
  t.dsr = cfg.dsr_weight != 0.0 ? dsr_update(dsr, log_return, cfg.dsr_decay) : 0.0;
  t.total = t.log_return - t.drawdown_penalty - t.turnover_penalty + cfg.dsr_weight * t.dsr;
  return t;
}

}  // namespace himari
