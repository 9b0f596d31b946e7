// Max pooling and global average pooling on the GPU. Dimension letters: P = N * C planes of H x W
// (L = H * W values), OH x OW outputs. Global average: one block per plane sums it in shared
// memory; its backward spreads each plane's gradient / L over the plane.
//
// Forward: one thread per output element scans its window (padding never wins, a NaN does, as on
// the CPU) and saves the flat index ih * W + iw of the maximum. Backward: the input gradient is
// zeroed, then one thread per output element adds its gradient at the saved index with
// atomicAdd; windows overlap only when stride < kernel, and only then may the order of the
// additions (and so the last bits) vary between runs.
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__global__ void max_pool_forward_kernel(float* out, int64_t* indices, const float* x, PoolShape s) {
  const int64_t total = s.P * s.OH * s.OW;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t p = e / (s.OH * s.OW), oh = (e / s.OW) % s.OH, ow = e % s.OW;
    const float* plane = x + p * s.H * s.W;
    float best = -INFINITY;
    int64_t where = -1;
    for (int64_t r = 0; r < s.kernel_h; ++r) {
      const int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t q = 0; q < s.kernel_w; ++q) {
        const int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
        if (iw < 0 || iw >= s.W) continue;
        const float v = plane[ih * s.W + iw];
        if (where < 0 || v > best || v != v) {  // ties keep the first; the last NaN wins
          best = v;
          where = ih * s.W + iw;
        }
      }
    }
    out[e] = best;
    indices[e] = where;
  }
}

__global__ void max_pool_backward_kernel(float* dx, const float* dy, const int64_t* indices, PoolShape s) {
  const int64_t total = s.P * s.OH * s.OW;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t where = indices[e];
    if (where >= 0) atomicAdd(dx + (e / (s.OH * s.OW)) * s.H * s.W + where, dy[e]);
  }
}

// One block per plane: a block-wide sum through shared memory.
__global__ void plane_mean_kernel(float* out, const float* x, int64_t L) {
  __shared__ float partial[kThreads];
  const float* plane = x + static_cast<int64_t>(blockIdx.x) * L;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) sum += plane[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0] / static_cast<float>(L);
}

__global__ void spread_kernel(float* dx, const float* dy, int64_t P, int64_t L) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < P * L;
       e += static_cast<int64_t>(blockDim.x) * gridDim.x)
    dx[e] = dy[e / L] / static_cast<float>(L);
}

}  // namespace

void global_avg_pool_forward(float* out, const float* x, int64_t P, int64_t L, int device) {
  if (P == 0) return;
  plane_mean_kernel<<<static_cast<unsigned>(P), kThreads, 0, stream_of(device)>>>(out, x, L);
  check_launch("global_avg_pool_forward");
}

void global_avg_pool_backward(float* dx, const float* dy, int64_t P, int64_t L, int device) {
  if (P * L == 0) return;
  spread_kernel<<<grid_for(P * L, kThreads), kThreads, 0, stream_of(device)>>>(dx, dy, P, L);
  check_launch("global_avg_pool_backward");
}

void max_pool2d_forward(float* out, int64_t* indices, const float* x, const PoolShape& s, int device) {
  const int64_t total = s.P * s.OH * s.OW;
  if (total == 0) return;
  max_pool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(out, indices, x, s);
  check_launch("max_pool2d_forward");
}

void max_pool2d_backward(float* dx, const float* dy, const int64_t* indices, const PoolShape& s, int device) {
  fill(dx, 0.0f, s.P * s.H * s.W, device);
  const int64_t total = s.P * s.OH * s.OW;
  if (total == 0) return;
  max_pool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(dx, dy, indices, s);
  check_launch("max_pool2d_backward");
}

}  // namespace cuda
}  // namespace fastnn
