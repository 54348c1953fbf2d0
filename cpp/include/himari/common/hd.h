// HIMARI_HD marks per-element maths that must compile for both the host and a CUDA device.
// Under nvcc it expands to __host__ __device__; in plain C++ to `static inline`. Internal
// linkage matters: the same maths is compiled for the baseline ISA and, in other translation
// units, for AVX2; with ordinary inline linkage the linker could keep the AVX2 copy for
// everyone and crash a CPU without AVX2.
#pragma once

#if defined(__CUDACC__)
#define HIMARI_HD static __host__ __device__ __forceinline__
#else
#define HIMARI_HD static inline
#endif

// The same for member functions, which cannot be static: they keep C++'s inline linkage, so a
// header whose types use it must stay out of the AVX2 translation units (chunked_scan.h is
// compiled for the baseline ISA only).
#if defined(__CUDACC__)
#define HIMARI_HD_METHOD __host__ __device__ __forceinline__
#else
#define HIMARI_HD_METHOD inline
#endif

// A member function kept out of line on the device: a rare, large path (a fill, a held run's
// queries) called from a loop that is unrolled, so that the loop's copies share one body.
#if defined(__CUDACC__)
#define HIMARI_HD_METHOD_OUTLINED __host__ __device__ __noinline__
#else
#define HIMARI_HD_METHOD_OUTLINED inline
#endif
