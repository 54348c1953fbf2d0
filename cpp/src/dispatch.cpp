// Device routing. The CUDA kernels of the env, backtester and EKF are added by the CUDA backend;
// until a kernel exists for a computation, asking for it on a CUDA device fails here with a
// clear message instead of silently running on the CPU.
#include "himari/dispatch.h"

#include "himari/common/build_info.h"
#include "himari/common/cpu_features.h"
#include "himari/common/error.h"

namespace himari {

void require_device(const Device& device) {
  if (device.kind == DeviceKind::kCpu) return;
  if (!cuda::compiled()) throw CudaUnavailable("device 'cuda': " + cuda::unavailable_reason());
  const int count = cuda::device_count();
  if (count == 0) throw CudaUnavailable("device '" + format_device(device) + "': " + cuda::unavailable_reason());
  if (device.index >= count)
    throw CudaUnavailable("device '" + format_device(device) + "': " + std::to_string(count) +
                          " CUDA device(s) visible");
}

bool cuda_compiled() { return cuda::compiled(); }
int cuda_device_count() { return cuda::device_count(); }

std::string build_summary() {
  std::string s = "C++17";
#if defined(__clang__)
  s += ", clang " __clang_version__;
#elif defined(__GNUC__)
  s += ", gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__);
#endif
  s += std::string(", CPU kernels ") + cpu_kernel_name(cpu_kernel());
  s += cuda::compiled() ? ", " + cuda::build_summary() + " compiled" : ", CUDA not compiled";
  return s;
}

}  // namespace himari
