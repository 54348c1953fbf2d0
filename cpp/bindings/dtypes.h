// Element types at the binding boundary (host arrays in array_interop.h, device arrays in
// device_arrays.h). A type is described the way numpy's array interface spells it, by kind and
// size, so its name, its __cuda_array_interface__ typestr and its DLPack code all follow from
// it; the action dtypes come from HIMARI_FOR_EACH_ACTION_TYPE, so adding one there is enough for
// the checks, the dispatch and the error messages here.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "himari/common/action_types.h"
#include "himari/common/error.h"

namespace himari::bind {

// kind: 'i' signed integer, 'u' unsigned integer, 'f' float, 'b' bool; 0 for a type the core
// does not take (the size is then meaningless).
struct DType {
  char kind = 0;
  std::uint8_t size = 0;
};

constexpr bool operator==(DType a, DType b) { return a.kind == b.kind && (a.kind == 0 || a.size == b.size); }
constexpr bool operator!=(DType a, DType b) { return !(a == b); }

// The DType of the C++ element type T.
template <typename T>
constexpr DType dtype_of() {
  static_assert(std::is_arithmetic_v<T>, "an element type is a number or bool");
  if constexpr (std::is_same_v<T, bool>) return {'b', 1};
  else if constexpr (std::is_floating_point_v<T>) return {'f', static_cast<std::uint8_t>(sizeof(T))};
  else if constexpr (std::is_signed_v<T>) return {'i', static_cast<std::uint8_t>(sizeof(T))};
  else return {'u', static_cast<std::uint8_t>(sizeof(T))};
}

constexpr DType kOther{};
constexpr DType kBool = dtype_of<bool>();
constexpr DType kFloat32 = dtype_of<float>();
constexpr DType kFloat64 = dtype_of<double>();
constexpr DType kInt64 = dtype_of<std::int64_t>();

// Whether `d` is one of the action element types (HIMARI_FOR_EACH_ACTION_TYPE).
constexpr bool is_action(DType d) {
#define HIMARI_MATCH(T) \
  if (d == dtype_of<T>()) return true;
  HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_MATCH)
#undef HIMARI_MATCH
  return false;
}

// Whether arrays of `d` may cross the boundary at all: actions, prices and the core's buffers.
constexpr bool is_supported(DType d) { return is_action(d) || d == kFloat32 || d == kFloat64 || d == kBool; }

// numpy's name of `d` ("int8", "float32", "bool").
inline std::string dtype_name(DType d) {
  const std::string bits = std::to_string(8 * d.size);
  switch (d.kind) {
    case 'b': return "bool";
    case 'i': return "int" + bits;
    case 'u': return "uint" + bits;
    case 'f': return "float" + bits;
    default: return "an unsupported dtype";
  }
}

// The names of the action dtypes, in the order of HIMARI_FOR_EACH_ACTION_TYPE
// (himari._core.ACTION_DTYPES).
inline std::vector<std::string> action_dtype_names() {
  std::vector<std::string> names;
#define HIMARI_NAME(T) names.push_back(dtype_name(dtype_of<T>()));
  HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_NAME)
#undef HIMARI_NAME
  return names;
}

// The action dtypes as error messages list them: "int8, uint8, int16, int32 or int64".
inline const std::string& action_dtypes_text() {
  static const std::string text = [] {
    const std::vector<std::string> names = action_dtype_names();
    std::string s;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (i > 0) s += i + 1 == names.size() ? " or " : ", ";
      s += names[i];
    }
    return s;
  }();
  return text;
}

// Calls fn(static_cast<const T*>(data)) with T the action element type of `dtype`.
template <typename Fn>
void with_action_type(DType dtype, const void* data, Fn&& fn) {
#define HIMARI_CASE(T)                   \
  if (dtype == dtype_of<T>()) {          \
    fn(static_cast<const T*>(data));     \
    return;                              \
  }
  HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_CASE)
#undef HIMARI_CASE
  throw ShapeError("expected an integer array");
}

}  // namespace himari::bind
