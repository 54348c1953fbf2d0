// Per-account execution maths: the single definition of fills, costs and marking, used by the
// CPU env, the CPU backtester and the CUDA kernels. Everything here is HIMARI_HD and written
// without data-dependent branches (both paths are computed and selected), so a loop over many
// accounts auto-vectorises and a GPU warp does not diverge.
//
// Semantics (DESIGN.md, docs/semantics.md): the decision at bar t sees bar t closed; a change of
// position fills at open[t+1] moved against the trader by `slippage`; `fee` is charged on each
// fill's notional; equity is marked at close[t+1]. A change of position first closes the old
// position in full, then opens the new one with all equity, so long -> short is two fills.
//
// All state is double (positions and counters too): one element type keeps the vectorised
// loops simple, and every count stays exact far beyond any realistic number of bars.
#pragma once

#include <cmath>
#include <cstdint>

#include "himari/common/hd.h"
#include "himari/common/lanes.h"
#include "himari/env/env_config.h"

namespace himari {

// Equity never drops below this: an account that loses everything is liquidated and frozen.
constexpr double kBankruptEquity = 1e-12;

template <typename T>
struct AccountStateT {
  T cash = splat<T>(1.0);          // quote currency; equity starts at 1
  T units = splat<T>(0.0);         // signed asset quantity
  T equity = splat<T>(1.0);        // cash + units * last close
  T peak = splat<T>(1.0);          // running maximum of equity
  T entry_equity = splat<T>(1.0);  // equity just before the current position was opened
  T turnover = splat<T>(0.0);      // sum of |change of position|
  T position = splat<T>(0.0);      // -1, 0, +1
  T bars_in_position = splat<T>(0.0);
  T trades = splat<T>(0.0);         // fills (position changes)
  T closed_trades = splat<T>(0.0);  // round trips closed
  T wins = splat<T>(0.0);           // round trips closed with equity above their entry equity
  T bankrupt = splat<T>(0.0);       // 1 once equity hit kBankruptEquity (then frozen flat)
  T drawdown = splat<T>(0.0);       // 1 - equity / peak after the last step
};
using AccountState = AccountStateT<double>;

// What one step did, for rewards and reports.
template <typename T>
struct StepOutcomeT {
  T prev_equity;
  T traded;  // |change of position|: 0, 1 or 2
  T broke;   // 1 when equity hit the floor during this step, else 0
};
using StepOutcome = StepOutcomeT<double>;

// Written for the vectoriser: positions, actions and flags are small integers held in doubles,
// so every condition is an ordered comparison (x > 0.5) rather than an equality test (equality
// on doubles compiles to NaN-aware branches), indicators are |x| or min(|x|, 1), and every
// conditional value is a select between two fully computed results (never a blend, which would
// round differently from the branchy reference).

// Position targeted by an action given the current one. Actions (checked to be in {0, 1, 2})
// arrive as T: 2 targets long, 0 targets the mode's SELL position, 1 keeps.
template <typename T>
HIMARI_HD T target_position(T action, T position, PositionMode mode) {
  const T sell_target = splat<T>(mode == PositionMode::kLongShort ? -1.0 : 0.0);
  return select(action > 1.5, splat<T>(1.0), select(action < 0.5, sell_target, position));
}

// Advance one bar: apply `action` decided at the close of bar t, fill at `next_open`, mark at
// `next_close`.
template <typename T>
HIMARI_HD StepOutcomeT<T> account_step(AccountStateT<T>& s, T action, T next_open, T next_close,
                                       const CostConfig& costs) {
  const T zero = splat<T>(0.0), one = splat<T>(1.0);
  StepOutcomeT<T> out;
  out.prev_equity = s.equity;
  const T wanted = target_position(action, s.position, costs.mode);
  const T target = select(s.bankrupt > 0.5, zero, wanted);
  out.traded = lane_abs(target - s.position);
  const T trade = select(out.traded < 1.0, out.traded, one);  // 1 when the position changes

  // Close the old position in full (when there is one and the target differs). units and
  // position are zero together, so |position| says whether there is one to close.
  const T closing = trade * lane_abs(s.position);
  const T close_px = next_open * (one - costs.slippage * s.position);
  const T cash_after_close = s.cash + s.units * close_px - costs.fee * lane_abs(s.units) * close_px;
  T cash = select(closing > 0.5, cash_after_close, s.cash);
  T units = select(closing > 0.5, zero, s.units);
  s.closed_trades += closing;
  s.wins += select(cash_after_close > s.entry_equity, closing, zero);

  // Open the new position with all equity: qty * px * (1 + fee) == cash.
  const T opening = trade * lane_abs(target);
  const T open_px = next_open * (one + costs.slippage * target);
  const T qty = cash / (open_px * (1.0 + costs.fee));
  const T notional = qty * open_px;
  s.entry_equity = select(opening > 0.5, cash, s.entry_equity);
  cash = select(opening > 0.5, cash - target * notional - costs.fee * notional, cash);
  units = select(opening > 0.5, target * qty, units);

  s.position = target;
  s.trades += trade;
  s.turnover += out.traded;
  s.bars_in_position = select(lane_abs(target) < 0.5, zero, select(opening > 0.5, one, s.bars_in_position + 1.0));

  // Mark to the close; liquidate and freeze an account whose equity is gone.
  const T marked = cash + units * next_close;
  out.broke = select(marked <= kBankruptEquity, one - s.bankrupt, zero);
  const auto broke = out.broke > 0.5;
  const T floor = splat<T>(kBankruptEquity);
  s.cash = select(broke, floor, cash);
  s.units = select(broke, zero, units);
  s.position = select(broke, zero, s.position);
  s.bars_in_position = select(broke, zero, s.bars_in_position);
  s.bankrupt = select(broke, one, s.bankrupt);
  s.equity = select(broke, floor, marked);
  s.peak = select(s.equity > s.peak, s.equity, s.peak);
  s.drawdown = one - s.equity / s.peak;
  return out;
}

// Drawdown as a fraction of the running peak (>= 0).
template <typename T>
HIMARI_HD T drawdown_of(const AccountStateT<T>& s) {
  return s.drawdown;
}

// Unrealised PnL of the open position as a fraction of the equity committed to it.
HIMARI_HD double unrealised_pnl(const AccountState& s) {
  return std::fabs(s.position) < 0.5 ? 0.0 : s.equity / s.entry_equity - 1.0;
}

}  // namespace himari
