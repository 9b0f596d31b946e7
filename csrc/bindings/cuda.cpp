// fastnn._C.cuda: device arrays and the CUDA kernels' entry points (checks and GIL release only).
//
// `Array` is a contiguous float32 or int64 array in device memory from the caching allocator
// (cuda/runtime.h), or borrowed from another library through DLPack; views (reshape) share the
// block, which returns to the allocator when the last view goes. It never converts to numpy
// implicitly (`numpy.asarray` raises, as for a torch CUDA tensor): `.numpy()` copies to the host.
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

#if FASTNN_CUDA_BUILT
#include "cpu/pool.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#endif

namespace fastnn {

#if FASTNN_CUDA_BUILT
namespace {

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

enum class Dtype { float32, int64 };
size_t itemsize(Dtype d) { return d == Dtype::float32 ? 4 : 8; }
const char* dtype_name(Dtype d) { return d == Dtype::float32 ? "float32" : "int64"; }

// Device memory: ours (returned to the allocator) or borrowed through DLPack (its deleter runs).
struct Block {
  void* ptr = nullptr;
  int device = 0;
  DLManagedTensor* borrowed = nullptr;
  ~Block() {
    if (borrowed) {
      if (borrowed->deleter) borrowed->deleter(borrowed);
    } else {
      cuda::release(ptr, device);
    }
  }
};

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

struct Array {
  std::shared_ptr<Block> block;
  size_t offset = 0;  // bytes into the block
  std::vector<int64_t> shape;
  Dtype dtype = Dtype::float32;
  int device = 0;

  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(size()) * itemsize(dtype); }
  void* data() const { return static_cast<char*>(block->ptr) + offset; }
  float* f() const { return static_cast<float*>(data()); }
};

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

// An optional result as a Python object: the array, or None.
py::object or_none(const std::optional<Array>& a) { return a ? py::cast(*a) : py::object(py::none()); }

// ---- kernels -----------------------------------------------------------------------------------
Array gemm(const Array& a, const Array& b, bool trans_a, bool trans_b, const Array* bias, bool relu, float alpha) {
  constexpr const char* fn = "cuda.gemm";
  check_float(a, fn, "a");
  check_float(b, fn, "b");
  check_rank(a, 2, fn, "a", trans_a ? "(K, M)" : "(M, K)");
  check_rank(b, 2, fn, "b", trans_b ? "(N, K)" : "(K, N)");
  check_same_device(a, b, fn, "a", "b");
  const int64_t M = trans_a ? a.shape[1] : a.shape[0], K = trans_a ? a.shape[0] : a.shape[1];
  const int64_t N = trans_b ? b.shape[0] : b.shape[1], Kb = trans_b ? b.shape[1] : b.shape[0];
  if (K != Kb)
    raise_value(std::string(fn) + ": inner dimensions differ: op(a) is (" + std::to_string(M) + ", " +
                std::to_string(K) + "), op(b) is (" + std::to_string(Kb) + ", " + std::to_string(N) +
                "); expected b of shape " + (trans_b ? "(N, " : "(") + std::to_string(K) + (trans_b ? ")" : ", N)"));
  constexpr int64_t kMaxDim = int64_t(65535) * 64;  // the grid's y extent times the tile
  if (M > kMaxDim || N > kMaxDim)
    raise_value(std::string(fn) + ": M and N must be at most " + std::to_string(kMaxDim) + ", got M=" +
                std::to_string(M) + ", N=" + std::to_string(N));
  if (bias) {
    check_float(*bias, fn, "bias");
    if (bias->shape != std::vector<int64_t>{N})
      raise_value(std::string(fn) + ": argument 'bias' must have shape (" + std::to_string(N) + ",), got " +
                  shape_text(bias->shape));
    check_same_device(a, *bias, fn, "a", "bias");
  }
  Array c = empty({M, N}, Dtype::float32, a.device, fn);
  py::gil_scoped_release release;
  cuda::sgemm(c.f(), N, a.f(), a.shape[1], b.f(), b.shape[1], M, N, K, trans_a, trans_b, alpha, 0.0f,
              bias ? bias->f() : nullptr, relu, a.device);
  return c;
}

Array binary(int op, const Array& a, const Array& b) {
  constexpr const char* fn = "cuda.binary";
  check_float(a, fn, "a");
  check_float(b, fn, "b");
  check_same_device(a, b, fn, "a", "b");
  if (op < 0 || op > 3) raise_value(std::string(fn) + ": op must be 0 (add), 1 (sub), 2 (mul) or 3 (div)");
  // b is a's shape, a row matching a's last axis (a bias), or one element.
  const int64_t n = a.size(), bn = b.size();
  const bool same = a.shape == b.shape;
  const bool row = !a.shape.empty() && b.shape.size() == 1 && b.shape[0] == a.shape.back();
  if (!same && !row && bn != 1)
    raise_value(std::string(fn) + ": argument 'b' must have a's shape " + shape_text(a.shape) +
                ", the shape of its last axis, or one element; got " + shape_text(b.shape));
  Array out = empty(a.shape, Dtype::float32, a.device, fn);
  py::gil_scoped_release release;
  cuda::binary(static_cast<cuda::Binary>(op), out.f(), a.f(), b.f(), n, same ? n : bn, a.device);
  return out;
}

Array unary(int op, const Array& x) {
  constexpr const char* fn = "cuda.unary";
  check_float(x, fn, "x");
  if (op < 0 || op > 5) raise_value(std::string(fn) + ": op must be 0 (neg) to 5 (tanh), got " + std::to_string(op));
  Array y = empty(x.shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::unary(static_cast<cuda::Unary>(op), y.f(), x.f(), x.size(), x.device);
  return y;
}

Array unary_backward(int op, const Array& dy, const Array& saved) {
  constexpr const char* fn = "cuda.unary_backward";
  check_float(dy, fn, "grad_out");
  check_float(saved, fn, "saved");
  check_same_shape(dy, saved, fn, "grad_out", "saved");
  if (op < 0 || op > 5) raise_value(std::string(fn) + ": op must be 0 (neg) to 5 (tanh), got " + std::to_string(op));
  Array dx = empty(dy.shape, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::unary_backward(static_cast<cuda::Unary>(op), dx.f(), dy.f(), saved.f(), dy.size(), dy.device);
  return dx;
}

Array permute_py(const Array& x, const std::vector<int>& perm) {
  constexpr const char* fn = "cuda.permute";
  check_float(x, fn, "x");
  const int ndim = static_cast<int>(x.shape.size());
  std::vector<bool> seen(ndim, false);
  if (static_cast<int>(perm.size()) != ndim || ndim > 8)
    raise_value(std::string(fn) + ": dims must reorder the " + std::to_string(ndim) + " axes (at most 8)");
  std::vector<int64_t> out_shape(ndim);
  for (int d = 0; d < ndim; ++d) {
    if (perm[d] < 0 || perm[d] >= ndim || seen[perm[d]]) raise_value(std::string(fn) + ": dims is not a permutation");
    seen[perm[d]] = true;
    out_shape[d] = x.shape[perm[d]];
  }
  Array out = empty(out_shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::permute(out.f(), x.f(), x.shape.data(), perm.data(), ndim, x.device);
  return out;
}

// Along `axis`: pieces into a new array (cat), or the array's slabs back into pieces (its backward).
Array cat_py(const std::vector<Array*>& pieces, int axis) {
  constexpr const char* fn = "cuda.cat";
  if (pieces.empty()) raise_value(std::string(fn) + ": nothing to join");
  const Array& first = check_float(*pieces[0], fn, "tensors");
  const int ndim = static_cast<int>(first.shape.size());
  if (axis < 0 || axis >= ndim) raise_value(std::string(fn) + ": axis out of range");
  int64_t total = 0;
  for (const Array* p : pieces) {
    check_float(*p, fn, "tensors");
    check_same_device(first, *p, fn, "tensors[0]", "tensors[i]");
    for (int d = 0; d < ndim; ++d)
      if (d != axis && (static_cast<int>(p->shape.size()) != ndim || p->shape[d] != first.shape[d]))
        raise_value(std::string(fn) + ": shapes " + shape_text(first.shape) + " and " + shape_text(p->shape) +
                    " do not join along axis " + std::to_string(axis));
    total += p->shape[axis];
  }
  int64_t A = 1, inner = 1;
  for (int d = 0; d < axis; ++d) A *= first.shape[d];
  for (int d = axis + 1; d < ndim; ++d) inner *= first.shape[d];
  std::vector<int64_t> shape = first.shape;
  shape[axis] = total;
  Array out = empty(shape, Dtype::float32, first.device, fn);
  py::gil_scoped_release release;
  int64_t offset = 0;
  for (const Array* p : pieces) {
    cuda::copy_slab(out.f(), p->f(), A, p->shape[axis], inner, total, offset, true, first.device);
    offset += p->shape[axis];
  }
  return out;
}

std::vector<Array> split_py(const Array& x, const std::vector<int64_t>& sizes, int axis) {
  constexpr const char* fn = "cuda.split";
  check_float(x, fn, "x");
  const int ndim = static_cast<int>(x.shape.size());
  if (axis < 0 || axis >= ndim) raise_value(std::string(fn) + ": axis out of range");
  int64_t sum = 0;
  for (int64_t s : sizes) sum += s;
  if (sum != x.shape[axis]) raise_value(std::string(fn) + ": sizes must add up to the axis' length");
  int64_t A = 1, inner = 1;
  for (int d = 0; d < axis; ++d) A *= x.shape[d];
  for (int d = axis + 1; d < ndim; ++d) inner *= x.shape[d];
  std::vector<Array> pieces;
  int64_t offset = 0;
  for (int64_t s : sizes) {
    std::vector<int64_t> shape = x.shape;
    shape[axis] = s;
    pieces.push_back(empty(shape, Dtype::float32, x.device, fn));
    py::gil_scoped_release release;
    cuda::copy_slab(x.f(), pieces.back().f(), A, s, inner, x.shape[axis], offset, false, x.device);
    offset += s;
  }
  return pieces;
}

void axpby(Array& y, float alpha, const Array& x, float beta) {
  constexpr const char* fn = "cuda.axpby";
  check_float(y, fn, "y");
  check_float(x, fn, "x");
  check_same_shape(y, x, fn, "y", "x");
  py::gil_scoped_release release;
  cuda::axpby(y.f(), alpha, x.f(), beta, y.size(), y.device);
}

void fill(Array& y, float value) {
  check_float(y, "cuda.fill", "y");
  py::gil_scoped_release release;
  cuda::fill(y.f(), value, y.size(), y.device);
}

Array relu_forward(const Array& x) {
  check_float(x, "cuda.relu_forward", "x");
  Array y = empty(x.shape, Dtype::float32, x.device, "cuda.relu_forward");
  py::gil_scoped_release release;
  cuda::relu_forward(y.f(), x.f(), x.size(), x.device);
  return y;
}

Array relu_backward(const Array& dy, const Array& y) {
  constexpr const char* fn = "cuda.relu_backward";
  check_float(dy, fn, "grad_out");
  check_float(y, fn, "out");
  check_same_shape(y, dy, fn, "out", "grad_out");
  Array dx = empty(y.shape, Dtype::float32, y.device, fn);
  py::gil_scoped_release release;
  cuda::relu_backward(dx.f(), dy.f(), y.f(), y.size(), y.device);
  return dx;
}

Array column_sums(const Array& x) {
  constexpr const char* fn = "cuda.column_sums";
  check_float(x, fn, "x");
  check_rank(x, 2, fn, "x", "(rows, cols)");
  Array out = empty({x.shape[1]}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::column_sums(out.f(), x.f(), x.shape[0], x.shape[1], x.device);
  return out;
}

Array sum_all(const Array& x, float scale) {
  check_float(x, "cuda.sum_all", "x");
  Array out = empty({}, Dtype::float32, x.device, "cuda.sum_all");
  py::gil_scoped_release release;
  cuda::sum_all(out.f(), x.f(), x.size(), scale, x.device);
  return out;
}

// int64 labels, or float32 ones holding whole numbers (a fastnn tensor: checked on the device,
// where a label that is not a class index gives NaN).
void check_labels(const Array& logits, const Array& labels, const char* fn) {
  check_float(logits, fn, "logits");
  check_rank(logits, 2, fn, "logits", "(N, C)");
  if (labels.shape != std::vector<int64_t>{logits.shape[0]})
    raise_value(std::string(fn) + ": argument 'labels' must have shape (" + std::to_string(logits.shape[0]) +
                ",), got " + shape_text(labels.shape));
  check_same_device(logits, labels, fn, "logits", "labels");
}

Array cross_entropy_forward(const Array& logits, const Array& labels) {
  constexpr const char* fn = "cuda.cross_entropy_forward";
  check_labels(logits, labels, fn);
  Array loss = empty({}, Dtype::float32, logits.device, fn);
  py::gil_scoped_release release;
  const bool ints = labels.dtype == Dtype::int64;
  cuda::cross_entropy_forward(loss.f(), logits.f(), ints ? static_cast<const int64_t*>(labels.data()) : nullptr,
                              ints ? nullptr : labels.f(), logits.shape[0], logits.shape[1], logits.device);
  return loss;
}

Array cross_entropy_backward(const Array& logits, const Array& labels, const Array& grad_loss) {
  constexpr const char* fn = "cuda.cross_entropy_backward";
  check_labels(logits, labels, fn);
  check_float(grad_loss, fn, "grad_loss");
  if (grad_loss.size() != 1)
    raise_value(std::string(fn) + ": argument 'grad_loss' must hold one element, got shape " +
                shape_text(grad_loss.shape));
  check_same_device(logits, grad_loss, fn, "logits", "grad_loss");
  Array d = empty(logits.shape, Dtype::float32, logits.device, fn);
  py::gil_scoped_release release;
  const bool ints = labels.dtype == Dtype::int64;
  cuda::cross_entropy_backward(d.f(), logits.f(), ints ? static_cast<const int64_t*>(labels.data()) : nullptr,
                               ints ? nullptr : labels.f(), grad_loss.f(), logits.shape[0], logits.shape[1],
                               logits.device);
  return d;
}

// The optimizer's slots: params[i], grads[i] and each state list's [i] share one shape and device.
std::vector<cuda::ParamSlot> check_slots(const char* fn, const std::vector<Array*>& params,
                                         const std::vector<Array*>& grads, const std::vector<Array*>& state0,
                                         const std::vector<Array*>& state1, int* device) {
  if (grads.size() != params.size() || (!state0.empty() && state0.size() != params.size()) ||
      (!state1.empty() && state1.size() != params.size()))
    raise_value(std::string(fn) + ": params, grads and the state lists must have the same length, got " +
                std::to_string(params.size()) + ", " + std::to_string(grads.size()) + ", " +
                std::to_string(state0.size()) + ", " + std::to_string(state1.size()));
  std::vector<cuda::ParamSlot> slots;
  *device = params.empty() ? 0 : params[0]->device;
  for (size_t i = 0; i < params.size(); ++i) {
    const Array& p = check_float(*params[i], fn, "params");
    if (p.device != *device) raise_value(std::string(fn) + ": all parameters must be on one device");
    check_same_shape(p, check_float(*grads[i], fn, "grads"), fn, "params[i]", "grads[i]");
    if (!state0.empty()) check_same_shape(p, check_float(*state0[i], fn, "state"), fn, "params[i]", "state[i]");
    if (!state1.empty()) check_same_shape(p, check_float(*state1[i], fn, "state"), fn, "params[i]", "state[i]");
    slots.push_back({p.f(), grads[i]->f(), state0.empty() ? nullptr : state0[i]->f(),
                     state1.empty() ? nullptr : state1[i]->f(), p.size()});
  }
  return slots;
}

void adam_step(const std::vector<Array*>& params, const std::vector<Array*>& grads, const std::vector<Array*>& m,
               const std::vector<Array*>& v, double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool maximize, int64_t step, std::optional<Array> step_count) {
  constexpr const char* fn = "cuda.adam_step";
  if (!step_count && step < 1) raise_value(std::string(fn) + ": step must be >= 1, got " + std::to_string(step));
  if (step_count && (step_count->dtype != Dtype::float32 || step_count->size() != 1))
    raise_value(std::string(fn) + ": argument 'step_count' must be a float32 device array of one element");
  int device = 0;
  std::vector<cuda::ParamSlot> slots = check_slots(fn, params, grads, m, v, &device);
  if (slots.empty()) return;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(std::max<int64_t>(step, 1)));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(std::max<int64_t>(step, 1)));
  cuda::AdamSettings s{static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2)),
                       static_cast<float>(1.0 - beta1), static_cast<float>(beta2), static_cast<float>(1.0 - beta2),
                       static_cast<float>(eps), static_cast<float>(weight_decay),
                       static_cast<float>(decoupled ? 1.0 - lr * weight_decay : 1.0), decoupled, maximize};
  if (step_count) check_same_device(*params[0], *step_count, fn, "params", "step_count");
  py::gil_scoped_release release;
  if (step_count)
    cuda::adam_step_capturable(slots.data(), static_cast<int>(slots.size()), s, static_cast<float>(lr),
                               static_cast<float>(beta1), static_cast<float>(beta2), step_count->f(), device);
  else
    cuda::adam_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

void sgd_step(const std::vector<Array*>& params, const std::vector<Array*>& grads, const std::vector<Array*>& bufs,
              double lr, double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
              bool first_step) {
  constexpr const char* fn = "cuda.sgd_step";
  if (momentum != 0.0 && bufs.empty())
    raise_value(std::string(fn) + ": momentum needs one buffer per parameter in 'momentum_buffers'");
  int device = 0;
  std::vector<cuda::ParamSlot> slots = check_slots(fn, params, grads, bufs, {}, &device);
  if (slots.empty()) return;
  cuda::SgdSettings s{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(1.0 - dampening),
                      static_cast<float>(weight_decay), nesterov, maximize, first_step};
  py::gil_scoped_release release;
  cuda::sgd_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

// ---- convolution and pooling -----------------------------------------------------------------
using Pair = std::array<int64_t, 2>;

void check_nchw(const Array& a, const char* fn, const char* arg) {
  check_float(a, fn, arg);
  check_rank(a, 4, fn, arg, "(N, C, H, W)");
}

// settings as the CPU binding takes them: stride (h, w), padding (top, bottom, left, right),
// dilation (h, w), groups; the Python op (ops/conv.py) has checked them against the shapes.
cuda::ConvShape conv_shape(const Array& x, const Array& w, const Pair& stride, const std::array<int64_t, 4>& pad,
                           const Pair& dilation, int64_t groups, const char* fn) {
  check_nchw(x, fn, "input");
  check_float(w, fn, "weight");
  check_rank(w, 4, fn, "weight", "(K, C/groups, R, S)");
  check_same_device(x, w, fn, "input", "weight");
  if (groups < 1 || x.shape[1] % groups || w.shape[0] % groups || w.shape[1] * groups != x.shape[1])
    raise_value(std::string(fn) + ": weight " + shape_text(w.shape) + " does not fit input " + shape_text(x.shape) +
                " with groups=" + std::to_string(groups));
  if (stride[0] < 1 || stride[1] < 1 || dilation[0] < 1 || dilation[1] < 1 || pad[0] < 0 || pad[1] < 0 ||
      pad[2] < 0 || pad[3] < 0)
    raise_value(std::string(fn) + ": stride and dilation must be >= 1 and padding >= 0");
  cuda::ConvShape s{x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3], 0, 0,
                    stride[0], stride[1], pad[0], pad[2], dilation[0], dilation[1], groups};
  const int64_t eh = dilation[0] * (s.R - 1) + 1, ew = dilation[1] * (s.S - 1) + 1;
  const int64_t ph = s.H + pad[0] + pad[1], pw = s.W + pad[2] + pad[3];
  if (ph < eh || pw < ew)
    raise_value(std::string(fn) + ": the kernel's extent (" + std::to_string(eh) + ", " + std::to_string(ew) +
                ") exceeds the padded input (" + std::to_string(ph) + ", " + std::to_string(pw) + ")");
  s.OH = (ph - eh) / stride[0] + 1;
  s.OW = (pw - ew) / stride[1] + 1;
  return s;
}

Array conv_forward_py(const Array& x, const Array& w, const Array* bias, const Pair& stride,
                     const std::array<int64_t, 4>& pad, const Pair& dilation, int64_t groups) {
  constexpr const char* fn = "cuda.conv2d_forward";
  const cuda::ConvShape s = conv_shape(x, w, stride, pad, dilation, groups, fn);
  if (bias) {
    check_float(*bias, fn, "bias");
    if (bias->shape != std::vector<int64_t>{s.K})
      raise_value(std::string(fn) + ": argument 'bias' must have shape (" + std::to_string(s.K) + ",), got " +
                  shape_text(bias->shape));
    check_same_device(x, *bias, fn, "input", "bias");
  }
  Array out = empty({s.N, s.K, s.OH, s.OW}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::conv2d_forward(out.f(), x.f(), w.f(), bias ? bias->f() : nullptr, s, x.device);
  return out;
}

py::tuple conv_backward_py(const Array& dy, const Array& x, const Array& w, const Pair& stride,
                          const std::array<int64_t, 4>& pad, const Pair& dilation, int64_t groups,
                          const std::array<bool, 3>& needs) {
  constexpr const char* fn = "cuda.conv2d_backward";
  const cuda::ConvShape s = conv_shape(x, w, stride, pad, dilation, groups, fn);
  check_nchw(dy, fn, "grad_output");
  if (dy.shape != std::vector<int64_t>{s.N, s.K, s.OH, s.OW})
    raise_value(std::string(fn) + ": argument 'grad_output' must have shape " +
                shape_text({s.N, s.K, s.OH, s.OW}) + ", got " + shape_text(dy.shape));
  check_same_device(x, dy, fn, "input", "grad_output");
  std::optional<Array> dx, dw, db;
  if (needs[0]) dx = empty(x.shape, Dtype::float32, x.device, fn);
  if (needs[1]) dw = empty(w.shape, Dtype::float32, x.device, fn);
  if (needs[2]) db = empty({s.K}, Dtype::float32, x.device, fn);
  {
    py::gil_scoped_release release;
    cuda::conv2d_backward(dx ? dx->f() : nullptr, dw ? dw->f() : nullptr, db ? db->f() : nullptr, dy.f(), x.f(),
                          w.f(), s, x.device);
  }
  return py::make_tuple(or_none(dx), or_none(dw), or_none(db));
}

cuda::PoolShape pool_shape(const Array& x, const Pair& kernel, const Pair& stride, const Pair& padding,
                           const Pair& dilation, bool ceil_mode, const char* fn) {
  check_nchw(x, fn, "input");
  if (kernel[0] < 1 || kernel[1] < 1 || stride[0] < 1 || stride[1] < 1 || dilation[0] < 1 || dilation[1] < 1 ||
      padding[0] < 0 || padding[1] < 0 || padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2)
    raise_value(std::string(fn) + ": kernel_size, stride and dilation must be >= 1 and padding between 0 and half "
                "the kernel_size");
  const PoolAxis ah{kernel[0], stride[0], padding[0], dilation[0]}, aw{kernel[1], stride[1], padding[1], dilation[1]};
  cuda::PoolShape s{x.shape[0] * x.shape[1], x.shape[2], x.shape[3], pool_output_size(x.shape[2], ah, ceil_mode),
                    pool_output_size(x.shape[3], aw, ceil_mode), kernel[0], kernel[1], stride[0], stride[1],
                    padding[0], padding[1], dilation[0], dilation[1]};
  if (s.OH < 1 || s.OW < 1)
    raise_value(std::string(fn) + ": the output would be empty for an input of shape " + shape_text(x.shape));
  return s;
}

py::tuple max_pool_forward_py(const Array& x, const Pair& kernel, const Pair& stride, const Pair& padding,
                             const Pair& dilation, bool ceil_mode) {
  constexpr const char* fn = "cuda.max_pool2d_forward";
  const cuda::PoolShape s = pool_shape(x, kernel, stride, padding, dilation, ceil_mode, fn);
  Array out = empty({x.shape[0], x.shape[1], s.OH, s.OW}, Dtype::float32, x.device, fn);
  Array indices = empty({x.shape[0], x.shape[1], s.OH, s.OW}, Dtype::int64, x.device, fn);
  {
    py::gil_scoped_release release;
    cuda::max_pool2d_forward(out.f(), static_cast<int64_t*>(indices.data()), x.f(), s, x.device);
  }
  return py::make_tuple(out, indices);
}

Array max_pool_backward_py(const Array& dy, const Array& indices, const Pair& input_size) {
  constexpr const char* fn = "cuda.max_pool2d_backward";
  check_nchw(dy, fn, "grad_output");
  if (indices.dtype != Dtype::int64 || indices.shape != dy.shape)
    raise_value(std::string(fn) + ": argument 'indices' must be int64 of shape " + shape_text(dy.shape));
  check_same_device(dy, indices, fn, "grad_output", "indices");
  if (input_size[0] < 1 || input_size[1] < 1)
    raise_value(std::string(fn) + ": argument 'input_size' must be positive");
  cuda::PoolShape s{dy.shape[0] * dy.shape[1], input_size[0], input_size[1], dy.shape[2], dy.shape[3],
                    0, 0, 0, 0, 0, 0, 0, 0};
  Array dx = empty({dy.shape[0], dy.shape[1], input_size[0], input_size[1]}, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::max_pool2d_backward(dx.f(), dy.f(), static_cast<const int64_t*>(indices.data()), s, dy.device);
  return dx;
}

// ---- batch normalization and global average pooling ---------------------------------------------
// (N, C, L): the input's first two axes and the product of the others.
std::array<int64_t, 3> ncl(const Array& x, const char* fn) {
  check_float(x, fn, "input");
  if (x.shape.size() < 2)
    raise_value(std::string(fn) + ": argument 'input' must be (N, C, *), got shape " + shape_text(x.shape));
  int64_t L = 1;
  for (size_t i = 2; i < x.shape.size(); ++i) L *= x.shape[i];
  return {x.shape[0], x.shape[1], L};
}

const float* channel_arg(const std::optional<Array>& a, const Array& x, int64_t C, const char* fn, const char* arg) {
  if (!a) return nullptr;
  check_float(*a, fn, arg);
  if (a->shape != std::vector<int64_t>{C})
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape (" + std::to_string(C) + ",), got " +
                shape_text(a->shape));
  check_same_device(x, *a, fn, "input", arg);
  return a->f();
}

py::tuple batch_norm_forward_cuda(const Array& x, const std::optional<Array>& w, const std::optional<Array>& b,
                                  const std::optional<Array>& rm, const std::optional<Array>& rv, bool training,
                                  double momentum, double eps) {
  constexpr const char* fn = "cuda.batch_norm_forward";
  const auto [N, C, L] = ncl(x, fn);
  const float* wp = channel_arg(w, x, C, fn, "weight");
  const float* bp = channel_arg(b, x, C, fn, "bias");
  float* rmp = const_cast<float*>(channel_arg(rm, x, C, fn, "running_mean"));
  float* rvp = const_cast<float*>(channel_arg(rv, x, C, fn, "running_var"));
  if (!training && (!rmp || !rvp))
    raise_value(std::string(fn) + ": running_mean and running_var are needed in evaluation mode");
  Array y = empty(x.shape, Dtype::float32, x.device, fn);
  Array mean = empty({C}, Dtype::float32, x.device, fn), invstd = empty({C}, Dtype::float32, x.device, fn);
  {
    py::gil_scoped_release release;
    cuda::batch_norm_forward(y.f(), mean.f(), invstd.f(), x.f(), wp, bp, rmp, rvp, training,
                             static_cast<float>(momentum), static_cast<float>(eps), N, C, L, x.device);
  }
  return py::make_tuple(y, mean, invstd);
}

py::tuple batch_norm_backward_cuda(const Array& dy, const Array& x, const Array& mean, const Array& invstd,
                                   const std::optional<Array>& w, bool training) {
  constexpr const char* fn = "cuda.batch_norm_backward";
  const auto [N, C, L] = ncl(x, fn);
  check_same_shape(x, check_float(dy, fn, "grad_output"), fn, "input", "grad_output");
  channel_arg(mean, x, C, fn, "save_mean");
  channel_arg(invstd, x, C, fn, "save_invstd");
  const float* wp = channel_arg(w, x, C, fn, "weight");
  Array dx = empty(x.shape, Dtype::float32, x.device, fn);
  Array dw = empty({C}, Dtype::float32, x.device, fn), db = empty({C}, Dtype::float32, x.device, fn);
  {
    py::gil_scoped_release release;
    cuda::batch_norm_backward(dx.f(), dw.f(), db.f(), dy.f(), x.f(), mean.f(), invstd.f(), wp, training, N, C, L,
                              x.device);
  }
  return py::make_tuple(dx, dw, db);
}

Array global_avg_pool_forward_cuda(const Array& x) {
  constexpr const char* fn = "cuda.global_avg_pool_forward";
  check_nchw(x, fn, "input");
  Array out = empty({x.shape[0], x.shape[1], 1, 1}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::global_avg_pool_forward(out.f(), x.f(), x.shape[0] * x.shape[1], x.shape[2] * x.shape[3], x.device);
  return out;
}

Array global_avg_pool_backward_cuda(const Array& dy, const Pair& input_size) {
  constexpr const char* fn = "cuda.global_avg_pool_backward";
  check_nchw(dy, fn, "grad_output");
  if (dy.shape[2] != 1 || dy.shape[3] != 1 || input_size[0] < 1 || input_size[1] < 1)
    raise_value(std::string(fn) + ": argument 'grad_output' must be (N, C, 1, 1) and input_size positive");
  Array dx = empty({dy.shape[0], dy.shape[1], input_size[0], input_size[1]}, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::global_avg_pool_backward(dx.f(), dy.f(), dy.shape[0] * dy.shape[1], input_size[0] * input_size[1],
                                 dy.device);
  return dx;
}

// ---- recurrent layers --------------------------------------------------------------------------
struct RnnProblem {
  int cell, gates, states;
  cuda::RnnDims s;
  int64_t G, S;
  std::optional<Array> lengths;  // on the device
  int device;
};

RnnProblem rnn_problem(const char* fn, const std::string& cell, const Array& x, const Array& w_ih, const Array& w_hh,
                       const py::object& lengths) {
  RnnProblem p{};
  if (cell == "lstm") p.cell = 0;
  else if (cell == "gru") p.cell = 1;
  else if (cell == "rnn_tanh") p.cell = 2;
  else if (cell == "rnn_relu") p.cell = 3;
  else raise_value(std::string(fn) + ": cell must be 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu', got '" + cell + "'");
  p.gates = p.cell == 0 ? 4 : p.cell == 1 ? 3 : 1;
  p.states = p.cell == 0 ? 2 : 1;
  check_float(x, fn, "x");
  check_rank(x, 3, fn, "x", "(T, B, I)");
  check_float(w_hh, fn, "w_hh");
  if (w_hh.shape.size() != 2 || w_hh.shape[0] != p.gates * w_hh.shape[1])
    raise_value(std::string(fn) + ": argument 'w_hh' must have shape (" + std::to_string(p.gates) + " * H, H), got " +
                shape_text(w_hh.shape));
  p.s = {x.shape[0], x.shape[1], x.shape[2], w_hh.shape[1]};
  p.G = p.gates * p.s.H;
  p.S = p.cell <= 1 ? 4 * p.s.H : 0;
  check_float(w_ih, fn, "w_ih");
  if (w_ih.shape != std::vector<int64_t>{p.G, p.s.I})
    raise_value(std::string(fn) + ": argument 'w_ih' must have shape " + shape_text({p.G, p.s.I}) + ", got " +
                shape_text(w_ih.shape));
  check_same_device(x, w_ih, fn, "x", "w_ih");
  check_same_device(x, w_hh, fn, "x", "w_hh");
  p.device = x.device;
  if (!lengths.is_none()) {  // checked by the Python op (ops/rnn.py: check_lengths)
    auto host = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(lengths);
    if (!host || host.ndim() != 1 || host.shape(0) != p.s.B)
      raise_value(std::string(fn) + ": argument 'lengths' must be int64 of shape (" + std::to_string(p.s.B) + ",)");
    p.lengths = from_numpy(host, p.device);
  }
  return p;
}

// An optional (B, H) state as given, or zeros (kept in `holder`).
const float* state_arg(const py::object& a, const RnnProblem& p, const char* fn, const char* arg,
                       std::optional<Array>* holder) {
  if (a.is_none()) {
    *holder = empty({p.s.B, p.s.H}, Dtype::float32, p.device, fn);
    cuda::fill((*holder)->f(), 0.0f, p.s.B * p.s.H, p.device);
    return (*holder)->f();
  }
  const Array& s = a.cast<const Array&>();
  check_float(s, fn, arg);
  if (s.shape != std::vector<int64_t>{p.s.B, p.s.H})
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape " + shape_text({p.s.B, p.s.H}) + ", got " +
                shape_text(s.shape));
  return s.f();
}

const float* gate_vector(const py::object& a, const RnnProblem& p, const char* fn, const char* arg) {
  if (a.is_none()) return nullptr;
  const Array& v = a.cast<const Array&>();
  check_float(v, fn, arg);
  if (v.shape != std::vector<int64_t>{p.G})
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape (" + std::to_string(p.G) + ",), got " +
                shape_text(v.shape));
  return v.f();
}

py::tuple rnn_forward_cuda(const std::string& cell, const Array& x, const Array& w_ih, const Array& w_hh,
                           const py::object& b_ih, const py::object& b_hh, const py::object& h0, const py::object& c0,
                           const py::object& lengths, bool reverse) {
  constexpr const char* fn = "cuda.rnn_forward";
  const RnnProblem p = rnn_problem(fn, cell, x, w_ih, w_hh, lengths);
  const auto& s = p.s;
  const float* bi = gate_vector(b_ih, p, fn, "b_ih");
  const float* bh = gate_vector(b_hh, p, fn, "b_hh");
  std::optional<Array> h0_zero, c0_zero;
  const float* h0p = state_arg(h0, p, fn, "h0", &h0_zero);
  const float* c0p = p.cell == 0 ? state_arg(c0, p, fn, "c0", &c0_zero) : nullptr;
  Array out = empty({s.T + p.states, s.B, s.H}, Dtype::float32, p.device, fn);
  std::optional<Array> hs, cs, gates;
  if (p.lengths) hs = empty({s.T, s.B, s.H}, Dtype::float32, p.device, fn);
  if (p.cell == 0) cs = empty({s.T, s.B, s.H}, Dtype::float32, p.device, fn);
  if (p.S > 0) gates = empty({s.T, s.B, p.S}, Dtype::float32, p.device, fn);
  float* y = out.f();
  float* h_n = y + s.T * s.B * s.H;
  {
    py::gil_scoped_release release;
    cuda::rnn_forward(p.cell, y, h_n, p.cell == 0 ? h_n + s.B * s.H : nullptr, hs ? hs->f() : y, cs ? cs->f() : nullptr,
                      gates ? gates->f() : nullptr, x.f(), w_ih.f(), w_hh.f(), bi, bh, h0p, c0p,
                      p.lengths ? static_cast<const int64_t*>(p.lengths->data()) : nullptr, reverse, s, p.device);
  }
  return py::make_tuple(out, or_none(hs), or_none(cs), or_none(gates));
}

py::tuple rnn_backward_cuda(const std::string& cell, const Array& grad_out, const Array& x, const Array& w_ih,
                            const Array& w_hh, const py::object& h0, const py::object& c0, const Array& out,
                            const py::object& hs, const py::object& cs, const py::object& gates,
                            const py::object& lengths, bool reverse, bool need_dx, bool bias) {
  constexpr const char* fn = "cuda.rnn_backward";
  const RnnProblem p = rnn_problem(fn, cell, x, w_ih, w_hh, lengths);
  const auto& s = p.s;
  const std::vector<int64_t> packed{s.T + p.states, s.B, s.H};
  if (grad_out.shape != packed || out.shape != packed)
    raise_value(std::string(fn) + ": arguments 'grad_out' and 'out' must have shape " + shape_text(packed) +
                " (outputs, then h_n [, c_n])");
  auto saved = [&](const py::object& a, const char* arg, bool needed) -> const float* {
    if (!needed) return nullptr;
    if (a.is_none()) raise_value(std::string(fn) + ": argument '" + std::string(arg) + "' (saved by the forward) is required");
    return a.cast<const Array&>().f();
  };
  const float* hsp = p.lengths ? saved(hs, "hs", true) : out.f();
  const float* csp = saved(cs, "cs", p.cell == 0);
  const float* gp = saved(gates, "gates", p.S > 0);
  std::optional<Array> h0_zero, c0_zero;
  const float* h0p = state_arg(h0, p, fn, "h0", &h0_zero);
  const float* c0p = p.cell == 0 ? state_arg(c0, p, fn, "c0", &c0_zero) : nullptr;
  Array dw_ih = empty({p.G, s.I}, Dtype::float32, p.device, fn), dw_hh = empty({p.G, s.H}, Dtype::float32, p.device, fn);
  Array dh0 = empty({s.B, s.H}, Dtype::float32, p.device, fn);
  std::optional<Array> dx, db_ih, db_hh, dc0;
  if (need_dx) dx = empty({s.T, s.B, s.I}, Dtype::float32, p.device, fn);
  if (bias) {
    db_ih = empty({p.G}, Dtype::float32, p.device, fn);
    db_hh = empty({p.G}, Dtype::float32, p.device, fn);
  }
  if (p.cell == 0) dc0 = empty({s.B, s.H}, Dtype::float32, p.device, fn);
  const int64_t BH = s.B * s.H;
  const float* g = grad_out.f();
  {
    py::gil_scoped_release release;
    cuda::rnn_backward(p.cell, dx ? dx->f() : nullptr, dw_ih.f(), dw_hh.f(), db_ih ? db_ih->f() : nullptr,
                       db_hh ? db_hh->f() : nullptr, dh0.f(), dc0 ? dc0->f() : nullptr, g, g + s.T * BH,
                       p.cell == 0 ? g + (s.T + 1) * BH : nullptr, x.f(), w_ih.f(), w_hh.f(), h0p, c0p, hsp, csp, gp,
                       p.lengths ? static_cast<const int64_t*>(p.lengths->data()) : nullptr, reverse, s, p.device);
  }
  return py::make_tuple(or_none(dx), dw_ih, dw_hh, or_none(db_ih), or_none(db_hh), dh0, or_none(dc0));
}

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

}  // namespace
#endif  // FASTNN_CUDA_BUILT

void bind_cuda(py::module_& parent) {
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
  m.def("gemm", [](const Array& a, const Array& b, bool ta, bool tb, std::optional<Array> bias, bool relu, float alpha) {
    return gemm(a, b, ta, tb, bias ? &*bias : nullptr, relu, alpha);
  }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("bias") = py::none(),
     py::arg("relu") = false, py::arg("alpha") = 1.0f, "op(a) @ op(b) [+ bias] [relu] (fp32).");
  m.def("binary", &binary, py::arg("op"), py::arg("a"), py::arg("b"),
        "a op b, op 0 add, 1 sub, 2 mul, 3 div; b has a's shape, its last axis' or one element.");
  m.def("unary", &unary, py::arg("op"), py::arg("x"), "f(x): op 0 neg, 1 exp, 2 log, 3 sqrt, 4 sigmoid, 5 tanh");
  m.def("unary_backward", &unary_backward, py::arg("op"), py::arg("grad_out"), py::arg("saved"),
        "grad_out * f'(.) from the saved input (log) or output (the others).");
  m.def("permute", &permute_py, py::arg("x"), py::arg("dims"), "A copy with the axes reordered (out axis i = x's dims[i]).");
  m.def("cat", &cat_py, py::arg("tensors"), py::arg("axis"), "Join along an existing axis.");
  m.def("split", &split_py, py::arg("x"), py::arg("sizes"), py::arg("axis"), "Pieces of the given sizes along axis.");
  m.def("axpby", &axpby, py::arg("y"), py::arg("alpha"), py::arg("x"), py::arg("beta"), "y = alpha x + beta y");
  m.def("fill", &fill, py::arg("y"), py::arg("value"));
  m.def("relu_forward", &relu_forward, py::arg("x"));
  m.def("relu_backward", &relu_backward, py::arg("grad_out"), py::arg("out"));
  m.def("column_sums", &column_sums, py::arg("x"));
  m.def("sum_all", &sum_all, py::arg("x"), py::arg("scale") = 1.0f);
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("logits"), py::arg("labels"));
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("logits"), py::arg("labels"), py::arg("grad_loss"));
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::kw_only(), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled"), py::arg("maximize"), py::arg("step") = 0, py::arg("step_count") = py::none(),
        "One Adam/AdamW update of every parameter. step: the new step count (host); or step_count: a\n"
        "float32 device array holding the count, advanced by the call on the device (capturable).");
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
  m.def("conv2d_forward", [](const Array& x, const Array& w, std::optional<Array> b, const Pair& stride,
                              const std::array<int64_t, 4>& pad, const Pair& dilation, int64_t groups) {
    return conv_forward_py(x, w, b ? &*b : nullptr, stride, pad, dilation, groups);
  }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
     py::arg("groups"), "As _C.conv2d_forward, on the GPU (padding: top, bottom, left, right).");
  m.def("conv2d_backward", &conv_backward_py, py::arg("grad_output"), py::arg("input"), py::arg("weight"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("needs"),
        "(grad_input, grad_weight, grad_bias), each None unless asked for in needs.");
  m.def("max_pool2d_forward", &max_pool_forward_py, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), "(out, int64 indices), as on the CPU.");
  m.def("max_pool2d_backward", &max_pool_backward_py, py::arg("grad_output"), py::arg("indices"),
        py::arg("input_size"));
  m.def("batch_norm_forward", &batch_norm_forward_cuda, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::kw_only(), py::arg("training"), py::arg("momentum"),
        py::arg("eps"), "As _C.batch_norm_forward, on the GPU: (output, mean, invstd).");
  m.def("batch_norm_backward", &batch_norm_backward_cuda, py::arg("grad_output"), py::arg("input"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::kw_only(), py::arg("training"),
        "(grad_input, grad_weight, grad_bias).");
  m.def("global_avg_pool_forward", &global_avg_pool_forward_cuda, py::arg("input"), "(N, C, H, W) -> (N, C, 1, 1)");
  m.def("global_avg_pool_backward", &global_avg_pool_backward_cuda, py::arg("grad_output"), py::arg("input_size"));
  m.def("rnn_forward", &rnn_forward_cuda, py::arg("cell"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(),
        py::arg("c0") = py::none(), py::kw_only(), py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "As _C.rnn_forward, on the GPU (lengths: host int64 (B,) or None).");
  m.def("rnn_backward", &rnn_backward_cuda, py::arg("cell"), py::arg("grad_out"), py::arg("x"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("h0"), py::arg("c0"), py::arg("out"), py::arg("hs"), py::arg("cs"), py::arg("gates"),
        py::kw_only(), py::arg("lengths") = py::none(), py::arg("reverse") = false, py::arg("need_dx") = true,
        py::arg("bias") = true, "As _C.rnn_backward, on the GPU.");
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::kw_only(),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), py::arg("first_step"));
#else
  m.def("is_built", [] { return false; });
  m.def("device_count", [] { return 0; });
  m.def("unavailable_reason", [] {
    return std::string("this fastnn was built without CUDA (no CUDA compiler was found, or FASTNN_CUDA=OFF)");
  });
#endif
}

}  // namespace fastnn
