// Per-env episode starts and observation rows on the CPU, included by each translation unit of
// the env (internal linkage: the AVX2 unit gets its own copy, inlined into its kernel).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "himari/env/trading_env.h"

namespace himari::obs {
namespace {

// log1p(bars) as float for the bars-in-position column, tabulated because it is evaluated for
// every env at every step; values past the table are computed directly (the same expression).
constexpr std::int64_t kLog1pTable = 4096;
inline const float* log1p_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(kLog1pTable);
    for (std::int64_t k = 0; k < kLog1pTable; ++k) t[k] = static_cast<float>(std::log1p(static_cast<double>(k)));
    return t;
  }();
  return table.data();
}

inline float log1p_bars(double bars) {
  const auto k = static_cast<std::int64_t>(bars);
  return k < kLog1pTable ? log1p_table()[k] : static_cast<float>(std::log1p(bars));
}

// The 4 account columns of env i after a step (docs/semantics.md).
inline void write_account_columns(const EnvBuffers& b, std::int64_t i, float* __restrict acc) {
  const double position = b.account[6][i];
  acc[0] = static_cast<float>(position);
  // |position| is exactly 0 or 1: multiplying selects without a data-dependent branch (random
  // actions made the branchy form mispredict about half the time).
  acc[1] = static_cast<float>(std::fabs(position) * (b.account[2][i] / b.account[4][i] - 1.0) + 0.0);
  acc[2] = static_cast<float>(-b.account[12][i]);
  acc[3] = log1p_bars(b.account[7][i]);
}

// Copies a short row. Constant-size memcpy chunks inline to plain moves; a plain loop would be
// turned by the compiler into a call to memmove, whose overhead dominated the step for rows of
// a few dozen bytes.
inline void copy_row(float* __restrict dst, const float* __restrict src, std::int64_t n) {
  std::int64_t j = 0;
  for (; j + 8 <= n; j += 8) std::memcpy(dst + j, src + j, 8 * sizeof(float));
  for (; j + 4 <= n; j += 4) std::memcpy(dst + j, src + j, 4 * sizeof(float));
  for (; j < n; ++j) dst[j] = src[j];
}

// Observation of env i after a step: feature rows for the window ending at bar[i], the account
// history shifted one row older and the new account state in the last row.
inline void write_step_observation(const EnvBuffers& b, std::int64_t i) {
  const std::int64_t f = b.n_features;
  const std::int64_t row = f + kAccountColumns;
  const std::int64_t w_count = b.config.window;
  float* __restrict base = b.obs + i * w_count * row;
  const float* __restrict feat = b.features + (b.bar[i] - w_count + 1) * f;
  if (w_count == 1) {  // the common case, without the history shift
    copy_row(base, feat, f);
    write_account_columns(b, i, base + f);
    return;
  }
  for (std::int64_t w = 0; w < w_count; ++w) {
    float* dst = base + w * row;
    copy_row(dst, feat + w * f, f);
    if (w + 1 < w_count) copy_row(dst + f, base + (w + 1) * row + f, kAccountColumns);
  }
  write_account_columns(b, i, base + (w_count - 1) * row + f);
}

// Env i's episode ended at this step: into final_obs, the observation the step would have shown
// had the episode gone on (gymnasium's final observation): what write_step_observation writes,
// with the account history taken from env i's previous observation, which obs still holds
// (call before begin_episode overwrites it). Rare (once per episode), so kept plain.
inline void write_final_observation(const EnvBuffers& b, std::int64_t i) {
  const std::int64_t f = b.n_features;
  const std::int64_t row = f + kAccountColumns;
  const std::int64_t w_count = b.config.window;
  float* __restrict dst = b.final_obs + i * w_count * row;
  const float* __restrict prev = b.obs + i * w_count * row;
  const float* __restrict feat = b.features + (b.bar[i] - w_count + 1) * f;
  for (std::int64_t w = 0; w < w_count; ++w) {
    copy_row(dst + w * row, feat + w * f, f);
    if (w + 1 < w_count) copy_row(dst + w * row + f, prev + (w + 1) * row + f, kAccountColumns);
  }
  write_account_columns(b, i, dst + (w_count - 1) * row + f);
}

// Observation of env i at an episode start: feature rows and an all-zero account history.
inline void write_fresh_observation(const EnvBuffers& b, std::int64_t i) {
  const std::int64_t f = b.n_features;
  const std::int64_t row = f + kAccountColumns;
  const std::int64_t w_count = b.config.window;
  float* base = b.obs + i * w_count * row;
  const float* feat = b.features + (b.bar[i] - w_count + 1) * f;
  for (std::int64_t w = 0; w < w_count; ++w) {
    copy_row(base + w * row, feat + w * f, f);
    for (std::int64_t c = 0; c < kAccountColumns; ++c) base[w * row + f + c] = 0.0f;
  }
}

// A new episode for env i: seeded start, fresh account, fresh observation.
inline void begin_episode(const EnvBuffers& b, std::int64_t i) {
  const std::int64_t start = episode_start(b.bounds, b.config.random_start, b.config.seed,
                                           static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(b.episode_index[i]));
  b.episode_index[i] += 1;
  const AccountState fresh{};
  const double init[kAccountFields] = {fresh.cash,         fresh.units,    fresh.equity,   fresh.peak,
                                       fresh.entry_equity, fresh.turnover, fresh.position, fresh.bars_in_position,
                                       fresh.trades,       fresh.closed_trades, fresh.wins, fresh.bankrupt,
                                       fresh.drawdown};
  for (int f = 0; f < kAccountFields; ++f) b.account[f][i] = init[f];
  b.dsr_a[i] = 0.0;
  b.dsr_b[i] = 0.0;
  b.bar[i] = start;
  b.episode_step[i] = 0;
  b.episode_len[i] = episode_steps(b.n_bars, start, b.config.episode_length);
  write_fresh_observation(b, i);
}

}  // namespace
}  // namespace himari::obs
