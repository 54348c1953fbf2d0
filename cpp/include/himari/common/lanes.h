// Lane types for the shared per-element maths. Each *_math.h function is a template over T:
// `double` on the CPU env and in CUDA kernels, or a GCC/Clang vector of doubles (Vec4d) in the
// CPU backtester, which then advances 4 accounts per instruction. Only IEEE-exact operations
// (+ - * / sqrt, comparisons, selects) are used, so every lane type rounds identically and the
// env and the backtester agree bit for bit.
#pragma once

#include <cmath>
#include <cstring>

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

#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define HIMARI_HAVE_VECTOR_LANES 1
typedef double Vec2d __attribute__((vector_size(16)));
static inline Vec2d lane_abs(Vec2d x) { return x < 0.0 ? -x : x; }
static inline Vec2d lane_sqrt(Vec2d x) { return Vec2d{std::sqrt(x[0]), std::sqrt(x[1])}; }
#if defined(__AVX__)  // only where 32-byte vectors are native (the AVX2 kernel's translation unit)
typedef double Vec4d __attribute__((vector_size(32)));
static inline Vec4d lane_abs(Vec4d x) { return x < 0.0 ? -x : x; }
static inline Vec4d lane_sqrt(Vec4d x) { return __builtin_ia32_sqrtpd256(x); }
#endif
#endif

// ---- log of a positive, finite, normal double, for every lane type ----------------------------
// The env's reward is a log per env per step; the C library's log is a call per lane that
// cannot vectorise. This is the classic fdlibm reduction (x = 2^k m, m in [sqrt(1/2), sqrt(2)),
// log(m) from s = f / (2 + f) and a degree-14 odd polynomial in s with fdlibm's published
// coefficients, k ln 2 in two parts), written branch-free. Error under 1 ulp, checked against
// std::log in tests/cpp/test_lanes.cpp. Inputs here are equity ratios (>= 1e-12), so zero,
// negative, subnormal, inf and NaN inputs need no handling. CUDA device code uses ::log.
namespace detail {
template <typename T>
struct IntLanes;
template <>
struct IntLanes<double> {
  using type = long long;
};
#if defined(HIMARI_HAVE_VECTOR_LANES)
typedef long long Vec2i __attribute__((vector_size(16)));
template <>
struct IntLanes<Vec2d> {
  using type = Vec2i;
};
#if defined(__AVX__)
typedef long long Vec4i __attribute__((vector_size(32)));
template <>
struct IntLanes<Vec4d> {
  using type = Vec4i;
};
#endif
#endif
template <typename To, typename From>
static inline To bit_cast_lanes(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit cast between equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}
}  // namespace detail

template <typename T>
static inline T log_positive(T x) {
  using I = typename detail::IntLanes<T>::type;
  const I bits = detail::bit_cast_lanes<I>(x);
  const I biased = (bits >> 52) & 0x7ff;
  T m = detail::bit_cast_lanes<T>((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // in [1, 2)
  // The exponent as a double without an int64 -> double conversion: 2^52 + e reinterpreted.
  T k = detail::bit_cast_lanes<T>(biased | 0x4330000000000000LL) - (4503599627370496.0 + 1023.0);
  const auto high = m > 1.4142135623730951;
  m = select(high, m * 0.5, m);
  k = select(high, k + 1.0, k);
  const T f = m - 1.0;
  const T s = f / (2.0 + f);
  const T z = s * s;
  const T w = z * z;
  const T t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const T t2 = z * (6.666666666666735130e-01 +
                    w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const T r = t2 + t1;
  const T hfsq = 0.5 * f * f;
  return k * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + r) + k * 1.90821492927058770002e-10)) - f);
}

// ---- exp, for every lane type --------------------------------------------------------------
// fdlibm's method again: k = round(x / ln 2) by the 1.5 * 2^52 trick (which also leaves k in the
// low bits), r = x - k ln 2 in two parts, exp(r) from fdlibm's rational approximation, times
// 2^k built in the exponent bits. Error under 1 ulp (tests/cpp/test_lanes.cpp). Valid for
// |x| < 700 (the EKF's arguments are log variances, |x| < 60); no overflow handling.
template <typename T>
static inline T exp_bounded(T x) {
  using I = typename detail::IntLanes<T>::type;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const T shifted = x * 1.44269504088896338700e+00 + shifter;
  const T k = shifted - shifter;
  const I k_bits = detail::bit_cast_lanes<I>(shifted) - detail::bit_cast_lanes<long long>(shifter);
  const T hi = x - k * 6.93147180369123816490e-01;
  const T lo = k * 1.90821492927058770002e-10;
  const T r = hi - lo;
  const T t = r * r;
  const T c = r - t * (1.66666666666666019037e-01 +
                       t * (-2.77777777770155933842e-03 +
                            t * (6.61375632143793436117e-05 +
                                 t * (-1.65339022054652515390e-06 + t * 4.13813679705723846039e-08))));
  const T y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
  const T scale = detail::bit_cast_lanes<T>((k_bits + 1023) << 52);
  return y * scale;
}

#if defined(__CUDACC__)
HIMARI_HD double lane_log(double x) { return ::log(x); }
HIMARI_HD double lane_exp(double x) { return ::exp(x); }
#else
template <typename T>
static inline T lane_log(T x) {
  return log_positive(x);
}
template <typename T>
static inline T lane_exp(T x) {
  return exp_bounded(x);
}
#endif

}  // namespace himari
