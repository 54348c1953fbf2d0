#include "himari/common/device.h"

#include <cstdlib>

#include "himari/common/error.h"

namespace himari {

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device{DeviceKind::kCpu, 0};
  if (text == "cuda") return Device{DeviceKind::kCuda, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string idx = text.substr(5);
    HIMARI_CHECK(idx.find_first_not_of("0123456789") == std::string::npos && idx.size() <= 4,
                 "device: expected 'cpu', 'cuda' or 'cuda:N', got '", text, "'");
    return Device{DeviceKind::kCuda, std::atoi(idx.c_str())};
  }
  throw InvalidArgument("device: expected 'cpu', 'cuda' or 'cuda:N', got '" + text + "'");
}

std::string format_device(const Device& device) {
  return device.kind == DeviceKind::kCpu ? std::string("cpu") : "cuda:" + std::to_string(device.index);
}

}  // namespace himari
