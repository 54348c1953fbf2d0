// CUDA runtime plumbing of the backend: device discovery, memory, copies and pointer checks.
// A missing driver or device is not an error for discovery: it means "no device", so
// cuda_available() is False on a machine without a GPU.
#include <cuda_runtime.h>

#include <string>

#include "check.cuh"
#include "himari/cuda/api.h"
#include "himari/dispatch.h"

namespace himari::cuda {

namespace detail {
DeviceGuard::DeviceGuard(int device) {
  HIMARI_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) HIMARI_CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
}
}  // namespace detail

namespace {
cudaStream_t as_stream(Stream s) { return reinterpret_cast<cudaStream_t>(s); }
}  // namespace

bool compiled() { return true; }

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error so later calls start clean
    return 0;
  }
  return count;
}

std::string build_summary() {
#ifndef HIMARI_CUDA_ARCHITECTURES
#define HIMARI_CUDA_ARCHITECTURES "?"
#endif
  return "CUDA " + std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10) +
         " (architectures " HIMARI_CUDA_ARCHITECTURES ")";
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaSuccess) return count > 0 ? std::string() : std::string("no CUDA device is visible");
  cudaGetLastError();
  std::string reason = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  const std::string runtime =
      std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
  if (err == cudaErrorInsufficientDriver)
    reason += " (no NVIDIA driver was found, or it is older than this build's CUDA " + runtime +
              "; install or update the NVIDIA driver)";
  else if (err == cudaErrorNoDevice)
    reason += " (the NVIDIA driver sees no GPU; check CUDA_VISIBLE_DEVICES)";
  return reason;
}

void require(int device) {
  const int count = device_count();
  if (device < 0 || device >= count)
    throw CudaUnavailable("device 'cuda:" + std::to_string(device) + "': " + std::to_string(count) +
                          " CUDA device(s) visible");
}

std::shared_ptr<void> allocate(std::size_t bytes, int device) {
  require(device);
  detail::DeviceGuard guard(device);
  void* p = nullptr;
  HIMARI_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  return std::shared_ptr<void>(p, [device](void* q) {
    int previous = -1;
    cudaGetDevice(&previous);
    cudaSetDevice(device);
    cudaFree(q);  // a destructor must not throw; a failure here would also have failed earlier calls
    cudaSetDevice(previous);
  });
}

void copy_to_device(void* dst, const void* src, std::size_t bytes, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  HIMARI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
  HIMARI_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void copy_to_host(void* dst, const void* src, std::size_t bytes, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  HIMARI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
  HIMARI_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void fill_zero(void* dst, std::size_t bytes, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  HIMARI_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, as_stream(stream)));
}

int pointer_device(const void* ptr) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

void check_device_pointer(const void* ptr, int device, const char* name) {
  if (ptr == nullptr) throw DeviceError(std::string(name) + ": expected device memory, got a null pointer");
  const int owner = pointer_device(ptr);
  if (owner < 0)
    throw DeviceError(std::string(name) + ": expected memory of cuda:" + std::to_string(device) +
                      ", got a pointer that is not CUDA device memory");
  if (owner != device)
    throw DeviceError(std::string(name) + ": expected memory of cuda:" + std::to_string(device) + ", got memory of cuda:" +
                      std::to_string(owner));
}

void synchronize(int device, Stream stream) {
  detail::DeviceGuard guard(device);
  HIMARI_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

}  // namespace himari::cuda
