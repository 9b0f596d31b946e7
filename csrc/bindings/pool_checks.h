// The pooling window settings, checked the same way by the CPU (pool.cpp) and the CUDA
// (cuda_nn.cpp) bindings: every message names the argument and the values it got.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "cpu/pool.h"

namespace fastnn {

using Pair = std::array<int64_t, 2>;

std::string pair_str(const Pair& p);  // "(a, b)"

// Checked window settings and the output size they give for an H x W input.
struct PoolWindows {
  PoolAxis h, w;
  int64_t OH, OW;
};
PoolWindows check_pool_windows(const char* fn, int64_t H, int64_t W, const Pair& kernel, const Pair& stride,
                               const Pair& padding, const Pair& dilation, bool ceil_mode);

}  // namespace fastnn
