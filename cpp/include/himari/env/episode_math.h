// Episode starts and lengths, shared by the CPU env and the CUDA kernels so both draw the same
// starts from the counter-based RNG.
#pragma once

#include <cstdint>

#include "himari/common/hd.h"
#include "himari/common/rng.h"

namespace himari {

// Number of account state columns appended to each observation row.
constexpr std::int64_t kAccountColumns = 4;

struct EpisodeBounds {
  std::int64_t start_min;  // first admissible start bar
  std::int64_t start_max;  // last start bar that still allows a full-length episode
};

// start_min = max(warmup, window - 1); start_max = max(start_min, T - 1 - L).
HIMARI_HD EpisodeBounds episode_bounds(std::int64_t n_bars, std::int64_t window, std::int64_t warmup,
                                       std::int64_t episode_length) {
  EpisodeBounds b;
  b.start_min = warmup > window - 1 ? warmup : window - 1;
  const std::int64_t full = n_bars - 1 - episode_length;
  b.start_max = full > b.start_min ? full : b.start_min;
  return b;
}

HIMARI_HD std::int64_t episode_start(const EpisodeBounds& b, bool random_start, std::uint64_t seed,
                                     std::uint64_t env_index, std::uint64_t episode_index) {
  if (!random_start) return b.start_min;
  const auto span = static_cast<std::uint64_t>(b.start_max - b.start_min + 1);
  return b.start_min + static_cast<std::int64_t>(uniform_index(seed, env_index, episode_index, span));
}

// Steps in an episode starting at `start`: it ends after episode_length steps or at the last
// bar that still has a next bar to fill at.
HIMARI_HD std::int64_t episode_steps(std::int64_t n_bars, std::int64_t start, std::int64_t episode_length) {
  const std::int64_t left = n_bars - 1 - start;
  return left < episode_length ? left : episode_length;
}

}  // namespace himari
