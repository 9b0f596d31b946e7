// _C.cuda entry points: GEMM, elementwise ops, reductions, shape ops and losses (checks and
// GIL release only; the kernels are in csrc/cuda).
#if FASTNN_CUDA_BUILT
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/cuda_array.h"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda_py {
namespace {

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

}  // namespace

void bind_cuda_ops(py::module_& m) {
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
}

}  // namespace cuda_py
}  // namespace fastnn
#endif  // FASTNN_CUDA_BUILT
