// _C.max_pool2d_*, _C.avg_pool2d_*, _C.adaptive_avg_pool2d_*: argument checks (dtype, rank,
// contiguity, window sizes against the padded input), then the GIL is released around the
// kernels of cpu/pool.cpp. Arrays are NCHW; window settings are (height, width) pairs.
#include <pybind11/stl.h>

#include <array>
#include <climits>
#include <string>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "bindings/pool_checks.h"
#include "cpu/pool.h"

namespace fastnn {

std::string pair_str(const Pair& p) { return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")"; }

namespace {

constexpr int64_t kMaxSetting = int64_t{1} << 30;  // keeps every index product within int64

void check_at_least(const Pair& p, int64_t low, const char* fn, const char* arg) {
  if (p[0] < low || p[1] < low)
    raise_value(std::string(fn) + ": argument '" + arg + "' must be >= " + std::to_string(low) + " in both axes, got " +
                pair_str(p));
  if (p[0] > kMaxSetting || p[1] > kMaxSetting)
    raise_value(std::string(fn) + ": argument '" + arg + "' must be at most 2**30 in both axes, got " + pair_str(p));
}

}  // namespace

PoolWindows check_pool_windows(const char* fn, int64_t H, int64_t W, const Pair& kernel, const Pair& stride,
                               const Pair& padding, const Pair& dilation, bool ceil_mode) {
  check_at_least(kernel, 1, fn, "kernel_size");
  check_at_least(stride, 1, fn, "stride");
  check_at_least(padding, 0, fn, "padding");
  check_at_least(dilation, 1, fn, "dilation");
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2)
    raise_value(std::string(fn) + ": argument 'padding' " + pair_str(padding) +
                " must be at most half of kernel_size " + pair_str(kernel) + ", i.e. <= " +
                pair_str({kernel[0] / 2, kernel[1] / 2}));
  PoolWindows out{{kernel[0], stride[0], padding[0], dilation[0]}, {kernel[1], stride[1], padding[1], dilation[1]}, 0, 0};
  out.OH = pool_output_size(H, out.h, ceil_mode);
  out.OW = pool_output_size(W, out.w, ceil_mode);
  if (out.OH < 1 || out.OW < 1) {
    const Pair extent{dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1};
    raise_value(std::string(fn) + ": the output would be empty: output size " + pair_str({out.OH, out.OW}) +
                " for an input of height and width " + pair_str({H, W}) + " with kernel_size " + pair_str(kernel) +
                ", stride " + pair_str(stride) + ", padding " + pair_str(padding) + " and dilation " +
                pair_str(dilation) + "; the window spans " + pair_str(extent) +
                ", larger than the padded input " + pair_str({H + 2 * padding[0], W + 2 * padding[1]}) +
                ": use a smaller kernel_size or more padding");
  }
  return out;
}

Pair check_input_size(const Pair& size, const char* fn) {
  if (size[0] < 1 || size[1] < 1 || size[0] > kMaxSetting || size[1] > kMaxSetting)
    raise_value(std::string(fn) + ": argument 'input_size' must be (H, W) with 1 <= H, W <= 2**30, got " +
                pair_str(size));
  return size;
}

void check_divisor_override(int64_t divisor_override, const char* fn) {
  if (divisor_override < 0)
    raise_value(std::string(fn) + ": argument 'divisor_override' must be positive (or 0 for none), got " +
                std::to_string(divisor_override));
}

namespace {

std::string shape4_str(int64_t a, int64_t b, int64_t c, int64_t d) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ", " + std::to_string(d) +
         ")";
}

struct Nchw {
  int64_t N, C, H, W;
};

// A float32, C-contiguous, 4-D (N, C, H, W) array.
Nchw check_nchw(const py::array& a, const char* fn, const char* arg, const char* letters = "(N, C, H, W)") {
  if (!a.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " + std::string(py::str(a.dtype())) +
               " (convert with .astype(numpy.float32))");
  if (a.ndim() != 4)
    raise_value(std::string(fn) + ": argument '" + arg + "' must be 4-D " + letters + ", got shape " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument '" + arg + "' of shape " + shape_str(a) +
                " must be C-contiguous; pass numpy.ascontiguousarray(" + arg + ")");
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}

void check_spatial(const Nchw& d, const char* fn, const char* arg, const py::array& a) {
  if (d.H < 1 || d.W < 1)
    raise_value(std::string(fn) + ": argument '" + arg + "' must have non-zero height and width, got shape " +
                shape_str(a));
}


void check_grad_shape(const py::array& grad, const Nchw& g, int64_t N, int64_t C, int64_t OH, int64_t OW,
                      const char* fn, const char* why) {
  if (g.N != N || g.C != C || g.H != OH || g.W != OW)
    raise_value(std::string(fn) + ": argument 'grad_output' must have shape " + shape4_str(N, C, OH, OW) + " (" + why +
                "), got " + shape_str(grad));
}

py::array_t<float> empty4(int64_t N, int64_t C, int64_t H, int64_t W) {
  return new_float_array({N, C, H, W});
}

// ---- max ----------------------------------------------------------------------------------

py::tuple max_pool2d_forward_py(const py::array& input, const Pair& kernel, const Pair& stride, const Pair& padding,
                                const Pair& dilation, bool ceil_mode) {
  constexpr const char* fn = "max_pool2d_forward";
  const Nchw d = check_nchw(input, fn, "input");
  check_spatial(d, fn, "input", input);
  if (d.H * d.W > INT_MAX)
    raise_value(std::string(fn) + ": argument 'input' has planes of " + std::to_string(d.H * d.W) +
                " elements; at most 2**31 - 1 are supported (int32 indices)");
  const PoolWindows win = check_pool_windows(fn, d.H, d.W, kernel, stride, padding, dilation, ceil_mode);
  auto out = empty4(d.N, d.C, win.OH, win.OW);
  py::array_t<int32_t> indices = new_int32_array({d.N, d.C, win.OH, win.OW});
  float* o = out.mutable_data();
  int32_t* idx = indices.mutable_data();
  const float* x = static_cast<const float*>(input.data());
  {
    py::gil_scoped_release release;
    max_pool2d_forward(o, idx, x, d.N * d.C, d.H, d.W, win.OH, win.OW, win.h, win.w);
  }
  return py::make_tuple(out, indices);
}

py::array max_pool2d_backward_py(const py::array& grad_output, const py::array& indices, const Pair& input_size) {
  constexpr const char* fn = "max_pool2d_backward";
  const Nchw g = check_nchw(grad_output, fn, "grad_output", "(N, C, OH, OW)");
  check_input_size(input_size, fn);
  if (!indices.dtype().is(py::dtype::of<int32_t>()))
    raise_type(std::string(fn) + ": argument 'indices' must be int32 (as max_pool2d_forward returns it), got " +
               std::string(py::str(indices.dtype())));
  if (indices.ndim() != 4 || indices.shape(0) != g.N || indices.shape(1) != g.C || indices.shape(2) != g.H ||
      indices.shape(3) != g.W)
    raise_value(std::string(fn) + ": argument 'indices' must have the shape of 'grad_output', " +
                shape_str(grad_output) + ", got " + shape_str(indices));
  if (!(indices.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument 'indices' must be C-contiguous; pass numpy.ascontiguousarray(indices)");
  auto grad_input = empty4(g.N, g.C, input_size[0], input_size[1]);
  float* gx = grad_input.mutable_data();
  const float* go = static_cast<const float*>(grad_output.data());
  const int32_t* idx = static_cast<const int32_t*>(indices.data());
  bool ok;
  {
    py::gil_scoped_release release;
    ok = max_pool2d_backward(gx, go, idx, g.N * g.C, input_size[0], input_size[1], g.H, g.W);
  }
  if (!ok)
    raise_value(std::string(fn) + ": argument 'indices' holds a value outside [0, H * W) = [0, " +
                std::to_string(input_size[0] * input_size[1]) + ") for input_size " + pair_str(input_size) +
                "; pass the indices max_pool2d_forward returned for that input");
  return grad_input;
}

// ---- average ------------------------------------------------------------------------------

AvgPoolOptions avg_options(const char* fn, bool count_include_pad, int64_t divisor_override) {
  check_divisor_override(divisor_override, fn);
  return {count_include_pad, divisor_override};
}

py::array avg_pool2d_forward_py(const py::array& input, const Pair& kernel, const Pair& stride, const Pair& padding,
                                bool ceil_mode, bool count_include_pad, int64_t divisor_override) {
  constexpr const char* fn = "avg_pool2d_forward";
  const Nchw d = check_nchw(input, fn, "input");
  check_spatial(d, fn, "input", input);
  const AvgPoolOptions opt = avg_options(fn, count_include_pad, divisor_override);
  const PoolWindows win = check_pool_windows(fn, d.H, d.W, kernel, stride, padding, {1, 1}, ceil_mode);
  auto out = empty4(d.N, d.C, win.OH, win.OW);
  float* o = out.mutable_data();
  const float* x = static_cast<const float*>(input.data());
  {
    py::gil_scoped_release release;
    avg_pool2d_forward(o, x, d.N * d.C, d.H, d.W, win.OH, win.OW, win.h, win.w, opt);
  }
  return out;
}

py::array avg_pool2d_backward_py(const py::array& grad_output, const Pair& input_size, const Pair& kernel,
                                 const Pair& stride, const Pair& padding, bool ceil_mode, bool count_include_pad,
                                 int64_t divisor_override) {
  constexpr const char* fn = "avg_pool2d_backward";
  const Nchw g = check_nchw(grad_output, fn, "grad_output", "(N, C, OH, OW)");
  check_input_size(input_size, fn);
  const AvgPoolOptions opt = avg_options(fn, count_include_pad, divisor_override);
  const PoolWindows win =
      check_pool_windows(fn, input_size[0], input_size[1], kernel, stride, padding, {1, 1}, ceil_mode);
  check_grad_shape(grad_output, g, g.N, g.C, win.OH, win.OW, fn, "the output size for input_size and the window");
  auto grad_input = empty4(g.N, g.C, input_size[0], input_size[1]);
  float* gx = grad_input.mutable_data();
  const float* go = static_cast<const float*>(grad_output.data());
  {
    py::gil_scoped_release release;
    avg_pool2d_backward(gx, go, g.N * g.C, input_size[0], input_size[1], win.OH, win.OW, win.h, win.w, opt);
  }
  return grad_input;
}

// ---- adaptive average ---------------------------------------------------------------------

py::array adaptive_avg_pool2d_forward_py(const py::array& input, const Pair& output_size) {
  constexpr const char* fn = "adaptive_avg_pool2d_forward";
  const Nchw d = check_nchw(input, fn, "input");
  check_spatial(d, fn, "input", input);
  check_at_least(output_size, 1, fn, "output_size");
  auto out = empty4(d.N, d.C, output_size[0], output_size[1]);
  float* o = out.mutable_data();
  const float* x = static_cast<const float*>(input.data());
  {
    py::gil_scoped_release release;
    adaptive_avg_pool2d_forward(o, x, d.N * d.C, d.H, d.W, output_size[0], output_size[1]);
  }
  return out;
}

py::array adaptive_avg_pool2d_backward_py(const py::array& grad_output, const Pair& input_size) {
  constexpr const char* fn = "adaptive_avg_pool2d_backward";
  const Nchw g = check_nchw(grad_output, fn, "grad_output", "(N, C, OH, OW)");
  check_input_size(input_size, fn);
  if (g.H < 1 || g.W < 1)
    raise_value(std::string(fn) + ": argument 'grad_output' must have a non-zero output size, got shape " +
                shape_str(grad_output));
  auto grad_input = empty4(g.N, g.C, input_size[0], input_size[1]);
  float* gx = grad_input.mutable_data();
  const float* go = static_cast<const float*>(grad_output.data());
  {
    py::gil_scoped_release release;
    adaptive_avg_pool2d_backward(gx, go, g.N * g.C, input_size[0], input_size[1], g.H, g.W);
  }
  return grad_input;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool2d_forward", &max_pool2d_forward_py, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode") = false,
        "Max pooling of a float32 C-contiguous (N, C, H, W) array; window settings are (h, w) pairs.\n"
        "Returns (output (N, C, OH, OW), indices): int32 flat indices ih * W + iw of each maximum\n"
        "within its input plane (-1 for a window without input elements).");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("grad_output"), py::arg("indices"),
        py::arg("input_size"),
        "Gradient of max pooling: grad_output scattered to the saved indices, (N, C, *input_size).");
  m.def("avg_pool2d_forward", &avg_pool2d_forward_py, py::arg("input"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
        py::arg("divisor_override") = 0,
        "Average pooling of a float32 C-contiguous (N, C, H, W) array, PyTorch's divisor\n"
        "(divisor_override 0: none).");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("grad_output"), py::arg("input_size"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode") = false,
        py::arg("count_include_pad") = true, py::arg("divisor_override") = 0,
        "Gradient of average pooling: (N, C, *input_size).");
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward_py, py::arg("input"), py::arg("output_size"),
        "Adaptive average pooling of (N, C, H, W) to (N, C, *output_size): window i covers\n"
        "[floor(i H / OH), ceil((i + 1) H / OH)). output_size (1, 1) is global average pooling.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_py, py::arg("grad_output"),
        py::arg("input_size"), "Gradient of adaptive average pooling: (N, C, *input_size).");
}

}  // namespace fastnn
