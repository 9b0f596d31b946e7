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

}  // namespace fastnn
