// Elementwise kernels that sit beside a GEMM or a convolution: a Linear layer's epilogue
// backward, and the ReLU.
//
// Dimension letters: M rows (the batch), N columns (the features).
#pragma once
#include <cstdint>

namespace fastnn {

// The backward of a Linear layer's epilogue (bias, then an optional ReLU), in one pass:
//   g_out[i, j] = (out == null || out[i, j] > 0) ? g[i, j] : 0       (M, N), row stride ld_*
//   grad_bias[j] = sum_i g_out[i, j]                                  (N,), or skipped when null
// out is the layer's output after the ReLU; with out null, g_out may be null (no mask to write)
// and only the bias gradient is computed. The sums run over rows in order, in float32,
// whatever the thread count.
void linear_epilogue_backward(float* g_out, int64_t ld_g_out, float* grad_bias, const float* g, int64_t ld_g,
                              const float* out, int64_t ld_out, int64_t M, int64_t N);

// ReLU over n contiguous floats, threaded over equal ranges when n is large:
//   relu_forward:  out[i] = x[i] < 0 ? 0 : x[i]          (NaN stays NaN, as torch.relu)
//   relu_backward: grad_in[i] = out[i] > 0 ? grad[i] : 0 (out: the forward's output; 0 at 0, as PyTorch)
void relu_forward(float* out, const float* x, int64_t n);
void relu_backward(float* grad_in, const float* grad, const float* out, int64_t n);

}  // namespace fastnn
