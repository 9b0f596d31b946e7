// Elementwise kernels beside the GEMM: the Linear layer's epilogue backward.
//
// linear_epilogue_backward: the ReLU mask and the bias gradient (a sum over the batch) in one
// read of the upstream gradient, instead of a masked copy and then a column sum.
// Threading: the columns are split into one contiguous range per thread (cut at multiples of 16);
// each thread walks the rows in order and adds each into the bias gradient, in float32 (as
// numpy's and PyTorch's column sums do; the loops vectorize), so the result does not depend on
// the thread count.
#include "cpu/elementwise.h"

#include <algorithm>

#include "common/threads.h"

namespace fastnn {
namespace {

// The outputs never alias the inputs (the binding allocates them), and both inputs are loaded
// unconditionally: then the loop is vectorized with a compare and a mask instead of a branch per
// element (a ReLU's mask is a coin toss to the branch predictor).
void mask_row(float* __restrict dst, const float* __restrict g, const float* __restrict out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float x = g[j], o = out[j];
    dst[j] = o > 0.0f ? x : 0.0f;
  }
}

void add_row(float* __restrict sum, const float* __restrict x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) sum[j] += x[j];
}

}  // namespace

void linear_epilogue_backward(float* g_out, int64_t ld_g_out, float* grad_bias, const float* g, int64_t ld_g,
                              const float* out, int64_t ld_out, int64_t M, int64_t N) {
  constexpr int64_t kAlign = 16;  // column ranges start on 64-byte boundaries of a row
  const int64_t chunks = (N + kAlign - 1) / kAlign;
  // About one unit of work per element; a thread is worth it from some 128 Ki elements.
  const int threads = static_cast<int>(std::min<int64_t>(threads_for_work(static_cast<double>(M) * N), chunks));
  run_parallel(threads, [&](int tid, int nt) {
    int64_t c0, c1;
    split_range(chunks, tid, nt, &c0, &c1);
    const int64_t j0 = c0 * kAlign, j1 = std::min(N, c1 * kAlign);
    if (grad_bias) std::fill(grad_bias + j0, grad_bias + j1, 0.0f);
    for (int64_t i = 0; i < M; ++i) {  // whole rows of this thread's columns: streaming reads
      const float* gi = g + i * ld_g;
      if (out) {
        mask_row(g_out + i * ld_g_out + j0, gi + j0, out + i * ld_out + j0, j1 - j0);
        gi = g_out + i * ld_g_out;
      } else if (g_out) {
        std::copy(gi + j0, gi + j1, g_out + i * ld_g_out + j0);
      }
      if (grad_bias) add_row(grad_bias + j0, gi + j0, j1 - j0);
    }
  });
}

}  // namespace fastnn
