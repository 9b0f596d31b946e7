// 2-D convolution (cross-correlation, as in PyTorch), NCHW float32: forward and backward.
//
// Dimension letters: input (N, C, H, W); weight (K, C / G, R, S) with K output channels,
// an R x S kernel and G groups; output (N, K, P, Q). Group g maps input channels
// [g C/G, (g+1) C/G) to output channels [g K/G, (g+1) K/G).
//   P = (H + pad_top + pad_bottom - dil_h (R - 1) - 1) / stride_h + 1, Q likewise along W.
// The algorithms, the chunking and the threading are described at the top of conv.cpp.
#pragma once
#include <cstdint>

namespace fastnn {

struct Conv2dShape {
  int64_t N, C, H, W;                              // input
  int64_t K, R, S;                                 // weight (K, C / G, R, S)
  int64_t G;                                       // groups
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_bottom, pad_left, pad_right;  // zero padding, per side
  int64_t dil_h, dil_w;
  int64_t P, Q;                                    // output (N, K, P, Q); set by conv2d_output_size
};

// Fills s->P and s->Q from the other fields; false when the padded input is smaller than
// the dilated kernel (no output).
bool conv2d_output_size(Conv2dShape* s);

// out (N, K, P, Q) = conv(input (N, C, H, W), weight (K, C/G, R, S)) + bias (K,) [then ReLU].
// bias may be null. out must not overlap the inputs. Returns true when a NaN or infinity came up
// (an output before the ReLU, or, depthwise, an input plane); the caller finds the culprit.
bool conv2d_forward(float* out, const float* input, const float* weight, const float* bias,
                    const Conv2dShape& s, bool relu = false);

// Gradients of conv2d_forward (without ReLU) given grad_out (N, K, P, Q). Each output may be
// null (not wanted): grad_input (N, C, H, W), grad_weight (K, C/G, R, S), grad_bias (K,).
// The results are the same, bit for bit, whatever the thread count.
void conv2d_backward(float* grad_input, float* grad_weight, float* grad_bias, const float* grad_out,
                     const float* input, const float* weight, const Conv2dShape& s);

// Transposed convolution (PyTorch's conv_transpose2d): the adjoint of conv2d_forward, described
// by the shape `s` of that conv2d. Its input is conv2d's output side and its output conv2d's
// input side: input (N, K, P, Q), weight (K, C/G, R, S) (PyTorch's ConvTranspose2d layout:
// in_channels first), bias (C,) or null, out (N, C, H, W). The forward is conv2d's input
// gradient plus the bias; the backward is conv2d's forward (grad_input, without bias) and
// conv2d's weight gradient with the roles of its input and output exchanged. Each gradient
// pointer may be null (not wanted); input is read only for grad_weight. The forward returns true
// when the input holds a NaN or infinity.
bool conv_transpose2d_forward(float* out, const float* input, const float* weight, const float* bias,
                              const Conv2dShape& s);
void conv_transpose2d_backward(float* grad_input, float* grad_weight, float* grad_bias, const float* grad_out,
                               const float* input, const float* weight, const Conv2dShape& s);

// The direct path (no im2col: conv.cpp) takes convolutions of one group and stride 1 along W
// whose reduction, C * R * S (for the input gradient K * R * S), is at most this many taps;
// default 160 (LeNet's layers, a colour image's first 3x3 or 5x5 layer). 0 turns it off (tests
// compare the two paths with it).
int64_t conv2d_direct_limit();
void set_conv2d_direct_limit(int64_t taps);

// The budget, in bytes, of the work buffers of one call (the column buffer, the staged
// output/gradient rows and the padded input rows); default 2 MiB, one core's L2 here. The
// batch (and, for huge images, the output rows) are
// cut into chunks that fit, so memory does not grow with the batch. A chunk is at least one
// output row of one image. Changing the budget changes the chunking, hence the rounding of the
// weight gradient (tests use it to cross chunk boundaries with small batches).
int64_t conv2d_workspace_budget();
void set_conv2d_workspace_budget(int64_t bytes);

}  // namespace fastnn
