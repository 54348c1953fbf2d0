// Where an array or a computation lives.
#pragma once

#include <string>

namespace himari {

enum class DeviceKind : int { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;
};

// "cpu", "cuda", "cuda:1"; throws InvalidArgument otherwise.
Device parse_device(const std::string& text);
std::string format_device(const Device& device);

}  // namespace himari
