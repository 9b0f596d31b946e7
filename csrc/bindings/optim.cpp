// _C.sgd_step, adagrad_step, rmsprop_step, adam_step, clip_grad_norm, clip_grad_value,
// ema_update, copy_buffers: argument checks, then the GIL is released around the fused kernel
// of cpu/optim.h. Each takes Python lists (or tuples) of float32 C-contiguous numpy arrays:
// every state buffer has its parameter's shape, every updated buffer is writable, and no
// updated buffer shares memory with any other buffer of the call.
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "cpu/optim.h"

namespace fastnn {
namespace {

std::string item_name(const char* arg, size_t i) { return std::string(arg) + "[" + std::to_string(i) + "]"; }

std::string type_name(py::handle h) { return std::string(py::str(py::type::handle_of(h).attr("__name__"))); }

// The arrays of a list argument, checked for type, dtype, layout and (when `writable`) writability.
std::vector<py::array> take_list(py::handle obj, const char* fn, const char* arg, bool writable) {
  if (!PyList_Check(obj.ptr()) && !PyTuple_Check(obj.ptr()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be a list of float32 numpy arrays, got " +
               type_name(obj));
  std::vector<py::array> out;
  size_t i = 0;
  for (py::handle item : obj) {
    const std::string name = item_name(arg, i++);
    if (!py::isinstance<py::array>(item))
      raise_type(std::string(fn) + ": argument '" + name + "' must be a numpy.ndarray, got " + type_name(item));
    py::array a = py::reinterpret_borrow<py::array>(item);
    if (!a.dtype().is(py::dtype::of<float>()))
      raise_type(std::string(fn) + ": argument '" + name + "' must be float32, got " + std::string(py::str(a.dtype())) +
                 " (convert with .astype(numpy.float32))");
    if (!(a.flags() & py::array::c_style))
      raise_value(std::string(fn) + ": argument '" + name + "' of shape " + shape_str(a) +
                  " must be C-contiguous; pass numpy.ascontiguousarray(...)");
    if (writable && !a.writeable())
      raise_value(std::string(fn) + ": argument '" + name + "' is read-only; it is updated in place, pass a "
                  "writable array");
    out.push_back(std::move(a));
  }
  return out;
}

// The array's first float (writability was checked by take_list where it matters).
float* float_ptr(const py::array& a) { return static_cast<float*>(const_cast<void*>(a.data())); }

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d)) return false;
  return true;
}

// A list whose arrays must match `params` one to one in shape. When `optional`, an empty list
// is also accepted (the option that uses it is off).
void check_like(const std::vector<py::array>& list, const std::vector<py::array>& params, const char* fn,
                const char* arg, const char* params_arg, bool optional, const char* needed_by = nullptr) {
  if (list.size() != params.size() && !(optional && list.empty()))
    raise_value(std::string(fn) + ": argument '" + arg + "' must hold " + std::to_string(params.size()) +
                " arrays, one per entry of '" + params_arg + "'" + (needed_by ? std::string(" (") + needed_by + ")" : "") +
                ", got " + std::to_string(list.size()));
  for (size_t i = 0; i < list.size(); ++i)
    if (!same_shape(list[i], params[i]))
      raise_value(std::string(fn) + ": argument '" + item_name(arg, i) + "' must have the shape of " +
                  item_name(params_arg, i) + ", " + shape_str(params[i]) + ", got " + shape_str(list[i]));
}

// Raises when an updated buffer shares bytes with any other buffer of the call.
struct Extent {
  uintptr_t begin, end;
  bool written;
  const char* arg;
  size_t index;
};

class OverlapCheck {
 public:
  void add(const std::vector<py::array>& list, const char* arg, bool written) {
    for (size_t i = 0; i < list.size(); ++i) {
      const auto begin = reinterpret_cast<uintptr_t>(list[i].data());
      const auto bytes = static_cast<uintptr_t>(list[i].nbytes());
      if (bytes) extents_.push_back({begin, begin + bytes, written, arg, i});
    }
  }
  void check(const char* fn) {
    std::sort(extents_.begin(), extents_.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
    const Extent* far_written = nullptr;  // of the extents so far: the written one reaching furthest
    const Extent* far_any = nullptr;      // and the one of any kind reaching furthest
    for (const Extent& e : extents_) {
      const Extent* hit = nullptr;
      if (far_written && e.begin < far_written->end) hit = far_written;
      else if (e.written && far_any && e.begin < far_any->end) hit = far_any;
      if (hit)
        raise_value(std::string(fn) + ": argument '" + item_name(e.arg, e.index) + "' shares memory with '" +
                    item_name(hit->arg, hit->index) + "'; every parameter, gradient and state buffer needs its "
                    "own memory (updated in place)");
      if (e.written && (!far_written || e.end > far_written->end)) far_written = &e;
      if (!far_any || e.end > far_any->end) far_any = &e;
    }
  }

 private:
  std::vector<Extent> extents_;
};

// `step`: one int for every tensor, or a list of ints, one per tensor; each >= 1.
std::vector<int64_t> take_steps(py::handle step, size_t count, const char* fn) {
  auto as_int = [&](py::handle h, const std::string& name) -> int64_t {
    if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
      raise_type(std::string(fn) + ": argument '" + name + "' must be an int, got " + type_name(h));
    const int64_t v = py::cast<int64_t>(py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr())));
    if (v < 1)
      raise_value(std::string(fn) + ": argument '" + name + "' counts steps from 1 (this step included), got " +
                  std::to_string(v));
    return v;
  };
  if (PyList_Check(step.ptr()) || PyTuple_Check(step.ptr())) {
    if (py::len(step) != count)
      raise_value(std::string(fn) + ": argument 'step' must be an int or a list of " + std::to_string(count) +
                  " ints, one per parameter, got a list of " + std::to_string(py::len(step)));
    std::vector<int64_t> out;
    size_t i = 0;
    for (py::handle h : step) out.push_back(as_int(h, item_name("step", i++)));
    return out;
  }
  return std::vector<int64_t>(count, as_int(step, "step"));
}

std::vector<OptimTensor> make_tensors(const std::vector<py::array>& params, const std::vector<py::array>& grads) {
  std::vector<OptimTensor> t(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    t[i].param = float_ptr(params[i]);
    t[i].grad = static_cast<const float*>(grads[i].data());
    t[i].state[0] = t[i].state[1] = t[i].state[2] = nullptr;
    t[i].n = static_cast<int64_t>(params[i].size());
    t[i].scalar[0] = t[i].scalar[1] = 0.0f;
  }
  return t;
}

void set_state(std::vector<OptimTensor>& t, int slot, const std::vector<py::array>& list) {
  for (size_t i = 0; i < list.size(); ++i) t[i].state[slot] = float_ptr(list[i]);
}

// params and grads, checked; the lists stay referenced by the returned vectors.
struct ParamsGrads {
  std::vector<py::array> params, grads;
};

ParamsGrads take_params_grads(py::handle params, py::handle grads, const char* fn) {
  ParamsGrads pg{take_list(params, fn, "params", true), take_list(grads, fn, "grads", false)};
  check_like(pg.grads, pg.params, fn, "grads", "params", false);
  return pg;
}

// ---- optimizers ---------------------------------------------------------------------------------

void sgd_step_py(py::object params, py::object grads, py::object momentum_buffers, double lr, double momentum,
                 double dampening, double weight_decay, bool nesterov, bool maximize, py::object new_buffers) {
  const char* fn = "sgd_step";
  ParamsGrads pg = take_params_grads(params, grads, fn);
  auto bufs = take_list(momentum_buffers, fn, "momentum_buffers", true);
  check_like(bufs, pg.params, fn, "momentum_buffers", "params", momentum == 0.0, "needed when momentum != 0");
  if (nesterov && (momentum <= 0.0 || dampening != 0.0))
    raise_value(std::string(fn) + ": nesterov needs momentum > 0 and dampening = 0, got momentum=" +
                std::to_string(momentum) + ", dampening=" + std::to_string(dampening));
  std::vector<bool> fresh(pg.params.size(), false);
  if (!new_buffers.is_none()) {
    if (!PyList_Check(new_buffers.ptr()) && !PyTuple_Check(new_buffers.ptr()))
      raise_type(std::string(fn) + ": argument 'new_buffers' must be a list of bools, got " + type_name(new_buffers));
    if (py::len(new_buffers) != pg.params.size())
      raise_value(std::string(fn) + ": argument 'new_buffers' must hold " + std::to_string(pg.params.size()) +
                  " bools, one per parameter, got " + std::to_string(py::len(new_buffers)));
    size_t i = 0;
    for (py::handle h : new_buffers) fresh[i++] = py::cast<bool>(h);
  }
  OverlapCheck overlap;
  overlap.add(pg.params, "params", true);
  overlap.add(pg.grads, "grads", false);
  overlap.add(bufs, "momentum_buffers", true);
  overlap.check(fn);

  std::vector<OptimTensor> t = make_tensors(pg.params, pg.grads);
  if (momentum != 0.0) set_state(t, 0, bufs);
  for (size_t i = 0; i < t.size(); ++i) t[i].scalar[0] = fresh[i] ? 1.0f : 0.0f;
  const SgdOptions o = make_sgd_options(lr, momentum, dampening, weight_decay, nesterov, maximize);
  py::gil_scoped_release release;
  sgd_step(t.data(), static_cast<int64_t>(t.size()), o);
}

void adagrad_step_py(py::object params, py::object grads, py::object state_sums, double lr, double lr_decay,
                     double weight_decay, double eps, py::object step, bool maximize) {
  const char* fn = "adagrad_step";
  ParamsGrads pg = take_params_grads(params, grads, fn);
  auto sums = take_list(state_sums, fn, "state_sums", true);
  check_like(sums, pg.params, fn, "state_sums", "params", false);
  const std::vector<int64_t> steps = take_steps(step, pg.params.size(), fn);
  OverlapCheck overlap;
  overlap.add(pg.params, "params", true);
  overlap.add(pg.grads, "grads", false);
  overlap.add(sums, "state_sums", true);
  overlap.check(fn);

  std::vector<OptimTensor> t = make_tensors(pg.params, pg.grads);
  set_state(t, 0, sums);
  for (size_t i = 0; i < t.size(); ++i) t[i].scalar[0] = adagrad_rate(lr, lr_decay, steps[i]);
  const AdagradOptions o{float(eps), float(weight_decay), maximize};
  py::gil_scoped_release release;
  adagrad_step(t.data(), static_cast<int64_t>(t.size()), o);
}

void rmsprop_step_py(py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
                     py::object momentum_buffers, double lr, double alpha, double eps, double weight_decay,
                     double momentum, bool centered, bool maximize) {
  const char* fn = "rmsprop_step";
  ParamsGrads pg = take_params_grads(params, grads, fn);
  auto sq = take_list(square_avgs, fn, "square_avgs", true);
  auto ga = take_list(grad_avgs, fn, "grad_avgs", true);
  auto bufs = take_list(momentum_buffers, fn, "momentum_buffers", true);
  check_like(sq, pg.params, fn, "square_avgs", "params", false);
  check_like(ga, pg.params, fn, "grad_avgs", "params", !centered, "needed when centered");
  check_like(bufs, pg.params, fn, "momentum_buffers", "params", !(momentum > 0.0), "needed when momentum > 0");
  OverlapCheck overlap;
  overlap.add(pg.params, "params", true);
  overlap.add(pg.grads, "grads", false);
  overlap.add(sq, "square_avgs", true);
  if (centered) overlap.add(ga, "grad_avgs", true);
  if (momentum > 0.0) overlap.add(bufs, "momentum_buffers", true);
  overlap.check(fn);

  std::vector<OptimTensor> t = make_tensors(pg.params, pg.grads);
  set_state(t, 0, sq);
  if (centered) set_state(t, 1, ga);
  if (momentum > 0.0) set_state(t, 2, bufs);
  const RmspropOptions o = make_rmsprop_options(lr, alpha, eps, weight_decay, momentum, centered, maximize);
  py::gil_scoped_release release;
  rmsprop_step(t.data(), static_cast<int64_t>(t.size()), o);
}

void adam_step_py(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                  py::object max_exp_avg_sqs, double lr, double beta1, double beta2, double eps, double weight_decay,
                  bool amsgrad, py::object step, bool decoupled, bool maximize) {
  const char* fn = "adam_step";
  ParamsGrads pg = take_params_grads(params, grads, fn);
  auto m = take_list(exp_avgs, fn, "exp_avgs", true);
  auto v = take_list(exp_avg_sqs, fn, "exp_avg_sqs", true);
  auto vmax = take_list(max_exp_avg_sqs, fn, "max_exp_avg_sqs", true);
  check_like(m, pg.params, fn, "exp_avgs", "params", false);
  check_like(v, pg.params, fn, "exp_avg_sqs", "params", false);
  check_like(vmax, pg.params, fn, "max_exp_avg_sqs", "params", !amsgrad, "needed when amsgrad");
  const std::vector<int64_t> steps = take_steps(step, pg.params.size(), fn);
  OverlapCheck overlap;
  overlap.add(pg.params, "params", true);
  overlap.add(pg.grads, "grads", false);
  overlap.add(m, "exp_avgs", true);
  overlap.add(v, "exp_avg_sqs", true);
  if (amsgrad) overlap.add(vmax, "max_exp_avg_sqs", true);
  overlap.check(fn);

  std::vector<OptimTensor> t = make_tensors(pg.params, pg.grads);
  set_state(t, 0, m);
  set_state(t, 1, v);
  if (amsgrad) set_state(t, 2, vmax);
  for (size_t i = 0; i < t.size(); ++i) adam_bias_corrections(lr, beta1, beta2, steps[i], &t[i].scalar[0], &t[i].scalar[1]);
  const AdamOptions o = make_adam_options(lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize);
  py::gil_scoped_release release;
  adam_step(t.data(), static_cast<int64_t>(t.size()), o);
}

// ---- clipping, EMA, copies ------------------------------------------------------------------

std::vector<FloatSpan> spans(const std::vector<py::array>& list) {
  std::vector<FloatSpan> s(list.size());
  for (size_t i = 0; i < list.size(); ++i)
    s[i] = {float_ptr(list[i]), static_cast<int64_t>(list[i].size())};
  return s;
}

double clip_grad_norm_py(py::object grads, double max_norm, double norm_type, bool error_if_nonfinite) {
  const char* fn = "clip_grad_norm";
  if (!(norm_type > 0.0))
    raise_value(std::string(fn) + ": norm_type must be > 0 (or inf), got " + std::to_string(norm_type));
  auto g = take_list(grads, fn, "grads", true);
  OverlapCheck overlap;
  overlap.add(g, "grads", true);
  overlap.check(fn);
  std::vector<FloatSpan> s = spans(g);
  std::vector<double> workspace(static_cast<size_t>(norm_workspace_size(s.data(), static_cast<int64_t>(s.size()))));
  double norm;
  bool clipped;
  {
    py::gil_scoped_release release;
    clipped = clip_grad_norm(s.data(), static_cast<int64_t>(s.size()), max_norm, norm_type, error_if_nonfinite,
                             workspace.data(), &norm);
  }
  if (!clipped)
    throw std::runtime_error("The total norm of order " + std::string(py::str(py::float_(norm_type))) +
                             " for gradients from `parameters` is non-finite, so it cannot be clipped. To disable "
                             "this error and scale the gradients by the non-finite norm anyway, set "
                             "`error_if_nonfinite=False`");
  return norm;
}

void clip_grad_value_py(py::object grads, double clip_value) {
  const char* fn = "clip_grad_value";
  if (std::isnan(clip_value)) raise_value(std::string(fn) + ": clip_value must be a number, got nan");
  auto g = take_list(grads, fn, "grads", true);
  OverlapCheck overlap;
  overlap.add(g, "grads", true);
  overlap.check(fn);
  std::vector<FloatSpan> s = spans(g);
  const float c = static_cast<float>(clip_value);
  py::gil_scoped_release release;
  clamp_buffers(s.data(), static_cast<int64_t>(s.size()), -c, c);
}

void ema_update_py(py::object shadows, py::object params, double decay) {
  const char* fn = "ema_update";
  if (!(decay >= 0.0 && decay <= 1.0))
    raise_value(std::string(fn) + ": decay must be in [0, 1], got " + std::to_string(decay));
  auto sh = take_list(shadows, fn, "shadows", true);
  auto p = take_list(params, fn, "params", false);
  check_like(p, sh, fn, "params", "shadows", false);
  OverlapCheck overlap;
  overlap.add(sh, "shadows", true);
  overlap.add(p, "params", false);
  overlap.check(fn);
  std::vector<FloatSpan> s = spans(sh);
  std::vector<const float*> src(p.size());
  for (size_t i = 0; i < p.size(); ++i) src[i] = static_cast<const float*>(p[i].data());
  py::gil_scoped_release release;
  ema_update(s.data(), src.data(), static_cast<int64_t>(s.size()), decay);
}

void copy_buffers_py(py::object dst, py::object src) {
  const char* fn = "copy_buffers";
  auto d = take_list(dst, fn, "dst", true);
  auto s = take_list(src, fn, "src", false);
  check_like(s, d, fn, "src", "dst", false);
  OverlapCheck overlap;
  overlap.add(d, "dst", true);
  overlap.add(s, "src", false);
  overlap.check(fn);
  std::vector<FloatSpan> spans_d = spans(d);
  std::vector<const float*> from(s.size());
  for (size_t i = 0; i < s.size(); ++i) from[i] = static_cast<const float*>(s[i].data());
  py::gil_scoped_release release;
  copy_buffers(spans_d.data(), from.data(), static_cast<int64_t>(spans_d.size()));
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", &sgd_step_py, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::kw_only(),
        py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
        py::arg("nesterov") = false, py::arg("maximize") = false, py::arg("new_buffers") = py::none(),
        R"doc(One fused SGD step over every tensor of the lists, in place (torch.optim.SGD's rule).

momentum_buffers may be [] when momentum == 0. new_buffers[i] True means momentum_buffers[i]
is new: it is set to the gradient instead of updated (PyTorch's first step). Releases the GIL.)doc");
  m.def("adagrad_step", &adagrad_step_py, py::arg("params"), py::arg("grads"), py::arg("state_sums"), py::kw_only(),
        py::arg("lr"), py::arg("lr_decay") = 0.0, py::arg("weight_decay") = 0.0, py::arg("eps") = 1e-10,
        py::arg("step"), py::arg("maximize") = false,
        R"doc(One fused Adagrad step (torch.optim.Adagrad's rule). step: this step's number (from 1),
one int for all tensors or a list with one per tensor. Releases the GIL.)doc");
  m.def("rmsprop_step", &rmsprop_step_py, py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
        py::arg("grad_avgs"), py::arg("momentum_buffers"), py::kw_only(), py::arg("lr"), py::arg("alpha") = 0.99,
        py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("centered") = false,
        py::arg("maximize") = false,
        R"doc(One fused RMSprop step (torch.optim.RMSprop's rule). grad_avgs may be [] unless centered,
momentum_buffers [] unless momentum > 0. Releases the GIL.)doc");
  m.def("adam_step", &adam_step_py, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::kw_only(), py::arg("lr"), py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
        py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("amsgrad") = false, py::arg("step"),
        py::arg("decoupled") = false, py::arg("maximize") = false,
        R"doc(One fused Adam (decoupled=False, L2 weight decay) or AdamW (decoupled=True) step, with
PyTorch's rule and bias correction. max_exp_avg_sqs may be [] unless amsgrad. step: this
step's number (from 1), one int or a list with one per tensor. Releases the GIL.)doc");
  m.def("clip_grad_norm", &clip_grad_norm_py, py::arg("grads"), py::kw_only(), py::arg("max_norm"),
        py::arg("norm_type") = 2.0, py::arg("error_if_nonfinite") = false,
        R"doc(Total norm of all grads together (accumulated in double); when above max_norm, every grad
is scaled in place by max_norm / (norm + 1e-6). Returns the norm. With error_if_nonfinite, a
NaN or infinite norm raises RuntimeError and changes nothing. Releases the GIL.)doc");
  m.def("clip_grad_value", &clip_grad_value_py, py::arg("grads"), py::kw_only(), py::arg("clip_value"),
        "Clamp every grad to [-clip_value, clip_value] in place. Releases the GIL.");
  m.def("ema_update", &ema_update_py, py::arg("shadows"), py::arg("params"), py::kw_only(), py::arg("decay"),
        "shadow = decay * shadow + (1 - decay) * param for every pair, in place. Releases the GIL.");
  m.def("copy_buffers", &copy_buffers_py, py::arg("dst"), py::arg("src"),
        "dst[i][...] = src[i] for every pair, in one threaded pass. Releases the GIL.");
}

}  // namespace fastnn
