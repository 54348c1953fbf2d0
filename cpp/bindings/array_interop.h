// Checks that turn Python arrays into raw pointers for the core, and never convert silently.
// Used only by module.cpp. Every failure throws a himari exception naming the argument, what
// was expected and what was got.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dtypes.h"
#include "himari/common/error.h"

namespace himari::bind {

namespace py = pybind11;

inline std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string dtype_text(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string describe(const py::array& a) { return dtype_text(a) + " array of shape " + shape_text(a); }

// Any object numpy can view (numpy arrays, torch CPU tensors via __array__, lists) as an array,
// without changing its dtype.
inline py::array as_array(const py::handle& obj, const char* name) {
  if (obj.is_none()) throw ShapeError(std::string(name) + ": expected an array, got None");
  py::array arr = py::array::ensure(obj);
  if (!arr)
    throw ShapeError(std::string(name) + ": expected an array, got " +
                     py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  return arr;
}

inline bool is_c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

// `a` itself when C-contiguous, else a C-contiguous copy (a strided view is copied once). The
// copy can fail for lack of memory (a broadcast view of 2**36 elements takes none until copied):
// pybind11 then returns an empty handle and clears numpy's error, so the failure is raised here
// as MemoryError instead of the core reading through an empty array.
inline py::array c_contiguous(py::array a, const char* name) {
  if (is_c_contiguous(a)) return a;
  py::array copy = py::array::ensure(a, py::array::c_style);
  if (!copy) {
    const std::string what = std::string(name) + ": cannot make a C-contiguous copy of the strided " + describe(a) +
                             " (not enough memory)";
    PyErr_SetString(PyExc_MemoryError, what.c_str());
    throw py::error_already_set();
  }
  return copy;
}

inline void require_c_contiguous(const py::array& a, const char* name) {
  if (!is_c_contiguous(a))
    throw ShapeError(std::string(name) + ": expected a C-contiguous array, got a strided " + describe(a) +
                     " (use numpy.ascontiguousarray)");
}

// Whether `d` is the dtype of T, by value (numpy's PyArray_EquivTypes: kind, size and byte
// order): an unpickled array, for one, carries its own descriptor object, so identity with
// dtype::of<T>() is not enough.
template <typename T>
inline bool has_dtype(const py::dtype& d) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(d.ptr(), py::dtype::of<T>().ptr());
}

inline bool is_float(const py::array& a) {
  return has_dtype<double>(a.dtype()) || has_dtype<float>(a.dtype());
}

// numpy reports native order as '=' ('|' where order does not apply); an explicit '<' or '>'
// is native only when it matches the host. Read from the dtype struct, not a Python attribute:
// this runs on every env step.
inline bool native_byte_order(const py::dtype& d) {
  const char order = d.byteorder();
  if (order == '=' || order == '|') return true;
  const std::uint16_t probe = 1;
  const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
  return order == (little ? '<' : '>');
}

// The action DType of a host array (native byte order), else kOther (bool is not an action).
inline DType action_dtype(const py::array& a) {
  const py::dtype d = a.dtype();
  if (d.kind() == 'b' || !native_byte_order(d)) return kOther;
#define HIMARI_MATCH(T) \
  if (has_dtype<T>(d)) return dtype_of<T>();
  HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_MATCH)
#undef HIMARI_MATCH
  return kOther;
}

// A price must be finite and positive, and a normal double: the account divides by prices, and
// 1 / p overflows to inf below about 5.6e-309, which then turned equity into NaN without an error.
// `i` is its index, for the message.
inline void check_price(double v, const char* name, std::size_t i) {
  if (!(std::isfinite(v) && v >= std::numeric_limits<double>::min())) {
    std::ostringstream text;
    text << name << ": expected finite prices > 0 (at least " << std::numeric_limits<double>::min() << "), got "
         << v << " at index " << i;
    throw InvalidArgument(text.str());
  }
}

// Reads a 1-D float32/float64 array of prices into doubles, checking finiteness and sign.
inline std::vector<double> read_prices(const py::handle& obj, const char* name) {
  py::array a = as_array(obj, name);
  if (a.ndim() != 1 || !is_float(a))
    throw ShapeError(std::string(name) + ": expected a 1-D float32 or float64 array, got " + describe(a));
  const auto n = static_cast<std::size_t>(a.shape(0));
  std::vector<double> out(n);
  const py::ssize_t stride = a.strides(0);
  const auto* base = static_cast<const char*>(a.data());
  const bool f64 = has_dtype<double>(a.dtype());
  for (std::size_t i = 0; i < n; ++i) {
    const char* p = base + static_cast<py::ssize_t>(i) * stride;
    const double v = f64 ? *reinterpret_cast<const double*>(p) : *reinterpret_cast<const float*>(p);
    check_price(v, name, i);
    out[i] = v;
  }
  return out;
}

// Prices for one call: read in place when they already are a contiguous float64 array (no copy,
// so a long series costs no fresh allocation and page faults per call), else converted into
// `copy`. Either way every value is checked as read_prices checks it.
struct PriceInput {
  py::array keep;            // the caller's array, held while `data` points into it
  std::vector<double> copy;  // the converted values when they could not be read in place
  const double* data = nullptr;
  std::size_t size = 0;
};

inline PriceInput price_input(const py::handle& obj, const char* name) {
  PriceInput in;
  py::array a = as_array(obj, name);
  if (a.ndim() == 1 && has_dtype<double>(a.dtype()) && (a.shape(0) < 2 || a.strides(0) == sizeof(double)) &&
      reinterpret_cast<std::uintptr_t>(a.data()) % alignof(double) == 0) {
    const auto* p = static_cast<const double*>(a.data());
    const auto n = static_cast<std::size_t>(a.shape(0));
    for (std::size_t i = 0; i < n; ++i) check_price(p[i], name, i);
    in.keep = a;
    in.data = p;
    in.size = n;
    return in;
  }
  in.copy = read_prices(a, name);
  in.data = in.copy.data();
  in.size = in.copy.size();
  return in;
}

// A non-owning numpy view of native memory, kept alive by `owner`.
template <typename T>
py::array view(T* data, std::vector<py::ssize_t> shape, py::handle owner, bool writeable = false) {
  py::array_t<T> arr(shape, data, owner);
  if (!writeable) py::detail::array_proxy(arr.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(arr);
}

}  // namespace himari::bind
