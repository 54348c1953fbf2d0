// Device arrays at the binding boundary, without linking any framework:
// - import: a torch CUDA tensor, CuPy array or anything with __cuda_array_interface__ (v2/v3) or
//   a CUDA __dlpack__ becomes a checked (pointer, dtype, shape, device) view for the call;
// - export: DeviceArray, a Python object over memory the core owns (env buffers, results) that
//   torch.from_dlpack / cupy.from_dlpack view without copying, kept alive by the capsule.
// Used only by cuda_bindings.cpp. Every failure names the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "array_interop.h"
#include "dtypes.h"
#include "himari/common/error.h"
#include "himari/cuda/api.h"

namespace himari::bind {

namespace py = pybind11;

// ---- the DLPack ABI (dlpack.h v0.8, the unversioned capsule every framework accepts) ----------
struct DLDevice {
  std::int32_t device_type;  // 1 CPU, 2 CUDA
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // 0 int, 1 uint, 2 float, 6 bool
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
constexpr std::int32_t kDLCPU = 1;
constexpr std::int32_t kDLCUDA = 2;


// A checked view of caller-owned device memory, valid for the duration of one call.
struct DeviceView {
  const void* data = nullptr;
  DType dtype = kOther;
  std::vector<std::int64_t> shape;
  int device = -1;
  std::string describe() const {
    std::string s = dtype_name(dtype) + " array of shape (";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")") + " on cuda:" + std::to_string(device);
  }
  std::int64_t size() const {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
  py::object keepalive;  // a consumed DLPack capsule, released with the view
};

// The DType of a __cuda_array_interface__ typestr or a DLPack dtype; kOther unless is_supported.
DType dtype_from_typestr(const std::string& typestr);
DType dtype_from_dlpack(const DLDataType& t);
std::size_t dtype_size(DType d);

// True when `obj` offers CUDA memory (__cuda_array_interface__, or __dlpack__ on a CUDA device).
bool is_device_array(const py::handle& obj);
// The view of `obj`; throws DeviceError when it is host memory or on another device than
// `device`, ShapeError when it is not C-contiguous. `stream` is the stream the call will use.
DeviceView device_view(const py::handle& obj, const char* name, int device, cuda::Stream stream);

// Registers DeviceArray on the module.
void register_device_array(py::module_& m);

// A DeviceArray over `data` (owned by `owner`, or kept alive through `parent`).
py::object make_device_array(void* data, DType dtype, std::vector<std::int64_t> shape, int device,
                             std::shared_ptr<void> owner, py::object parent);

}  // namespace himari::bind
