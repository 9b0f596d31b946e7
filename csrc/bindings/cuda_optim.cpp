// _C.cuda entry points: the fused optimizer updates (checks and GIL release only; the kernels
// are in csrc/cuda/optim.cu).
#if FASTNN_CUDA_BUILT
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bindings/cuda_array.h"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda_py {
namespace {

// The optimizer's slots: params[i], grads[i] and each state list's [i] share one shape and device.
std::vector<cuda::ParamSlot> check_slots(const char* fn, const std::vector<Array*>& params,
                                         const std::vector<Array*>& grads, const std::vector<Array*>& state0,
                                         const std::vector<Array*>& state1, int* device) {
  if (grads.size() != params.size() || (!state0.empty() && state0.size() != params.size()) ||
      (!state1.empty() && state1.size() != params.size()))
    raise_value(std::string(fn) + ": params, grads and the state lists must have the same length, got " +
                std::to_string(params.size()) + ", " + std::to_string(grads.size()) + ", " +
                std::to_string(state0.size()) + ", " + std::to_string(state1.size()));
  std::vector<cuda::ParamSlot> slots;
  *device = params.empty() ? 0 : params[0]->device;
  for (size_t i = 0; i < params.size(); ++i) {
    const Array& p = check_float(*params[i], fn, "params");
    if (p.device != *device) raise_value(std::string(fn) + ": all parameters must be on one device");
    check_same_shape(p, check_float(*grads[i], fn, "grads"), fn, "params[i]", "grads[i]");
    if (!state0.empty()) check_same_shape(p, check_float(*state0[i], fn, "state"), fn, "params[i]", "state[i]");
    if (!state1.empty()) check_same_shape(p, check_float(*state1[i], fn, "state"), fn, "params[i]", "state[i]");
    slots.push_back({p.f(), grads[i]->f(), state0.empty() ? nullptr : state0[i]->f(),
                     state1.empty() ? nullptr : state1[i]->f(), p.size()});
  }
  return slots;
}

void adam_step(const std::vector<Array*>& params, const std::vector<Array*>& grads, const std::vector<Array*>& m,
               const std::vector<Array*>& v, double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool maximize, int64_t step, std::optional<Array> step_count) {
  constexpr const char* fn = "cuda.adam_step";
  if (!step_count && step < 1) raise_value(std::string(fn) + ": step must be >= 1, got " + std::to_string(step));
  if (step_count && (step_count->dtype != Dtype::float32 || step_count->size() != 1))
    raise_value(std::string(fn) + ": argument 'step_count' must be a float32 device array of one element");
  int device = 0;
  std::vector<cuda::ParamSlot> slots = check_slots(fn, params, grads, m, v, &device);
  if (slots.empty()) return;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(std::max<int64_t>(step, 1)));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(std::max<int64_t>(step, 1)));
  cuda::AdamSettings s{static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2)),
                       static_cast<float>(1.0 - beta1), static_cast<float>(beta2), static_cast<float>(1.0 - beta2),
                       static_cast<float>(eps), static_cast<float>(weight_decay),
                       static_cast<float>(decoupled ? 1.0 - lr * weight_decay : 1.0), decoupled, maximize};
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
  if (momentum != 0.0 && bufs.empty())
    raise_value(std::string(fn) + ": momentum needs one buffer per parameter in 'momentum_buffers'");
  int device = 0;
  std::vector<cuda::ParamSlot> slots = check_slots(fn, params, grads, bufs, {}, &device);
  if (slots.empty()) return;
  cuda::SgdSettings s{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(1.0 - dampening),
                      static_cast<float>(weight_decay), nesterov, maximize, first_step};
  py::gil_scoped_release release;
  cuda::sgd_step(slots.data(), static_cast<int>(slots.size()), s, device);
}

}  // namespace

void bind_cuda_optim(py::module_& m) {
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::kw_only(), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled"), py::arg("maximize"), py::arg("step") = 0, py::arg("step_count") = py::none(),
        "One Adam/AdamW update of every parameter. step: the new step count (host); or step_count: a\n"
        "float32 device array holding the count, advanced by the call on the device (capturable).");
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::kw_only(),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), py::arg("first_step"));
}

}  // namespace cuda_py
}  // namespace fastnn
#endif  // FASTNN_CUDA_BUILT
