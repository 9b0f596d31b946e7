// Elementwise kernels beside the GEMM: the Linear layer's epilogue backward, and the ReLU.
//
// relu_forward / relu_backward: one pass each, branch-free loops (compare and select), split into
// one contiguous range per thread (cut at multiples of 16 floats) when the array is large: a
// conv layer's activations are megabytes, and numpy's maximum and masked product run on one
// thread with a temporary.
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
  const int threads = threads_for_items(static_cast<double>(M) * N, chunks);
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

namespace {

// Equal ranges of [0, n) cut at multiples of 16 floats, one per thread; fn(begin, end).
template <class Fn>
void for_ranges(int64_t n, Fn fn) {
  constexpr int64_t kAlign = 16;
  const int64_t chunks = (n + kAlign - 1) / kAlign;
  // A memory-bound pass: a second thread pays off from about 256 Ki floats.
  const int threads = threads_for_items(static_cast<double>(n), chunks, 1 << 18);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t c0, c1;
    split_range(chunks, tid, nt, &c0, &c1);
    const int64_t begin = c0 * kAlign, end = std::min(n, c1 * kAlign);
    if (begin < end) fn(begin, end);
  });
}

void relu_range(float* __restrict out, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = v < 0.0f ? 0.0f : v;
  }
}

}  // namespace

void relu_forward(float* out, const float* x, int64_t n) {
  for_ranges(n, [&](int64_t b, int64_t e) { relu_range(out + b, x + b, e - b); });
}

void relu_backward(float* grad_in, const float* grad, const float* out, int64_t n) {
  for_ranges(n, [&](int64_t b, int64_t e) { mask_row(grad_in + b, grad + b, out + b, e - b); });
}

}  // namespace fastnn
