// The element types an action (env step) or signal (backtest, replay) array may have: the one
// list that the CPU kernels, the CUDA kernels, the build without CUDA (cuda_stub.cpp) and the
// Python bindings instantiate and accept. Adding a type is one line here: the bindings derive
// their dtype checks, the dtype names in their error messages and himari._core.ACTION_DTYPES
// from this list.
#pragma once

#include <cstdint>

// Expands X(T) once per action element type T, in the order error messages name them.
#define HIMARI_FOR_EACH_ACTION_TYPE(X) \
  X(std::int8_t)                       \
  X(std::uint8_t)                      \
  X(std::int16_t)                      \
  X(std::int32_t)                      \
  X(std::int64_t)
