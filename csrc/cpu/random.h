// Random masks drawn with the counter-based Philox4x32-10 (common/philox.h): element i of draw
// `offset` under `seed` is fixed, so the mask is the same on any number of threads and on the
// GPU (csrc/cuda/random.cu).
#pragma once
#include <cstdint>

namespace fastnn {

// mask[i] = 1 / (1 - p) with probability 1 - p, else 0 (p in [0, 1]; p == 1 gives zeros), for
// i < n: inverted dropout's mask. Threaded over ranges of whole 4-element blocks.
// The scale is 1 / (1 - p) computed in double and rounded once, as numpy's float32(1 / (1 - p)).
void dropout_mask(float* mask, int64_t n, double p, uint64_t seed, uint64_t offset);

// The vector builds of the mask loop (random_kernel_avx2.cpp, random_kernel_avx512.cpp):
// dropout_groups writes the mask elements of blocks first_block .. first_block + groups * width - 1
// (4 elements per block) to mask, with first_block a multiple of width.
struct RandomKernels {
  int width;
  void (*dropout_groups)(float* mask, uint64_t first_block, int64_t groups, uint64_t seed, uint64_t offset, float p,
                         float scale);
};
const RandomKernels& random_kernels_avx2();
const RandomKernels& random_kernels_avx512();

}  // namespace fastnn
