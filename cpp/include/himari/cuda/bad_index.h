// Where a kernel reports bad input without stopping: one device word holding the lowest flat
// index of a bad element (kernels atomicMin into it), read by the host when it next waits anyway.
// Used by the env (actions), the backtester (signals) and the EKF (prices).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "himari/cuda/api.h"

namespace himari::cuda {

class BadIndex {
 public:
  BadIndex(int device, Stream stream);
  // The device pointer the kernels atomicMin into.
  unsigned long long* get() const { return static_cast<unsigned long long*>(word_.get()); }
  // Waits for `stream`; the recorded index, if any, after which the word is clear again.
  std::optional<unsigned long long> take(Stream stream);

 private:
  void clear(Stream stream);
  int device_;
  std::shared_ptr<void> word_;
};

}  // namespace himari::cuda
