// Batch normalization on the GPU. Dimension letters: N images, C channels, L values per channel of
// an image (H * W), M = N * L values per channel.
//
// Training forward: one block per channel sums x and x^2 over its M values in double (one
// strided pass; the block's partial sums meet in shared memory), then thread 0 writes the mean,
// invstd and the running statistics; a second, elementwise kernel normalizes. Backward: one
// block per channel sums dy and dy * xhat in double (giving db and dw), then an elementwise
// kernel writes dx = w invstd (dy - db / M - xhat dw / M) (training) or w invstd dy
// (evaluation). The same formulas, in the same precision, as csrc/cpu/norm.cpp.
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// Both sums of one channel over the block, in every thread's a and b on return.
__device__ void block_sums(double& a, double& b) {
  __shared__ double sa[kThreads], sb[kThreads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      sa[threadIdx.x] += sa[threadIdx.x + half];
      sb[threadIdx.x] += sb[threadIdx.x + half];
    }
    __syncthreads();
  }
  a = sa[0];
  b = sb[0];
}

__global__ void stats_kernel(float* mean, float* invstd, float* running_mean, float* running_var, const float* x,
                             float momentum, float eps, int64_t N, int64_t C, int64_t L) {
  const int64_t c = blockIdx.x, M = N * L;
  double sum = 0.0, sq = 0.0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const double v = x[((i / L) * C + c) * L + i % L];
    sum += v;
    sq += v * v;
  }
  block_sums(sum, sq);
  if (threadIdx.x == 0) {
    const double mu = sum / M, var = sq / M - mu * mu > 0.0 ? sq / M - mu * mu : 0.0;
    mean[c] = static_cast<float>(mu);
    invstd[c] = static_cast<float>(1.0 / sqrt(var + eps));
    if (running_mean) {  // the variance unbiased, as PyTorch updates it
      const double unbiased = M > 1 ? var * M / (M - 1) : var;
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
  }
}

__global__ void running_stats_kernel(float* mean, float* invstd, const float* running_mean, const float* running_var,
                                     float eps, int64_t C) {
  GRID_STRIDE(c, C) {
    mean[c] = running_mean[c];
    invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
  }
}

__global__ void normalize_kernel(float* y, const float* x, const float* mean, const float* invstd, const float* w,
                                 const float* b, int64_t N, int64_t C, int64_t L) {
  GRID_STRIDE(e, N * C * L) {
    const int64_t c = (e / L) % C;
    const float scale = invstd[c] * (w ? w[c] : 1.0f);
    y[e] = (x[e] - mean[c]) * scale + (b ? b[c] : 0.0f);
  }
}

__global__ void grad_sums_kernel(float* dw, float* db, const float* dy, const float* x, const float* mean,
                                 const float* invstd, int64_t N, int64_t C, int64_t L) {
  const int64_t c = blockIdx.x, M = N * L;
  double sum_dy = 0.0, sum_dy_xhat = 0.0;
  const double mu = mean[c], is = invstd[c];
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const int64_t e = ((i / L) * C + c) * L + i % L;
    sum_dy += dy[e];
    sum_dy_xhat += dy[e] * ((x[e] - mu) * is);
  }
  block_sums(sum_dy, sum_dy_xhat);
  if (threadIdx.x == 0) {
    db[c] = static_cast<float>(sum_dy);
    dw[c] = static_cast<float>(sum_dy_xhat);
  }
}

__global__ void grad_input_kernel(float* dx, const float* dy, const float* x, const float* mean, const float* invstd,
                                  const float* w, const float* dw, const float* db, bool training, int64_t N, int64_t C,
                                  int64_t L) {
  const float M = static_cast<float>(N * L);
  GRID_STRIDE(e, N * C * L) {
    const int64_t c = (e / L) % C;
    const float scale = invstd[c] * (w ? w[c] : 1.0f);
    if (training) {
      const float xhat = (x[e] - mean[c]) * invstd[c];
      dx[e] = scale * (dy[e] - db[c] / M - xhat * dw[c] / M);
    } else {
      dx[e] = scale * dy[e];
    }
  }
}

}  // namespace

void batch_norm_forward(float* y, float* mean, float* invstd, const float* x, const float* w, const float* b,
                        float* running_mean, float* running_var, bool training, float momentum, float eps,
                        int64_t N, int64_t C, int64_t L, int device) {
  if (C == 0) return;
  cudaStream_t s = stream_of(device);
  if (training)
    stats_kernel<<<static_cast<unsigned>(C), kThreads, 0, s>>>(mean, invstd, running_mean, running_var, x, momentum,
                                                               eps, N, C, L);
  else
    running_stats_kernel<<<grid_for(C, kThreads), kThreads, 0, s>>>(mean, invstd, running_mean, running_var, eps, C);
  check_launch("batch_norm_forward (statistics)");
  if (N * L == 0) return;
  normalize_kernel<<<grid_for(N * C * L, kThreads), kThreads, 0, s>>>(y, x, mean, invstd, w, b, N, C, L);
  check_launch("batch_norm_forward");
}

void batch_norm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* mean,
                         const float* invstd, const float* w, bool training, int64_t N, int64_t C, int64_t L,
                         int device) {
  if (C == 0) return;
  cudaStream_t s = stream_of(device);
  grad_sums_kernel<<<static_cast<unsigned>(C), kThreads, 0, s>>>(dw, db, dy, x, mean, invstd, N, C, L);
  check_launch("batch_norm_backward (sums)");
  if (N * L == 0) return;
  grad_input_kernel<<<grid_for(N * C * L, kThreads), kThreads, 0, s>>>(dx, dy, x, mean, invstd, w, dw, db, training,
                                                                       N, C, L);
  check_launch("batch_norm_backward");
}

}  // namespace cuda
}  // namespace fastnn
