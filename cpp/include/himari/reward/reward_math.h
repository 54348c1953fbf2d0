// Reward shaping terms, shared by the CPU env, the replay and the CUDA kernels; templated over
// the lane type like account_math.h.
#pragma once

#include <cmath>

#include "himari/common/hd.h"
#include "himari/common/lanes.h"
#include "himari/env/account_math.h"
#include "himari/reward/reward_config.h"

namespace himari {

// Moving first and second moments of returns for the differential Sharpe ratio.
template <typename T>
struct DsrStateT {
  T a = splat<T>(0.0);  // EMA of returns
  T b = splat<T>(0.0);  // EMA of squared returns
};
using DsrState = DsrStateT<double>;

// Denominators at or below this make the DSR undefined; the term is then 0.
constexpr double kDsrMinVariance = 1e-18;

// Differential Sharpe ratio of Moody and Saffell (1998) for return r, computed from the moments
// before the update, then the moments are updated with rate eta.
//   D = (B dA - A dB / 2) / (B - A^2)^(3/2),  dA = r - A,  dB = r^2 - B.
template <typename T>
HIMARI_HD T dsr_update(DsrStateT<T>& st, T r, double eta) {
  const T da = r - st.a;
  const T db = r * r - st.b;
  const T var = st.b - st.a * st.a;
  const T defined = select(var > kDsrMinVariance, splat<T>(1.0), splat<T>(0.0));
  const T safe_var = select(defined > 0.5, var, splat<T>(1.0));  // no 0/0 in unused lanes
  const T d = select(defined > 0.5, (st.b * da - 0.5 * st.a * db) / (safe_var * lane_sqrt(safe_var)), splat<T>(0.0));
  st.a += eta * da;
  st.b += eta * db;
  return d;
}

template <typename T>
struct RewardTermsT {
  T log_return;
  T drawdown_penalty;  // >= 0, subtracted
  T turnover_penalty;  // >= 0, subtracted
  T dsr;               // raw DSR value (weighted in the total)
  T total;
};
using RewardTerms = RewardTermsT<double>;

// Terms of one step's reward. prev_drawdown/drawdown are 1 - equity/peak before and after it.
template <typename T>
HIMARI_HD RewardTermsT<T> shape_reward(T log_return, T prev_drawdown, T drawdown, T traded, DsrStateT<T>& dsr,
                                       const RewardConfig& cfg) {
  RewardTermsT<T> t;
  t.log_return = log_return;
  const T dd_increase = drawdown - prev_drawdown;
  t.drawdown_penalty = cfg.drawdown_penalty * select(dd_increase > 0.0, dd_increase, splat<T>(0.0));
  t.turnover_penalty = cfg.turnover_penalty * traded;
  t.dsr = cfg.dsr_weight != 0.0 ? dsr_update(dsr, log_return, cfg.dsr_decay) : splat<T>(0.0);
  t.total = t.log_return - t.drawdown_penalty - t.turnover_penalty + cfg.dsr_weight * t.dsr;
  return t;
}

}  // namespace himari
