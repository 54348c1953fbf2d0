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
#include "himari/env/env_config.h"

namespace himari {

// Equity never drops below this: an account that loses everything is liquidated and frozen.
constexpr double kBankruptEquity = 1e-12;

struct AccountState {
  double cash = 1.0;          // quote currency; equity starts at 1
  double units = 0.0;         // signed asset quantity
  double equity = 1.0;        // cash + units * last close
  double peak = 1.0;          // running maximum of equity
  double entry_equity = 1.0;  // equity just before the current position was opened
  double turnover = 0.0;      // sum of |change of position|
  double position = 0.0;      // -1, 0, +1
  double bars_in_position = 0.0;
  double trades = 0.0;         // fills (position changes)
  double closed_trades = 0.0;  // round trips closed
  double wins = 0.0;           // round trips closed with equity above their entry equity
  double bankrupt = 0.0;       // 1 once equity hit kBankruptEquity (then frozen flat)
  double drawdown = 0.0;       // 1 - equity / peak after the last step
};

// What one step did, for rewards and reports.
struct StepOutcome {
  double prev_equity;
  double traded;         // |change of position|: 0, 1 or 2
  bool bankrupt_now;     // equity hit the floor during this step
};

// Position targeted by an action given the current one; an action outside {0,1,2} acts as
// HOLD (the bindings reject such actions before they get here).
HIMARI_HD double target_position(std::int32_t action, double position, PositionMode mode) {
  const double sell_target = mode == PositionMode::kLongShort ? -1.0 : 0.0;
  return action == kBuy ? 1.0 : (action == kSell ? sell_target : position);
}

// Advance one bar: apply `action` decided at the close of bar t, fill at `next_open`, mark at
// `next_close`.
HIMARI_HD StepOutcome account_step(AccountState& s, std::int32_t action, double next_open, double next_close,
                                   const CostConfig& costs) {
  StepOutcome out;
  out.prev_equity = s.equity;
  const double target = s.bankrupt != 0.0 ? 0.0 : target_position(action, s.position, costs.mode);
  const double change = target - s.position;
  const bool trade = change != 0.0;
  out.traded = std::fabs(change);

  // Close the old position in full (when there is one and the target differs).
  const bool closing = trade && s.units != 0.0;
  const double close_side = s.units > 0.0 ? 1.0 : -1.0;
  const double close_px = next_open * (1.0 - costs.slippage * close_side);
  const double cash_after_close = s.cash + s.units * close_px - costs.fee * std::fabs(s.units) * close_px;
  double cash = closing ? cash_after_close : s.cash;
  double units = closing ? 0.0 : s.units;
  s.closed_trades += closing ? 1.0 : 0.0;
  s.wins += (closing && cash_after_close > s.entry_equity) ? 1.0 : 0.0;

  // Open the new position with all equity: qty * px * (1 + fee) == cash.
  const bool opening = trade && target != 0.0;
  const double open_px = next_open * (1.0 + costs.slippage * target);
  const double qty = cash / (open_px * (1.0 + costs.fee));
  const double notional = qty * open_px;
  s.entry_equity = opening ? cash : s.entry_equity;
  cash = opening ? cash - target * notional - costs.fee * notional : cash;
  units = opening ? target * qty : units;

  s.position = target;
  s.trades += trade ? 1.0 : 0.0;
  s.turnover += out.traded;
  s.bars_in_position = target == 0.0 ? 0.0 : (opening ? 1.0 : s.bars_in_position + 1.0);

  // Mark to the close; liquidate and freeze an account whose equity is gone.
  const double marked = cash + units * next_close;
  out.bankrupt_now = !(marked > kBankruptEquity) && s.bankrupt == 0.0;
  s.cash = out.bankrupt_now ? kBankruptEquity : cash;
  s.units = out.bankrupt_now ? 0.0 : units;
  s.position = out.bankrupt_now ? 0.0 : s.position;
  s.bars_in_position = out.bankrupt_now ? 0.0 : s.bars_in_position;
  s.bankrupt = out.bankrupt_now ? 1.0 : s.bankrupt;
  s.equity = out.bankrupt_now ? kBankruptEquity : marked;
  s.peak = s.equity > s.peak ? s.equity : s.peak;
  s.drawdown = 1.0 - s.equity / s.peak;
  return out;
}

// Drawdown as a fraction of the running peak (>= 0).
HIMARI_HD double drawdown_of(const AccountState& s) { return s.drawdown; }

// Unrealised PnL of the open position as a fraction of the equity committed to it.
HIMARI_HD double unrealised_pnl(const AccountState& s) {
  return s.position == 0.0 ? 0.0 : s.equity / s.entry_equity - 1.0;
}

}  // namespace himari
