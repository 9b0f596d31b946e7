// _C.linear_epilogue_backward: argument checks, then the GIL is released around the kernel of
// cpu/elementwise.cpp.
#include <string>

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
    masked = py::array_t<float>({G.rows, G.cols});
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

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("linear_epilogue_backward", &linear_epilogue_backward_py, py::arg("grad"), py::arg("out") = py::none(),
        py::kw_only(), py::arg("bias_grad") = true,
        "Backward of a Linear layer's epilogue in one pass: returns (grad masked where out <= 0 -- grad\n"
        "itself when out is None --, its column sums as the bias gradient, or None with bias_grad=False).\n"
        "grad and out are float32 (M, N) with contiguous rows.");
}

}  // namespace fastnn
