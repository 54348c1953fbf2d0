// Error checking for every CUDA runtime call and kernel launch of the backend: a failure
// becomes a himari::CudaError whose message carries the call text, the error name and string.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "himari/common/error.h"

namespace himari::cuda::detail {

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                  ") at " + file + ":" + std::to_string(line));
}

// Makes `device` current for the scope and restores the caller's device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace himari::cuda::detail

#define HIMARI_CUDA_CHECK(call)                                                                    \
  do {                                                                                            \
    const cudaError_t himari_err_ = (call);                                                       \
    if (himari_err_ != cudaSuccess) ::himari::cuda::detail::throw_cuda(himari_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a launch: a bad configuration surfaces from cudaGetLastError at once (checked here, named
// by the kernel); a fault during execution surfaces at the next synchronising call, also checked.
#define HIMARI_CUDA_CHECK_LAUNCH(kernel_name)                                                      \
  do {                                                                                            \
    const cudaError_t himari_err_ = cudaGetLastError();                                           \
    if (himari_err_ != cudaSuccess)                                                               \
      ::himari::cuda::detail::throw_cuda(himari_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
