// Max, average and adaptive average pooling, and global average pooling, on the GPU. Dimension
// letters: P = N * C planes of H x W (L = H * W values), OH x OW outputs. Global average: one
// block per plane sums it in shared memory; its backward spreads each plane's gradient / L over
// the plane.
//
// Max forward: one thread per output element scans its window (padding never wins, a NaN does, as on
// the CPU) and saves the flat index ih * W + iw of the maximum. Backward: the input gradient is
// zeroed, then one thread per output element adds its gradient at the saved index with
// atomicAdd; windows overlap only when stride < kernel, and only then may the order of the
// additions (and so the last bits) vary between runs.
//
// Average and adaptive average: the forward is one thread per output element, summing its
// window in row-major order (the CPU's order for average pooling) and dividing by the CPU's
// divisor. The backward is a gather, one thread per input element: it sums grad / divisor over
// the outputs whose windows cover it (a range of output rows times a range of output columns,
// found in closed form), so every input element is written once, without atomics, and the
// results are the same from run to run.
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__global__ void max_pool_forward_kernel(float* out, int64_t* indices, const float* x, PoolShape s) {
  const int64_t total = s.P * s.OH * s.OW;
  GRID_STRIDE(e, total) {
    const int64_t p = e / (s.OH * s.OW), oh = (e / s.OW) % s.OH, ow = e % s.OW;
    const float* plane = x + p * s.H * s.W;
    float best = -INFINITY;
    int64_t where = -1;
    for (int64_t r = 0; r < s.kernel_h; ++r) {
      const int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t q = 0; q < s.kernel_w; ++q) {
        const int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
        if (iw < 0 || iw >= s.W) continue;
        const float v = plane[ih * s.W + iw];
        if (where < 0 || v > best || v != v) {  // ties keep the first; the last NaN wins
          best = v;
          where = ih * s.W + iw;
        }
      }
    }
    out[e] = best;
    indices[e] = where;
  }
}

__global__ void max_pool_backward_kernel(float* dx, const float* dy, const int64_t* indices, PoolShape s) {
  const int64_t total = s.P * s.OH * s.OW;
  GRID_STRIDE(e, total) {
    const int64_t where = indices[e];
    if (where >= 0) atomicAdd(dx + (e / (s.OH * s.OW)) * s.H * s.W + where, dy[e]);
  }
}

// One block per plane: a block-wide sum through shared memory.
__global__ void plane_mean_kernel(float* out, const float* x, int64_t L) {
  __shared__ float partial[kThreads];
  const float* plane = x + static_cast<int64_t>(blockIdx.x) * L;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) sum += plane[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0] / static_cast<float>(L);
}

__global__ void spread_kernel(float* dx, const float* dy, int64_t P, int64_t L) {
  GRID_STRIDE(e, P * L)
    dx[e] = dy[e / L] / static_cast<float>(L);
}

// ---- average pooling (dilation 1) ----

struct AvgDivisor {
  bool count_include_pad;
  int64_t divisor_override;  // 0: none
};

// The input rows [begin, end) that output o's window covers, and the window's length clipped to
// the padded input: the CPU's avg_window (cpu/pool.cpp).
struct AvgWindow {
  int64_t begin, end, padded;
};

__device__ AvgWindow avg_window(int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
  const int64_t start = o * stride - pad;
  const int64_t end = min(start + kernel, in + pad);
  return {max(start, int64_t{0}), min(end, in), end - start};
}

__device__ float avg_divisor(const AvgWindow& h, const AvgWindow& w, const AvgDivisor& d) {
  if (d.divisor_override > 0) return static_cast<float>(d.divisor_override);
  if (d.count_include_pad) return static_cast<float>(h.padded * w.padded);
  return static_cast<float>((h.end - h.begin) * (w.end - w.begin));
}

// The outputs [*lo, *hi) along an axis whose windows cover input i: o * stride - pad <= i and
// i < o * stride - pad + kernel (the clip to in + pad never excludes an input element).
__device__ void covering_outputs(int64_t i, int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t* lo,
                                 int64_t* hi) {
  const int64_t t = i + pad;
  *lo = t < kernel ? 0 : (t - kernel) / stride + 1;
  *hi = min(out, t / stride + 1);
}

__global__ void avg_pool_forward_kernel(float* out, const float* x, PoolShape s, AvgDivisor d) {
  const int64_t total = s.P * s.OH * s.OW;
  GRID_STRIDE(e, total) {
    const int64_t p = e / (s.OH * s.OW), oh = (e / s.OW) % s.OH, ow = e % s.OW;
    const AvgWindow wh = avg_window(oh, s.H, s.kernel_h, s.stride_h, s.pad_h);
    const AvgWindow ww = avg_window(ow, s.W, s.kernel_w, s.stride_w, s.pad_w);
    const float* plane = x + p * s.H * s.W;
    float sum = 0.0f;
    for (int64_t ih = wh.begin; ih < wh.end; ++ih)
      for (int64_t iw = ww.begin; iw < ww.end; ++iw) sum += plane[ih * s.W + iw];
    out[e] = sum / avg_divisor(wh, ww, d);
  }
}

__global__ void avg_pool_backward_kernel(float* dx, const float* dy, PoolShape s, AvgDivisor d) {
  const int64_t total = s.P * s.H * s.W;
  GRID_STRIDE(e, total) {
    const int64_t p = e / (s.H * s.W), ih = (e / s.W) % s.H, iw = e % s.W;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering_outputs(ih, s.OH, s.kernel_h, s.stride_h, s.pad_h, &oh_lo, &oh_hi);
    covering_outputs(iw, s.OW, s.kernel_w, s.stride_w, s.pad_w, &ow_lo, &ow_hi);
    const float* g = dy + p * s.OH * s.OW;
    float sum = 0.0f;
    for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
      const AvgWindow wh = avg_window(oh, s.H, s.kernel_h, s.stride_h, s.pad_h);
      for (int64_t ow = ow_lo; ow < ow_hi; ++ow)
        sum += g[oh * s.OW + ow] / avg_divisor(wh, avg_window(ow, s.W, s.kernel_w, s.stride_w, s.pad_w), d);
    }
    dx[e] = sum;
  }
}

// ---- adaptive average pooling: output o averages inputs [o * in / out, ceil((o + 1) * in / out)) ----

__device__ int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return o * in / out; }
__device__ int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

__global__ void adaptive_avg_pool_forward_kernel(float* out, const float* x, int64_t P, int64_t H, int64_t W,
                                                 int64_t OH, int64_t OW) {
  GRID_STRIDE(e, P * OH * OW) {
    const int64_t p = e / (OH * OW), oh = (e / OW) % OH, ow = e % OW;
    const int64_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
    const int64_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
    const float* plane = x + p * H * W;
    float sum = 0.0f;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += plane[ih * W + iw];
    out[e] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
  }
}

// Input i lies in the windows of outputs [i * out / in, ceil((i + 1) * out / in)): start(o) <= i
// holds for o < (i + 1) out / in, end(o) > i for o >= floor(i out / in).
__global__ void adaptive_avg_pool_backward_kernel(float* dx, const float* dy, int64_t P, int64_t H, int64_t W,
                                                  int64_t OH, int64_t OW) {
  GRID_STRIDE(e, P * H * W) {
    const int64_t p = e / (H * W), ih = (e / W) % H, iw = e % W;
    const int64_t oh_lo = ih * OH / H, oh_hi = ((ih + 1) * OH + H - 1) / H;
    const int64_t ow_lo = iw * OW / W, ow_hi = ((iw + 1) * OW + W - 1) / W;
    const float* g = dy + p * OH * OW;
    float sum = 0.0f;
    for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
      const int64_t rows = adaptive_end(oh, H, OH) - adaptive_start(oh, H, OH);
      for (int64_t ow = ow_lo; ow < ow_hi; ++ow)
        sum += g[oh * OW + ow] / static_cast<float>(rows * (adaptive_end(ow, W, OW) - adaptive_start(ow, W, OW)));
    }
    dx[e] = sum;
  }
}

}  // namespace

void global_avg_pool_forward(float* out, const float* x, int64_t P, int64_t L, int device) {
  if (P == 0) return;
  plane_mean_kernel<<<static_cast<unsigned>(P), kThreads, 0, stream_of(device)>>>(out, x, L);
  check_launch("global_avg_pool_forward");
}

void global_avg_pool_backward(float* dx, const float* dy, int64_t P, int64_t L, int device) {
  if (P * L == 0) return;
  spread_kernel<<<grid_for(P * L, kThreads), kThreads, 0, stream_of(device)>>>(dx, dy, P, L);
  check_launch("global_avg_pool_backward");
}

void max_pool2d_forward(float* out, int64_t* indices, const float* x, const PoolShape& s, int device) {
  const int64_t total = s.P * s.OH * s.OW;
  if (total == 0) return;
  max_pool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(out, indices, x, s);
  check_launch("max_pool2d_forward");
}

void max_pool2d_backward(float* dx, const float* dy, const int64_t* indices, const PoolShape& s, int device) {
  fill(dx, 0.0f, s.P * s.H * s.W, device);
  const int64_t total = s.P * s.OH * s.OW;
  if (total == 0) return;
  max_pool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(dx, dy, indices, s);
  check_launch("max_pool2d_backward");
}

void avg_pool2d_forward(float* out, const float* x, const PoolShape& s, bool count_include_pad,
                        int64_t divisor_override, int device) {
  const int64_t total = s.P * s.OH * s.OW;
  if (total == 0) return;
  avg_pool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(
      out, x, s, AvgDivisor{count_include_pad, divisor_override});
  check_launch("avg_pool2d_forward");
}

void avg_pool2d_backward(float* dx, const float* dy, const PoolShape& s, bool count_include_pad,
                         int64_t divisor_override, int device) {
  const int64_t total = s.P * s.H * s.W;
  if (total == 0) return;
  avg_pool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(
      dx, dy, s, AvgDivisor{count_include_pad, divisor_override});
  check_launch("avg_pool2d_backward");
}

void adaptive_avg_pool2d_forward(float* out, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 int device) {
  const int64_t total = P * OH * OW;
  if (total == 0) return;
  adaptive_avg_pool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(out, x, P, H, W,
                                                                                                  OH, OW);
  check_launch("adaptive_avg_pool2d_forward");
}

void adaptive_avg_pool2d_backward(float* dx, const float* dy, int64_t P, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW, int device) {
  const int64_t total = P * H * W;
  if (total == 0) return;
  adaptive_avg_pool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream_of(device)>>>(dx, dy, P, H, W,
                                                                                                   OH, OW);
  check_launch("adaptive_avg_pool2d_backward");
}

}  // namespace cuda
}  // namespace fastnn
