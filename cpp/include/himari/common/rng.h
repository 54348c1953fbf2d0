// Counter-based random numbers: a draw is a pure function of (seed, stream, counter), so the
// CPU and CUDA implementations produce identical episode starts without sharing any state.
#pragma once

#include <cstdint>

#include "himari/common/hd.h"

namespace himari {

// SplitMix64's finaliser: a bijective 64-bit mixer with good avalanche behaviour.
HIMARI_HD std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// One 64-bit draw for (seed, stream, counter). Each argument passes through the mixer before
// the next is folded in, so nearby seeds, envs and episodes give unrelated draws.
HIMARI_HD std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter) {
  std::uint64_t h = mix64(seed);
  h = mix64(h ^ (stream * 0xD1B54A32D192ED03ULL));
  h = mix64(h ^ (counter * 0x8CB92BA72F3D8DD7ULL));
  return h;
}

// Uniform integer in [0, n) for n >= 1 (modulo bias below 2^-40 for n < 2^24 bars).
HIMARI_HD std::uint64_t uniform_index(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter,
                                      std::uint64_t n) {
  return n <= 1 ? 0 : counter_hash(seed, stream, counter) % n;
}

}  // namespace himari
