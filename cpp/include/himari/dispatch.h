// The one place that routes a computation to the CPU or the CUDA implementation by device.
#pragma once

#include <cstdint>

#include "himari/backtest/backtest.h"
#include "himari/common/device.h"
#include "himari/cuda/api.h"
#include "himari/filters/ekf.h"

namespace himari {

// Throws CudaUnavailable (with a rebuild hint) when `device` is CUDA and this build or machine
// cannot run CUDA kernels; returns normally for the CPU.
void require_device(const Device& device);


}  // namespace himari
