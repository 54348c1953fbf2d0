#include "himari/common/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace himari {

namespace {
CpuKernel detect() {
  CpuKernel best = CpuKernel::kBaseline;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) best = CpuKernel::kAvx2;
#endif
  const char* cap = std::getenv("HIMARI_CPU_KERNEL");
  if (cap != nullptr) {
    CpuKernel wanted = best;
    if (std::strcmp(cap, "baseline") == 0) wanted = CpuKernel::kBaseline;
    if (std::strcmp(cap, "avx2") == 0) wanted = CpuKernel::kAvx2;
    if (static_cast<int>(wanted) < static_cast<int>(best)) best = wanted;
  }
  return best;
}
}  // namespace

CpuKernel cpu_kernel() {
  static const CpuKernel kernel = detect();
  return kernel;
}

const char* cpu_kernel_name(CpuKernel kernel) {
  switch (kernel) {
    case CpuKernel::kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace himari
