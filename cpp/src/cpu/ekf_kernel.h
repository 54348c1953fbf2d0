// The CPU EKF over lanes, included by ekf_cpu.cpp (baseline ISA, Vec2d) and ekf_cpu_avx2.cpp
// (-mavx2, Vec4d) inside their own namespaces. One filter is a strict chain of dependent steps
// (each bar waits for the previous exp, log and divisions), so the only parallelism is across
// series: L series advance together, one per vector lane.
// Requires: ekf.h and ekf_math.h included before.

template <typename V>
inline double lane_at(const V& v, int l) {
  return v[l];
}
inline double lane_at(double v, int) { return v; }

template <typename V, typename P>
void filter_group(const P* prices, std::int64_t b0, std::int64_t n_bars, const EkfParams& params, double* states,
                  double* innovations) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(double));
  auto price_at = [&](std::int64_t t) {
    V v;
    if constexpr (L == 1) {
      v = static_cast<double>(prices[b0 * n_bars + t]);
    } else {
      for (int l = 0; l < L; ++l) v[l] = static_cast<double>(prices[(b0 + l) * n_bars + t]);
    }
    return v;
  };
  EkfStateT<V> s;
  V prev_log = ekf_log(price_at(0));
  ekf_init(s, prev_log, params);
  V innov[2];
  for (std::int64_t t = 0; t < n_bars; ++t) {
    const V y = ekf_log(price_at(t));
    if (t > 0) ekf_predict(s, params);
    ekf_update(s, y, y - prev_log, params.use_volatility_obs && t > 0, params, innov);
    prev_log = y;
    for (int l = 0; l < L; ++l) {
      double* out = states + ((b0 + l) * n_bars + t) * kEkfStates;
      for (int i = 0; i < kEkfStates; ++i) out[i] = lane_at(s.x[i], l);
      if (innovations != nullptr) {
        double* inn = innovations + ((b0 + l) * n_bars + t) * 2;
        inn[0] = lane_at(innov[0], l);
        inn[1] = lane_at(innov[1], l);
      }
    }
  }
}

template <typename V, typename P>
void filter_all(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
                double* innovations) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(double));
  std::int64_t b = 0;
  for (; b + L <= batch; b += L) filter_group<V>(prices, b, n_bars, params, states, innovations);
  for (; b < batch; ++b) filter_group<double>(prices, b, n_bars, params, states, innovations);
}
