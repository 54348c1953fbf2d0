// CUDA build: device discovery. A missing driver or device is not an error here: it means
// "no device", so cuda_available() is False on a machine without a GPU.
#include <cuda_runtime.h>

#include "himari/dispatch.h"

namespace himari::cuda {

bool compiled() { return true; }

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return count;
}

}  // namespace himari::cuda
