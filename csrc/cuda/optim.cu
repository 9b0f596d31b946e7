// Fused optimizer updates on the GPU: every parameter of a model in one launch per 64 of them.
// Dimension letters: n elements of one parameter.
//
// The launch's grid is (chunks, parameters): blockIdx.y picks the parameter's slot (pointers
// and size, passed by value in the kernel's arguments, so nothing is copied to the device
// first), blockIdx.x and the threads stride over its elements. Each element's update is the same
// arithmetic, in the same order, as the CPU kernels (csrc/cpu/optim_kernels.h): Adam/AdamW with
// bias correction, SGD with momentum, dampening, Nesterov and weight decay, maximize.
#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256, kMaxSlots = 64;

struct SlotTable {
  ParamSlot slot[kMaxSlots];
};

// step: null, or the step count on the device (already advanced by advance_step_kernel), whose
// bias corrections are then computed here, in float (the capturable variant).
__global__ void adam_kernel(SlotTable table, AdamSettings s, const float* step, float lr, float beta1, float beta2) {
  if (step) {
    const float n = *step;
    s.step_size = lr / (1.0f - powf(beta1, n));
    s.bc2_sqrt = sqrtf(1.0f - powf(beta2, n));
  }
  const ParamSlot& t = table.slot[blockIdx.y];
  float* __restrict__ p = t.param;
  const float* __restrict__ g = t.grad;
  float* __restrict__ m = t.state0;
  float* __restrict__ v = t.state1;
  const float sign = s.maximize ? -1.0f : 1.0f, l2 = s.decoupled ? 0.0f : s.weight_decay;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < t.n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float pi = p[i];
    if (s.decoupled) pi = pi * s.decay_factor;
    float gi = sign * g[i];
    if (l2 != 0.0f) gi = gi + l2 * pi;
    const float mi = m[i] + s.one_minus_beta1 * (gi - m[i]);
    const float vi = s.beta2 * v[i] + s.one_minus_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - s.step_size * (mi / (sqrtf(vi) / s.bc2_sqrt + s.eps));
  }
}

__global__ void advance_step_kernel(float* step) { *step += 1.0f; }

__global__ void sgd_kernel(SlotTable table, SgdSettings s) {
  const ParamSlot& t = table.slot[blockIdx.y];
  float* __restrict__ p = t.param;
  const float* __restrict__ g = t.grad;
  float* __restrict__ buf = t.state0;
  const float sign = s.maximize ? -1.0f : 1.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < t.n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float gi = sign * g[i];
    if (s.weight_decay != 0.0f) gi = gi + s.weight_decay * p[i];
    if (s.momentum != 0.0f) {
      const float b = s.first_step ? gi : s.momentum * buf[i] + s.one_minus_dampening * gi;
      buf[i] = b;
      gi = s.nesterov ? gi + s.momentum * b : b;
    }
    p[i] = p[i] - s.lr * gi;
  }
}

template <typename Settings, typename Launch>
void for_each_group(const ParamSlot* slots, int count, int device, Launch launch) {
  cudaStream_t st = stream_of(device);
  for (int first = 0; first < count; first += kMaxSlots) {
    SlotTable table;
    const int used = std::min(kMaxSlots, count - first);
    int64_t largest = 0;
    for (int i = 0; i < used; ++i) {
      table.slot[i] = slots[first + i];
      largest = std::max(largest, slots[first + i].n);
    }
    if (largest == 0) continue;
    const dim3 grid(grid_for(largest, kThreads, 1024), static_cast<unsigned>(used));
    launch(grid, st, table);
  }
}

}  // namespace

void adam_step(const ParamSlot* slots, int count, const AdamSettings& s, int device) {
  for_each_group<AdamSettings>(slots, count, device, [&](dim3 grid, cudaStream_t st, const SlotTable& table) {
    adam_kernel<<<grid, kThreads, 0, st>>>(table, s, nullptr, 0.0f, 0.0f, 0.0f);
    check_launch("adam_step");
  });
}

void adam_step_capturable(const ParamSlot* slots, int count, const AdamSettings& s, float lr, float beta1,
                          float beta2, float* step, int device) {
  if (count == 0) return;
  advance_step_kernel<<<1, 1, 0, stream_of(device)>>>(step);
  check_launch("adam_step (step count)");
  for_each_group<AdamSettings>(slots, count, device, [&](dim3 grid, cudaStream_t st, const SlotTable& table) {
    adam_kernel<<<grid, kThreads, 0, st>>>(table, s, step, lr, beta1, beta2);
    check_launch("adam_step");
  });
}

void sgd_step(const ParamSlot* slots, int count, const SgdSettings& s, int device) {
  for_each_group<SgdSettings>(slots, count, device, [&](dim3 grid, cudaStream_t st, const SlotTable& table) {
    sgd_kernel<<<grid, kThreads, 0, st>>>(table, s);
    check_launch("sgd_step");
  });
}

}  // namespace cuda
}  // namespace fastnn
