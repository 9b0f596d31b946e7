// _C.cross_entropy_forward / _C.cross_entropy_backward: argument checks, then the GIL is
// released around the kernels of cpu/loss.cpp.
#include <string>
#include <vector>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "cpu/loss.h"

namespace fastnn {
namespace {

std::string dims(int64_t a) { return "(" + std::to_string(a) + ",)"; }
std::string dims(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

Reduction parse_reduction(const std::string& name, const char* fn) {
  if (name == "none") return Reduction::none;
  if (name == "mean") return Reduction::mean;
  if (name == "sum") return Reduction::sum;
  raise_value(std::string(fn) + ": reduction must be 'none', 'mean' or 'sum', got '" + name + "'");
}

// Checks every argument and fills the problem (pointers into the caller's arrays).
CrossEntropyProblem check_problem(const char* fn, const py::array& logits, const py::array& target,
                                  const py::object& weight, int64_t ignore_index, double label_smoothing,
                                  const std::string& reduction) {
  CrossEntropyProblem p{};
  MatrixArg X = check_matrix(logits, fn, "logits", "(N, C)");
  p.logits = X.data;
  p.ld_logits = X.ld;
  p.R = X.rows;
  p.C = X.cols;
  if (p.C < 1)
    raise_value(std::string(fn) + ": argument 'logits' must have at least one class, got shape " + shape_str(logits));
  const std::string row_shape = dims(p.R), full_shape = dims(p.R, p.C);

  const char kind = target.dtype().kind();
  if (kind == 'f') {
    if (target.ndim() != 2)
      raise_type(std::string(fn) + ": argument 'target' of dtype " + std::string(py::str(target.dtype())) +
                 " is read as class probabilities of shape " + full_shape + ", got shape " + shape_str(target) +
                 "; class indices must be int64 of shape " + row_shape + " (convert with .astype(numpy.int64))");
    MatrixArg Q = check_matrix(target, fn, "target", full_shape.c_str());
    if (Q.rows != p.R || Q.cols != p.C)
      raise_value(std::string(fn) + ": argument 'target' (class probabilities) must have shape " + full_shape +
                  " like 'logits', got " + shape_str(target));
    p.probs = Q.data;
    p.ld_probs = Q.ld;
  } else if (kind == 'i' || kind == 'u') {
    if (kind != 'i' || target.itemsize() != 8)
      raise_type(std::string(fn) + ": argument 'target' (class indices) must be int64, got " +
                 std::string(py::str(target.dtype())) + " (convert with .astype(numpy.int64))");
    if (target.ndim() != 1 || target.shape(0) != p.R)
      raise_value(std::string(fn) + ": argument 'target' (class indices) must have shape " + row_shape +
                  " for logits of shape " + full_shape + ", got " + shape_str(target));
    if (p.R > 1 && target.strides(0) != static_cast<py::ssize_t>(sizeof(int64_t)))
      raise_value(std::string(fn) + ": argument 'target' must be contiguous; pass numpy.ascontiguousarray(target)");
    p.targets = static_cast<const int64_t*>(target.data());
    for (int64_t r = 0; r < p.R; ++r) {
      const int64_t t = p.targets[r];
      if (t != ignore_index && (t < 0 || t >= p.C))
        raise_value(std::string(fn) + ": target[" + std::to_string(r) + "] = " + std::to_string(t) +
                    " is out of range for " + std::to_string(p.C) + " classes: expected 0 <= target < " +
                    std::to_string(p.C) + " or target == ignore_index (" + std::to_string(ignore_index) + ")");
    }
  } else {
    raise_type(std::string(fn) + ": argument 'target' must hold int64 class indices or float32 probabilities, got " +
               std::string(py::str(target.dtype())));
  }

  if (!weight.is_none()) p.weight = check_vector(weight.cast<py::array>(), fn, "weight", p.C);
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    raise_value(std::string(fn) + ": label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  p.ignore_index = ignore_index;
  p.label_smoothing = static_cast<float>(label_smoothing);
  p.reduction = parse_reduction(reduction, fn);
  return p;
}

py::tuple cross_entropy_forward_py(const py::array& logits, const py::array& target, const py::object& weight,
                                   int64_t ignore_index, double label_smoothing, const std::string& reduction) {
  const char* fn = "cross_entropy_forward";
  CrossEntropyProblem p = check_problem(fn, logits, target, weight, ignore_index, label_smoothing, reduction);
  py::array_t<float> row_loss(p.R);
  py::array_t<double> lse(p.R);
  float* row_loss_data = row_loss.mutable_data();
  double* lse_data = lse.mutable_data();
  float reduced;
  {
    py::gil_scoped_release release;
    reduced = cross_entropy_forward(row_loss_data, lse_data, p);
  }
  if (p.reduction == Reduction::none) return py::make_tuple(row_loss, lse);
  py::array_t<float> scalar(std::vector<py::ssize_t>{});
  *scalar.mutable_data() = reduced;
  return py::make_tuple(scalar, lse);
}

py::array cross_entropy_backward_py(const py::array& grad_loss, const py::array& logits, const py::array& target,
                                    const py::array& lse, const py::object& weight, int64_t ignore_index,
                                    double label_smoothing, const std::string& reduction) {
  const char* fn = "cross_entropy_backward";
  CrossEntropyProblem p = check_problem(fn, logits, target, weight, ignore_index, label_smoothing, reduction);
  if (!grad_loss.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument 'grad_loss' must be float32, got " + std::string(py::str(grad_loss.dtype())));
  if (p.reduction == Reduction::none) {
    check_vector(grad_loss, fn, "grad_loss", p.R);
  } else if (grad_loss.size() != 1) {
    raise_value(std::string(fn) + ": argument 'grad_loss' must hold one value for reduction='" + reduction +
                "', got shape " + shape_str(grad_loss));
  }
  if (!lse.dtype().is(py::dtype::of<double>()) || lse.ndim() != 1 || lse.shape(0) != p.R ||
      (p.R > 1 && lse.strides(0) != static_cast<py::ssize_t>(sizeof(double))))
    raise_value(std::string(fn) + ": argument 'lse' must be the contiguous float64 array of shape " + dims(p.R) +
                " returned by cross_entropy_forward, got " + std::string(py::str(lse.dtype())) + " of shape " +
                shape_str(lse));
  py::array_t<float> grad = new_float_array({p.R, p.C});
  float* grad_data = grad.mutable_data();
  const float* g = static_cast<const float*>(grad_loss.data());
  const double* l = static_cast<const double*>(lse.data());
  {
    py::gil_scoped_release release;
    cross_entropy_backward(grad_data, g, l, p);
  }
  return grad;
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def("cross_entropy_forward", &cross_entropy_forward_py, py::arg("logits"), py::arg("target"), py::kw_only(),
        py::arg("weight") = py::none(), py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0,
        py::arg("reduction") = "mean",
        R"doc(Fused log-softmax + NLL. Returns (loss, lse).

logits: float32 (N, C) with contiguous rows. target: int64 class indices (N,)
(ignore_index allowed) or float32 probabilities (N, C). weight: float32 (C,).
loss is 0-d for reduction 'mean'/'sum', (N,) for 'none'; lse (N,) float64 is
what cross_entropy_backward needs. PyTorch's semantics. Releases the GIL.)doc");
  m.def("cross_entropy_backward", &cross_entropy_backward_py, py::arg("grad_loss"), py::arg("logits"),
        py::arg("target"), py::arg("lse"), py::kw_only(), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0, py::arg("reduction") = "mean",
        R"doc(Gradient (N, C) float32 of cross_entropy_forward's loss with respect to logits.

grad_loss: float32, (N,) for reduction 'none', one value otherwise; lse: the
float64 array cross_entropy_forward returned; the other arguments as given to it.
Releases the GIL.)doc");
}

}  // namespace fastnn
