// The row loops of the convolution (conv.cpp), one build per ISA: conv_kernel_ref.cpp (baseline
// flags, the slow twin), conv_kernel_avx2.cpp, conv_kernel_avx512.cpp, from the templates in
// conv_kernels_simd.h. They work on zero-padded planes, so no loop tests a bound: a padded
// plane holds the rows and columns the taps can reach, row stride Wp.
//
// Letters as in conv.h; (p, q) an output pixel, (r, s) a tap. The input pixel of tap (r, s) for
// output (p, q) is padded[(p * sh + r * dh) * Wp + q * sw + s * dw].
#pragma once
#include <cstdint>

#include "common/cpu_features.h"

namespace fastnn {

struct ConvTaps {
  int64_t Wp;          // row stride of the padded plane
  int64_t P, Q;        // output rows and columns
  int64_t R, S;        // taps
  int64_t sh, sw, dh, dw;
};

struct ConvKernels {
  // Rows of a strided copy (an im2col segment: dst_step = Q; a padded copy: sw = 1):
  // dst[p * dst_step + q] = src[p * src_step + q * sw], p < rows, q < Q.
  void (*gather_rows)(float* dst, int64_t dst_step, const float* src, int64_t src_step, int64_t sw, int64_t rows,
                      int64_t Q);
  // One col2im segment: dst[p * row_step + q * sw] += src[p * Q + q], p < rows, q < Q.
  void (*scatter_add_rows)(float* dst, const float* src, int64_t row_step, int64_t sw, int64_t rows, int64_t Q);
  // The stride-1 col2im of one plane, each element summed in registers over the taps (in order
  // r, s): dx[ih, iw] (+)= sum of col[(r * S + s) * tap_step + p * Q + q] over the taps with
  // p = ih + oy - r * dh in [0, P) and q = iw + ox - s * dw in [0, Q). dx is (H, W); with
  // accumulate its values are added to, else overwritten (zero where no tap reaches).
  void (*col2im_plane)(float* dx, int64_t H, int64_t W, const float* col, int64_t tap_step, int64_t P, int64_t Q,
                       int64_t R, int64_t S, int64_t dh, int64_t dw, int64_t oy, int64_t ox, bool accumulate);
  // One tile of a weight gradient as dot products along the contiguous axis (no packing, no
  // transposes): c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0) + sum over segments g and
  // l < len of a[g * a_seg + i * lda + l] * b[g * b_seg + j * ldb + l], for i < m <= dot_mr,
  // j < n <= dot_nr; each sum in vector lanes, then the lanes in a fixed order.
  void (*dot_tile)(float* c, int64_t ldc, int m, int n, const float* a, int64_t lda, int64_t a_seg, const float* b,
                   int64_t ldb, int64_t b_seg, int64_t segments, int64_t len, bool accumulate);
  int dot_mr, dot_nr;
  // Direct convolution of one output row for few input channels (stride 1 along W): for k < K,
  // q < Q, o[k * o_step + q] = (bias ? bias[k] : 0) + sum over c < C, r, s (in that order) of
  // wt[((c * R + r) * S + s) * K + k] * x[c * x_step + r * dh * Wp + q + s * dw], then the ReLU
  // when relu. x is the padded input row of this output row; the weights are laid out with the
  // output channel fastest, so a block of direct_kb channels shares each input vector.
  void (*direct_row)(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, const float* bias,
                     int64_t K, int64_t C, bool relu, const ConvTaps& t);
  int direct_kb;
  // Depthwise forward of one plane: o (P, Q) = bias + sum over taps of w[r * S + s] * input tap
  // (taps in order r, s), then the ReLU when relu; with accumulate, o's values instead of bias.
  void (*depthwise_forward)(float* o, const float* padded, const float* w, float bias, bool relu, bool accumulate,
                            const ConvTaps& t);
  // Depthwise input gradient of one plane: padded tap of (p, q) += w[r * S + s] * dy[p * Q + q].
  void (*depthwise_backward_input)(float* padded, const float* dy, const float* w, const ConvTaps& t);
  // Depthwise weight gradient of one plane: acc[r * S + s] += sum over (p, q) of dy * input tap,
  // summed in float in a fixed order, then added in double.
  void (*depthwise_backward_weight)(double* acc, const float* dy, const float* padded, const ConvTaps& t);
  // The same row with the output channels across the vector lanes instead of the columns: tiles
  // of up to pixels_nq columns x one vector of channels in registers over every tap (the sums,
  // in the same order, are bit for bit direct_row's). For short rows with many channels
  // (LeNet's second layer: 10 columns, 16 channels), where direct_row's vectors run part empty.
  void (*pixels_row)(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, const float* bias,
                     int64_t K, int64_t C, bool relu, const ConvTaps& t);
  int pixels_nq;
  // Weight gradient of one input channel by direct loops, the output channels [k, k + kb) across
  // the lanes (kb <= width), stride 1 and no dilation along W, S = 3 or 5: for every tap (r, s),
  // dwt[(r * S + s) * K] (kb lanes) = (accumulate ? its value : 0) + sum over p < P, q < Q (in
  // that order) of x[(p * sh + r * dh) * Wp + q + s] * dyt[(p * Q + q) * K]. x is the padded input
  // plane, dyt the output gradient with its channels fastest. Taps stay in registers over every
  // pixel, some rows of them at a time. Null in the portable build (one-float vectors).
  void (*weight_channel)(float* dwt, const float* x, const float* dyt, int64_t K, int64_t kb, bool accumulate,
                         const ConvTaps& t);
  int width;  // floats per vector
  // Weight gradient of kernel row r for output channels [0, kb), stride 1 and no dilation along W,
  // S = 3 or 5, the columns across the lanes: dw[k * dw_step + s] += sum over p < P, q < Q of
  // dy[k * dy_step + p * Q + q] * x[(p * sh + r * dh) * Wp + q + s], each sum in lanes, then the
  // lanes in a fixed order. x is one image's padded input plane, dy its output gradient planes.
  // For few output channels (LeNet's first layer: 6), reading the planes in place, no im2col.
  // Null in the portable build.
  void (*weight_row_dots)(float* dw, int64_t dw_step, const float* dy, int64_t dy_step, int64_t kb, const float* x,
                          int64_t r, const ConvTaps& t);
  int row_dots_kb;
};

const ConvKernels& conv_kernels_ref();
const ConvKernels& conv_kernels_avx2();
const ConvKernels& conv_kernels_avx512();
const ConvKernels& conv_kernels_for(Isa isa);

}  // namespace fastnn
