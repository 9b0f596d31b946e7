// _C.linear_epilogue_backward, _C.relu, _C.relu_backward: argument checks, then the GIL is
// released around the kernels of cpu/elementwise.cpp.
#include <algorithm>
#include <string>
#include <vector>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "cpu/elementwise.h"

namespace fastnn {
namespace {

constexpr const char* kFn = "linear_epilogue_backward";

py::tuple linear_epilogue_backward_py(const py::array& grad, const py::object& out, bool bias_grad) {
  const MatrixArg G = check_matrix(grad, kFn, "grad", "(M, N)");
  const std::string shape = "(" + std::to_string(G.rows) + ", " + std::to_string(G.cols) + ")";
  MatrixArg O{nullptr, 0, 0, 0};
  if (!out.is_none()) {
    O = check_matrix(py::cast<py::array>(out), kFn, "out", shape.c_str());
    if (O.rows != G.rows || O.cols != G.cols)
      raise_value(std::string(kFn) + ": argument 'out' (the layer's output) must have the shape of 'grad', " +
                  shape + ", got " + shape_str(py::cast<py::array>(out)));
  }
  py::array_t<float> masked, bias;
  float* masked_ptr = nullptr;
  if (O.data) {
    masked = new_float_array({G.rows, G.cols});
    masked_ptr = masked.mutable_data();
  }
  if (bias_grad) bias = py::array_t<float>({G.cols});
  float* bias_ptr = bias_grad ? bias.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    linear_epilogue_backward(masked_ptr, G.cols, bias_ptr, G.data, G.ld, O.data, O.ld, G.rows, G.cols);
  }
  py::object first = O.data ? py::object(masked) : py::object(grad);
  py::object second = bias_grad ? py::object(bias) : py::object(py::none());
  return py::make_tuple(first, second);
}

// A float32 C-contiguous array of any shape.
const float* check_dense(const py::array& a, const char* fn, const char* arg) {
  if (!a.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " + std::string(py::str(a.dtype())) +
               " (convert with .astype(numpy.float32))");
  if (!(a.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument '" + arg + "' of shape " + shape_str(a) +
                " must be C-contiguous; pass numpy.ascontiguousarray(" + arg + ")");
  return static_cast<const float*>(a.data());
}

py::array_t<float> relu_py(const py::array& x) {
  const float* px = check_dense(x, "relu", "x");
  py::array_t<float> out = new_float_array_like(x);
  float* po = out.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    relu_forward(po, px, n);
  }
  return out;
}

py::array_t<float> relu_backward_py(const py::array& grad, const py::array& out) {
  const float* pg = check_dense(grad, "relu_backward", "grad");
  const float* po = check_dense(out, "relu_backward", "out");
  if (grad.ndim() != out.ndim() || !std::equal(grad.shape(), grad.shape() + grad.ndim(), out.shape()))
    raise_value(std::string("relu_backward: argument 'out' (the ReLU's output) must have the shape of 'grad', ") +
                shape_str(grad) + ", got " + shape_str(out));
  py::array_t<float> grad_in = new_float_array_like(grad);
  float* pi = grad_in.mutable_data();
  const int64_t n = grad.size();
  {
    py::gil_scoped_release release;
    relu_backward(pi, pg, po, n);
  }
  return grad_in;
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("relu", &relu_py, py::arg("x"),
        "max(x, 0) of a float32 C-contiguous array of any shape, as a new array (NaN stays NaN). Releases the GIL.");
  m.def("relu_backward", &relu_backward_py, py::arg("grad"), py::arg("out"),
        "grad where out > 0, else 0: the ReLU's input gradient from its output `out`. Releases the GIL.");
  m.def("linear_epilogue_backward", &linear_epilogue_backward_py, py::arg("grad"), py::arg("out") = py::none(),
        py::kw_only(), py::arg("bias_grad") = true,
        "Backward of a Linear layer's epilogue in one pass: returns (grad masked where out <= 0 -- grad\n"
        "itself when out is None --, its column sums as the bias gradient, or None with bias_grad=False).\n"
        "grad and out are float32 (M, N) with contiguous rows.");
}

}  // namespace fastnn
