// The CPU backtest kernel, included by backtest_cpu.cpp (baseline ISA) and by
// backtest_cpu_avx2.cpp (compiled with -mavx2), each inside its own namespace.
//
// Layout: strategies in blocks of kBlock; time in chunks of kChunk bars. Within a chunk each
// group of L strategies (L = lanes of V) keeps its whole account state in vector registers for
// all kChunk bars, so the state is loaded and stored once per chunk, not once per bar, while
// the chunk's signals (kChunk x kBlock bytes) stay in L1 across the groups of the block.
// Requires: himari/backtest/backtest.h, account_math.h, backtest_math.h included before.

constexpr std::int64_t kBlock = 64;
constexpr std::int64_t kChunk = 256;

inline double lane_of(double v, int) { return v; }
template <typename V>
inline double lane_of(const V& v, int l) {
  return v[l];
}

template <typename V>
constexpr int lanes() {
  return static_cast<int>(sizeof(V) / sizeof(double));
}

// Scalar (lane l) copies of a vector state, for finalising metrics.
template <typename V>
AccountState account_lane(const AccountStateT<V>& a, int l) {
  return AccountState{lane_of(a.cash, l), lane_of(a.units, l), lane_of(a.equity, l), lane_of(a.peak, l),
                      lane_of(a.entry_equity, l), lane_of(a.turnover, l), lane_of(a.position, l),
                      lane_of(a.bars_in_position, l), lane_of(a.trades, l), lane_of(a.closed_trades, l),
                      lane_of(a.wins, l), lane_of(a.bankrupt, l), lane_of(a.drawdown, l)};
}
template <typename V>
MetricAccumulator metrics_lane(const MetricAccumulatorT<V>& m, int l) {
  return MetricAccumulator{lane_of(m.sum, l), lane_of(m.sum_sq, l), lane_of(m.down_sq, l), lane_of(m.max_dd, l),
                           lane_of(m.exposed, l)};
}

// Runs `groups` groups of L = lanes<V>() strategies starting at strategy m0.
template <typename V, typename A>
void run_groups(const BacktestInputs& in, const A* signals, std::int64_t m0, std::int64_t groups, Metrics* metrics,
                double* equity) {
  constexpr int L = lanes<V>();
  const std::int64_t m_total = in.n_strategies;
  const CostConfig costs = in.costs;  // a local copy: loads from it cannot alias the state
  AccountStateT<V> states[kBlock];
  MetricAccumulatorT<V> accs[kBlock];
  for (std::int64_t g = 0; g < groups; ++g) {
    states[g] = AccountStateT<V>{};
    accs[g] = MetricAccumulatorT<V>{};
  }
  if (equity != nullptr)
    for (std::int64_t j = 0; j < groups * L; ++j) equity[m0 + j] = 1.0;
  const std::int64_t steps = in.n_bars - 1;
  for (std::int64_t t0 = 0; t0 < steps; t0 += kChunk) {
    const std::int64_t t1 = t0 + kChunk < steps ? t0 + kChunk : steps;
    for (std::int64_t g = 0; g < groups; ++g) {
      AccountStateT<V> a = states[g];
      MetricAccumulatorT<V> acc = accs[g];
      const A* col = signals + m0 + g * L;
      for (std::int64_t t = t0; t < t1; ++t) {
        V act;
        if constexpr (L == 1) {
          act = static_cast<double>(col[t * m_total]);
        } else {
          for (int l = 0; l < L; ++l) act[l] = static_cast<double>(col[t * m_total + l]);
        }
        const StepOutcomeT<V> o =
            account_step(a, act, splat<V>(in.open[t + 1]), splat<V>(in.close[t + 1]), costs);
        accumulate(acc, o.prev_equity, a.equity, a.drawdown, a.position);
        if (equity != nullptr) {
          double* out = equity + (t + 1) * m_total + m0 + g * L;
          for (int l = 0; l < L; ++l) out[l] = lane_of(a.equity, l);
        }
      }
      states[g] = a;
      accs[g] = acc;
    }
  }
  const double n = static_cast<double>(steps);
  for (std::int64_t g = 0; g < groups; ++g)
    for (int l = 0; l < L; ++l) {
      const AccountState a = account_lane(states[g], l);
      metrics[m0 + g * L + l] = finalize_metrics(metrics_lane(accs[g], l), a.equity, a.turnover, a.trades,
                                                 a.closed_trades, a.wins, n, in.bars_per_year);
    }
}

// Strategies [m_begin, m_end): full vector groups, then the remainder one lane at a time. A
// strategy's numbers do not depend on the range it is run in (the lanes of a vector and a scalar
// round alike), so threads may split the strategies anywhere.
template <typename V, typename A>
void run_range(const BacktestInputs& in, const A* signals, std::int64_t m_begin, std::int64_t m_end, Metrics* metrics,
               double* equity) {
  constexpr int L = lanes<V>();
  for (std::int64_t m0 = m_begin; m0 < m_end; m0 += kBlock) {
    const std::int64_t nb = m_end - m0 < kBlock ? m_end - m0 : kBlock;
    const std::int64_t groups = nb / L;
    if (groups > 0) run_groups<V>(in, signals, m0, groups, metrics, equity);
    if (nb % L != 0) run_groups<double>(in, signals, m0 + groups * L, nb % L, metrics, equity);
  }
}
