// _C.cuda entry points: GEMM, elementwise ops, reductions, shape ops and losses (checks and
// GIL release only; the kernels are in csrc/cuda).
#if FASTNN_CUDA_BUILT
#include <pybind11/stl.h>

#include <algorithm>
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
  const float* bias_n = vector_arg(bias, N, a, fn, "bias", "a");
  Array c = empty({M, N}, Dtype::float32, a.device, fn);
  py::gil_scoped_release release;
  cuda::sgemm(c.f(), N, a.f(), a.shape[1], b.f(), b.shape[1], M, N, K, trans_a, trans_b, alpha, 0.0f,
              bias_n, relu, a.device);
  return c;
}

// shape with leading 1s up to ndim axes (numpy's alignment of broadcast shapes).
std::vector<int64_t> padded(const std::vector<int64_t>& shape, size_t ndim) {
  std::vector<int64_t> out(ndim - shape.size(), 1);
  out.insert(out.end(), shape.begin(), shape.end());
  return out;
}

Array binary(int op, const Array& a, const Array& b) {
  constexpr const char* fn = "cuda.binary";
  check_float(a, fn, "a");
  check_float(b, fn, "b");
  check_same_device(a, b, fn, "a", "b");
  if (op < 0 || op > 6)
    raise_value(std::string(fn) + ": op must be 0 (add), 1 (sub), 2 (mul), 3 (div), 4 (pow), 5 (pow_grad_base) or "
                "6 (pow_grad_exponent), got " + std::to_string(op));
  // numpy broadcasting: the shapes aligned at their last axes, each pair of sizes equal or one of them 1.
  const size_t ndim = std::max(a.shape.size(), b.shape.size());
  const std::vector<int64_t> a_shape = padded(a.shape, ndim), b_shape = padded(b.shape, ndim);
  std::vector<int64_t> out_shape(ndim);
  for (size_t d = 0; d < ndim; ++d) {
    if (a_shape[d] != b_shape[d] && a_shape[d] != 1 && b_shape[d] != 1)
      raise_value(std::string(fn) + ": shapes " + shape_text(a.shape) + " of 'a' and " + shape_text(b.shape) +
                  " of 'b' do not broadcast (aligned at the last axis, sizes must be equal or 1)");
    out_shape[d] = a_shape[d] == 1 ? b_shape[d] : a_shape[d];
  }
  if (ndim > 8) raise_value(std::string(fn) + ": at most 8 axes, got " + std::to_string(ndim));
  Array out = empty(out_shape, Dtype::float32, a.device, fn);
  py::gil_scoped_release release;
  cuda::broadcast_binary(static_cast<cuda::Binary>(op), out.f(), a.f(), b.f(), out_shape.data(), a_shape.data(),
                         b_shape.data(), static_cast<int>(ndim), a.device);
  return out;
}

Array expand(const Array& x, const std::vector<int64_t>& shape) {
  constexpr const char* fn = "cuda.expand";
  check_float(x, fn, "x");
  if (shape.size() > 8) raise_value(std::string(fn) + ": at most 8 axes, got shape " + shape_text(shape));
  bool fits = x.shape.size() <= shape.size();
  const std::vector<int64_t> x_shape = padded(x.shape, fits ? shape.size() : x.shape.size());
  for (size_t d = 0; fits && d < shape.size(); ++d) fits = x_shape[d] == shape[d] || x_shape[d] == 1;
  if (!fits)
    raise_value(std::string(fn) + ": argument 'x' of shape " + shape_text(x.shape) + " does not broadcast to " +
                shape_text(shape));
  Array out = empty(shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::expand(out.f(), x.f(), shape.data(), x_shape.data(), static_cast<int>(shape.size()), x.device);
  return out;
}

void check_unary_op(int op, const char* fn) {
  if (op < 0 || op > 8)
    raise_value(std::string(fn) + ": op must be 0 (neg) to 8 (gelu_tanh), got " + std::to_string(op));
}

Array unary(int op, const Array& x, float param) {
  constexpr const char* fn = "cuda.unary";
  check_float(x, fn, "x");
  check_unary_op(op, fn);
  Array y = empty(x.shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::unary(static_cast<cuda::Unary>(op), y.f(), x.f(), x.size(), param, x.device);
  return y;
}

Array unary_backward(int op, const Array& dy, const Array& saved, float param) {
  constexpr const char* fn = "cuda.unary_backward";
  check_float(dy, fn, "grad_out");
  check_float(saved, fn, "saved");
  check_same_shape(dy, saved, fn, "grad_out", "saved");
  check_unary_op(op, fn);
  Array dx = empty(dy.shape, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::unary_backward(static_cast<cuda::Unary>(op), dx.f(), dy.f(), saved.f(), dy.size(), param, dy.device);
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

// A view of `shape` at element `offset` with element `strides` (any sign) checked to lie inside the
// `size` elements of the array named `arg`.
void check_view(int64_t size, int64_t offset, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                const char* fn, const char* arg) {
  if (shape.size() != strides.size())
    raise_value(std::string(fn) + ": shape and strides must have the same length, got " +
                std::to_string(shape.size()) + " and " + std::to_string(strides.size()));
  element_count(shape, fn);  // non-negative sizes, at most 2**40 elements
  __int128 low = offset, high = offset;  // extents of up to 2**40 elements times strides of any size
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return;  // an empty view reads nothing
    const __int128 extent = static_cast<__int128>(shape[d] - 1) * strides[d];
    (extent < 0 ? low : high) += extent;
  }
  if (low < 0 || high >= size)
    raise_value(std::string(fn) + ": the view of shape " + shape_text(shape) + " at offset " + std::to_string(offset) +
                " reaches outside argument '" + arg + "' of " + std::to_string(size) + " elements");
}

Array gather_strided_py(const Array& x, int64_t offset, const std::vector<int64_t>& shape,
                        const std::vector<int64_t>& strides) {
  constexpr const char* fn = "cuda.gather_strided";
  check_float(x, fn, "x");
  check_view(x.size(), offset, shape, strides, fn, "x");
  Array out = empty(shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::gather_strided(out.f(), x.f(), offset, shape.data(), strides.data(), static_cast<int>(shape.size()), x.device);
  return out;
}

void scatter_strided_py(Array& dst, const Array& src, int64_t offset, const std::vector<int64_t>& strides) {
  constexpr const char* fn = "cuda.scatter_strided";
  check_float(dst, fn, "dst");
  check_float(src, fn, "src");
  check_same_device(dst, src, fn, "dst", "src");
  check_view(dst.size(), offset, src.shape, strides, fn, "dst");
  py::gil_scoped_release release;
  cuda::scatter_strided(dst.f(), src.f(), offset, src.shape.data(), strides.data(), static_cast<int>(src.shape.size()),
                        dst.device);
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

// ---- reductions over the middle axis of x (outer, R, inner) --------------------------------------
Array reduce_sum(const Array& x, float scale) {
  constexpr const char* fn = "cuda.reduce_sum";
  check_float(x, fn, "x");
  check_rank(x, 3, fn, "x", "(outer, R, inner)");
  Array out = empty({x.shape[0], x.shape[2]}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::reduce_sum(out.f(), x.f(), x.shape[0], x.shape[1], x.shape[2], scale, x.device);
  return out;
}

void check_max_input(const Array& x, const char* fn) {
  check_float(x, fn, "x");
  check_rank(x, 3, fn, "x", "(outer, R, inner)");
  if (x.shape[1] == 0)
    raise_value(std::string(fn) + ": cannot reduce an empty axis: x has shape " + shape_text(x.shape));
}

Array reduce_max(const Array& x) {
  constexpr const char* fn = "cuda.reduce_max";
  check_max_input(x, fn);
  Array out = empty({x.shape[0], x.shape[2]}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::reduce_max(out.f(), x.f(), x.shape[0], x.shape[1], x.shape[2], x.device);
  return out;
}

Array reduce_max_backward(const Array& grad_out, const Array& x, const Array& out) {
  constexpr const char* fn = "cuda.reduce_max_backward";
  check_max_input(x, fn);
  const std::vector<int64_t> reduced{x.shape[0], x.shape[2]};
  auto check_reduced = [&](const Array& array, const char* name) {
    check_float(array, fn, name);
    if (array.shape != reduced)
      raise_value(std::string(fn) + ": argument '" + name + "' must have shape " + shape_text(reduced) + ", got " +
                  shape_text(array.shape));
    check_same_device(x, array, fn, "x", name);
  };
  check_reduced(grad_out, "grad_out");
  check_reduced(out, "out");
  Array dx = empty(x.shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::reduce_max_backward(dx.f(), grad_out.f(), x.f(), out.f(), x.shape[0], x.shape[1], x.shape[2], x.device);
  return dx;
}

// ---- softmax and losses ----

// x viewed as (outer, C, inner) around axis `dim`.
struct Lines {
  int64_t outer = 1, C = 1, inner = 1;
};
Lines lines_along(const Array& x, int64_t dim, const char* fn) {
  const int64_t ndim = static_cast<int64_t>(x.shape.size());
  if (dim < 0 || dim >= ndim)
    raise_value(std::string(fn) + ": argument 'dim' must be in [0, " + std::to_string(ndim) + ") for x of shape " +
                shape_text(x.shape) + ", got " + std::to_string(dim));
  Lines l;
  for (int64_t d = 0; d < ndim; ++d) (d < dim ? l.outer : d == dim ? l.C : l.inner) *= x.shape[d];
  return l;
}

Array softmax_forward(const Array& x, int64_t dim, bool log) {
  constexpr const char* fn = "cuda.softmax_forward";
  check_float(x, fn, "x");
  const Lines l = lines_along(x, dim, fn);
  Array y = empty(x.shape, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::softmax_forward(y.f(), x.f(), l.outer, l.C, l.inner, log, x.device);
  return y;
}

Array softmax_backward(const Array& dy, const Array& y, int64_t dim, bool log) {
  constexpr const char* fn = "cuda.softmax_backward";
  check_float(dy, fn, "grad_out");
  check_float(y, fn, "out");
  check_same_shape(dy, y, fn, "grad_out", "out");
  check_same_device(dy, y, fn, "grad_out", "out");
  const Lines l = lines_along(y, dim, fn);
  Array dx = empty(y.shape, Dtype::float32, y.device, fn);
  py::gil_scoped_release release;
  cuda::softmax_backward(dx.f(), dy.f(), y.f(), l.outer, l.C, l.inner, log, y.device);
  return dx;
}

cuda::Reduction reduction_of(const std::string& name, const char* fn) {
  if (name == "none") return cuda::Reduction::none;
  if (name == "mean") return cuda::Reduction::mean;
  if (name == "sum") return cuda::Reduction::sum;
  raise_value(std::string(fn) + ": argument 'reduction' must be 'none', 'mean' or 'sum', got '" + name + "'");
}

// grad_loss: the loss's shape for reduction 'none' (`shape`), one element otherwise.
void check_grad_loss(const Array& grad_loss, const Array& like, const std::vector<int64_t>& shape,
                     cuda::Reduction reduction, const char* fn) {
  check_float(grad_loss, fn, "grad_loss");
  check_same_device(like, grad_loss, fn, "input", "grad_loss");
  if (reduction == cuda::Reduction::none ? grad_loss.shape != shape : grad_loss.size() != 1)
    raise_value(std::string(fn) + ": argument 'grad_loss' must have shape " +
                (reduction == cuda::Reduction::none ? shape_text(shape) : std::string("() (one element)")) +
                ", got " + shape_text(grad_loss.shape));
}

// logits (N, C); target: class indices (N,) (int64, or whole numbers as float32) or float32
// probabilities (N, C); weight (C,).
cuda::CrossEntropyArgs class_loss_args(const Array& logits, const Array& target, const std::optional<Array>& weight,
                                       int64_t ignore_index, double label_smoothing, bool log_probs, const char* fn) {
  check_float(logits, fn, "logits");
  check_rank(logits, 2, fn, "logits", "(N, C)");
  check_same_device(logits, target, fn, "logits", "target");
  cuda::CrossEntropyArgs a{};
  a.N = logits.shape[0];
  a.C = logits.shape[1];
  if (a.C < 1)
    raise_value(std::string(fn) + ": argument 'logits' must have at least one class, got shape " +
                shape_text(logits.shape));
  a.logits = logits.f();
  const std::vector<int64_t> rows{a.N};
  if (target.shape == rows && target.dtype == Dtype::int64) {
    a.labels = target.i64();
  } else if (target.shape == rows) {
    a.labels_f32 = target.f();
  } else if (target.shape == logits.shape && target.dtype == Dtype::float32 && !log_probs) {
    a.probs = target.f();
  } else {
    raise_value(std::string(fn) + ": argument 'target' must hold class indices of shape " + shape_text(rows) +
                (log_probs ? "" : " or float32 class probabilities of shape " + shape_text(logits.shape)) +
                ", got " + dtype_name(target.dtype) + " of shape " + shape_text(target.shape));
  }
  a.weight = vector_arg(weight, a.C, logits, fn, "weight", "logits");
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0) || (log_probs && label_smoothing != 0.0))
    raise_value(std::string(fn) + ": argument 'label_smoothing' must be in [0, 1] (0 with log_probs), got " +
                std::to_string(label_smoothing));
  a.ignore_index = ignore_index;
  a.label_smoothing = static_cast<float>(label_smoothing);
  a.log_probs = log_probs;
  return a;
}

py::tuple cross_entropy_forward(const Array& logits, const Array& target, const std::optional<Array>& weight,
                                int64_t ignore_index, double label_smoothing, const std::string& reduction,
                                bool log_probs) {
  constexpr const char* fn = "cuda.cross_entropy_forward";
  const cuda::CrossEntropyArgs a =
      class_loss_args(logits, target, weight, ignore_index, label_smoothing, log_probs, fn);
  const cuda::Reduction r = reduction_of(reduction, fn);
  Array loss = empty(r == cuda::Reduction::none ? std::vector<int64_t>{a.N} : std::vector<int64_t>{},
                     Dtype::float32, logits.device, fn);
  Array weight_sum = empty({}, Dtype::float32, logits.device, fn);
  {
    py::gil_scoped_release release;
    cuda::cross_entropy_forward(loss.f(), weight_sum.f(), a, r, logits.device);
  }
  return py::make_tuple(loss, weight_sum);
}

py::tuple cross_entropy_backward(const Array& logits, const Array& target, const Array& grad_loss,
                                 const Array& weight_sum, const std::optional<Array>& weight, int64_t ignore_index,
                                 double label_smoothing, const std::string& reduction, bool log_probs,
                                 bool need_target) {
  constexpr const char* fn = "cuda.cross_entropy_backward";
  const cuda::CrossEntropyArgs a =
      class_loss_args(logits, target, weight, ignore_index, label_smoothing, log_probs, fn);
  const cuda::Reduction r = reduction_of(reduction, fn);
  check_grad_loss(grad_loss, logits, {a.N}, r, fn);
  check_float(weight_sum, fn, "weight_sum");
  check_same_device(logits, weight_sum, fn, "logits", "weight_sum");
  if (weight_sum.size() != 1)
    raise_value(std::string(fn) + ": argument 'weight_sum' must be the one-element array cross_entropy_forward "
                "returned, got shape " + shape_text(weight_sum.shape));
  if (need_target && !a.probs)
    raise_value(std::string(fn) + ": need_target asks for the gradient of class probabilities; class indices have none");
  Array dlogits = empty(logits.shape, Dtype::float32, logits.device, fn);
  std::optional<Array> dtarget;
  if (need_target) dtarget = empty(logits.shape, Dtype::float32, logits.device, fn);
  {
    py::gil_scoped_release release;
    cuda::cross_entropy_backward(dlogits.f(), dtarget ? dtarget->f() : nullptr, grad_loss.f(), weight_sum.f(), a, r,
                                 logits.device);
  }
  return py::make_tuple(dlogits, or_none(dtarget));
}

// w's shape must be a trailing part of the input's (w[i % w.size()] is its value at element i).
int64_t trailing_period(const Array& w, const Array& input, const char* fn, const char* arg) {
  check_float(w, fn, arg);
  check_same_device(input, w, fn, "input", arg);
  const size_t k = w.shape.size();
  if (k > input.shape.size() || !std::equal(w.shape.begin(), w.shape.end(), input.shape.end() - k))
    raise_value(std::string(fn) + ": argument '" + arg + "' must have the shape of a trailing part of the input's " +
                shape_text(input.shape) + " (() for one value), got " + shape_text(w.shape));
  return w.size() > 0 ? w.size() : 1;
}

cuda::ElementwiseLossArgs elementwise_loss_args(int kind, const Array& input, const Array& target,
                                                const std::optional<Array>& weight,
                                                const std::optional<Array>& pos_weight, float delta, const char* fn) {
  if (kind < 0 || kind > 4)
    raise_value(std::string(fn) + ": argument 'kind' must be 0 (mse), 1 (l1), 2 (huber), 3 (binary cross-entropy) "
                "or 4 (binary cross-entropy with logits), got " + std::to_string(kind));
  check_float(input, fn, "input");
  check_float(target, fn, "target");
  check_same_shape(input, target, fn, "input", "target");
  check_same_device(input, target, fn, "input", "target");
  cuda::ElementwiseLossArgs a{};
  a.kind = static_cast<cuda::ElementwiseLoss>(kind);
  a.x = input.f();
  a.y = target.f();
  a.n = input.size();
  a.delta = delta;
  if (a.kind == cuda::ElementwiseLoss::huber && !(delta > 0.0f))
    raise_value(std::string(fn) + ": argument 'delta' must be positive, got " + std::to_string(delta));
  if (weight) {
    a.weight_period = trailing_period(*weight, input, fn, "weight");
    a.weight = weight->f();
  }
  if (pos_weight) {
    if (a.kind != cuda::ElementwiseLoss::bce_logits)
      raise_value(std::string(fn) + ": argument 'pos_weight' is for kind 4 (binary cross-entropy with logits) only");
    a.pos_weight_period = trailing_period(*pos_weight, input, fn, "pos_weight");
    a.pos_weight = pos_weight->f();
  }
  return a;
}

Array elementwise_loss_forward(int kind, const Array& input, const Array& target, const std::optional<Array>& weight,
                               const std::optional<Array>& pos_weight, float delta, const std::string& reduction) {
  constexpr const char* fn = "cuda.elementwise_loss_forward";
  const cuda::ElementwiseLossArgs a = elementwise_loss_args(kind, input, target, weight, pos_weight, delta, fn);
  const cuda::Reduction r = reduction_of(reduction, fn);
  Array loss = empty(r == cuda::Reduction::none ? input.shape : std::vector<int64_t>{}, Dtype::float32, input.device,
                     fn);
  py::gil_scoped_release release;
  cuda::elementwise_loss_forward(loss.f(), a, r, input.device);
  return loss;
}

py::tuple elementwise_loss_backward(int kind, const Array& grad_loss, const Array& input, const Array& target,
                                    const std::optional<Array>& weight, const std::optional<Array>& pos_weight,
                                    float delta, const std::string& reduction, bool need_input, bool need_target) {
  constexpr const char* fn = "cuda.elementwise_loss_backward";
  const cuda::ElementwiseLossArgs a = elementwise_loss_args(kind, input, target, weight, pos_weight, delta, fn);
  const cuda::Reduction r = reduction_of(reduction, fn);
  check_grad_loss(grad_loss, input, input.shape, r, fn);
  std::optional<Array> dx, dy;
  if (need_input) dx = empty(input.shape, Dtype::float32, input.device, fn);
  if (need_target) dy = empty(input.shape, Dtype::float32, input.device, fn);
  {
    py::gil_scoped_release release;
    cuda::elementwise_loss_backward(dx ? dx->f() : nullptr, dy ? dy->f() : nullptr, grad_loss.f(), a, r,
                                    input.device);
  }
  return py::make_tuple(or_none(dx), or_none(dy));
}

// Inverted dropout's mask on `device`, the CPU's _C.dropout_mask bit for bit; with `counter` (a
// device int64 array of one element) the draw number comes from it, advanced on the device.
Array dropout_mask_cuda(const std::vector<int64_t>& shape, double p, uint64_t seed, uint64_t offset,
                        std::optional<Array> counter, int device) {
  constexpr const char* fn = "cuda.dropout_mask";
  if (!(p >= 0.0 && p <= 1.0))
    raise_value(std::string(fn) + ": argument 'p' must be in [0, 1], got p=" + std::to_string(p));
  if (counter && (counter->dtype != Dtype::int64 || counter->size() != 1 || counter->device != device))
    raise_value(std::string(fn) + ": argument 'counter' must be an int64 array of one element on cuda:" +
                std::to_string(device));
  Array mask = empty(shape, Dtype::float32, device, fn);
  py::gil_scoped_release release;
  cuda::dropout_mask(mask.f(), mask.size(), p, seed, offset,
                     counter ? static_cast<int64_t*>(counter->data()) : nullptr, device);
  return mask;
}

}  // namespace

void bind_cuda_ops(py::module_& m) {
  m.def("gemm", [](const Array& a, const Array& b, bool ta, bool tb, std::optional<Array> bias, bool relu, float alpha) {
    return gemm(a, b, ta, tb, bias ? &*bias : nullptr, relu, alpha);
  }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("bias") = py::none(),
     py::arg("relu") = false, py::arg("alpha") = 1.0f, "op(a) @ op(b) [+ bias] [relu] (fp32).");
  m.def("binary", &binary, py::arg("op"), py::arg("a"), py::arg("b"),
        "a op b with numpy broadcasting; op 0 add, 1 sub, 2 mul, 3 div, 4 pow, 5 b * a**(b - 1), "
        "6 a**b * log(a) (0 where a == 0 and b >= 0).");
  m.def("expand", &expand, py::arg("x"), py::arg("shape"), "x broadcast to shape, as a new array.");
  m.def("unary", &unary, py::arg("op"), py::arg("x"), py::arg("param") = 0.0f,
        "f(x): op 0 neg, 1 exp, 2 log, 3 sqrt, 4 sigmoid, 5 tanh, 6 leaky_relu (param: its negative slope), "
        "7 gelu (erf), 8 gelu (tanh approximation).");
  m.def("unary_backward", &unary_backward, py::arg("op"), py::arg("grad_out"), py::arg("saved"),
        py::arg("param") = 0.0f,
        "grad_out * f'(.) from the saved input (log, leaky_relu, gelu) or output (the others).");
  m.def("permute", &permute_py, py::arg("x"), py::arg("dims"), "A copy with the axes reordered (out axis i = x's dims[i]).");
  m.def("gather_strided", &gather_strided_py, py::arg("x"), py::arg("offset"), py::arg("shape"), py::arg("strides"),
        "A copy of the view of x (flat, in elements) at offset with the given shape and strides (any sign).");
  m.def("scatter_strided", &scatter_strided_py, py::arg("dst"), py::arg("src"), py::arg("offset"), py::arg("strides"),
        "dst's view (flat, in elements; src's shape, at offset, with strides) set from src, in place.");
  m.def("cat", &cat_py, py::arg("tensors"), py::arg("axis"), "Join along an existing axis.");
  m.def("split", &split_py, py::arg("x"), py::arg("sizes"), py::arg("axis"), "Pieces of the given sizes along axis.");
  m.def("axpby", &axpby, py::arg("y"), py::arg("alpha"), py::arg("x"), py::arg("beta"), "y = alpha x + beta y");
  m.def("fill", &fill, py::arg("y"), py::arg("value"));
  m.def("relu_forward", &relu_forward, py::arg("x"));
  m.def("relu_backward", &relu_backward, py::arg("grad_out"), py::arg("out"));
  m.def("column_sums", &column_sums, py::arg("x"));
  m.def("sum_all", &sum_all, py::arg("x"), py::arg("scale") = 1.0f);
  m.def("reduce_sum", &reduce_sum, py::arg("x"), py::arg("scale") = 1.0f,
        "x (outer, R, inner) summed over R (in double), times scale: (outer, inner).");
  m.def("reduce_max", &reduce_max, py::arg("x"), "x (outer, R, inner) maximized over R: (outer, inner).");
  m.def("reduce_max_backward", &reduce_max_backward, py::arg("grad_out"), py::arg("x"), py::arg("out"),
        "grad_out / ties where x equals out (its maximum over R), 0 elsewhere: x's shape.");
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("dim"), py::arg("log") = false,
        "softmax (log: log_softmax) of x along dim.");
  m.def("softmax_backward", &softmax_backward, py::arg("grad_out"), py::arg("out"), py::arg("dim"),
        py::arg("log") = false, "The input's gradient from the output's and the saved output.");
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("logits"), py::arg("target"), py::kw_only(),
        py::arg("weight") = py::none(), py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0,
        py::arg("reduction") = "mean", py::arg("log_probs") = false,
        "(loss, weight_sum): cross-entropy of logits (N, C) (log_probs: nll_loss of log-probabilities) with class "
        "indices (N,) or probabilities (N, C); loss (N,) for 'none', () otherwise; weight_sum: mean's divisor.");
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("logits"), py::arg("target"), py::arg("grad_loss"),
        py::arg("weight_sum"), py::kw_only(), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
        py::arg("label_smoothing") = 0.0, py::arg("reduction") = "mean", py::arg("log_probs") = false,
        py::arg("need_target") = false,
        "(dlogits, dtarget or None); the arguments as given to cross_entropy_forward, with its weight_sum.");
  m.def("elementwise_loss_forward", &elementwise_loss_forward, py::arg("kind"), py::arg("input"), py::arg("target"),
        py::kw_only(), py::arg("weight") = py::none(), py::arg("pos_weight") = py::none(), py::arg("delta") = 1.0f,
        py::arg("reduction") = "mean",
        "Loss kind 0 mse, 1 l1, 2 huber, 3 binary cross-entropy, 4 with logits; weight and pos_weight have a "
        "trailing part of the input's shape; the input's shape for 'none', () otherwise.");
  m.def("elementwise_loss_backward", &elementwise_loss_backward, py::arg("kind"), py::arg("grad_loss"),
        py::arg("input"), py::arg("target"), py::kw_only(), py::arg("weight") = py::none(),
        py::arg("pos_weight") = py::none(), py::arg("delta") = 1.0f, py::arg("reduction") = "mean",
        py::arg("need_input") = true, py::arg("need_target") = true, "(dinput or None, dtarget or None).");
  m.def("dropout_mask", &dropout_mask_cuda, py::arg("shape"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::arg("counter") = py::none(), py::arg("device") = 0,
        "As _C.dropout_mask, on the GPU; counter: a device int64 (1,) holding the draw number, advanced by 1.");
}

}  // namespace cuda_py
}  // namespace fastnn
#endif  // FASTNN_CUDA_BUILT
