// Which vector kernels the CPU code may use. The baseline build runs everywhere; the AVX2 build
// of the same kernels is picked at run time when the CPU has it. HIMARI_CPU_KERNEL=baseline|avx2
// caps the choice (for tests that check every build agrees, and to compare their speed).
#pragma once

namespace himari {

enum class CpuKernel : int { kBaseline = 0, kAvx2 = 1 };

// The best kernel this CPU supports, capped by HIMARI_CPU_KERNEL (read once).
CpuKernel cpu_kernel();
const char* cpu_kernel_name(CpuKernel kernel);

}  // namespace himari
