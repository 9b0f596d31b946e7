// Fused optimizer steps, gradient clipping and parameter EMA over a list of tensors.
//
// Algorithm: each function applies one published per-element rule (PyTorch's torch.optim
// SGD, Adagrad, RMSprop, Adam/AdamW; clip_grad_norm_/clip_grad_value_; the EMA
// shadow = decay * shadow + (1 - decay) * param) to every element of every tensor in a single
// pass: each buffer is read once and each updated buffer written once, in place. Arithmetic
// is float32, in the order of PyTorch's CPU single-tensor path; what depends on the step
// count (Adam's bias corrections, Adagrad's decayed rate) is computed by the caller in double
// and passed per tensor. Norms accumulate in double.
//
// Threading: the tensors form one concatenated range of E elements, cut into equal shares, one
// per thread (so one big tensor and many small ones still balance). Every cut is moved down to
// a multiple of 64 elements from the start of the tensor it falls in, so each element runs
// through the same instructions at any thread count: the updates do not depend on the number
// of threads. Norms sum fixed 16 Ki-element chunks into a partial each (workspace from the
// caller), then add the partials in order: also independent of the thread count. Below a work
// threshold the caller's thread does it all.
//
// Vectorization: the element loops (optim_kernels.h) are plain loops over __restrict pointers
// that the compiler vectorizes; they are compiled three times, with baseline, AVX2 and
// AVX-512 flags (optim_kernel_{ref,avx2,avx512}.cpp), and chosen at run time by active_isa().
//
// Shapes: a tensor is a flat run of n floats; its param, grad and state buffers all hold n.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"

namespace fastnn {

// One parameter tensor of a fused step.
struct OptimTensor {
  float* param;          // updated in place
  const float* grad;     // read only
  float* state[3];       // the optimizer's state buffers (see each step), nullptr where unused
  int64_t n;             // elements in each buffer
  float scalar[2];       // per-tensor scalars computed by the caller (see each step)
};

// SGD. state[0]: momentum buffer (when momentum != 0). scalar[0]: 1 when that buffer is new
// (it is then set to the gradient, as PyTorch's first step does), 0 otherwise.
struct SgdOptions {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize;
};
void sgd_step(const OptimTensor* tensors, int64_t count, const SgdOptions& o);
SgdOptions make_sgd_options(double lr, double momentum, double dampening, double weight_decay, bool nesterov,
                            bool maximize);

// Adagrad. state[0]: sum of squared gradients. scalar[0]: lr / (1 + (step - 1) * lr_decay).
struct AdagradOptions {
  float eps, weight_decay;
  bool maximize;
};
void adagrad_step(const OptimTensor* tensors, int64_t count, const AdagradOptions& o);
// scalar[0] for a tensor at `step` (>= 1), computed in double.
float adagrad_rate(double lr, double lr_decay, int64_t step);

// RMSprop. state[0]: square_avg; state[1]: grad_avg (centered); state[2]: momentum buffer
// (momentum > 0).
struct RmspropOptions {
  float lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};
void rmsprop_step(const OptimTensor* tensors, int64_t count, const RmspropOptions& o);
RmspropOptions make_rmsprop_options(double lr, double alpha, double eps, double weight_decay, double momentum,
                                    bool centered, bool maximize);

// Adam (L2 weight decay added to the gradient) and AdamW (decoupled: param *= decay_factor,
// decay_factor = 1 - lr * weight_decay). state[0]: exp_avg; state[1]: exp_avg_sq;
// state[2]: max_exp_avg_sq (amsgrad). scalar[0]: lr / (1 - beta1^step);
// scalar[1]: sqrt(1 - beta2^step).
struct AdamOptions {
  float one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor;
  bool amsgrad, decoupled, maximize;
};
void adam_step(const OptimTensor* tensors, int64_t count, const AdamOptions& o);
AdamOptions make_adam_options(double lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                              bool decoupled, bool maximize);
// scalar[0] and scalar[1] for a tensor at `step` (>= 1): the bias corrections, in double.
void adam_bias_corrections(double lr, double beta1, double beta2, int64_t step, float* step_size, float* bc2_sqrt);

// A writable buffer of n floats (clipping, EMA, copies).
struct FloatSpan {
  float* data;
  int64_t n;
};

// Doubles of workspace that total_norm needs for these tensors.
int64_t norm_workspace_size(const FloatSpan* tensors, int64_t count);
// The norm of order p of all elements together: (sum |x|^p)^(1/p) for p > 0, max |x| for
// p = inf. NaN when any element is NaN. `workspace` holds norm_workspace_size() doubles.
double total_norm(const FloatSpan* tensors, int64_t count, double p, double* workspace);
// torch.nn.utils.clip_grad_norm_ fused: *norm = total_norm(p); unless it is non-finite and
// error_if_nonfinite (then nothing changes and the result is false), every buffer is scaled by
// max_norm / (norm + 1e-6) when that is below 1 (a NaN norm scales by NaN, as torch does).
bool clip_grad_norm(const FloatSpan* grads, int64_t count, double max_norm, double p, bool error_if_nonfinite,
                    double* workspace, double* norm);
// x *= factor, in place.
void scale_buffers(const FloatSpan* tensors, int64_t count, float factor);
// x = min(max(x, lo), hi), in place (hi wins when lo > hi); NaN stays NaN.
void clamp_buffers(const FloatSpan* tensors, int64_t count, float lo, float hi);
// shadow[i] = decay * shadow[i] + (1 - decay) * param[i] in float32 (1 - decay computed in double);
// params[i] holds shadows[i].n floats.
void ema_update(const FloatSpan* shadows, const float* const* params, int64_t count, double decay);
// dst[i] = src[i]; src[i] holds dst[i].n floats.
void copy_buffers(const FloatSpan* dst, const float* const* src, int64_t count);

// ---- per-ISA element loops (optim_kernels.h), on elements [lo, hi) of one tensor --------------
struct OptimKernels {
  void (*sgd)(const OptimTensor& t, int64_t lo, int64_t hi, const SgdOptions& o);
  void (*adagrad)(const OptimTensor& t, int64_t lo, int64_t hi, const AdagradOptions& o);
  void (*rmsprop)(const OptimTensor& t, int64_t lo, int64_t hi, const RmspropOptions& o);
  void (*adam)(const OptimTensor& t, int64_t lo, int64_t hi, const AdamOptions& o);
  double (*sum_squares)(const float* x, int64_t n);
  double (*sum_abs)(const float* x, int64_t n);
  double (*max_abs)(const float* x, int64_t n);  // NaN when any x is NaN
  void (*scale)(float* x, int64_t n, float factor);
  void (*clamp)(float* x, int64_t n, float lo, float hi);
  void (*ema)(float* shadow, const float* param, int64_t n, float decay, float one_minus_decay);
};
const OptimKernels& optim_kernels_ref();
const OptimKernels& optim_kernels_avx2();
const OptimKernels& optim_kernels_avx512();
const OptimKernels& optim_kernels_for(Isa isa);

}  // namespace fastnn
