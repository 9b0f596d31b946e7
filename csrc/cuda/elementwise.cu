// Elementwise ops and reductions on the GPU. Dimension letters: n elements; rows x cols.
//
// Elementwise kernels: one thread per element in a grid-stride loop (256 threads a block, at
// most 65535 blocks), which is bandwidth-bound and needs no tuning. Column sums: one block per
// 32 columns, its 8 warps striding over the rows (warp lanes read consecutive columns, so loads
// coalesce), then a shared-memory sum of the 8 partials. sum_all: blocks reduce grid-stride
// partial sums through warp shuffles, then one atomicAdd per block into the zeroed output (the
// order of the additions, and so the last bits of the sum, may vary between runs).
#include <type_traits>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

__global__ void fill_kernel(float* y, float value, int64_t n) {
  GRID_STRIDE(i, n) y[i] = value;
}

template <Binary op>
__global__ void binary_kernel(float* out, const float* a, const float* b, int64_t n, int64_t period) {
  GRID_STRIDE(i, n) {
    const float x = a[i], y = b[period == n ? i : i % period];
    out[i] = op == Binary::add ? x + y : op == Binary::sub ? x - y : op == Binary::mul ? x * y : x / y;
  }
}

template <Unary op>
__global__ void unary_kernel(float* y, const float* x, int64_t n) {
  GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = op == Unary::neg ? -v
         : op == Unary::exp ? expf(v)
         : op == Unary::log ? logf(v)
         : op == Unary::sqrt ? sqrtf(v)
         : op == Unary::sigmoid ? 1.0f / (1.0f + expf(-v))
                                : tanhf(v);
  }
}

template <Unary op>
__global__ void unary_backward_kernel(float* dx, const float* dy, const float* s, int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = dy[i];
    dx[i] = op == Unary::neg ? -g
          : op == Unary::exp ? g * s[i]
          : op == Unary::log ? g / s[i]
          : op == Unary::sqrt ? g * 0.5f / s[i]
          : op == Unary::sigmoid ? g * s[i] * (1.0f - s[i])
                                 : g * (1.0f - s[i] * s[i]);
  }
}

__global__ void axpby_kernel(float* y, float alpha, const float* x, float beta, int64_t n) {
  GRID_STRIDE(i, n) y[i] = beta == 0.0f ? alpha * x[i] : fmaf(alpha, x[i], beta * y[i]);
}

__global__ void relu_forward_kernel(float* y, const float* x, int64_t n) {
  GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : (v != v ? v : 0.0f);  // NaN passes through, as on the CPU
  }
}

__global__ void relu_backward_kernel(float* dx, const float* dy, const float* y, int64_t n) {
  GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void column_sums_kernel(float* out, const float* x, int64_t rows, int64_t cols) {
  __shared__ float partial[8][33];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t col = blockIdx.x * 32 + lane;
  float s = 0.0f;
  if (col < cols)
    for (int64_t r = warp; r < rows; r += 8) s += x[r * cols + col];
  partial[warp][lane] = s;
  __syncthreads();
  if (warp == 0 && col < cols) {
    float total = 0.0f;
    for (int w = 0; w < 8; ++w) total += partial[w][lane];
    out[col] = total;
  }
}

__global__ void sum_all_kernel(float* out, const float* x, int64_t n, float scale) {
  __shared__ float warp_sums[kThreads / 32];
  float s = 0.0f;
  GRID_STRIDE(i, n) s += x[i];
  for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
    atomicAdd(out, scale * total);
  }
}

constexpr int kMaxAxes = 8;
struct Axes {
  int64_t out_shape[kMaxAxes], in_stride[kMaxAxes];  // in_stride[i]: x's stride of out axis i
  int ndim;
};

__global__ void permute_kernel(float* out, const float* x, Axes a, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t rest = i, src = 0;
    for (int d = a.ndim - 1; d >= 0; --d) {
      src += (rest % a.out_shape[d]) * a.in_stride[d];
      rest /= a.out_shape[d];
    }
    out[i] = x[src];
  }
}

__global__ void slab_kernel(float* out, float* piece, int64_t A, int64_t n, int64_t inner, int64_t total,
                            int64_t offset, bool to_out) {
  GRID_STRIDE(i, A * n * inner) {
    const int64_t a = i / (n * inner), r = i % (n * inner);
    const int64_t o = a * total * inner + offset * inner + r;
    if (to_out)
      out[o] = piece[i];
    else
      piece[i] = out[o];
  }
}

}  // namespace

void permute(float* out, const float* x, const int64_t* shape, const int* perm, int ndim, int device) {
  if (ndim > kMaxAxes) throw CudaError("permute: at most 8 axes");
  Axes a{};
  a.ndim = ndim;
  int64_t stride[kMaxAxes], n = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    stride[d] = n;
    n *= shape[d];
  }
  for (int d = 0; d < ndim; ++d) {
    a.out_shape[d] = shape[perm[d]];
    a.in_stride[d] = stride[perm[d]];
  }
  if (n == 0) return;
  permute_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(device)>>>(out, x, a, n);
  check_launch("permute");
}

void copy_slab(float* out, float* piece, int64_t A, int64_t n, int64_t inner, int64_t total, int64_t offset,
               bool to_out, int device) {
  if (A * n * inner == 0) return;
  slab_kernel<<<grid_for(A * n * inner, kThreads), kThreads, 0, stream_of(device)>>>(out, piece, A, n, inner, total,
                                                                                     offset, to_out);
  check_launch("copy_slab");
}

void fill(float* y, float value, int64_t n, int device) {
  if (n == 0) return;
  fill_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(device)>>>(y, value, n);
  check_launch("fill");
}

void binary(Binary op, float* out, const float* a, const float* b, int64_t n, int64_t b_period, int device) {
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  const unsigned grid = grid_for(n, kThreads);
  switch (op) {
    case Binary::add: binary_kernel<Binary::add><<<grid, kThreads, 0, s>>>(out, a, b, n, b_period); break;
    case Binary::sub: binary_kernel<Binary::sub><<<grid, kThreads, 0, s>>>(out, a, b, n, b_period); break;
    case Binary::mul: binary_kernel<Binary::mul><<<grid, kThreads, 0, s>>>(out, a, b, n, b_period); break;
    case Binary::div: binary_kernel<Binary::div><<<grid, kThreads, 0, s>>>(out, a, b, n, b_period); break;
  }
  check_launch("binary");
}

// f(op) with op as a compile-time constant (std::integral_constant), for the kernel templates.
template <class F>
void with_unary(Unary op, F&& f) {
  switch (op) {
    case Unary::neg: return f(std::integral_constant<Unary, Unary::neg>{});
    case Unary::exp: return f(std::integral_constant<Unary, Unary::exp>{});
    case Unary::log: return f(std::integral_constant<Unary, Unary::log>{});
    case Unary::sqrt: return f(std::integral_constant<Unary, Unary::sqrt>{});
    case Unary::sigmoid: return f(std::integral_constant<Unary, Unary::sigmoid>{});
    case Unary::tanh: return f(std::integral_constant<Unary, Unary::tanh>{});
  }
}

void unary(Unary op, float* y, const float* x, int64_t n, int device) {
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  with_unary(op, [&](auto o) { unary_kernel<decltype(o)::value><<<grid_for(n, kThreads), kThreads, 0, s>>>(y, x, n); });
  check_launch("unary");
}

void unary_backward(Unary op, float* dx, const float* dy, const float* saved, int64_t n, int device) {
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  with_unary(op, [&](auto o) {
    unary_backward_kernel<decltype(o)::value><<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, dy, saved, n);
  });
  check_launch("unary_backward");
}

void axpby(float* y, float alpha, const float* x, float beta, int64_t n, int device) {
  if (n == 0) return;
  axpby_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(device)>>>(y, alpha, x, beta, n);
  check_launch("axpby");
}

void relu_forward(float* y, const float* x, int64_t n, int device) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(device)>>>(y, x, n);
  check_launch("relu_forward");
}

void relu_backward(float* dx, const float* dy, const float* y, int64_t n, int device) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(device)>>>(dx, dy, y, n);
  check_launch("relu_backward");
}

void column_sums(float* out, const float* x, int64_t rows, int64_t cols, int device) {
  if (cols == 0) return;
  column_sums_kernel<<<static_cast<unsigned>((cols + 31) / 32), kThreads, 0, stream_of(device)>>>(out, x, rows, cols);
  check_launch("column_sums");
}

void sum_all(float* out, const float* x, int64_t n, float scale, int device) {
  cudaStream_t s = stream_of(device);
  check(cudaMemsetAsync(out, 0, sizeof(float), s), "sum_all");
  if (n == 0) return;
  sum_all_kernel<<<grid_for(n, kThreads, 1024), kThreads, 0, s>>>(out, x, n, scale);
  check_launch("sum_all");
}

}  // namespace cuda
}  // namespace fastnn
