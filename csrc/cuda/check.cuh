// Error checks and launch helpers shared by the .cu files (CUDA code only).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/runtime.h"

namespace fastnn {
namespace cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call reports its own
    throw CudaError(std::string(what) + ": " + cudaGetErrorString(e));
  }
}

// After a launch: a bad configuration shows here; a fault inside the kernel shows at the next
// synchronizing call, which names itself.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t stream_of(int device) {
  set_device(device);
  return static_cast<cudaStream_t>(stream(device));
}

// Blocks of `threads` covering n items, capped (the kernels loop with a grid stride).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

// for (i = 0; i < n; ++i) spread over a 1-D grid: each thread takes every (blocks * threads)-th i.
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// v combined with op over the 32 lanes of a (full) warp by butterfly shuffles; every lane gets the result.
template <class T, class Op>
__device__ __forceinline__ T warp_all_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Device scratch from the caching allocator, returned when it goes out of scope (kernels queued on
// fastnn's stream may still use it: the next user of the block queues after them).
struct Scratch {
  float* ptr;
  int device;
  Scratch(int64_t floats, int device)
      : ptr(static_cast<float*>(allocate(sizeof(float) * static_cast<size_t>(floats > 0 ? floats : 1), device))),
        device(device) {}
  ~Scratch() { release(ptr, device); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace cuda
}  // namespace fastnn
