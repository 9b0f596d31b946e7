// Batch normalization kernels: training and evaluation forward, one fused backward.
//
// Dimension letters: N batch, C channels, L the positions per channel and sample (H * W for
// images, the length for sequences, 1 for (N, C) inputs). Arrays are C-contiguous (N, C, L);
// per-channel vectors are (C,). M = N * L values are normalized together per channel.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"

namespace fastnn {

// Training: per channel, the batch mean and biased variance (accumulated in double),
//   y = (x - mean) * invstd * gamma + beta,   invstd = 1 / sqrt(var + eps),
// saving mean and invstd (C,) for the backward. When running_mean/running_var are given they
// are updated in place: r = (1 - momentum) r + momentum * stat, with the unbiased variance
// var * M / (M - 1) (needs M > 1). gamma/beta null mean 1 and 0.
void batch_norm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                              float* running_var, const float* x, const float* gamma, const float* beta, int64_t N,
                              int64_t C, int64_t L, double eps, double momentum);

// Evaluation: the same transform with the running statistics; save_mean/save_invstd receive the
// mean and invstd used (for the backward).
void batch_norm_forward_eval(float* y, float* save_mean, float* save_invstd, const float* x,
                             const float* running_mean, const float* running_var, const float* gamma,
                             const float* beta, int64_t N, int64_t C, int64_t L, double eps);

// Backward, one pass per channel over the two reductions and one over the elementwise update:
//   grad_beta = sum(g),  grad_gamma = sum(g * xhat),  xhat = (x - mean) * invstd
//   training:  grad_x = gamma * invstd * (g - grad_beta / M - xhat * grad_gamma / M)
//   eval:      grad_x = gamma * invstd * g        (the statistics are constants)
// grad_gamma/grad_beta may be null (not wanted); gamma null means 1.
void batch_norm_backward(float* grad_x, float* grad_gamma, float* grad_beta, const float* grad_y, const float* x,
                         const float* mean, const float* invstd, const float* gamma, int64_t N, int64_t C, int64_t L,
                         bool training);

// ---- per-ISA element loops (norm_kernels.h) ---------------------------------------------------
// channel_*: one channel, N runs of L values `stride` apart; rows_*: channels [0, n) of N rows
// `stride` apart (L == 1), per-channel arrays indexed from 0.
struct NormKernels {
  void (*channel_stats)(double* s1, double* s2, const float* x, int64_t N, int64_t stride, int64_t L, double k);
  void (*channel_affine)(float* y, const float* x, int64_t N, int64_t stride, int64_t L, float mean, float scale,
                         float shift);
  void (*channel_grad_sums)(double* sg, double* sgx, const float* g, const float* x, int64_t N, int64_t stride,
                            int64_t L, double mean);
  void (*channel_grad)(float* gx, const float* g, const float* x, int64_t N, int64_t stride, int64_t L, float mean,
                       float mg, float k, float cg, bool training);
  void (*rows_stats)(double* s1, double* s2, const float* x, const float* k, int64_t N, int64_t stride, int64_t n);
  void (*rows_affine)(float* y, const float* x, const float* mean, const float* scale, const float* shift, int64_t N,
                      int64_t stride, int64_t n);
  void (*rows_grad_sums)(double* sg, double* sgx, const float* g, const float* x, const float* mean, int64_t N,
                         int64_t stride, int64_t n);
  void (*rows_grad)(float* gx, const float* g, const float* x, const float* mean, const float* mg, const float* k,
                    const float* cg, int64_t N, int64_t stride, int64_t n, bool training);
};
const NormKernels& norm_kernels_ref();
const NormKernels& norm_kernels_avx2();
const NormKernels& norm_kernels_avx512();
const NormKernels& norm_kernels_for(Isa isa);

}  // namespace fastnn
