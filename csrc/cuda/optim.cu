// Fused optimizer updates on the GPU: every parameter of a model in one launch per 64 of them.
// Dimension letters: n elements of one parameter.
//
// The launch's grid is (chunks, parameters): blockIdx.y picks the parameter's slot (pointers
// and size, passed by value in the kernel's arguments, so nothing is copied to the device
// first), blockIdx.x and the threads stride over its elements. Each element's update is the same
// arithmetic, in the same order, as the CPU kernels (csrc/cpu/optim_kernels.h): Adam/AdamW with
// bias correction and AMSGrad, SGD with momentum, dampening, Nesterov and weight decay, RMSprop
// (centered, momentum), Adagrad, maximize; and the EMA of parameters and the buffer copies it
// needs, over (dst, src) pairs in the same grid.
#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256, kMaxSlots = 64;

// A launch's slots, passed by value: with the settings they fit the 4 KiB of kernel arguments.
template <typename Slot>
struct SlotTable {
  Slot slot[kMaxSlots];
};
using ParamTable = SlotTable<ParamSlot>;
using PairTable = SlotTable<BufferPair>;
static_assert(sizeof(ParamTable) + sizeof(AdamSettings) + 32 <= 4096, "adam_kernel's arguments exceed 4 KiB");

// The gradient as SGD, RMSprop and Adagrad use it: negated when maximizing, plus the L2 term.
__device__ __forceinline__ float l2_gradient(float g, float p, float sign, float weight_decay) {
  const float gi = sign * g;
  return weight_decay != 0.0f ? gi + weight_decay * p : gi;
}

// step: null, or the step count on the device (already advanced by advance_step_kernel), whose
// bias corrections are then computed here, in float (the capturable variant).
__global__ void adam_kernel(ParamTable table, AdamSettings s, const float* step, float lr, float beta1, float beta2) {
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
  float* __restrict__ vmax = t.state2;
  const float sign = s.maximize ? -1.0f : 1.0f, l2 = s.decoupled ? 0.0f : s.weight_decay;
  GRID_STRIDE(i, t.n) {
    float pi = p[i];
    if (s.decoupled) pi = pi * s.decay_factor;
    const float gi = l2_gradient(g[i], pi, sign, l2);
    const float mi = m[i] + s.one_minus_beta1 * (gi - m[i]);
    const float vi = s.beta2 * v[i] + s.one_minus_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    float v_used = vi;  // in the denominator
    if (s.amsgrad) {
      v_used = vmax[i] >= vi ? vmax[i] : vi;  // a NaN in v propagates, as torch.maximum
      vmax[i] = v_used;
    }
    p[i] = pi - s.step_size * (mi / (sqrtf(v_used) / s.bc2_sqrt + s.eps));
  }
}

__global__ void advance_step_kernel(float* step) { *step += 1.0f; }

__global__ void sgd_kernel(ParamTable table, SgdSettings s) {
  const ParamSlot& t = table.slot[blockIdx.y];
  float* __restrict__ p = t.param;
  const float* __restrict__ g = t.grad;
  float* __restrict__ buf = t.state0;
  const float sign = s.maximize ? -1.0f : 1.0f;
  GRID_STRIDE(i, t.n) {
    float gi = l2_gradient(g[i], p[i], sign, s.weight_decay);
    if (s.momentum != 0.0f) {
      const float b = s.first_step ? gi : s.momentum * buf[i] + s.one_minus_dampening * gi;
      buf[i] = b;
      gi = s.nesterov ? gi + s.momentum * b : b;
    }
    p[i] = p[i] - s.lr * gi;
  }
}

__global__ void rmsprop_kernel(ParamTable table, RmspropSettings s) {
  const ParamSlot& t = table.slot[blockIdx.y];
  float* __restrict__ p = t.param;
  const float* __restrict__ g = t.grad;
  float* __restrict__ sq = t.state0;
  float* __restrict__ ga = t.state1;
  float* __restrict__ buf = t.state2;
  const float sign = s.maximize ? -1.0f : 1.0f, neg_lr = -s.lr;
  GRID_STRIDE(i, t.n) {
    float gi = l2_gradient(g[i], p[i], sign, s.weight_decay);
    const float sqi = s.alpha * sq[i] + s.one_minus_alpha * (gi * gi);
    sq[i] = sqi;
    float avg;
    if (s.centered) {
      const float gai = ga[i] + s.one_minus_alpha * (gi - ga[i]);
      ga[i] = gai;
      avg = sqrtf(sqi + -1.0f * (gai * gai)) + s.eps;
    } else {
      avg = sqrtf(sqi) + s.eps;
    }
    if (s.momentum > 0.0f) {
      const float b = s.momentum * buf[i] + gi / avg;
      buf[i] = b;
      p[i] = p[i] + neg_lr * b;
    } else {
      p[i] = p[i] + neg_lr * (gi / avg);
    }
  }
}

__global__ void adagrad_kernel(ParamTable table, AdagradSettings s) {
  const ParamSlot& t = table.slot[blockIdx.y];
  float* __restrict__ p = t.param;
  const float* __restrict__ g = t.grad;
  float* __restrict__ sum = t.state0;
  const float sign = s.maximize ? -1.0f : 1.0f, neg_clr = -s.clr;
  GRID_STRIDE(i, t.n) {
    float gi = l2_gradient(g[i], p[i], sign, s.weight_decay);
    const float si = sum[i] + gi * gi;
    sum[i] = si;
    p[i] = p[i] + neg_clr * (gi / (sqrtf(si) + s.eps));
  }
}

__global__ void ema_kernel(PairTable table, float decay, float one_minus_decay) {
  const BufferPair& t = table.slot[blockIdx.y];
  float* __restrict__ shadow = t.dst;
  const float* __restrict__ param = t.src;
  GRID_STRIDE(i, t.n)
    shadow[i] = decay * shadow[i] + one_minus_decay * param[i];
}

__global__ void copy_kernel(PairTable table) {
  const BufferPair& t = table.slot[blockIdx.y];
  float* __restrict__ dst = t.dst;
  const float* __restrict__ src = t.src;
  GRID_STRIDE(i, t.n) dst[i] = src[i];
}

// Calls launch(grid, stream, table) for each run of up to 64 slots that holds an element.
template <typename Slot, typename Launch>
void for_each_group(const Slot* slots, int count, int device, Launch launch) {
  cudaStream_t st = stream_of(device);
  for (int first = 0; first < count; first += kMaxSlots) {
    SlotTable<Slot> table;
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
  for_each_group(slots, count, device, [&](dim3 grid, cudaStream_t st, const ParamTable& table) {
    adam_kernel<<<grid, kThreads, 0, st>>>(table, s, nullptr, 0.0f, 0.0f, 0.0f);
    check_launch("adam_step");
  });
}

void adam_step_capturable(const ParamSlot* slots, int count, const AdamSettings& s, float lr, float beta1,
                          float beta2, float* step, int device) {
  if (count == 0) return;
  advance_step_kernel<<<1, 1, 0, stream_of(device)>>>(step);
  check_launch("adam_step (step count)");
  for_each_group(slots, count, device, [&](dim3 grid, cudaStream_t st, const ParamTable& table) {
    adam_kernel<<<grid, kThreads, 0, st>>>(table, s, step, lr, beta1, beta2);
    check_launch("adam_step");
  });
}

void sgd_step(const ParamSlot* slots, int count, const SgdSettings& s, int device) {
  for_each_group(slots, count, device, [&](dim3 grid, cudaStream_t st, const ParamTable& table) {
    sgd_kernel<<<grid, kThreads, 0, st>>>(table, s);
    check_launch("sgd_step");
  });
}

void rmsprop_step(const ParamSlot* slots, int count, const RmspropSettings& s, int device) {
  for_each_group(slots, count, device, [&](dim3 grid, cudaStream_t st, const ParamTable& table) {
    rmsprop_kernel<<<grid, kThreads, 0, st>>>(table, s);
    check_launch("rmsprop_step");
  });
}

void adagrad_step(const ParamSlot* slots, int count, const AdagradSettings& s, int device) {
  for_each_group(slots, count, device, [&](dim3 grid, cudaStream_t st, const ParamTable& table) {
    adagrad_kernel<<<grid, kThreads, 0, st>>>(table, s);
    check_launch("adagrad_step");
  });
}

void ema_update(const BufferPair* pairs, int count, float decay, float one_minus_decay, int device) {
  for_each_group(pairs, count, device, [&](dim3 grid, cudaStream_t st, const PairTable& table) {
    ema_kernel<<<grid, kThreads, 0, st>>>(table, decay, one_minus_decay);
    check_launch("ema_update");
  });
}

void copy_buffers(const BufferPair* pairs, int count, int device) {
  for_each_group(pairs, count, device, [&](dim3 grid, cudaStream_t st, const PairTable& table) {
    copy_kernel<<<grid, kThreads, 0, st>>>(table);
    check_launch("copy_buffers");
  });
}

}  // namespace cuda
}  // namespace fastnn
