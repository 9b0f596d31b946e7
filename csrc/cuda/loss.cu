// Softmax cross-entropy on the GPU, fused. Dimension letters: N rows, C classes.
//
// One warp per row, 8 rows a block: the lanes stride over the row for its maximum, then for the
// sum of exp(x - max), reduced by shuffles; the forward adds (logsumexp - x[label]) / N to the
// zeroed scalar with one atomicAdd per row (the order of the additions may vary between runs);
// the backward writes (softmax - onehot) * grad / N over the row. A label outside [0, C) gives a
// NaN loss and NaN gradients instead of reading out of bounds (the Python op checks labels that
// come from the host before they are copied).
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kRowsPerBlock = 8;

__device__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The row's max and sum of exp(x - max), in every lane.
__device__ void row_stats(const float* x, int64_t C, int lane, float* max_out, float* sum_out) {
  float m = -INFINITY;
  for (int64_t j = lane; j < C; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  float s = 0.0f;
  for (int64_t j = lane; j < C; j += 32) s += __expf(x[j] - m);
  *max_out = m;
  *sum_out = warp_sum(s);
}

// The label of a row, from int64 labels or from whole numbers held as float32 (-1 when not whole).
__device__ int64_t label_at(const int64_t* labels, const float* labels_f32, int64_t row) {
  if (labels) return labels[row];
  const float v = labels_f32[row];
  return v == floorf(v) && fabsf(v) < 16777216.0f ? static_cast<int64_t>(v) : -1;
}

__global__ void cross_entropy_forward_kernel(float* loss, const float* logits, const int64_t* labels,
                                             const float* labels_f32, int64_t N, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const float* x = logits + row * C;
  float m, s;
  row_stats(x, C, lane, &m, &s);
  if (lane == 0) {
    const int64_t label = label_at(labels, labels_f32, row);
    const float value = (label >= 0 && label < C) ? m + logf(s) - x[label] : NAN;
    atomicAdd(loss, value / static_cast<float>(N));
  }
}

__global__ void cross_entropy_backward_kernel(float* dlogits, const float* logits, const int64_t* labels,
                                              const float* labels_f32, const float* grad_loss, int64_t N, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const float* x = logits + row * C;
  float* d = dlogits + row * C;
  float m, s;
  row_stats(x, C, lane, &m, &s);
  const int64_t label = label_at(labels, labels_f32, row);
  const bool valid = label >= 0 && label < C;
  const float scale = grad_loss[0] / static_cast<float>(N), inv = 1.0f / s;
  for (int64_t j = lane; j < C; j += 32)
    d[j] = valid ? scale * (__expf(x[j] - m) * inv - (j == label ? 1.0f : 0.0f)) : NAN;
}

unsigned row_blocks(int64_t N) { return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

void cross_entropy_forward(float* loss, const float* logits, const int64_t* labels, const float* labels_f32,
                           int64_t N, int64_t C, int device) {
  cudaStream_t s = stream_of(device);
  check(cudaMemsetAsync(loss, 0, sizeof(float), s), "cross_entropy_forward");
  if (N == 0) return;
  cross_entropy_forward_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, s>>>(loss, logits, labels, labels_f32, N, C);
  check_launch("cross_entropy_forward");
}

void cross_entropy_backward(float* dlogits, const float* logits, const int64_t* labels, const float* labels_f32,
                            const float* grad_loss, int64_t N, int64_t C, int device) {
  if (N == 0) return;
  cross_entropy_backward_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, stream_of(device)>>>(
      dlogits, logits, labels, labels_f32, grad_loss, N, C);
  check_launch("cross_entropy_backward");
}

}  // namespace cuda
}  // namespace fastnn
