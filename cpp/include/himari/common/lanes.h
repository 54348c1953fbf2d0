// Lane types for the shared per-element maths. Each *_math.h function is a template over T:
// `double` on the CPU env and in CUDA kernels, or a GCC/Clang vector of doubles (Vec4d) in the
// CPU backtester, which then advances 4 accounts per instruction. Only IEEE-exact operations
// (+ - * / sqrt, comparisons, selects) are used, so every lane type rounds identically and the
// env and the backtester agree bit for bit.
#pragma once

#include <cmath>

#include "himari/common/hd.h"

namespace himari {

// x broadcast to every lane of T (for double, x itself).
template <typename T>
HIMARI_HD T splat(double x) {
  return T{} + x;
}

// cond ? a : b, lane by lane. Conditions come from ordered comparisons of T.
template <typename M, typename T>
HIMARI_HD T select(M cond, T a, T b) {
  return cond ? a : b;
}

HIMARI_HD double lane_abs(double x) { return std::fabs(x); }
HIMARI_HD double lane_sqrt(double x) { return std::sqrt(x); }
HIMARI_HD double lane_log(double x) { return std::log(x); }

#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define HIMARI_HAVE_VECTOR_LANES 1
typedef double Vec2d __attribute__((vector_size(16)));
static inline Vec2d lane_abs(Vec2d x) { return x < 0.0 ? -x : x; }
static inline Vec2d lane_sqrt(Vec2d x) { return Vec2d{std::sqrt(x[0]), std::sqrt(x[1])}; }
static inline Vec2d lane_log(Vec2d x) { return Vec2d{std::log(x[0]), std::log(x[1])}; }
#if defined(__AVX__)  // only where 32-byte vectors are native (the AVX2 kernel's translation unit)
typedef double Vec4d __attribute__((vector_size(32)));
static inline Vec4d lane_abs(Vec4d x) { return x < 0.0 ? -x : x; }
static inline Vec4d lane_sqrt(Vec4d x) { return __builtin_ia32_sqrtpd256(x); }
static inline Vec4d lane_log(Vec4d x) { return Vec4d{std::log(x[0]), std::log(x[1]), std::log(x[2]), std::log(x[3])}; }
#endif
#endif

}  // namespace himari
