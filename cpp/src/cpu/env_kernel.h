// The CPU env step over lanes, included by trading_env_cpu.cpp (baseline ISA, Vec2d) and
// trading_env_cpu_avx2.cpp (-mavx2, Vec4d) inside their own namespaces. Groups of L envs load
// their structure-of-arrays state into vectors, run the shared account and reward maths, and
// store it back; prices are gathered per lane (each env sits at its own bar), and the rare
// episode ends and the observation rows are written per env.
// Requires: trading_env.h and env_obs.h included before.

template <typename V>
inline V load_lanes(const double* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V>
inline void store_lanes(double* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}
inline double lane_get(double v, int) { return v; }
template <typename V>
inline double lane_get(const V& v, int l) {
  return v[l];
}

template <typename V>
inline AccountStateT<V> load_account(const EnvBuffers& b, std::int64_t i) {
  AccountStateT<V> a;
  V* fields[kAccountFields] = {&a.cash,     &a.units,  &a.equity,           &a.peak,   &a.entry_equity,
                               &a.turnover, &a.position, &a.bars_in_position, &a.trades, &a.closed_trades,
                               &a.wins,     &a.bankrupt, &a.drawdown};
  for (int f = 0; f < kAccountFields; ++f) *fields[f] = load_lanes<V>(b.account[f] + i);
  return a;
}
template <typename V>
inline void store_account(const EnvBuffers& b, std::int64_t i, const AccountStateT<V>& a) {
  const V* fields[kAccountFields] = {&a.cash,     &a.units,  &a.equity,           &a.peak,   &a.entry_equity,
                                     &a.turnover, &a.position, &a.bars_in_position, &a.trades, &a.closed_trades,
                                     &a.wins,     &a.bankrupt, &a.drawdown};
  for (int f = 0; f < kAccountFields; ++f) store_lanes<V>(b.account[f] + i, *fields[f]);
}

// Steps envs [i, i + lanes) with lane type V.
template <typename V, typename A>
inline void step_group(const EnvBuffers& b, const A* actions, std::int64_t i) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(double));
  AccountStateT<V> a = load_account<V>(b, i);
  DsrStateT<V> dsr{load_lanes<V>(b.dsr_a + i), load_lanes<V>(b.dsr_b + i)};
  V act, next_open, next_close;
  if constexpr (L == 1) {
    act = static_cast<double>(actions[i]);
    next_open = b.open[b.bar[i] + 1];
    next_close = b.close[b.bar[i] + 1];
  } else {
    for (int l = 0; l < L; ++l) {
      act[l] = static_cast<double>(actions[i + l]);
      next_open[l] = b.open[b.bar[i + l] + 1];
      next_close[l] = b.close[b.bar[i + l] + 1];
    }
  }
  const V prev_drawdown = a.drawdown;
  const StepOutcomeT<V> o = account_step(a, act, next_open, next_close, b.config.costs);
  const V log_return = lane_log(a.equity / o.prev_equity);
  const RewardTermsT<V> rt = shape_reward(log_return, prev_drawdown, a.drawdown, o.traded, dsr, b.reward);
  store_account(b, i, a);
  store_lanes(b.dsr_a + i, dsr.a);
  store_lanes(b.dsr_b + i, dsr.b);
  store_lanes(b.terms[0] + i, rt.log_return);
  store_lanes(b.terms[1] + i, rt.drawdown_penalty);
  store_lanes(b.terms[2] + i, rt.turnover_penalty);
  store_lanes(b.terms[3] + i, rt.dsr);
  for (int l = 0; l < L; ++l) {
    const std::int64_t e = i + l;
    b.reward_out[e] = static_cast<float>(lane_get(rt.total, l));
    b.bar[e] += 1;
    b.episode_step[e] += 1;
    const bool term = lane_get(o.broke, l) > 0.5;
    const bool trunc = !term && b.episode_step[e] >= b.episode_len[e];
    b.terminated[e] = term;
    b.truncated[e] = trunc;
    b.episode_done[e] = term || trunc;
    if (term || trunc) {
      b.episode_return[e] = std::log(lane_get(a.equity, l));
      b.episode_length[e] = b.episode_step[e];
      if (b.final_obs != nullptr) obs::write_final_observation(b, e);
      obs::begin_episode(b, e);
    } else {
      obs::write_step_observation(b, e);
    }
  }
}

// Each env reads its own place in the market, thousands of separate streams that the hardware
// prefetcher cannot follow: fetch the market lines of the env kPrefetchAhead positions on.
constexpr std::int64_t kPrefetchAhead = 16;
inline void prefetch_market(const EnvBuffers& b, std::int64_t e) {
  const std::int64_t next = b.bar[e] + 1;
  __builtin_prefetch(b.features + next * b.n_features);
  __builtin_prefetch(b.open + next);
  __builtin_prefetch(b.close + next);
}

template <typename V, typename A>
inline void step_all(const EnvBuffers& b, const A* actions) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(double));
  const std::int64_t n = b.config.num_envs;
  for (std::int64_t e = 0; e < n && e < kPrefetchAhead; ++e) prefetch_market(b, e);
  std::int64_t i = 0;
  for (; i + L <= n; i += L) {
    for (int l = 0; l < L; ++l)
      if (i + l + kPrefetchAhead < n) prefetch_market(b, i + l + kPrefetchAhead);
    step_group<V>(b, actions, i);
  }
  for (; i < n; ++i) step_group<double>(b, actions, i);
}
