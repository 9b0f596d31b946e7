// The CUDA bindings' shared parts: the device array `Array` (cuda.cpp defines it and the
// module's core: memory, DLPack, graphs) and the argument checks every _C.cuda entry point
// makes. The entry points live by family in cuda_ops.cpp (GEMM, elementwise, reductions,
// losses), cuda_nn.cpp (convolution, pooling, normalization, recurrent layers) and
// cuda_optim.cpp (optimizers). Only compiled with the CUDA toolkit (FASTNN_CUDA_BUILT).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings/checks.h"

namespace fastnn {
namespace cuda_py {

struct DLManagedTensor;

enum class Dtype { float32, int64 };
inline size_t itemsize(Dtype d) { return d == Dtype::float32 ? 4 : 8; }
inline const char* dtype_name(Dtype d) { return d == Dtype::float32 ? "float32" : "int64"; }

// Device memory: ours (returned to the allocator) or borrowed through DLPack (its deleter runs).
struct Block {
  void* ptr = nullptr;
  int device = 0;
  DLManagedTensor* borrowed = nullptr;
  ~Block();
};

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
  const int64_t* i64() const { return static_cast<const int64_t*>(data()); }
};

using Pair = std::array<int64_t, 2>;

std::string shape_text(const std::vector<int64_t>& shape);
// The product of the sizes; raises for a negative size or more than 2**40 elements.
int64_t element_count(const std::vector<int64_t>& shape, const char* fn);
void check_device(int device, const char* fn);
// A new array from the caching allocator (contents undefined).
Array empty(const std::vector<int64_t>& shape, Dtype dtype, int device, const char* fn);
// A copy of a C-contiguous float32 or int64 host array on `device`.
Array from_numpy(const py::array& host, int device);

const Array& check_float(const Array& a, const char* fn, const char* arg);
void check_rank(const Array& a, size_t rank, const char* fn, const char* arg, const std::string& expected);
void check_same_device(const Array& a, const Array& b, const char* fn, const char* arg_a, const char* arg_b);
void check_same_shape(const Array& a, const Array& b, const char* fn, const char* arg_a, const char* arg_b);
// An optional float32 vector argument (bias, class weights, per-channel values): null, or its data
// after checking that it has shape (n,) and sits on the device of x (the argument named x_arg).
const float* vector_arg(const Array* v, int64_t n, const Array& x, const char* fn, const char* arg,
                        const char* x_arg);
inline const float* vector_arg(const std::optional<Array>& v, int64_t n, const Array& x, const char* fn,
                               const char* arg, const char* x_arg) {
  return vector_arg(v ? &*v : nullptr, n, x, fn, arg, x_arg);
}
// An optional result as a Python object: the array, or None.
py::object or_none(const std::optional<Array>& a);

void bind_cuda_ops(py::module_& m);
void bind_cuda_nn(py::module_& m);
void bind_cuda_optim(py::module_& m);

}  // namespace cuda_py
}  // namespace fastnn
