// 2-D pooling kernels: max, average and adaptive average, forward and backward.
//
// Dimension letters: P planes (N * C: batch times channels, each an independent H x W image),
// H, W input height and width, OH, OW output height and width. Arrays are C-contiguous,
// (P, H, W) in and (P, OH, OW) out. Max pooling records, for each output, the flat index
// ih * W + iw of its maximum within the input plane (int32), which the backward scatters to.
#pragma once
#include <cstdint>

namespace fastnn {

// One axis of a pooling window: output o reads inputs o * stride - pad + k * dilation, k < kernel.
struct PoolAxis {
  int64_t kernel, stride, pad, dilation;
};

// PyTorch's output length along one axis: floor (or ceil with ceil_mode) of
// (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1, and with ceil_mode the last window must
// start inside the input or the left padding (else it is dropped). May be <= 0 (empty output).
int64_t pool_output_size(int64_t in, const PoolAxis& a, bool ceil_mode);

// out, indices (P, OH, OW) <- max over each window of x (P, H, W). Ties keep the first maximum in
// row-major window order; a NaN wins (the last NaN of a window), as in PyTorch. An output whose
// window holds no input element (possible with dilation and padding) is -inf with index -1.
void max_pool2d_forward(float* out, int32_t* indices, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH,
                        int64_t OW, const PoolAxis& ah, const PoolAxis& aw);

// grad_x (P, H, W) <- scatter-add of grad_out (P, OH, OW) to indices (P, OH, OW); index -1 is
// skipped. Returns false (grad_x then incomplete) when an index lies outside [-1, H * W).
bool max_pool2d_backward(float* grad_x, const float* grad_out, const int32_t* indices, int64_t P, int64_t H,
                         int64_t W, int64_t OH, int64_t OW);

// Divisor of average pooling, as PyTorch: divisor_override when > 0; else the window clipped to
// the padded input (count_include_pad) or to the input itself.
struct AvgPoolOptions {
  bool count_include_pad;
  int64_t divisor_override;  // 0: none
};

// out (P, OH, OW) <- sum of each window of x (P, H, W) / divisor (dilation 1).
void avg_pool2d_forward(float* out, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                        const PoolAxis& ah, const PoolAxis& aw, const AvgPoolOptions& opt);
// grad_x (P, H, W) <- each grad_out (P, OH, OW) / divisor spread over its window.
void avg_pool2d_backward(float* grad_x, const float* grad_out, int64_t P, int64_t H, int64_t W, int64_t OH,
                         int64_t OW, const PoolAxis& ah, const PoolAxis& aw, const AvgPoolOptions& opt);

// Adaptive average pooling: output (i, j) averages rows [floor(i H / OH), ceil((i + 1) H / OH))
// and the same for columns. OH = OW = 1 is global average pooling.
void adaptive_avg_pool2d_forward(float* out, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH,
                                 int64_t OW);
void adaptive_avg_pool2d_backward(float* grad_x, const float* grad_out, int64_t P, int64_t H, int64_t W,
                                  int64_t OH, int64_t OW);

}  // namespace fastnn
