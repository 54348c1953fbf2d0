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

#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define HIMARI_HAVE_VECTOR_LANES 1
typedef double Vec2d __attribute__((vector_size(16)));
inline Vec2d lane_abs(Vec2d x) { return x < 0.0 ? -x : x; }
#if defined(__AVX__)  // only where 32-byte vectors are native (the AVX2 kernel's translation unit)
typedef double Vec4d __attribute__((vector_size(32)));
inline Vec4d lane_abs(Vec4d x) { return x < 0.0 ? -x : x; }
#endif
#endif

}  // namespace himari
