// fastnn._C.cuda: device arrays and the CUDA kernels' entry points (checks and GIL release only).
//
// `Array` is a contiguous float32 or int64 array in device memory from the caching allocator
// (cuda/runtime.h), or borrowed from another library through DLPack; views (reshape) share the
// block, which returns to the allocator when the last view goes. It never converts to numpy
// implicitly (`numpy.asarray` raises, as for a torch CUDA tensor): `.numpy()` copies to the host.
//
// The kernels' entry points are bound by family in cuda_ops.cpp, cuda_nn.cpp and cuda_optim.cpp.
//
// Without the CUDA toolkit at build time the submodule still exists: is_built() is False,
// device_count() is 0 and unavailable_reason() says why.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/cuda_array.h"

#if FASTNN_CUDA_BUILT
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#endif

namespace fastnn {

#if FASTNN_CUDA_BUILT
namespace cuda_py {

// ---- DLPack (the structs of the DLPack 0.x ABI, which every exchanger supports) ----------------
struct DLDevice { int32_t device_type, device_id; };
struct DLDataType { uint8_t code, bits; uint16_t lanes; };
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
constexpr int32_t kDLCUDA = 2;
constexpr uint8_t kDLInt = 0, kDLFloat = 2;

// Device memory: ours (returned to the allocator) or borrowed through DLPack (its deleter runs).
Block::~Block() {
  if (borrowed) {
    if (borrowed->deleter) borrowed->deleter(borrowed);
  } else {
    cuda::release(ptr, device);
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

int64_t element_count(const std::vector<int64_t>& shape, const char* fn) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) raise_value(std::string(fn) + ": shape must be non-negative, got " + shape_text(shape));
    if (d != 0 && n > (int64_t(1) << 40) / d)
      raise_value(std::string(fn) + ": shape " + shape_text(shape) + " asks for more than 2**40 elements");
    n *= d;
  }
  return n;
}


void check_device(int device, const char* fn) {
  const int n = cuda::device_count();
  if (n == 0) raise_value(std::string(fn) + ": no CUDA device: " + cuda::unavailable_reason());
  if (device < 0 || device >= n)
    raise_value(std::string(fn) + ": device must be in [0, " + std::to_string(n) + "), got device=" +
                std::to_string(device));
}

Array empty(const std::vector<int64_t>& shape, Dtype dtype, int device, const char* fn) {
  check_device(device, fn);
  Array a;
  a.shape = shape;
  a.dtype = dtype;
  a.device = device;
  const size_t bytes = static_cast<size_t>(element_count(shape, fn)) * itemsize(dtype);
  a.block = std::make_shared<Block>();
  a.block->device = device;
  {
    py::gil_scoped_release release;
    a.block->ptr = cuda::allocate(bytes, device);
  }
  return a;
}

Dtype parse_dtype(const std::string& name, const char* fn) {
  if (name == "float32") return Dtype::float32;
  if (name == "int64") return Dtype::int64;
  raise_type(std::string(fn) + ": dtype must be 'float32' or 'int64', got '" + name + "'");
}

Array from_numpy(const py::array& host, int device) {
  constexpr const char* fn = "cuda.from_numpy";
  Dtype dtype;
  if (host.dtype().is(py::dtype::of<float>()))
    dtype = Dtype::float32;
  else if (host.dtype().is(py::dtype::of<int64_t>()))
    dtype = Dtype::int64;
  else
    raise_type(std::string(fn) + ": argument 'array' must be float32 or int64, got " + std::string(py::str(host.dtype())));
  if (!(host.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument 'array' must be C-contiguous; pass numpy.ascontiguousarray(array)");
  std::vector<int64_t> shape(host.shape(), host.shape() + host.ndim());
  Array a = empty(shape, dtype, device, fn);
  py::gil_scoped_release release;
  cuda::copy_to_device(a.data(), host.data(), a.nbytes(), device);
  return a;
}

py::array to_numpy(const Array& a) {
  std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
  py::array host = a.dtype == Dtype::float32 ? py::array(py::dtype::of<float>(), shape)
                                             : py::array(py::dtype::of<int64_t>(), shape);
  void* dst = host.mutable_data();
  py::gil_scoped_release release;
  cuda::copy_to_host(dst, a.data(), a.nbytes(), a.device);
  return host;
}

Array reshape(const Array& a, std::vector<int64_t> shape) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1 && infer < 0)
      infer = static_cast<int64_t>(i);
    else
      known *= shape[i];
  }
  if (infer >= 0 && known > 0 && a.size() % known == 0) shape[infer] = a.size() / known;
  if (element_count(shape, "cuda.Array.reshape") != a.size())
    raise_value("cuda.Array.reshape: cannot reshape an array of shape " + shape_text(a.shape) + " (" +
                std::to_string(a.size()) + " elements) to " + shape_text(shape));
  Array v = a;
  v.shape = shape;
  return v;
}

// Rows [start, stop) of the first axis: a view sharing the block.
Array narrow(const Array& a, int64_t start, int64_t stop) {
  if (a.shape.empty() || start < 0 || stop < start || stop > a.shape[0])
    raise_value("cuda.Array.narrow: rows [" + std::to_string(start) + ", " + std::to_string(stop) +
                ") are out of range for an array of shape " + shape_text(a.shape));
  Array v = a;
  v.offset += static_cast<size_t>(start) * (a.shape[0] ? a.nbytes() / static_cast<size_t>(a.shape[0]) : 0);
  v.shape[0] = stop - start;
  return v;
}

Array copy(const Array& a) {
  Array c = empty(a.shape, a.dtype, a.device, "cuda.Array.copy");
  py::gil_scoped_release release;
  cuda::copy_on_device(c.data(), a.data(), a.nbytes(), a.device);
  return c;
}

// ---- DLPack export and import ------------------------------------------------------------------
struct ExportContext {
  Array array;  // keeps the block alive while the consumer holds the tensor
  std::vector<int64_t> shape, strides;
  DLManagedTensor managed;
};

void delete_export(DLManagedTensor* t) { delete static_cast<ExportContext*>(t->manager_ctx); }

// Export waits for fastnn's queued work on the array (the consumer's stream knows nothing of
// ours); import waits for the whole device (the producer's stream is not known to us). Both are
// one synchronization per exchange, not per kernel.
py::capsule to_dlpack(const Array& a) {
  {
    py::gil_scoped_release release;
    cuda::synchronize(a.device);
  }
  auto* ctx = new ExportContext{a, a.shape, std::vector<int64_t>(a.shape.size()), {}};
  int64_t stride = 1;
  for (size_t i = a.shape.size(); i-- > 0;) {
    ctx->strides[i] = stride;
    stride *= a.shape[i];
  }
  DLTensor& t = ctx->managed.dl_tensor;
  t.data = a.data();
  t.device = {kDLCUDA, a.device};
  t.ndim = static_cast<int32_t>(a.shape.size());
  t.dtype = a.dtype == Dtype::float32 ? DLDataType{kDLFloat, 32, 1} : DLDataType{kDLInt, 64, 1};
  t.shape = ctx->shape.data();
  t.strides = ctx->strides.data();
  t.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = delete_export;
  // A consumer renames the capsule to "used_dltensor" and takes over the deleter; an unconsumed
  // capsule frees the export itself.
  return py::capsule(&ctx->managed, "dltensor", [](PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      if (m && m->deleter) m->deleter(m);
    }
  });
}

Array from_dlpack(const py::capsule& cap) {
  constexpr const char* fn = "cuda.from_dlpack";
  if (!PyCapsule_IsValid(cap.ptr(), "dltensor"))
    raise_value(std::string(fn) + ": expected an unused 'dltensor' capsule");
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  const DLTensor& t = m->dl_tensor;
  if (t.device.device_type != kDLCUDA)
    raise_value(std::string(fn) + ": the tensor is not in CUDA memory (DLPack device type " +
                std::to_string(t.device.device_type) + "); use fastnn.from_dlpack for CPU tensors");
  Dtype dtype;
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32 && t.dtype.lanes == 1)
    dtype = Dtype::float32;
  else if (t.dtype.code == kDLInt && t.dtype.bits == 64 && t.dtype.lanes == 1)
    dtype = Dtype::int64;
  else
    raise_type(std::string(fn) + ": only float32 and int64 tensors can be shared, got DLPack type code " +
               std::to_string(t.dtype.code) + " with " + std::to_string(t.dtype.bits) + " bits");
  std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
  if (t.strides) {
    int64_t expected = 1;
    for (int i = t.ndim; i-- > 0;) {
      if (shape[i] != 1 && t.strides[i] != expected)
        raise_value(std::string(fn) + ": the tensor must be contiguous (call .contiguous() on it first)");
      expected *= shape[i];
    }
  }
  check_device(t.device.device_id, fn);
  Array a;
  a.shape = shape;
  a.dtype = dtype;
  a.device = t.device.device_id;
  a.block = std::make_shared<Block>();
  a.block->ptr = static_cast<char*>(t.data) + t.byte_offset;
  a.block->device = a.device;
  a.block->borrowed = m;
  PyCapsule_SetName(cap.ptr(), "used_dltensor");  // we own the deleter now
  py::gil_scoped_release release;
  cuda::device_synchronize(a.device);
  return a;
}

// ---- argument checks -------------------------------------------------------------------------
const Array& check_float(const Array& a, const char* fn, const char* arg) {
  if (a.dtype != Dtype::float32)
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " + dtype_name(a.dtype));
  return a;
}

void check_rank(const Array& a, size_t rank, const char* fn, const char* arg, const std::string& expected) {
  if (a.shape.size() != rank)
    raise_value(std::string(fn) + ": argument '" + arg + "' must be " + std::to_string(rank) + "-D of shape " +
                expected + ", got shape " + shape_text(a.shape));
}

void check_same_device(const Array& a, const Array& b, const char* fn, const char* arg_a, const char* arg_b) {
  if (a.device != b.device)
    raise_value(std::string(fn) + ": arguments '" + arg_a + "' and '" + arg_b + "' are on different devices (cuda:" +
                std::to_string(a.device) + " and cuda:" + std::to_string(b.device) + ")");
}

void check_same_shape(const Array& a, const Array& b, const char* fn, const char* arg_a, const char* arg_b) {
  if (a.shape != b.shape)
    raise_value(std::string(fn) + ": argument '" + arg_b + "' must have the shape of '" + arg_a + "', " +
                shape_text(a.shape) + ", got " + shape_text(b.shape));
  check_same_device(a, b, fn, arg_a, arg_b);
}

const float* vector_arg(const Array* v, int64_t n, const Array& x, const char* fn, const char* arg,
                        const char* x_arg) {
  if (!v) return nullptr;
  check_float(*v, fn, arg);
  if (v->shape != std::vector<int64_t>{n})
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape (" + std::to_string(n) + ",), got " +
                shape_text(v->shape));
  check_same_device(x, *v, fn, x_arg, arg);
  return v->f();
}

py::object or_none(const std::optional<Array>& a) { return a ? py::cast(*a) : py::object(py::none()); }

// ---- copies into existing arrays and CUDA graphs ---------------------------------------------------
void copy_into(Array& dst, const py::object& src) {
  constexpr const char* fn = "cuda.copy_";
  if (py::isinstance<Array>(src)) {
    const Array& a = src.cast<const Array&>();
    if (a.shape != dst.shape || a.dtype != dst.dtype)
      raise_value(std::string(fn) + ": source " + shape_text(a.shape) + " " + dtype_name(a.dtype) +
                  " does not match destination " + shape_text(dst.shape) + " " + dtype_name(dst.dtype));
    check_same_device(dst, a, fn, "dst", "src");
    py::gil_scoped_release release;
    cuda::copy_on_device(dst.data(), a.data(), dst.nbytes(), dst.device);
    return;
  }
  py::array host;
  if (dst.dtype == Dtype::float32)
    host = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(src);
  else
    host = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(src);
  if (!host) raise_type(std::string(fn) + ": source must be a CUDA array or array-like");
  std::vector<int64_t> shape(host.shape(), host.shape() + host.ndim());
  if (shape != dst.shape)
    raise_value(std::string(fn) + ": source of shape " + shape_text(shape) + " does not match destination " +
                shape_text(dst.shape));
  py::gil_scoped_release release;
  cuda::copy_to_device(dst.data(), host.data(), dst.nbytes(), dst.device);
}

// A captured graph; destroying it returns its pool's blocks to the shared pool.
struct Graph {
  cuda::CapturedGraph g{nullptr, 0, 0};
  ~Graph() {
    try {
      cuda::destroy_graph(g);
    } catch (...) {
    }
  }
};

py::tuple capture(int device, const py::function& fn) {
  check_device(device, "cuda.capture");
  cuda::begin_capture(device);
  py::object result;
  try {
    result = fn();
  } catch (...) {
    try {
      cuda::end_capture(device, false);
    } catch (...) {
    }
    throw;
  }
  auto graph = std::make_shared<Graph>();
  graph->g = cuda::end_capture(device, true);
  return py::make_tuple(graph, result);
}

}  // namespace cuda_py
#endif  // FASTNN_CUDA_BUILT

void bind_cuda(py::module_& parent) {
  using namespace cuda_py;
  py::module_ m = parent.def_submodule("cuda", "CUDA device arrays and kernels");
#if FASTNN_CUDA_BUILT
  m.def("is_built", [] { return true; });
  m.def("device_count", [] { return cuda::device_count(); });
  m.def("unavailable_reason", [] { return cuda::unavailable_reason(); });
  m.def("synchronize", [](int device) {
    check_device(device, "cuda.synchronize");
    py::gil_scoped_release release;
    cuda::synchronize(device);
  }, py::arg("device") = 0);
  m.def("empty_cache", [] {
    py::gil_scoped_release release;
    cuda::empty_cache();
  });
  m.def("memory_allocated", &cuda::memory_allocated, py::arg("device") = 0);
  m.def("set_allow_tf32", &cuda::set_allow_tf32, py::arg("allow"));
  m.def("allow_tf32", &cuda::allow_tf32);
  m.def("memory_reserved", &cuda::memory_reserved, py::arg("device") = 0);
  py::class_<Array>(m, "Array", "A contiguous float32 or int64 array in CUDA memory.")
      .def_property_readonly("shape", [](const Array& a) {
        py::tuple t(a.shape.size());
        for (size_t i = 0; i < a.shape.size(); ++i) t[i] = a.shape[i];
        return t;
      })
      .def_property_readonly("ndim", [](const Array& a) { return a.shape.size(); })
      .def_property_readonly("size", &Array::size)
      .def_property_readonly("nbytes", &Array::nbytes)
      .def_property_readonly("dtype", [](const Array& a) {
        return a.dtype == Dtype::float32 ? py::dtype::of<float>() : py::dtype::of<int64_t>();
      })
      .def_property_readonly("device", [](const Array& a) { return a.device; })
      .def_property_readonly("data_ptr", [](const Array& a) { return reinterpret_cast<uintptr_t>(a.data()); })
      .def("numpy", &to_numpy, "A copy in host memory.")
      .def("reshape", &reshape, py::arg("shape"))
      .def("copy", &copy)
      .def("narrow", &narrow, py::arg("start"), py::arg("stop"), "Rows [start, stop) of the first axis, as a view.")
      .def("__array__", [](const Array&, py::args, py::kwargs) -> py::object {
        raise_type("can't convert a CUDA array to numpy implicitly: copy it to the host with .cpu() or .numpy()");
      })
      .def("__dlpack__", [](const Array& a, py::kwargs) { return to_dlpack(a); })
      .def("__dlpack_device__", [](const Array& a) { return py::make_tuple(kDLCUDA, a.device); })
      .def("__repr__", [](const Array& a) {
        return "<fastnn._C.cuda.Array " + std::string(dtype_name(a.dtype)) + " " + shape_text(a.shape) + " on cuda:" +
               std::to_string(a.device) + ">";
      });
  m.def("empty", [](const std::vector<int64_t>& shape, const std::string& dtype, int device) {
    return empty(shape, parse_dtype(dtype, "cuda.empty"), device, "cuda.empty");
  }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = 0);
  m.def("from_numpy", &from_numpy, py::arg("array"), py::arg("device") = 0, "A copy of a host array on the device.");
  m.def("from_dlpack", &from_dlpack, py::arg("capsule"), "Share a CUDA DLPack tensor (no copy).");
  m.def("copy_", &copy_into, py::arg("dst"), py::arg("src"),
        "Copy src (a CUDA array of dst's shape and dtype, or host data) into dst.");
  py::class_<Graph, std::shared_ptr<Graph>>(m, "Graph", "A captured CUDA graph (see capture).")
      .def("replay", [](const Graph& g) {
        py::gil_scoped_release release;
        cuda::launch_graph(g.g);
      }, "Queue the captured kernels on fastnn's stream (returns at once).");
  m.def("capture", &capture, py::arg("device"), py::arg("fn"),
        "Call fn() while capturing fastnn's kernels on `device` into a CUDA graph (they are recorded, not run);\n"
        "returns (graph, fn's result). fn must not synchronize (no .item(), no copies to the host).");
  bind_cuda_ops(m);
  bind_cuda_nn(m);
  bind_cuda_optim(m);
#else
  m.def("is_built", [] { return false; });
  m.def("device_count", [] { return 0; });
  m.def("unavailable_reason", [] {
    return std::string("this fastnn was built without CUDA (no CUDA compiler was found, or FASTNN_CUDA=OFF)");
  });
#endif
}

}  // namespace fastnn
