// Batched EKF over B independent price series (docs/ekf.md).
#pragma once

#include <cstdint>

#include "himari/filters/ekf_params.h"

namespace himari {

void validate_ekf_params(const EkfParams& params);

// prices: [B, T] positive and finite (checked by the caller). states: [B, T, 4];
// innovations: [B, T, 2] or nullptr.
template <typename P>
void ekf_cpu(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
             double* innovations);

}  // namespace himari
