// DLPack / __cuda_array_interface__ import and DLPack export (see device_arrays.h).
#include "device_arrays.h"

#include <pybind11/stl.h>

namespace himari::bind {

namespace {

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";

std::string type_name(const py::handle& obj) {
  return py::str(py::type::of(obj).attr("__name__")).cast<std::string>();
}

bool c_contiguous(const std::vector<std::int64_t>& shape, const std::int64_t* strides_elems) {
  if (strides_elems == nullptr) return true;
  std::int64_t expect = 1;
  for (std::size_t k = shape.size(); k-- > 0;) {
    if (shape[k] != 1 && strides_elems[k] != expect) return false;
    expect *= shape[k];
  }
  return true;
}

// The stream a __cuda_array_interface__ v3 producer last wrote on (None: nothing to wait for).
// A producer stream other than the call's stream is waited for, so the call never reads
// memory a kernel on another stream is still writing.
void wait_for_producer(const py::dict& cai, int device, cuda::Stream stream) {
  if (!cai.contains("stream") || cai["stream"].is_none()) return;
  auto producer = cai["stream"].cast<std::uintptr_t>();
  if (producer == 1 || producer == 2) producer = 0;  // legacy / per-thread default stream
  if (producer != stream) cuda::synchronize(device, producer);
}

DeviceView from_cai(const py::handle& obj, const char* name, int device, cuda::Stream stream) {
  py::dict cai = obj.attr("__cuda_array_interface__");
  DeviceView v;
  v.data = reinterpret_cast<const void*>(py::tuple(cai["data"])[0].cast<std::uintptr_t>());
  for (auto e : py::tuple(cai["shape"])) v.shape.push_back(e.cast<std::int64_t>());
  v.dtype = dtype_from_typestr(cai["typestr"].cast<std::string>());
  if (cai.contains("strides") && !cai["strides"].is_none() && v.dtype != kOther) {
    std::vector<std::int64_t> elems;
    for (auto e : py::tuple(cai["strides"])) elems.push_back(e.cast<std::int64_t>() / static_cast<std::int64_t>(dtype_size(v.dtype)));
    if (!c_contiguous(v.shape, elems.data()))
      throw ShapeError(std::string(name) + ": expected a C-contiguous array, got a strided " + type_name(obj) +
                       " (call .contiguous())");
  }
  if (v.size() > 0) {
    v.device = cuda::pointer_device(v.data);
    if (v.device < 0)
      throw DeviceError(std::string(name) + ": __cuda_array_interface__ of " + type_name(obj) +
                        " points at memory that is not CUDA device memory");
  } else {
    v.device = device;
  }
  wait_for_producer(cai, device, stream);
  return v;
}

void release_used_capsule(PyObject* capsule) {
  // A consumed capsule (renamed) is released by its consumer, i.e. by DeviceView's keepalive.
  if (PyCapsule_IsValid(capsule, kUsedCapsuleName)) {
    auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kUsedCapsuleName));
    if (t != nullptr && t->deleter != nullptr) t->deleter(t);
  }
}

DeviceView from_dlpack(const py::handle& obj, const char* name, cuda::Stream stream) {
  // Per the DLPack protocol the consumer names its stream; 1 is the legacy default stream.
  py::object capsule = obj.attr("__dlpack__")(py::arg("stream") = stream == 0 ? std::uintptr_t{1} : stream);
  if (!PyCapsule_IsValid(capsule.ptr(), kCapsuleName))
    throw ShapeError(std::string(name) + ": __dlpack__ of " + type_name(obj) + " did not return a DLPack capsule");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kCapsuleName));
  PyCapsule_SetName(capsule.ptr(), kUsedCapsuleName);
  // The view owns the capsule now: its deleter runs when the view is dropped.
  py::object owner = py::reinterpret_steal<py::object>(PyCapsule_New(managed, kUsedCapsuleName, release_used_capsule));
  const DLTensor& t = managed->dl_tensor;
  DeviceView v;
  v.keepalive = owner;
  v.data = static_cast<const char*>(t.data) + t.byte_offset;
  v.shape.assign(t.shape, t.shape + t.ndim);
  v.dtype = dtype_from_dlpack(t.dtype);
  v.device = t.device.device_id;
  if (t.device.device_type != kDLCUDA)
    throw DeviceError(std::string(name) + ": expected a CUDA array, got DLPack device type " +
                      std::to_string(t.device.device_type));
  if (!c_contiguous(v.shape, t.strides))
    throw ShapeError(std::string(name) + ": expected a C-contiguous array, got a strided " + type_name(obj) +
                     " (call .contiguous())");
  return v;
}

// ---- export ---------------------------------------------------------------------------------

struct DeviceArray {
  void* data = nullptr;
  DType dtype = kOther;
  std::vector<std::int64_t> shape;
  int device = 0;
  std::shared_ptr<void> owner;
  py::object parent;
};

// What an exported capsule keeps alive, freed by the DLPack deleter.
struct ExportContext {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape;
  py::object array;  // the DeviceArray (and through it the env or result that owns the memory)
};

// DLPack type codes: 0 int, 1 uint, 2 float, 6 bool.
DLDataType dlpack_dtype(DType d) {
  const auto bits = static_cast<std::uint8_t>(8 * d.size);
  switch (d.kind) {
    case 'i': return {0, bits, 1};
    case 'u': return {1, bits, 1};
    case 'f': return {2, bits, 1};
    case 'b': return {6, bits, 1};
    default: throw ShapeError("unsupported dtype for export");
  }
}

// The __cuda_array_interface__ typestr: byte order ('|' for one byte, else little-endian, the
// order of every CUDA device), kind, size.
std::string typestr(DType d) {
  if (d.kind == 0) return "|V1";
  return std::string(1, d.size == 1 ? '|' : '<') + d.kind + std::to_string(d.size);
}

void export_deleter(DLManagedTensor* self) {
  py::gil_scoped_acquire gil;
  delete static_cast<ExportContext*>(self->manager_ctx);
}

void unconsumed_capsule(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, kCapsuleName)) {
    auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
    if (t != nullptr && t->deleter != nullptr) t->deleter(t);
  }
}

py::capsule to_dlpack(py::object self) {
  const auto& a = self.cast<const DeviceArray&>();
  auto* ctx = new ExportContext();
  ctx->shape = a.shape;
  ctx->array = self;
  DLTensor& t = ctx->managed.dl_tensor;
  t.data = a.data;
  t.device = {kDLCUDA, a.device};
  t.ndim = static_cast<std::int32_t>(a.shape.size());
  t.dtype = dlpack_dtype(a.dtype);
  t.shape = ctx->shape.data();
  t.strides = nullptr;  // C-contiguous
  t.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = export_deleter;
  return py::reinterpret_steal<py::capsule>(PyCapsule_New(&ctx->managed, kCapsuleName, unconsumed_capsule));
}

py::tuple shape_tuple(const std::vector<std::int64_t>& shape) {
  py::tuple t(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) t[i] = shape[i];
  return t;
}

}  // namespace

DType dtype_from_typestr(const std::string& ts) {
  if (ts.size() < 3 || ts.size() > 4) return kOther;
  if (ts[0] == '>') return kOther;  // big-endian data on a little-endian device
  const std::string digits = ts.substr(2);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return kOther;
  const DType d{ts[1], static_cast<std::uint8_t>(std::stoi(digits))};
  return is_supported(d) && std::to_string(d.size) == digits ? d : kOther;
}

DType dtype_from_dlpack(const DLDataType& t) {
  if (t.lanes != 1 || t.bits % 8 != 0) return kOther;
  char kind = 0;
  switch (t.code) {
    case 0: kind = 'i'; break;
    case 1: kind = 'u'; break;
    case 2: kind = 'f'; break;
    case 6: kind = 'b'; break;
    default: return kOther;
  }
  const DType d{kind, static_cast<std::uint8_t>(t.bits / 8)};
  return is_supported(d) ? d : kOther;
}

std::size_t dtype_size(DType d) { return d.kind == 0 ? 1 : d.size; }

bool is_device_array(const py::handle& obj) {
  if (py::hasattr(obj, "__cuda_array_interface__")) return true;
  if (py::hasattr(obj, "__dlpack_device__")) {
    try {
      py::tuple dev = obj.attr("__dlpack_device__")();
      return dev[0].cast<int>() == kDLCUDA;
    } catch (const py::error_already_set&) {
      return false;
    }
  }
  return false;
}

DeviceView device_view(const py::handle& obj, const char* name, int device, cuda::Stream stream) {
  if (obj.is_none()) throw ShapeError(std::string(name) + ": expected a CUDA array, got None");
  DeviceView v;
  if (py::hasattr(obj, "__cuda_array_interface__")) {
    v = from_cai(obj, name, device, stream);
  } else if (is_device_array(obj)) {
    v = from_dlpack(obj, name, stream);
  } else {
    throw DeviceError(std::string(name) + ": expected an array on cuda:" + std::to_string(device) + ", got a host " +
                      type_name(obj) + " (move it to the env's device first, e.g. tensor.to('cuda:" +
                      std::to_string(device) + "'))");
  }
  if (v.device != device)
    throw DeviceError(std::string(name) + ": expected an array on cuda:" + std::to_string(device) + ", got " +
                      v.describe());
  if (v.dtype == kOther)
    throw ShapeError(std::string(name) + ": unsupported dtype of " + type_name(obj));
  return v;
}

void register_device_array(py::module_& m) {
  py::class_<DeviceArray>(m, "DeviceArray",
                          "Memory owned by the native core on a CUDA device; view it with torch.from_dlpack or "
                          "cupy.from_dlpack (no copy), or copy it to the host with numpy().")
      .def_property_readonly("shape", [](const DeviceArray& a) { return shape_tuple(a.shape); })
      .def_property_readonly("dtype", [](const DeviceArray& a) { return dtype_name(a.dtype); })
      .def_property_readonly("device", [](const DeviceArray& a) { return "cuda:" + std::to_string(a.device); })
      .def("__dlpack__", [](py::object self, py::kwargs) { return to_dlpack(self); })
      .def("__dlpack_device__", [](const DeviceArray& a) { return py::make_tuple(kDLCUDA, a.device); })
      .def_property_readonly("__cuda_array_interface__", [](const DeviceArray& a) {
        py::dict d;
        d["shape"] = shape_tuple(a.shape);
        d["typestr"] = typestr(a.dtype);
        d["data"] = py::make_tuple(reinterpret_cast<std::uintptr_t>(a.data), false);
        d["strides"] = py::none();
        d["version"] = 3;
        d["stream"] = py::none();
        return d;
      })
      .def("numpy", [](const DeviceArray& a) {
        std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
        py::dtype dt(dtype_name(a.dtype));
        py::array out(dt, shape);
        std::size_t bytes = dtype_size(a.dtype);
        for (auto e : a.shape) bytes *= static_cast<std::size_t>(e);
        if (bytes > 0) {
          py::gil_scoped_release release;
          cuda::copy_to_host(out.mutable_data(), a.data, bytes, a.device, 0);
        }
        return out;
      }, "A host copy (waits for the legacy default stream).")
      .def("__repr__", [](const DeviceArray& a) {
        std::string s = "DeviceArray(shape=(";
        for (std::size_t i = 0; i < a.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(a.shape[i]);
        return s + "), dtype=" + dtype_name(a.dtype) + ", device=cuda:" + std::to_string(a.device) + ")";
      });
}

py::object make_device_array(void* data, DType dtype, std::vector<std::int64_t> shape, int device,
                             std::shared_ptr<void> owner, py::object parent) {
  DeviceArray a;
  a.data = data;
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.device = device;
  a.owner = std::move(owner);
  a.parent = std::move(parent);
  return py::cast(std::move(a));
}

}  // namespace himari::bind
