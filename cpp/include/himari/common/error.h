// The one exception hierarchy of the native core. The bindings map these onto Python:
// InvalidArgument/ShapeError/DeviceError -> ValueError subclasses, CudaError/CudaUnavailable ->
// RuntimeError subclasses. Nothing that user input can reach aborts the process: every check
// throws one of these instead.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace himari {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value is out of its domain (NaN price, negative fee, unknown mode...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// An array has the wrong number of dimensions, extent, dtype or layout.
class ShapeError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// An array lives on the wrong device for the call.
class DeviceError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// A CUDA runtime call failed; the message carries the call text.
class CudaError : public Error {
 public:
  using Error::Error;
};

// CUDA was requested but this build (or machine) cannot provide it.
class CudaUnavailable : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

}  // namespace himari

// Throw InvalidArgument with the message when cond is false.
#define HIMARI_CHECK(cond, ...)                                                   \
  do {                                                                           \
    if (!(cond)) throw ::himari::InvalidArgument(::himari::detail::concat(__VA_ARGS__)); \
  } while (0)
