// HIMARI_HD marks per-element maths that must compile for both the host and a CUDA device.
// Under nvcc it expands to __host__ __device__; in plain C++ it is empty, so these headers
// never need a CUDA header to be read by a host compiler.
#pragma once

#if defined(__CUDACC__)
#define HIMARI_HD __host__ __device__ __forceinline__
#else
#define HIMARI_HD inline
#endif
