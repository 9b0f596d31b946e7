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

// A backward pass's input_size (H, W): 1 <= H, W <= 2**30. Returns it.
Pair check_input_size(const Pair& size, const char* fn);

// Average pooling's divisor_override: positive, or 0 for none.
void check_divisor_override(int64_t divisor_override, const char* fn);

}  // namespace fastnn
