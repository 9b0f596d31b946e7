// _C.cuda entry points: the fused optimizer updates, the EMA of parameters and buffer copies
// (checks and GIL release only; the kernels are in csrc/cuda/optim.cu). The host-side scalars
// (bias corrections, rates, 1 - x) come from cpu/optim.h's helpers, so they round as on the CPU.
#if FASTNN_CUDA_BUILT
#include <pybind11/stl.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "bindings/cuda_array.h"
#include "cpu/optim.h"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda_py {
namespace {

// One state argument of an optimizer: its name (for messages) and its arrays, one per
// parameter, or none when the option that needs it is off.
struct StateList {
  const char* name;
  const std::vector<Array*>& arrays;
};

// The list must hold one array per parameter (an empty one passes when `optional`).
void check_count(const char* fn, const char* name, size_t got, size_t expected, bool optional) {
  if (got != expected && !(optional && got == 0))
    raise_value(std::string(fn) + ": argument '" + name + "' must hold " + std::to_string(expected) +
                " arrays, one per parameter, got " + std::to_string(got));
}

// The optimizer's slots: params[i], grads[i] and each state list's [i] share one shape and device.
std::vector<cuda::ParamSlot> check_slots(const char* fn, const std::vector<Array*>& params,
                                         const std::vector<Array*>& grads, std::initializer_list<StateList> states,
                                         int* device) {
  check_count(fn, "grads", grads.size(), params.size(), false);
  for (const StateList& list : states) check_count(fn, list.name, list.arrays.size(), params.size(), true);
  std::vector<cuda::ParamSlot> slots;
  *device = params.empty() ? 0 : params[0]->device;
  for (size_t i = 0; i < params.size(); ++i) {
    const Array& p = check_float(*params[i], fn, "params");
    if (p.device != *device) raise_value(std::string(fn) + ": all parameters must be on one device");
    check_same_shape(p, check_float(*grads[i], fn, "grads"), fn, "params[i]", "grads[i]");
    float* state[3] = {nullptr, nullptr, nullptr};
    int k = 0;
    for (const StateList& list : states) {
      if (!list.arrays.empty()) {
        const std::string item = std::string(list.name) + "[i]";
        check_same_shape(p, check_float(*list.arrays[i], fn, list.name), fn, "params[i]", item.c_str());
        state[k] = list.arrays[i]->f();
      }
      ++k;
    }
    slots.push_back({p.f(), grads[i]->f(), state[0], state[1], state[2], p.size()});
  }
  return slots;
}

// A list that an option needs must not be empty.
void require_list(const char* fn, const char* name, const std::vector<Array*>& list, size_t params,
                  const char* needed_by) {
  if (params != 0 && list.empty())
    raise_value(std::string(fn) + ": " + needed_by + " needs one buffer per parameter in '" + name + "'");
}

void adam_step(const std::vector<Array*>& params, const std::vector<Array*>& grads, const std::vector<Array*>& m,
               const std::vector<Array*>& v, const std::vector<Array*>& vmax, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled, bool maximize, int64_t step,
               std::optional<Array> step_count) {
  constexpr const char* fn = "cuda.adam_step";
  if (!step_count && step < 1) raise_value(std::string(fn) + ": step must be >= 1, got " + std::to_string(step));
  if (step_count && (step_count->dtype != Dtype::float32 || step_count->size() != 1))
    raise_value(std::string(fn) + ": argument 'step_count' must be a float32 device array of one element");
  require_list(fn, "exp_avgs", m, params.size(), "Adam");
  require_list(fn, "exp_avg_sqs", v, params.size(), "Adam");
  int device = 0;
  std::vector<cuda::ParamSlot> slots =
      check_slots(fn, params, grads, {{"exp_avgs", m}, {"exp_avg_sqs", v}, {"max_exp_avg_sqs", vmax}}, &device);
  if (slots.empty()) return;
  const bool amsgrad = !vmax.empty();
  const AdamOptions o = make_adam_options(lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize);
  cuda::AdamSettings s{0.0f, 0.0f, o.one_minus_beta1, o.beta2, o.one_minus_beta2, o.eps, o.weight_decay,
                       decoupled ? o.decay_factor : 1.0f, decoupled, maximize, amsgrad};
  adam_bias_corrections(lr, beta1, beta2, std::max<int64_t>(step, 1), &s.step_size, &s.bc2_sqrt);
  if (step_count) check_same_device(*params[0], *step_count, fn, "params", "step_count");
  py::gil_scoped_release release;
  if (step_count)
    cuda::adam_step_capturable(slots.data(), static_cast<int>(slots.size()), s, static_cast<float>(lr),
                               static_cast<float>(beta1), static_cast<float>(beta2), step_count->f(), device);
  else
    cuda::adam_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

void sgd_step(const std::vector<Array*>& params, const std::vector<Array*>& grads, const std::vector<Array*>& bufs,
              double lr, double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
              bool first_step) {
  constexpr const char* fn = "cuda.sgd_step";
  if (momentum != 0.0) require_list(fn, "momentum_buffers", bufs, params.size(), "momentum");
  int device = 0;
  std::vector<cuda::ParamSlot> slots = check_slots(fn, params, grads, {{"momentum_buffers", bufs}}, &device);
  if (slots.empty()) return;
  cuda::SgdSettings s{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(1.0 - dampening),
                      static_cast<float>(weight_decay), nesterov, maximize, first_step};
  py::gil_scoped_release release;
  cuda::sgd_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

void rmsprop_step(const std::vector<Array*>& params, const std::vector<Array*>& grads,
                  const std::vector<Array*>& square_avgs, const std::vector<Array*>& grad_avgs,
                  const std::vector<Array*>& bufs, double lr, double alpha, double eps, double weight_decay,
                  double momentum, bool centered, bool maximize) {
  constexpr const char* fn = "cuda.rmsprop_step";
  require_list(fn, "square_avgs", square_avgs, params.size(), "RMSprop");
  if (centered) require_list(fn, "grad_avgs", grad_avgs, params.size(), "centered");
  if (momentum > 0.0) require_list(fn, "momentum_buffers", bufs, params.size(), "momentum > 0");
  const std::vector<Array*> none;
  int device = 0;
  std::vector<cuda::ParamSlot> slots =
      check_slots(fn, params, grads,
                  {{"square_avgs", square_avgs}, {"grad_avgs", centered ? grad_avgs : none},
                   {"momentum_buffers", momentum > 0.0 ? bufs : none}},
                  &device);
  if (slots.empty()) return;
  const RmspropOptions o = make_rmsprop_options(lr, alpha, eps, weight_decay, momentum, centered, maximize);
  const cuda::RmspropSettings s{o.lr, o.alpha, o.one_minus_alpha, o.eps, o.weight_decay, o.momentum,
                                o.centered, o.maximize};
  py::gil_scoped_release release;
  cuda::rmsprop_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

void adagrad_step(const std::vector<Array*>& params, const std::vector<Array*>& grads,
                  const std::vector<Array*>& state_sums, double lr, double lr_decay, double weight_decay,
                  double eps, int64_t step, bool maximize) {
  constexpr const char* fn = "cuda.adagrad_step";
  if (step < 1) raise_value(std::string(fn) + ": step must be >= 1, got " + std::to_string(step));
  require_list(fn, "state_sums", state_sums, params.size(), "Adagrad");
  int device = 0;
  std::vector<cuda::ParamSlot> slots = check_slots(fn, params, grads, {{"state_sums", state_sums}}, &device);
  if (slots.empty()) return;
  const cuda::AdagradSettings s{adagrad_rate(lr, lr_decay, step), static_cast<float>(eps),
                                static_cast<float>(weight_decay), maximize};
  py::gil_scoped_release release;
  cuda::adagrad_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

// (dst[i], src[i]) pairs of one shape, all on dst[0]'s device.
std::vector<cuda::BufferPair> check_pairs(const char* fn, const std::vector<Array*>& dst, const char* dst_name,
                                          const std::vector<Array*>& src, const char* src_name, int* device) {
  check_count(fn, src_name, src.size(), dst.size(), false);
  std::vector<cuda::BufferPair> pairs;
  *device = dst.empty() ? 0 : dst[0]->device;
  const std::string dst_item = std::string(dst_name) + "[i]", src_item = std::string(src_name) + "[i]";
  for (size_t i = 0; i < dst.size(); ++i) {
    const Array& d = check_float(*dst[i], fn, dst_name);
    check_same_device(*dst[0], d, fn, "dst[0]", dst_item.c_str());
    check_same_shape(d, check_float(*src[i], fn, src_name), fn, dst_item.c_str(), src_item.c_str());
    pairs.push_back({d.f(), src[i]->f(), d.size()});
  }
  return pairs;
}

void ema_update(const std::vector<Array*>& shadows, const std::vector<Array*>& params, double decay) {
  constexpr const char* fn = "cuda.ema_update";
  if (!(decay >= 0.0 && decay <= 1.0))
    raise_value(std::string(fn) + ": decay must be in [0, 1], got " + std::to_string(decay));
  int device = 0;
  std::vector<cuda::BufferPair> pairs = check_pairs(fn, shadows, "shadows", params, "params", &device);
  if (pairs.empty()) return;
  py::gil_scoped_release release;
  cuda::ema_update(pairs.data(), static_cast<int>(pairs.size()), static_cast<float>(decay),
                   static_cast<float>(1.0 - decay), device);
}

void copy_buffers(const std::vector<Array*>& dst, const std::vector<Array*>& src) {
  constexpr const char* fn = "cuda.copy_buffers";
  int device = 0;
  std::vector<cuda::BufferPair> pairs = check_pairs(fn, dst, "dst", src, "src", &device);
  if (pairs.empty()) return;
  py::gil_scoped_release release;
  cuda::copy_buffers(pairs.data(), static_cast<int>(pairs.size()), device);
}

}  // namespace

void bind_cuda_optim(py::module_& m) {
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs") = py::list(), py::kw_only(), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"), py::arg("maximize"), py::arg("step") = 0,
        py::arg("step_count") = py::none(),
        "One Adam/AdamW update of every parameter; AMSGrad when max_exp_avg_sqs is given (one per\n"
        "parameter). step: the new step count (host); or step_count: a float32 device array holding the\n"
        "count, advanced by the call on the device (capturable).");
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::kw_only(),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), py::arg("first_step"));
  m.def("rmsprop_step", &rmsprop_step, py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
        py::arg("grad_avgs"), py::arg("momentum_buffers"), py::kw_only(), py::arg("lr"), py::arg("alpha") = 0.99,
        py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("centered") = false,
        py::arg("maximize") = false,
        "One RMSprop update of every parameter, as _C.rmsprop_step. grad_avgs may be [] unless centered,\n"
        "momentum_buffers [] unless momentum > 0.");
  m.def("adagrad_step", &adagrad_step, py::arg("params"), py::arg("grads"), py::arg("state_sums"), py::kw_only(),
        py::arg("lr"), py::arg("lr_decay"), py::arg("weight_decay"), py::arg("eps"), py::arg("step"),
        py::arg("maximize"),
        "One Adagrad update of every parameter, all at this step number `step` (from 1).");
  m.def("ema_update", &ema_update, py::arg("shadows"), py::arg("params"), py::kw_only(), py::arg("decay"),
        "shadow = decay * shadow + (1 - decay) * param for every pair, in place, as _C.ema_update.");
  m.def("copy_buffers", &copy_buffers, py::arg("dst"), py::arg("src"),
        "dst[i][...] = src[i] for every pair (one shape and device each), in one launch per 64.");
}

}  // namespace cuda_py
}  // namespace fastnn
#endif  // FASTNN_CUDA_BUILT
