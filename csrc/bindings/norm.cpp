// _C.batch_norm_forward / _C.batch_norm_backward: argument checks (dtype, rank, contiguity, the
// per-channel vectors' shapes, writable running statistics, more than one value per channel when
// training), then the GIL is released around the kernels of cpu/norm.cpp.
#include <cmath>
#include <string>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "cpu/norm.h"

namespace fastnn {
namespace {

struct Ncl {
  int64_t N, C, L;
};

// A float32 C-contiguous array (N, C, *): N, C and the product L of the remaining dims.
Ncl check_ncl(const py::array& a, const char* fn, const char* arg) {
  if (!a.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " + std::string(py::str(a.dtype())) +
               " (convert with .astype(numpy.float32))");
  if (a.ndim() < 2)
    raise_value(std::string(fn) + ": argument '" + arg + "' must have at least 2 dims (N, C, *), got shape " +
                shape_str(a));
  if (!(a.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument '" + arg + "' of shape " + shape_str(a) +
                " must be C-contiguous; pass numpy.ascontiguousarray(" + arg + ")");
  int64_t L = 1;
  for (py::ssize_t i = 2; i < a.ndim(); ++i) L *= a.shape(i);
  return {a.shape(0), a.shape(1), L};
}

// An optional per-channel vector: nullptr for None, else float32 contiguous (C,).
float* channel_vector(const py::object& v, const char* fn, const char* arg, int64_t C, bool writable = false) {
  if (v.is_none()) return nullptr;
  if (!py::isinstance<py::array>(v))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be a float32 numpy array of shape (" +
               std::to_string(C) + ",) or None, got " + std::string(py::str(py::type::of(v).attr("__name__"))));
  const py::array a = py::reinterpret_borrow<py::array>(v);
  const float* p = check_vector(a, fn, arg, C);
  if (writable && !a.writeable())
    raise_value(std::string(fn) + ": argument '" + arg +
                "' is read-only; it is updated in place, pass a writable array");
  return const_cast<float*>(p);
}

void check_finite_number(double v, const char* fn, const char* arg, bool positive_or_zero) {
  if (!std::isfinite(v) || (positive_or_zero && v < 0))
    raise_value(std::string(fn) + ": argument '" + arg + "' must be a finite" +
                (positive_or_zero ? " number >= 0" : " number") + ", got " + std::to_string(v));
}

py::tuple batch_norm_forward_py(const py::array& input, const py::object& weight, const py::object& bias,
                                const py::object& running_mean, const py::object& running_var, bool training,
                                double momentum, double eps) {
  constexpr const char* fn = "batch_norm_forward";
  const Ncl d = check_ncl(input, fn, "input");
  const float* gamma = channel_vector(weight, fn, "weight", d.C);
  const float* beta = channel_vector(bias, fn, "bias", d.C);
  float* rmean = channel_vector(running_mean, fn, "running_mean", d.C, training);
  float* rvar = channel_vector(running_var, fn, "running_var", d.C, training);
  check_finite_number(eps, fn, "eps", true);
  check_finite_number(momentum, fn, "momentum", false);
  if ((rmean == nullptr) != (rvar == nullptr))
    raise_value(std::string(fn) + ": pass both 'running_mean' and 'running_var', or neither");
  if (!training && rmean == nullptr)
    raise_value(std::string(fn) + ": evaluation mode (training=False) needs 'running_mean' and 'running_var'");
  if (training && d.N * d.L == 1)
    raise_value(std::string(fn) + ": expected more than 1 value per channel when training, got input of shape " +
                shape_str(input) + "; use a batch of more than one sample, or evaluation mode");
  py::array_t<float> out = new_float_array_like(input);
  py::array_t<float> mean(d.C), invstd(d.C);
  float* y = out.mutable_data();
  float* m = mean.mutable_data();
  float* is = invstd.mutable_data();
  const float* x = static_cast<const float*>(input.data());
  {
    py::gil_scoped_release release;
    if (training)
      batch_norm_forward_train(y, m, is, rmean, rvar, x, gamma, beta, d.N, d.C, d.L, eps, momentum);
    else
      batch_norm_forward_eval(y, m, is, x, rmean, rvar, gamma, beta, d.N, d.C, d.L, eps);
  }
  return py::make_tuple(out, mean, invstd);
}

py::tuple batch_norm_backward_py(const py::array& grad_output, const py::array& input, const py::array& save_mean,
                                 const py::array& save_invstd, const py::object& weight, bool training) {
  constexpr const char* fn = "batch_norm_backward";
  const Ncl d = check_ncl(input, fn, "input");
  const Ncl g = check_ncl(grad_output, fn, "grad_output");
  bool same = grad_output.ndim() == input.ndim();
  for (py::ssize_t i = 0; same && i < input.ndim(); ++i) same = grad_output.shape(i) == input.shape(i);
  if (!same)
    raise_value(std::string(fn) + ": argument 'grad_output' must have the shape of 'input', " + shape_str(input) +
                ", got " + shape_str(grad_output));
  (void)g;
  const float* mean = check_vector(save_mean, fn, "save_mean", d.C);
  const float* invstd = check_vector(save_invstd, fn, "save_invstd", d.C);
  const float* gamma = channel_vector(weight, fn, "weight", d.C);
  py::array_t<float> grad_input = new_float_array_like(input);
  py::array_t<float> grad_weight(d.C), grad_bias(d.C);
  float* gx = grad_input.mutable_data();
  float* gw = grad_weight.mutable_data();
  float* gb = grad_bias.mutable_data();
  const float* gy = static_cast<const float*>(grad_output.data());
  const float* x = static_cast<const float*>(input.data());
  {
    py::gil_scoped_release release;
    batch_norm_backward(gx, gw, gb, gy, x, mean, invstd, gamma, d.N, d.C, d.L, training);
  }
  return py::make_tuple(grad_input, grad_weight, grad_bias);
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward_py, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::kw_only(), py::arg("training"),
        py::arg("momentum") = 0.1, py::arg("eps") = 1e-5,
        "Batch normalization of a float32 C-contiguous (N, C, *) array over N and *, per channel.\n"
        "training: batch statistics, and running_mean/running_var (float32 (C,), or None) updated in\n"
        "place with momentum and the unbiased variance; else the running statistics are used.\n"
        "weight/bias: float32 (C,) or None. Returns (output, mean, invstd) (the statistics used).");
  m.def("batch_norm_backward", &batch_norm_backward_py, py::arg("grad_output"), py::arg("input"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::kw_only(), py::arg("training"),
        "Gradients of batch normalization in one pass per channel: (grad_input, grad_weight,\n"
        "grad_bias); training=False treats the statistics as constants (evaluation mode).");
}

}  // namespace fastnn
