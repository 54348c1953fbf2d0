// What this build of the native core contains, for `himari info` and cuda_available().
#pragma once

#include <string>

namespace himari {

// True when the CUDA sources were compiled into this build.
bool cuda_compiled();
// Number of visible CUDA devices; 0 without CUDA support or without a driver/device.
int cuda_device_count();
// Human-readable build flags (compiler, CUDA on/off).
std::string build_summary();

}  // namespace himari
