// Dropout masks on the GPU: the CPU's Philox4x32-10 masks (common/philox.h, cpu/random.cpp),
// bit for bit. One thread per 4-element block, grid-stride.
//
// For CUDA-graph capture the draw number can live on the device: the kernel reads it from
// `counter` and a one-thread kernel queued behind it adds 1, so every replay of a graph draws
// fresh masks (a host value would be frozen into the graph).
#include "common/philox.h"
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__global__ void dropout_mask_kernel(float* __restrict__ mask, int64_t n, float p, float scale, uint64_t seed,
                                    uint64_t offset, const int64_t* __restrict__ counter) {
  if (counter) offset = static_cast<uint64_t>(*counter);
  GRID_STRIDE(b, (n + 3) / 4) {
    float four[4];
    dropout_mask4(four, static_cast<uint64_t>(b), seed, offset, p, scale);
    const int64_t first = 4 * b;
    for (int i = 0; i < 4 && first + i < n; ++i) mask[first + i] = four[i];
  }
}

__global__ void advance_counter_kernel(int64_t* counter) { *counter += 1; }

}  // namespace

void dropout_mask(float* mask, int64_t n, double p, uint64_t seed, uint64_t offset, int64_t* counter, int device) {
  cudaStream_t st = stream_of(device);
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;  // as the CPU's
  if (n > 0) {
    dropout_mask_kernel<<<grid_for((n + 3) / 4, kThreads), kThreads, 0, st>>>(mask, n, static_cast<float>(p), scale,
                                                                               seed, offset, counter);
    check_launch("dropout_mask");
  }
  if (counter) {
    advance_counter_kernel<<<1, 1, 0, st>>>(counter);
    check_launch("dropout_mask (counter)");
  }
}

}  // namespace cuda
}  // namespace fastnn
