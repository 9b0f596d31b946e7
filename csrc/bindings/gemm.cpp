// _C.gemm: argument checks, then the GIL is released around sgemm().
#include <cmath>
#include <string>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "cpu/gemm.h"

namespace fastnn {

static py::array gemm_py(const py::array& a, const py::array& b, py::object out, bool trans_a, bool trans_b,
                         float alpha, float beta, py::object bias, py::object row_bias, bool relu,
                         bool check_finite_values) {
  const char* fn = "gemm";
  MatrixArg A = check_matrix(a, fn, "a", trans_a ? "(K, M)" : "(M, K)");
  MatrixArg B = check_matrix(b, fn, "b", trans_b ? "(N, K)" : "(K, N)");
  const int64_t M = trans_a ? A.cols : A.rows, K = trans_a ? A.rows : A.cols;
  const int64_t KB = trans_b ? B.cols : B.rows, N = trans_b ? B.rows : B.cols;
  if (KB != K)
    raise_value(std::string(fn) + ": inner dimensions differ: op(a) is (M, K) = (" + std::to_string(M) + ", " +
                std::to_string(K) + ") but op(b) is (" + std::to_string(KB) + ", " + std::to_string(N) +
                "); expected b of shape " + (trans_b ? "(N, " + std::to_string(K) + ")" : "(" + std::to_string(K) + ", N)") +
                ", got " + shape_str(b));
  if (!std::isfinite(alpha) || !std::isfinite(beta))
    raise_value(std::string(fn) + ": alpha and beta must be finite, got alpha=" + std::to_string(alpha) +
                ", beta=" + std::to_string(beta));

  py::array result;
  if (out.is_none()) {
    if (beta != 0.0f)
      raise_value(std::string(fn) + ": beta=" + std::to_string(beta) + " needs an 'out' array holding C");
    result = new_float_array({M, N});
  } else {
    result = py::reinterpret_borrow<py::array>(out);
    if (!py::isinstance<py::array>(out)) raise_type(std::string(fn) + ": argument 'out' must be a numpy array");
  }
  const std::string out_shape = "(" + std::to_string(M) + ", " + std::to_string(N) + ")";
  MatrixArg C = check_matrix(result, fn, "out", out_shape.c_str(), /*writable=*/true);
  if (C.rows != M || C.cols != N)
    raise_value(std::string(fn) + ": argument 'out' must have shape " + out_shape + ", got " + shape_str(result));
  check_no_overlap(C, A, fn, "out", "a");
  check_no_overlap(C, B, fn, "out", "b");

  GemmEpilogue ep;
  ep.relu = relu;
  if (!bias.is_none()) ep.bias_n = check_vector(bias.cast<py::array>(), fn, "bias", N);
  if (!row_bias.is_none()) ep.bias_m = check_vector(row_bias.cast<py::array>(), fn, "row_bias", M);
  if (check_finite_values) {  // the small inputs are scanned up front; A and B only if C went bad
    if (ep.bias_n) check_finite({const_cast<float*>(ep.bias_n), 1, N, N}, fn, "bias");
    if (ep.bias_m) check_finite({const_cast<float*>(ep.bias_m), 1, M, M}, fn, "row_bias");
    if (beta != 0.0f) check_finite(C, fn, "out");
  }

  bool nonfinite;
  {
    py::gil_scoped_release release;
    nonfinite = sgemm(trans_a, trans_b, M, N, K, alpha, A.data, A.ld, B.data, B.ld, beta, C.data, C.ld, ep);
  }
  if (nonfinite && check_finite_values && K > 0) {
    check_finite(A, fn, "a");
    check_finite(B, fn, "b");
    // Finite inputs can still overflow float32: that inf is the IEEE result, kept.
  }
  return result;
}

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::kw_only(),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0f,
        py::arg("beta") = 0.0f, py::arg("bias") = py::none(), py::arg("row_bias") = py::none(),
        py::arg("relu") = false, py::arg("check_finite") = true,
        R"doc(out = relu?(alpha * op(a) @ op(b) + beta * out + bias + row_bias[:, None])

op(a) is a (M, K), or a.T when trans_a; op(b) is b (K, N), or b.T when trans_b.
Arrays are float32 with contiguous rows (any row stride: slices of wider arrays
are fine). bias has shape (N,), row_bias (M,). With check_finite, a NaN or
infinity in any input raises ValueError naming it. Releases the GIL.)doc");
}

}  // namespace fastnn
