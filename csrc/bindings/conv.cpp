// _C.conv2d_forward / _C.conv2d_backward / _C.conv_transpose2d_*: argument checks, then the GIL is released around the
// kernels of cpu/conv.cpp. Dimension letters as there: input (N, C, H, W), weight
// (K, C/groups, R, S), output (N, K, P, Q).
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "common/finite.h"
#include "cpu/conv.h"

namespace fastnn {
namespace {

// Every size and setting stays below this, so the shape arithmetic cannot overflow int64.
constexpr int64_t kMaxDim = int64_t(1) << 40;

std::string str(int64_t v) { return std::to_string(v); }

std::string type_name(const py::handle& v) { return std::string(py::str(py::type::handle_of(v).attr("__name__"))); }

// A 4-D float32 C-contiguous array.
const float* check_tensor(const py::array& a, const char* fn, const char* arg, const char* expected) {
  if (!a.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " + std::string(py::str(a.dtype())) +
               " (convert with .astype(numpy.float32))");
  if (a.ndim() != 4)
    raise_value(std::string(fn) + ": argument '" + arg + "' must be 4-D of shape " + expected + ", got shape " +
                shape_str(a));
  if (!(a.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument '" + arg + "' of shape " + shape_str(a) +
                " must be C-contiguous; pass numpy.ascontiguousarray(" + arg + ")");
  for (py::ssize_t i = 0; i < 4; ++i)
    if (a.shape(i) >= kMaxDim)
      raise_value(std::string(fn) + ": argument '" + arg + "' of shape " + shape_str(a) + " is too large");
  return static_cast<const float*>(a.data());
}

int64_t as_int(const py::handle& v, const char* fn, const char* arg, const char* what) {
  if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be " + what + ", got " + type_name(v) + " " +
               std::string(py::repr(v)));
  return v.cast<int64_t>();
}

// A NaN or infinity in a 4-D C-contiguous array raises ValueError naming arg and the index.
void check_finite_4d(const py::array& a, const float* p, const char* fn, const char* arg) {
  const int64_t rows = a.shape(0) * a.shape(1) * a.shape(2), cols = a.shape(3);
  int64_t r, c;
  if (rows * cols == 0 || !find_nonfinite(p, rows, cols, cols, &r, &c)) return;
  const float x = p[r * cols + c];
  const int64_t h = r % a.shape(2), ch = r / a.shape(2) % a.shape(1), n = r / a.shape(2) / a.shape(1);
  raise_value(std::string(fn) + ": argument '" + arg + "' contains " + (std::isnan(x) ? "NaN" : "infinity") +
              " at [" + str(n) + ", " + str(ch) + ", " + str(h) + ", " + str(c) +
              "]; fix the input or disable the check with fastnn.set_check_finite(False)");
}

void check_finite_vector(const float* p, int64_t n, const char* fn, const char* arg) {
  int64_t r, c;
  if (p && find_nonfinite(p, 1, n, n, &r, &c))
    raise_value(std::string(fn) + ": argument '" + arg + "' contains " + (std::isnan(p[c]) ? "NaN" : "infinity") +
                " at [" + str(c) + "]; fix it or disable the check with fastnn.set_check_finite(False)");
}

// An int, or a sequence of `count` ints (count = 2: (h, w); 4: (top, bottom, left, right)).
std::vector<int64_t> int_list(const py::object& v, const char* fn, const char* arg, const char* what,
                              std::initializer_list<int> counts) {
  if (py::isinstance<py::int_>(v) && !py::isinstance<py::bool_>(v)) return {v.cast<int64_t>()};
  if (py::isinstance<py::sequence>(v) && !py::isinstance<py::str>(v)) {
    py::sequence seq = v.cast<py::sequence>();
    const int n = static_cast<int>(seq.size());
    for (int c : counts)
      if (n == c) {
        std::vector<int64_t> out;
        for (const py::handle& item : seq) out.push_back(as_int(item, fn, arg, what));
        return out;
      }
  }
  raise_type(std::string(fn) + ": argument '" + arg + "' must be " + what + ", got " + std::string(py::repr(v)));
}

struct Settings {
  int64_t stride[2], pad[4], dil[2], groups;
};

Settings parse_settings(const py::object& stride, const py::object& padding, const py::object& dilation,
                        int64_t groups, const char* fn) {
  Settings st{};
  const char* pair = "an int or a pair of ints (h, w)";
  std::vector<int64_t> sv = int_list(stride, fn, "stride", pair, {2});
  std::vector<int64_t> dv = int_list(dilation, fn, "dilation", pair, {2});
  std::vector<int64_t> pv = int_list(padding, fn, "padding",
                                     "an int, a pair (h, w) or four ints (top, bottom, left, right)", {2, 4});
  for (int i = 0; i < 2; ++i) {
    st.stride[i] = sv.size() == 1 ? sv[0] : sv[i];
    st.dil[i] = dv.size() == 1 ? dv[0] : dv[i];
  }
  if (pv.size() == 1) {
    for (int i = 0; i < 4; ++i) st.pad[i] = pv[0];
  } else if (pv.size() == 2) {
    st.pad[0] = st.pad[1] = pv[0];
    st.pad[2] = st.pad[3] = pv[1];
  } else {
    for (int i = 0; i < 4; ++i) st.pad[i] = pv[i];
  }
  auto bad = [&](const char* arg, const std::string& rule, const std::vector<int64_t>& v) {
    std::string text = "(";
    for (size_t i = 0; i < v.size(); ++i) text += (i ? ", " : "") + str(v[i]);
    raise_value(std::string(fn) + ": " + arg + " must be " + rule + ", got " + (v.size() == 1 ? str(v[0]) : text + ")"));
  };
  for (int i = 0; i < 2; ++i) {
    if (st.stride[i] < 1 || st.stride[i] >= kMaxDim) bad("stride", "positive", sv);
    if (st.dil[i] < 1 || st.dil[i] >= kMaxDim) bad("dilation", "positive", dv);
  }
  for (int i = 0; i < 4; ++i)
    if (st.pad[i] < 0 || st.pad[i] >= kMaxDim) bad("padding", "non-negative", pv);
  if (groups < 1 || groups >= kMaxDim)
    raise_value(std::string(fn) + ": groups must be a positive int, got " + str(groups));
  st.groups = groups;
  return st;
}

// The optional bias: a float32 vector of n values, or null for None. With check_finite, the
// weight and the bias are scanned for NaN and infinity up front (they are small; the input is
// scanned only when an output went non-finite).
const float* check_bias(const py::object& bias, int64_t n, const py::array& weight, const float* w,
                        bool check_finite_values, const char* fn) {
  const float* b = nullptr;
  if (!bias.is_none()) {
    if (!py::isinstance<py::array>(bias))
      raise_type(std::string(fn) + ": argument 'bias' must be a float32 numpy array of shape (" + str(n) +
                 ",) or None, got " + type_name(bias));
    b = check_vector(bias.cast<py::array>(), fn, "bias", n);
  }
  if (check_finite_values) {
    check_finite_4d(weight, w, fn, "weight");
    check_finite_vector(b, n, fn, "bias");
  }
  return b;
}

// grad_out: a 4-D array of exactly the output's shape (letters: its layout, for the message).
const float* check_grad_out(const py::array& grad_out, const std::array<int64_t, 4>& shape, const char* letters,
                            const char* fn) {
  const float* gy = check_tensor(grad_out, fn, "grad_out", letters);
  for (int i = 0; i < 4; ++i)
    if (grad_out.shape(i) != shape[i])
      raise_value(std::string(fn) + ": argument 'grad_out' must have the output's shape " + letters + " = (" +
                  str(shape[0]) + ", " + str(shape[1]) + ", " + str(shape[2]) + ", " + str(shape[3]) + "), got " +
                  shape_str(grad_out));
  return gy;
}

// Stride, padding and dilation into the shape.
void apply_settings(const Settings& st, Conv2dShape* s) {
  s->stride_h = st.stride[0];
  s->stride_w = st.stride[1];
  s->pad_top = st.pad[0];
  s->pad_bottom = st.pad[1];
  s->pad_left = st.pad[2];
  s->pad_right = st.pad[3];
  s->dil_h = st.dil[0];
  s->dil_w = st.dil[1];
}

// The shape of the convolution, checked: channels, weight shape, kernel against padded input,
// output size.
Conv2dShape make_shape(const py::array& input, const py::array& weight, const Settings& st, const char* fn) {
  Conv2dShape s{};
  s.N = input.shape(0);
  s.C = input.shape(1);
  s.H = input.shape(2);
  s.W = input.shape(3);
  s.K = weight.shape(0);
  s.R = weight.shape(2);
  s.S = weight.shape(3);
  s.G = st.groups;
  apply_settings(st, &s);
  const std::string f(fn);
  if (s.C % s.G != 0)
    raise_value(f + ": the input's channels, C=" + str(s.C) + " (input shape " + shape_str(input) +
                "), must be divisible by groups=" + str(s.G));
  if (s.K % s.G != 0)
    raise_value(f + ": the weight's output channels, K=" + str(s.K) + " (weight shape " + shape_str(weight) +
                "), must be divisible by groups=" + str(s.G));
  if (weight.shape(1) != s.C / s.G)
    raise_value(f + ": argument 'weight' must have shape (K, C/groups, R, S) = (" + str(s.K) + ", " +
                str(s.C / s.G) + ", " + str(s.R) + ", " + str(s.S) + ") for an input with C=" + str(s.C) +
                " channels and groups=" + str(s.G) + ", got " + shape_str(weight));
  if (s.R < 1 || s.S < 1)
    raise_value(f + ": the kernel must be at least 1x1, got weight of shape " + shape_str(weight));
  if (!conv2d_output_size(&s)) {
    const int64_t kh = s.dil_h * (s.R - 1) + 1, kw = s.dil_w * (s.S - 1) + 1;
    std::string dil = s.dil_h == s.dil_w ? str(s.dil_h) : "(" + str(s.dil_h) + ", " + str(s.dil_w) + ")";
    raise_value(f + ": kernel " + str(s.R) + "x" + str(s.S) + " with dilation " + dil +
                " needs a padded input of at least " + str(kh) + "x" + str(kw) + ", got " +
                str(s.H + s.pad_top + s.pad_bottom) + "x" + str(s.W + s.pad_left + s.pad_right) + " (input " +
                str(s.H) + "x" + str(s.W) + " with padding top/bottom/left/right " + str(s.pad_top) + "/" +
                str(s.pad_bottom) + "/" + str(s.pad_left) + "/" + str(s.pad_right) + ")");
  }
  // The output, and one image's im2col columns, must be addressable.
  const long double limit = static_cast<long double>(std::numeric_limits<int64_t>::max()) / 8;
  const long double out_elems = static_cast<long double>(s.N) * s.K * s.P * s.Q;
  const long double col_elems = static_cast<long double>(s.C) * s.R * s.S * s.Q;
  if (out_elems > limit || col_elems > limit || static_cast<long double>(s.P) * s.Q > limit)
    raise_value(f + ": the output, shape (" + str(s.N) + ", " + str(s.K) + ", " + str(s.P) + ", " + str(s.Q) +
                "), is too large (size overflow)");
  return s;
}

py::array_t<float> conv2d_forward_py(const py::array& input, const py::array& weight, const py::object& bias,
                                     const py::object& stride, const py::object& padding, const py::object& dilation,
                                     int64_t groups, bool relu, bool check_finite_values) {
  constexpr const char* fn = "conv2d_forward";
  const float* x = check_tensor(input, fn, "input", "(N, C, H, W)");
  const float* w = check_tensor(weight, fn, "weight", "(K, C/groups, R, S)");
  const Settings st = parse_settings(stride, padding, dilation, groups, fn);
  const Conv2dShape s = make_shape(input, weight, st, fn);
  const float* b = check_bias(bias, s.K, weight, w, check_finite_values, fn);
  py::array_t<float> out = new_float_array({s.N, s.K, s.P, s.Q});
  float* o = out.mutable_data();
  bool nonfinite;
  {
    py::gil_scoped_release release;
    nonfinite = conv2d_forward(o, x, w, b, s, relu);
  }
  if (nonfinite && check_finite_values) check_finite_4d(input, x, fn, "input");
  return out;
}

// The gradient arrays a backward call was asked for (needs = input, weight, bias), each None
// when not wanted, and pointers into them (null when not wanted).
struct Gradients {
  py::object input_array = py::none(), weight_array = py::none(), bias_array = py::none();
  float *input = nullptr, *weight = nullptr, *bias = nullptr;

  Gradients(const std::array<bool, 3>& needs, const std::vector<py::ssize_t>& input_shape,
            const std::vector<py::ssize_t>& weight_shape, int64_t bias_size) {
    if (needs[0]) input = add(new_float_array(input_shape), &input_array);
    if (needs[1]) weight = add(new_float_array(weight_shape), &weight_array);
    if (needs[2]) bias = add(py::array_t<float>({bias_size}), &bias_array);
  }
  py::tuple arrays() const { return py::make_tuple(input_array, weight_array, bias_array); }

 private:
  static float* add(py::array_t<float> a, py::object* slot) {
    float* p = a.mutable_data();
    *slot = std::move(a);
    return p;
  }
};

py::tuple conv2d_backward_py(const py::array& grad_out, const py::array& input, const py::array& weight,
                             const py::object& stride, const py::object& padding, const py::object& dilation,
                             int64_t groups, const std::array<bool, 3>& needs) {
  constexpr const char* fn = "conv2d_backward";
  const float* x = check_tensor(input, fn, "input", "(N, C, H, W)");
  const float* w = check_tensor(weight, fn, "weight", "(K, C/groups, R, S)");
  const Settings st = parse_settings(stride, padding, dilation, groups, fn);
  const Conv2dShape s = make_shape(input, weight, st, fn);
  const float* gy = check_grad_out(grad_out, {s.N, s.K, s.P, s.Q}, "(N, K, P, Q)", fn);
  Gradients g(needs, {s.N, s.C, s.H, s.W}, {s.K, s.C / s.G, s.R, s.S}, s.K);
  {
    py::gil_scoped_release release;
    conv2d_backward(g.input, g.weight, g.bias, gy, x, w, s);
  }
  return g.arrays();
}

// ---- transposed convolution ----------------------------------------------------------------------
// input (N, C_in, H_in, W_in), weight (C_in, C_out/groups, R, S), output (N, C_out, H_out, W_out)
// with H_out = (H_in - 1) stride - pad_top - pad_bottom + dil (R - 1) + output_padding + 1.
// The Conv2dShape made here is that of the adjoint conv2d: its input is (N, C_out, H_out, W_out).

Conv2dShape make_transposed_shape(const py::array& input, const py::array& weight, const Settings& st,
                                  const py::object& output_padding, const char* fn) {
  const std::string f(fn);
  std::vector<int64_t> ov = int_list(output_padding, fn, "output_padding", "an int or a pair of ints (h, w)", {2});
  const int64_t op[2] = {ov[0], ov.size() == 1 ? ov[0] : ov[1]};
  for (int i = 0; i < 2; ++i)
    if (op[i] < 0 || op[i] >= st.stride[i])  // F.conv_transpose2d takes up to the dilation by padding the input
      raise_value(f + ": output_padding must be non-negative and smaller than the stride (" + str(st.stride[i]) +
                  " along " + (i ? "W" : "H") + "), got " + str(op[i]));
  Conv2dShape s{};
  s.N = input.shape(0);
  s.K = input.shape(1);
  s.P = input.shape(2);
  s.Q = input.shape(3);
  s.G = st.groups;
  s.R = weight.shape(2);
  s.S = weight.shape(3);
  if (weight.shape(0) != s.K)
    raise_value(f + ": argument 'weight' must have shape (in_channels, out_channels/groups, kH, kW) with in_channels = " +
                str(s.K) + " (the input's channels, input shape " + shape_str(input) + "), got " + shape_str(weight));
  if (s.K % s.G != 0)
    raise_value(f + ": the input's channels, " + str(s.K) + " (input shape " + shape_str(input) +
                "), must be divisible by groups=" + str(s.G));
  if (s.R < 1 || s.S < 1)
    raise_value(f + ": the kernel must be at least 1x1, got weight of shape " + shape_str(weight));
  s.C = weight.shape(1) * s.G;
  apply_settings(st, &s);
  // The output size, in long double first: (H_in - 1) * stride can overflow int64.
  const long double out_h = (static_cast<long double>(s.P) - 1) * s.stride_h - s.pad_top - s.pad_bottom +
                            static_cast<long double>(s.dil_h) * (s.R - 1) + op[0] + 1;
  const long double out_w = (static_cast<long double>(s.Q) - 1) * s.stride_w - s.pad_left - s.pad_right +
                            static_cast<long double>(s.dil_w) * (s.S - 1) + op[1] + 1;
  const long double limit = static_cast<long double>(std::numeric_limits<int64_t>::max()) / 8;
  if (out_h * out_w * s.N * s.C > limit || out_h >= kMaxDim || out_w >= kMaxDim)
    raise_value(f + ": the output of input " + shape_str(input) + " and weight " + shape_str(weight) +
                " is too large (size overflow)");
  if (s.P > 0 && s.Q > 0 && (out_h < 1 || out_w < 1))
    raise_value(f + ": the output would be " + str(static_cast<int64_t>(out_h)) + "x" +
                str(static_cast<int64_t>(out_w)) + " for input " + str(s.P) + "x" + str(s.Q) + ", kernel " +
                str(s.R) + "x" + str(s.S) + " and padding top/bottom/left/right " + str(s.pad_top) + "/" +
                str(s.pad_bottom) + "/" + str(s.pad_left) + "/" + str(s.pad_right) + "; reduce the padding");
  s.H = std::max<int64_t>(static_cast<int64_t>(out_h), 0);
  s.W = std::max<int64_t>(static_cast<int64_t>(out_w), 0);
  if (s.P > 0 && s.Q > 0) {  // the adjoint conv2d of this shape maps (H, W) back onto (P, Q)
    Conv2dShape check = s;
    if (!conv2d_output_size(&check) || check.P != s.P || check.Q != s.Q)
      raise_value(f + ": internal error: inconsistent transposed-convolution shape");
  }
  return s;
}

py::array_t<float> conv_transpose2d_forward_py(const py::array& input, const py::array& weight,
                                               const py::object& bias, const py::object& stride,
                                               const py::object& padding, const py::object& output_padding,
                                               const py::object& dilation, int64_t groups,
                                               bool check_finite_values) {
  constexpr const char* fn = "conv_transpose2d_forward";
  const float* x = check_tensor(input, fn, "input", "(N, C_in, H, W)");
  const float* w = check_tensor(weight, fn, "weight", "(C_in, C_out/groups, R, S)");
  const Settings st = parse_settings(stride, padding, dilation, groups, fn);
  const Conv2dShape s = make_transposed_shape(input, weight, st, output_padding, fn);
  const float* b = check_bias(bias, s.C, weight, w, check_finite_values, fn);
  py::array_t<float> out = new_float_array({s.N, s.C, s.H, s.W});
  float* o = out.mutable_data();
  bool nonfinite;
  {
    py::gil_scoped_release release;
    nonfinite = conv_transpose2d_forward(o, x, w, b, s);
  }
  if (nonfinite && check_finite_values) check_finite_4d(input, x, fn, "input");
  return out;
}

py::tuple conv_transpose2d_backward_py(const py::array& grad_out, const py::array& input, const py::array& weight,
                                       const py::object& stride, const py::object& padding,
                                       const py::object& output_padding, const py::object& dilation, int64_t groups,
                                       const std::array<bool, 3>& needs) {
  constexpr const char* fn = "conv_transpose2d_backward";
  const float* x = check_tensor(input, fn, "input", "(N, C_in, H, W)");
  const float* w = check_tensor(weight, fn, "weight", "(C_in, C_out/groups, R, S)");
  const Settings st = parse_settings(stride, padding, dilation, groups, fn);
  const Conv2dShape s = make_transposed_shape(input, weight, st, output_padding, fn);
  const float* gy = check_grad_out(grad_out, {s.N, s.C, s.H, s.W}, "(N, C_out, H_out, W_out)", fn);
  Gradients g(needs, {s.N, s.K, s.P, s.Q}, {s.K, s.C / s.G, s.R, s.S}, s.C);
  {
    py::gil_scoped_release release;
    conv_transpose2d_backward(g.input, g.weight, g.bias, gy, x, w, s);
  }
  return g.arrays();
}

int64_t set_budget_py(int64_t bytes) {
  if (bytes < 4) raise_value("set_conv2d_workspace_budget: bytes must be >= 4, got " + str(bytes));
  const int64_t previous = conv2d_workspace_budget();
  set_conv2d_workspace_budget(bytes);
  return previous;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward_py, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::kw_only(), py::arg("relu") = false, py::arg("check_finite") = true,
        R"doc(2-D convolution (cross-correlation), NCHW float32: returns out (N, K, P, Q).

input (N, C, H, W) and weight (K, C/groups, R, S) are float32 and C-contiguous; bias (K,) or
None. stride and dilation: an int or (h, w); padding (zeros): an int, (h, w) or
(top, bottom, left, right). relu=True applies a ReLU in the GEMM epilogue. With check_finite, a
NaN or infinity in an argument raises ValueError naming it and its index (weight and bias are
scanned up front, the input only when an output went non-finite). Releases the GIL.)doc");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_out"), py::arg("input"), py::arg("weight"),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("needs") = std::array<bool, 3>{true, true, true},
        R"doc(Gradients of conv2d_forward (without ReLU): returns (grad_input, grad_weight, grad_bias), each
None unless asked for by needs = (input, weight, bias). grad_out has the output's shape
(N, K, P, Q). The results do not depend on the thread count. Releases the GIL.)doc");
  m.def("conv_transpose2d_forward", &conv_transpose2d_forward_py, py::arg("input"), py::arg("weight"),
        py::arg("bias") = py::none(), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("output_padding") = 0,
        py::arg("dilation") = 1, py::arg("groups") = 1, py::kw_only(), py::arg("check_finite") = true,
        R"doc(Transposed 2-D convolution (PyTorch's conv_transpose2d), NCHW float32: returns out
(N, C_out, H_out, W_out), H_out = (H - 1) stride - padding_top - padding_bottom + dilation (kH - 1)
+ output_padding + 1 (W likewise).

input (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW), bias (C_out,) or None. stride,
dilation, output_padding: an int or (h, w); padding: an int, (h, w) or (top, bottom, left,
right). check_finite as for conv2d_forward. Releases the GIL.)doc");
  m.def("conv_transpose2d_backward", &conv_transpose2d_backward_py, py::arg("grad_out"), py::arg("input"),
        py::arg("weight"), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("output_padding") = 0,
        py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("needs") = std::array<bool, 3>{true, true, true},
        R"doc(Gradients of conv_transpose2d_forward: returns (grad_input, grad_weight, grad_bias), each None
unless asked for by needs = (input, weight, bias). grad_out has the output's shape. Releases the GIL.)doc");
  m.def("conv2d_direct_limit", &conv2d_direct_limit,
        "The largest reduction C*R*S (taps) a convolution takes the direct path (no im2col) for; default 160.");
  m.def("set_conv2d_direct_limit", [](int64_t taps) {
        if (taps < 0) raise_value("set_conv2d_direct_limit: taps must be >= 0, got " + str(taps));
        const int64_t previous = conv2d_direct_limit();
        set_conv2d_direct_limit(taps);
        return previous;
      }, py::arg("taps"), "Set the direct-path limit (0: always im2col); returns the previous one. For tests and tuning.");
  m.def("conv2d_workspace_budget", &conv2d_workspace_budget,
        "Bytes of work buffer one convolution call may use (default 2 MiB): the batch is cut into chunks "
        "that fit.");
  m.def("set_conv2d_workspace_budget", &set_budget_py, py::arg("bytes"),
        "Set the convolution work-buffer budget in bytes; returns the previous one. Changes the chunking "
        "(and so the rounding of the weight gradient); meant for tests and tuning.");
}

}  // namespace fastnn
