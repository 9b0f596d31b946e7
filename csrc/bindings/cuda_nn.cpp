// _C.cuda entry points: convolution, pooling, batch normalization and recurrent layers (checks
// and GIL release only; the kernels are in csrc/cuda).
#if FASTNN_CUDA_BUILT
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bindings/cuda_array.h"
#include "bindings/pool_checks.h"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda_py {
namespace {

// ---- convolution and pooling -----------------------------------------------------------------

void check_nchw(const Array& a, const char* fn, const char* arg) {
  check_float(a, fn, arg);
  check_rank(a, 4, fn, arg, "(N, C, H, W)");
}

void check_conv_settings(const Pair& stride, const std::array<int64_t, 4>& pad, const Pair& dilation,
                         const char* fn) {
  if (stride[0] < 1 || stride[1] < 1 || dilation[0] < 1 || dilation[1] < 1 || pad[0] < 0 || pad[1] < 0 ||
      pad[2] < 0 || pad[3] < 0)
    raise_value(std::string(fn) + ": stride and dilation must be >= 1 and padding >= 0");
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
  check_conv_settings(stride, pad, dilation, fn);
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
  const float* b = vector_arg(bias, s.K, x, fn, "bias", "input");
  Array out = empty({s.N, s.K, s.OH, s.OW}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::conv2d_forward(out.f(), x.f(), w.f(), b, s, x.device);
  return out;
}

// The gradients a convolution's backward is asked for (needs: input, weight, bias of `channels`),
// after checking grad_output against the forward's output shape; backward(dx, dw, db) runs with
// the GIL released, null for those not asked for.
template <class Backward>
py::tuple conv_gradients(const Array& dy, const Array& x, const Array& w, const std::vector<int64_t>& out_shape,
                         int64_t channels, const std::array<bool, 3>& needs, const char* fn, Backward backward) {
  check_nchw(dy, fn, "grad_output");
  if (dy.shape != out_shape)
    raise_value(std::string(fn) + ": argument 'grad_output' must have shape " + shape_text(out_shape) + ", got " +
                shape_text(dy.shape));
  check_same_device(x, dy, fn, "input", "grad_output");
  std::optional<Array> dx, dw, db;
  if (needs[0]) dx = empty(x.shape, Dtype::float32, x.device, fn);
  if (needs[1]) dw = empty(w.shape, Dtype::float32, x.device, fn);
  if (needs[2]) db = empty({channels}, Dtype::float32, x.device, fn);
  {
    py::gil_scoped_release release;
    backward(dx ? dx->f() : nullptr, dw ? dw->f() : nullptr, db ? db->f() : nullptr);
  }
  return py::make_tuple(or_none(dx), or_none(dw), or_none(db));
}

py::tuple conv_backward_py(const Array& dy, const Array& x, const Array& w, const Pair& stride,
                          const std::array<int64_t, 4>& pad, const Pair& dilation, int64_t groups,
                          const std::array<bool, 3>& needs) {
  constexpr const char* fn = "cuda.conv2d_backward";
  const cuda::ConvShape s = conv_shape(x, w, stride, pad, dilation, groups, fn);
  return conv_gradients(dy, x, w, {s.N, s.K, s.OH, s.OW}, s.K, needs, fn, [&](float* dx, float* dw, float* db) {
    cuda::conv2d_backward(dx, dw, db, dy.f(), x.f(), w.f(), s, x.device);
  });
}

// A transposed convolution's settings as the CPU binding takes them (padding: top, bottom, left,
// right), except output_padding, which may reach the dilation here: the ConvShape of its adjoint
// conv2d, whose input is (N, C_out, H_out, W_out), H_out = (H - 1) stride - pad_top - pad_bottom +
// dilation (R - 1) + output_padding + 1, and whose output the transposed input (N, C_in, H, W).
cuda::ConvShape transposed_shape(const Array& x, const Array& w, const Pair& stride, const std::array<int64_t, 4>& pad,
                                 const Pair& output_padding, const Pair& dilation, int64_t groups, const char* fn) {
  check_nchw(x, fn, "input");
  check_float(w, fn, "weight");
  check_rank(w, 4, fn, "weight", "(C_in, C_out/groups, R, S)");
  check_same_device(x, w, fn, "input", "weight");
  const int64_t C_in = x.shape[1];
  if (groups < 1 || C_in % groups || w.shape[0] != C_in)
    raise_value(std::string(fn) + ": weight " + shape_text(w.shape) + " does not fit input " + shape_text(x.shape) +
                " with groups=" + std::to_string(groups) + ": expected (" + std::to_string(C_in) +
                ", C_out/groups, R, S) and groups dividing " + std::to_string(C_in));
  if (w.shape[2] < 1 || w.shape[3] < 1)
    raise_value(std::string(fn) + ": the kernel must be at least 1x1, got weight of shape " + shape_text(w.shape));
  check_conv_settings(stride, pad, dilation, fn);
  for (int i = 0; i < 2; ++i)
    if (output_padding[i] < 0 || output_padding[i] >= std::max(stride[i], dilation[i]))
      raise_value(std::string(fn) + ": output_padding must be >= 0 and smaller than the stride or the dilation, got (" +
                  std::to_string(output_padding[0]) + ", " + std::to_string(output_padding[1]) + ")");
  cuda::ConvShape s{x.shape[0], w.shape[1] * groups, 0, 0, C_in, w.shape[2], w.shape[3], x.shape[2], x.shape[3],
                    stride[0], stride[1], pad[0], pad[2], dilation[0], dilation[1], groups};
  const int64_t H = (s.OH - 1) * s.stride_h - pad[0] - pad[1] + s.dil_h * (s.R - 1) + output_padding[0] + 1;
  const int64_t W = (s.OW - 1) * s.stride_w - pad[2] - pad[3] + s.dil_w * (s.S - 1) + output_padding[1] + 1;
  if (s.OH > 0 && s.OW > 0 && (H < 1 || W < 1))
    raise_value(std::string(fn) + ": the output would be " + std::to_string(H) + "x" + std::to_string(W) +
                " for input " + shape_text(x.shape) + " and weight " + shape_text(w.shape) + "; reduce the padding");
  s.H = std::max<int64_t>(H, 0);
  s.W = std::max<int64_t>(W, 0);
  return s;
}

Array conv_transpose_forward_py(const Array& x, const Array& w, const Array* bias, const Pair& stride,
                               const std::array<int64_t, 4>& pad, const Pair& output_padding, const Pair& dilation,
                               int64_t groups) {
  constexpr const char* fn = "cuda.conv_transpose2d_forward";
  const cuda::ConvShape s = transposed_shape(x, w, stride, pad, output_padding, dilation, groups, fn);
  const float* b = vector_arg(bias, s.C, x, fn, "bias", "input");
  Array out = empty({s.N, s.C, s.H, s.W}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::conv_transpose2d_forward(out.f(), x.f(), w.f(), b, s, x.device);
  return out;
}

py::tuple conv_transpose_backward_py(const Array& dy, const Array& x, const Array& w, const Pair& stride,
                                     const std::array<int64_t, 4>& pad, const Pair& output_padding,
                                     const Pair& dilation, int64_t groups, const std::array<bool, 3>& needs) {
  constexpr const char* fn = "cuda.conv_transpose2d_backward";
  const cuda::ConvShape s = transposed_shape(x, w, stride, pad, output_padding, dilation, groups, fn);
  return conv_gradients(dy, x, w, {s.N, s.C, s.H, s.W}, s.C, needs, fn, [&](float* dx, float* dw, float* db) {
    cuda::conv_transpose2d_backward(dx, dw, db, dy.f(), x.f(), w.f(), s, x.device);
  });
}

// The window settings checked, and the PoolShape they give for N x C planes of H x W.
cuda::PoolShape pool_windows(int64_t N, int64_t C, int64_t H, int64_t W, const Pair& kernel, const Pair& stride,
                             const Pair& padding, const Pair& dilation, bool ceil_mode, const char* fn) {
  if (H < 1 || W < 1)
    raise_value(std::string(fn) + ": the input must have non-zero height and width, got (" + std::to_string(H) +
                ", " + std::to_string(W) + ")");
  const PoolWindows win = check_pool_windows(fn, H, W, kernel, stride, padding, dilation, ceil_mode);
  return {N * C, H, W, win.OH, win.OW, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
          dilation[0], dilation[1]};
}

cuda::PoolShape pool_shape(const Array& x, const Pair& kernel, const Pair& stride, const Pair& padding,
                           const Pair& dilation, bool ceil_mode, const char* fn) {
  check_nchw(x, fn, "input");
  return pool_windows(x.shape[0], x.shape[1], x.shape[2], x.shape[3], kernel, stride, padding, dilation, ceil_mode,
                      fn);
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
  check_input_size(input_size, fn);
  cuda::PoolShape s{dy.shape[0] * dy.shape[1], input_size[0], input_size[1], dy.shape[2], dy.shape[3],
                    0, 0, 0, 0, 0, 0, 0, 0};
  Array dx = empty({dy.shape[0], dy.shape[1], input_size[0], input_size[1]}, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::max_pool2d_backward(dx.f(), dy.f(), static_cast<const int64_t*>(indices.data()), s, dy.device);
  return dx;
}

Array avg_pool_forward_py(const Array& x, const Pair& kernel, const Pair& stride, const Pair& padding, bool ceil_mode,
                         bool count_include_pad, int64_t divisor_override) {
  constexpr const char* fn = "cuda.avg_pool2d_forward";
  check_divisor_override(divisor_override, fn);
  const cuda::PoolShape s = pool_shape(x, kernel, stride, padding, {1, 1}, ceil_mode, fn);
  Array out = empty({x.shape[0], x.shape[1], s.OH, s.OW}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::avg_pool2d_forward(out.f(), x.f(), s, count_include_pad, divisor_override, x.device);
  return out;
}

Array avg_pool_backward_py(const Array& dy, const Pair& input_size, const Pair& kernel, const Pair& stride,
                          const Pair& padding, bool ceil_mode, bool count_include_pad, int64_t divisor_override) {
  constexpr const char* fn = "cuda.avg_pool2d_backward";
  check_nchw(dy, fn, "grad_output");
  check_divisor_override(divisor_override, fn);
  check_input_size(input_size, fn);
  const int64_t N = dy.shape[0], C = dy.shape[1];
  const cuda::PoolShape s =
      pool_windows(N, C, input_size[0], input_size[1], kernel, stride, padding, {1, 1}, ceil_mode, fn);
  if (dy.shape != std::vector<int64_t>{N, C, s.OH, s.OW})
    raise_value(std::string(fn) + ": argument 'grad_output' must have shape " + shape_text({N, C, s.OH, s.OW}) +
                " (the output size for input_size and the window), got " + shape_text(dy.shape));
  Array dx = empty({N, C, input_size[0], input_size[1]}, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::avg_pool2d_backward(dx.f(), dy.f(), s, count_include_pad, divisor_override, dy.device);
  return dx;
}

Array adaptive_avg_pool_forward_py(const Array& x, const Pair& output_size) {
  constexpr const char* fn = "cuda.adaptive_avg_pool2d_forward";
  check_nchw(x, fn, "input");
  if (x.shape[2] < 1 || x.shape[3] < 1)
    raise_value(std::string(fn) + ": argument 'input' must have non-zero height and width, got shape " +
                shape_text(x.shape));
  if (output_size[0] < 1 || output_size[1] < 1)
    raise_value(std::string(fn) + ": argument 'output_size' must be >= 1 in both axes, got (" +
                std::to_string(output_size[0]) + ", " + std::to_string(output_size[1]) + ")");
  Array out = empty({x.shape[0], x.shape[1], output_size[0], output_size[1]}, Dtype::float32, x.device, fn);
  py::gil_scoped_release release;
  cuda::adaptive_avg_pool2d_forward(out.f(), x.f(), x.shape[0] * x.shape[1], x.shape[2], x.shape[3], output_size[0],
                                    output_size[1], x.device);
  return out;
}

Array adaptive_avg_pool_backward_py(const Array& dy, const Pair& input_size) {
  constexpr const char* fn = "cuda.adaptive_avg_pool2d_backward";
  check_nchw(dy, fn, "grad_output");
  check_input_size(input_size, fn);
  if (dy.shape[2] < 1 || dy.shape[3] < 1)
    raise_value(std::string(fn) + ": argument 'grad_output' must have a non-zero output size, got shape " +
                shape_text(dy.shape));
  Array dx = empty({dy.shape[0], dy.shape[1], input_size[0], input_size[1]}, Dtype::float32, dy.device, fn);
  py::gil_scoped_release release;
  cuda::adaptive_avg_pool2d_backward(dx.f(), dy.f(), dy.shape[0] * dy.shape[1], input_size[0], input_size[1],
                                     dy.shape[2], dy.shape[3], dy.device);
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

py::tuple batch_norm_forward_cuda(const Array& x, const std::optional<Array>& w, const std::optional<Array>& b,
                                  const std::optional<Array>& rm, const std::optional<Array>& rv, bool training,
                                  double momentum, double eps) {
  constexpr const char* fn = "cuda.batch_norm_forward";
  const auto [N, C, L] = ncl(x, fn);
  const float* wp = vector_arg(w, C, x, fn, "weight", "input");
  const float* bp = vector_arg(b, C, x, fn, "bias", "input");
  float* rmp = const_cast<float*>(vector_arg(rm, C, x, fn, "running_mean", "input"));
  float* rvp = const_cast<float*>(vector_arg(rv, C, x, fn, "running_var", "input"));
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
  vector_arg(mean, C, x, fn, "save_mean", "input");
  vector_arg(invstd, C, x, fn, "save_invstd", "input");
  const float* wp = vector_arg(w, C, x, fn, "weight", "input");
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

// An array the forward saved for the backward: required when `needed`, of the shape it was made with,
// on x's device.
const float* saved_arg(const std::optional<Array>& a, const std::vector<int64_t>& shape, bool needed, const Array& x,
                       const char* fn, const char* arg) {
  if (!needed) return nullptr;
  if (!a) raise_value(std::string(fn) + ": argument '" + arg + "' (saved by the forward) is required");
  check_float(*a, fn, arg);
  if (a->shape != shape)
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape " + shape_text(shape) + ", got " +
                shape_text(a->shape));
  check_same_device(x, *a, fn, "x", arg);
  return a->f();
}

// An optional (B, H) state as given (checked as saved_arg does), or zeros (kept in `holder`).
const float* state_arg(const std::optional<Array>& a, const Array& x, const RnnProblem& p, const char* fn,
                       const char* arg, std::optional<Array>* holder) {
  if (a) return saved_arg(a, {p.s.B, p.s.H}, true, x, fn, arg);
  *holder = empty({p.s.B, p.s.H}, Dtype::float32, p.device, fn);
  cuda::fill((*holder)->f(), 0.0f, p.s.B * p.s.H, p.device);
  return (*holder)->f();
}

py::tuple rnn_forward_cuda(const std::string& cell, const Array& x, const Array& w_ih, const Array& w_hh,
                           const std::optional<Array>& b_ih, const std::optional<Array>& b_hh,
                           const std::optional<Array>& h0, const std::optional<Array>& c0, const py::object& lengths,
                           bool reverse) {
  constexpr const char* fn = "cuda.rnn_forward";
  const RnnProblem p = rnn_problem(fn, cell, x, w_ih, w_hh, lengths);
  const auto& s = p.s;
  const float* bi = vector_arg(b_ih, p.G, x, fn, "b_ih", "x");
  const float* bh = vector_arg(b_hh, p.G, x, fn, "b_hh", "x");
  std::optional<Array> h0_zero, c0_zero;
  const float* h0p = state_arg(h0, x, p, fn, "h0", &h0_zero);
  const float* c0p = p.cell == 0 ? state_arg(c0, x, p, fn, "c0", &c0_zero) : nullptr;
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
                            const Array& w_hh, const std::optional<Array>& h0, const std::optional<Array>& c0,
                            const Array& out, const std::optional<Array>& hs, const std::optional<Array>& cs,
                            const std::optional<Array>& gates, const py::object& lengths, bool reverse, bool need_dx,
                            bool bias) {
  constexpr const char* fn = "cuda.rnn_backward";
  const RnnProblem p = rnn_problem(fn, cell, x, w_ih, w_hh, lengths);
  const auto& s = p.s;
  const std::vector<int64_t> packed{s.T + p.states, s.B, s.H}, steps{s.T, s.B, s.H};
  // (outputs, then h_n [, c_n]) stacked, as the forward returns them
  saved_arg(grad_out, packed, true, x, fn, "grad_out");
  saved_arg(out, packed, true, x, fn, "out");
  const float* hsp = p.lengths ? saved_arg(hs, steps, true, x, fn, "hs") : out.f();
  const float* csp = saved_arg(cs, steps, p.cell == 0, x, fn, "cs");
  const float* gp = saved_arg(gates, {s.T, s.B, p.S}, p.S > 0, x, fn, "gates");
  std::optional<Array> h0_zero, c0_zero;
  const float* h0p = state_arg(h0, x, p, fn, "h0", &h0_zero);
  const float* c0p = p.cell == 0 ? state_arg(c0, x, p, fn, "c0", &c0_zero) : nullptr;
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

// ---- embedding ---------------------------------------------------------------------------------
// The indices come from the host (numpy int64, any shape), where the Python op has them: checked
// here and uploaded, and grouped by row for the backward (see rnn.cu).
using HostIndices = py::array_t<int64_t, py::array::c_style>;

HostIndices host_indices(const py::object& indices, int64_t V, const char* fn) {
  if (py::isinstance<Array>(indices))
    raise_type(std::string(fn) + ": argument 'indices' must be a host (numpy) int64 array, got a CUDA array; "
               "pass indices.numpy()");
  if (!py::isinstance<py::array>(indices))
    raise_type(std::string(fn) + ": argument 'indices' must be a numpy int64 array, got " +
               std::string(py::str(py::type::of(indices).attr("__name__"))));
  const auto a = py::reinterpret_borrow<py::array>(indices);
  if (!a.dtype().is(py::dtype::of<int64_t>()))
    raise_type(std::string(fn) + ": argument 'indices' must be int64, got " + std::string(py::str(a.dtype())));
  HostIndices host = HostIndices::ensure(a);  // a C-contiguous copy when strided
  const int64_t* idx = host.data();
  for (int64_t k = 0; k < host.size(); ++k)
    if (idx[k] < 0 || idx[k] >= V)
      raise_value(std::string(fn) + ": argument 'indices' holds " + std::to_string(idx[k]) + " at flat position " +
                  std::to_string(k) + ", out of range for " + std::to_string(V) +
                  " embeddings: expected 0 <= index < " + std::to_string(V));
  return host;
}

Array embedding_forward_cuda(const Array& weight, const py::object& indices) {
  constexpr const char* fn = "cuda.embedding_forward";
  check_float(weight, fn, "weight");
  check_rank(weight, 2, fn, "weight", "(num_embeddings, embedding_dim)");
  const int64_t V = weight.shape[0], D = weight.shape[1];
  const HostIndices host = host_indices(indices, V, fn);
  const Array device_indices = from_numpy(host, weight.device);
  std::vector<int64_t> shape(host.shape(), host.shape() + host.ndim());
  shape.push_back(D);
  Array out = empty(shape, Dtype::float32, weight.device, fn);
  py::gil_scoped_release release;
  cuda::embedding_forward(out.f(), weight.f(), device_indices.i64(), host.size(), D, weight.device);
  return out;
}

Array embedding_backward_cuda(const Array& grad_out, const py::object& indices, int64_t num_embeddings,
                              std::optional<int64_t> padding_idx) {
  constexpr const char* fn = "cuda.embedding_backward";
  const int64_t V = num_embeddings;
  check_float(grad_out, fn, "grad_out");
  if (V < 0) raise_value(std::string(fn) + ": argument 'num_embeddings' must be >= 0, got " + std::to_string(V));
  if (padding_idx && (*padding_idx < 0 || *padding_idx >= V))
    raise_value(std::string(fn) + ": argument 'padding_idx' must be in [0, " + std::to_string(V) + ") or None, got " +
                std::to_string(*padding_idx));
  const HostIndices host = host_indices(indices, V, fn);
  const std::vector<int64_t> index_shape(host.shape(), host.shape() + host.ndim());
  if (grad_out.shape.size() != index_shape.size() + 1 ||
      !std::equal(index_shape.begin(), index_shape.end(), grad_out.shape.begin()))
    raise_value(std::string(fn) + ": argument 'grad_out' must have the shape of 'indices' " +
                shape_text(index_shape) + " and one more axis (embedding_dim), got " + shape_text(grad_out.shape));
  const int64_t D = grad_out.shape.back(), n = host.size();
  // row_starts (V + 1), then positions (n): one buffer, one upload.
  HostIndices groups(V + 1 + n);
  {
    py::gil_scoped_release release;
    cuda::embedding_row_groups(groups.mutable_data(), groups.mutable_data() + V + 1, host.data(), n, V);
  }
  const Array device_groups = from_numpy(groups, grad_out.device);
  Array dw = empty({V, D}, Dtype::float32, grad_out.device, fn);
  py::gil_scoped_release release;
  cuda::embedding_backward(dw.f(), grad_out.f(), device_groups.i64(), device_groups.i64() + V + 1, V, D,
                           padding_idx.value_or(-1), grad_out.device);
  return dw;
}

}  // namespace

void bind_cuda_nn(py::module_& m) {
  m.def("conv2d_forward", [](const Array& x, const Array& w, std::optional<Array> b, const Pair& stride,
                              const std::array<int64_t, 4>& pad, const Pair& dilation, int64_t groups) {
    return conv_forward_py(x, w, b ? &*b : nullptr, stride, pad, dilation, groups);
  }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
     py::arg("groups"), "As _C.conv2d_forward, on the GPU (padding: top, bottom, left, right).");
  m.def("conv2d_backward", &conv_backward_py, py::arg("grad_output"), py::arg("input"), py::arg("weight"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("needs"),
        "(grad_input, grad_weight, grad_bias), each None unless asked for in needs.");
  m.def("conv_transpose2d_forward", [](const Array& x, const Array& w, std::optional<Array> b, const Pair& stride,
                                        const std::array<int64_t, 4>& pad, const Pair& output_padding,
                                        const Pair& dilation, int64_t groups) {
    return conv_transpose_forward_py(x, w, b ? &*b : nullptr, stride, pad, output_padding, dilation, groups);
  }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
     py::arg("output_padding"), py::arg("dilation"), py::arg("groups"),
     "As _C.conv_transpose2d_forward, on the GPU (padding: top, bottom, left, right; output_padding below the "
     "stride or the dilation).");
  m.def("conv_transpose2d_backward", &conv_transpose_backward_py, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("output_padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("needs"), "(grad_input, grad_weight, grad_bias), each None unless asked for in needs.");
  m.def("max_pool2d_forward", &max_pool_forward_py, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"), "(out, int64 indices), as on the CPU.");
  m.def("max_pool2d_backward", &max_pool_backward_py, py::arg("grad_output"), py::arg("indices"),
        py::arg("input_size"));
  m.def("avg_pool2d_forward", &avg_pool_forward_py, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
        py::arg("divisor_override") = 0, "As _C.avg_pool2d_forward, on the GPU (divisor_override 0: none).");
  m.def("avg_pool2d_backward", &avg_pool_backward_py, py::arg("grad_output"), py::arg("input_size"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode") = false,
        py::arg("count_include_pad") = true, py::arg("divisor_override") = 0,
        "Gradient of average pooling: (N, C, *input_size), gathered (no atomics).");
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool_forward_py, py::arg("input"), py::arg("output_size"),
        "As _C.adaptive_avg_pool2d_forward, on the GPU.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool_backward_py, py::arg("grad_output"),
        py::arg("input_size"), "Gradient of adaptive average pooling: (N, C, *input_size).");
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
  m.def("embedding_forward", &embedding_forward_cuda, py::arg("weight"), py::arg("indices"),
        "weight (V, D) rows at indices (a host int64 array of any shape, each in [0, V)): indices.shape + (D,).");
  m.def("embedding_backward", &embedding_backward_cuda, py::arg("grad_out"), py::arg("indices"),
        py::arg("num_embeddings"), py::arg("padding_idx") = py::none(),
        "The weight's gradient (num_embeddings, D): each row the sum of grad_out's rows at its positions in "
        "indices (in order: deterministic), 0 for padding_idx.");
}

}  // namespace cuda_py
}  // namespace fastnn
#endif  // FASTNN_CUDA_BUILT
