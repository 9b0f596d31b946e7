// Elementwise ops and reductions on the GPU. Dimension letters: n elements; rows x cols.
//
// Elementwise kernels: one thread per element in a grid-stride loop (256 threads a block, at
// most 65535 blocks), which is bandwidth-bound and needs no tuning. Binary ops broadcast as numpy:
// the contiguous kernel when a fills the output and b repeats with a period (equal shapes, a bias
// row, a scalar); otherwise the strided kernel, which finds each operand's element from the output
// index through per-axis strides (0 on broadcast axes; axes merged first where both operands are
// contiguous across them, so (N, C, H, W) * (1, C, 1, 1) divides by three sizes, not four).
// permute and expand are the same strided walk with one operand; basic indexing (slices of any
// step, ints, new axes) is that walk from an offset, and its gradient the walk writing instead of
// reading (a basic index reaches each element at most once, so plain stores). GELU (erf and tanh
// forms) computes in double, as the CPU's numpy form does: rounded once to float, it agrees with the
// CPU to the last bit or so, and the kernel stays bandwidth-bound on GPUs with fast double
// arithmetic (A100, H100). Column sums: one block per
// 32 columns, its 8 warps striding over the rows (warp lanes read consecutive columns, so loads
// coalesce), then a shared-memory sum of the 8 partials. sum_all: blocks reduce grid-stride
// partial sums through warp shuffles, then one atomicAdd per block into the zeroed output (the
// order of the additions, and so the last bits of the sum, may vary between runs).
#include <string>
#include <type_traits>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__global__ void fill_kernel(float* y, float value, int64_t n) {
  GRID_STRIDE(i, n) y[i] = value;
}

template <Binary op>
__device__ float binary_op(float x, float y) {
  return op == Binary::add ? x + y
       : op == Binary::sub ? x - y
       : op == Binary::mul ? x * y
       : op == Binary::div ? x / y
       : op == Binary::pow ? powf(x, y)
       : op == Binary::pow_grad_base ? y * powf(x, y - 1.0f)
       // 0 where x == 0 and y >= 0 (as the CPU's Pow), where x**y log x would be 0 * -inf
                               : (x == 0.0f && y >= 0.0f ? 0.0f : powf(x, y) * logf(x));
}

template <Binary op>
__global__ void binary_kernel(float* out, const float* a, const float* b, int64_t n, int64_t period) {
  GRID_STRIDE(i, n) out[i] = binary_op<op>(a[i], b[period == n ? i : i % period]);
}

constexpr double kSqrtHalf = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588, kGeluCubic = 0.044715;

// GELU (op gelu: x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2, with no cancellation in the negative
// tail; op gelu_tanh: PyTorch's tanh approximation) and its derivative, the CPU's formulas.
template <Unary op>
__device__ double gelu(double x) {
  return op == Unary::gelu_tanh ? 0.5 * x * (1.0 + tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)))
                                : 0.5 * x * erfc(-x * kSqrtHalf);
}

template <Unary op>
__device__ double gelu_derivative(double x) {
  if (op == Unary::gelu_tanh) {
    const double th = tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * kSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * x * x);
  }
  return 0.5 * erfc(-x * kSqrtHalf) + x * exp(-0.5 * x * x) * kInvSqrt2Pi;
}

// param: leaky_relu's negative slope (unused by the others).
template <Unary op>
__global__ void unary_kernel(float* y, const float* x, int64_t n, float param) {
  GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = op == Unary::neg ? -v
         : op == Unary::exp ? expf(v)
         : op == Unary::log ? logf(v)
         : op == Unary::sqrt ? sqrtf(v)
         : op == Unary::sigmoid ? 1.0f / (1.0f + expf(-v))
         : op == Unary::tanh ? tanhf(v)
         : op == Unary::leaky_relu ? (v > 0.0f ? v : v * param)
                                   : static_cast<float>(gelu<op>(v));
  }
}

// s: the saved input (log, leaky_relu, gelu) or output (the others).
template <Unary op>
__global__ void unary_backward_kernel(float* dx, const float* dy, const float* s, int64_t n, float param) {
  GRID_STRIDE(i, n) {
    const float g = dy[i];
    dx[i] = op == Unary::neg ? -g
          : op == Unary::exp ? g * s[i]
          : op == Unary::log ? g / s[i]
          : op == Unary::sqrt ? g * 0.5f / s[i]
          : op == Unary::sigmoid ? g * s[i] * (1.0f - s[i])
          : op == Unary::tanh ? g * (1.0f - s[i] * s[i])
          : op == Unary::leaky_relu ? (s[i] > 0.0f ? g : g * param)
                                    : static_cast<float>(g * gelu_derivative<op>(s[i]));
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
  s = warp_all_reduce(s, [](float a, float b) { return a + b; });
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
    atomicAdd(out, scale * total);
  }
}

// The output's shape and, for each of up to two inputs, its element stride along each output axis
// (in_stride[k][d]; 0 where input k broadcasts). Passed by value: it lands in the kernel's
// parameter space, read by all threads alike.
constexpr int kMaxAxes = 8;
struct Strides {
  int64_t out_shape[kMaxAxes], in_stride[2][kMaxAxes];
  int ndim;
};

// The offsets of output element i in each of the first `inputs` inputs.
template <int inputs>
__device__ void input_offsets(const Strides& s, int64_t i, int64_t (&offset)[inputs]) {
  for (int k = 0; k < inputs; ++k) offset[k] = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    const int64_t index = i % s.out_shape[d];
    i /= s.out_shape[d];
    for (int k = 0; k < inputs; ++k) offset[k] += index * s.in_stride[k][d];
  }
}

// The walk over s's n elements: out[i] = x at i's offset (gather: permute with permuted strides,
// expand with zero strides, a basic index from an offset), or out at i's offset = x[i] (scatter: a
// basic index's gradient).
template <bool scatter>
__global__ void strided_copy_kernel(float* out, const float* x, Strides s, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t offset[1];
    input_offsets(s, i, offset);
    if (scatter)
      out[offset[0]] = x[i];
    else
      out[i] = x[offset[0]];
  }
}

template <Binary op>
__global__ void broadcast_binary_kernel(float* out, const float* a, const float* b, Strides s, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t offset[2];
    input_offsets(s, i, offset);
    out[i] = binary_op<op>(a[offset[0]], b[offset[1]]);
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

// The Strides of `inputs` inputs of the given shapes (ndim axes each, sizes 1 or out's) read along
// out_shape: 0 on a stretched axis. Output axes of size 1 are dropped and neighbours merged where
// every input is contiguous across them, so the kernels divide by as few sizes as possible (an
// equal-shape pair becomes one axis, a bias row over a matrix two).
Strides broadcast_strides(const int64_t* out_shape, const int64_t* const* shapes, int inputs, int ndim,
                          const char* fn) {
  if (ndim > kMaxAxes) throw CudaError(std::string(fn) + ": at most 8 axes");
  int64_t shape[kMaxAxes], stride[2][kMaxAxes], contiguous[2] = {1, 1};
  int m = 0;  // axes kept so far, innermost first
  for (int d = ndim - 1; d >= 0; --d) {
    if (out_shape[d] == 1) continue;
    int64_t axis_stride[2] = {0, 0};
    bool merges = m > 0;
    for (int k = 0; k < inputs; ++k) {
      axis_stride[k] = shapes[k][d] == 1 ? 0 : contiguous[k];
      contiguous[k] *= shapes[k][d];
      merges = merges && axis_stride[k] == stride[k][m - 1] * shape[m - 1];
    }
    if (merges) {
      shape[m - 1] *= out_shape[d];
      continue;
    }
    shape[m] = out_shape[d];
    for (int k = 0; k < 2; ++k) stride[k][m] = axis_stride[k];
    ++m;
  }
  Strides s{};
  s.ndim = m;
  for (int j = 0; j < m; ++j) {
    s.out_shape[j] = shape[m - 1 - j];
    for (int k = 0; k < 2; ++k) s.in_stride[k][j] = stride[k][m - 1 - j];
  }
  return s;
}

// Launches strided_copy_kernel over the n elements of s's output.
template <bool scatter = false>
void strided_copy(float* out, const float* x, const Strides& s, int64_t n, int device, const char* fn) {
  if (n == 0) return;
  strided_copy_kernel<scatter><<<grid_for(n, kThreads), kThreads, 0, stream_of(device)>>>(out, x, s, n);
  check_launch(fn);
}

// The walk over a view of `shape` with element `strides` (any sign): axes of size 1 dropped, as
// they never move the offset.
Strides view_strides(const int64_t* shape, const int64_t* strides, int ndim, int64_t* n, const char* fn) {
  Strides s{};
  *n = 1;
  for (int d = 0; d < ndim; ++d) {
    *n *= shape[d];
    if (shape[d] == 1) continue;
    if (s.ndim == kMaxAxes) throw CudaError(std::string(fn) + ": at most 8 axes of size other than 1");
    s.out_shape[s.ndim] = shape[d];
    s.in_stride[0][s.ndim] = strides[d];
    ++s.ndim;
  }
  return s;
}

}  // namespace

void gather_strided(float* out, const float* x, int64_t offset, const int64_t* shape, const int64_t* strides, int ndim,
                    int device) {
  int64_t n;
  const Strides s = view_strides(shape, strides, ndim, &n, "gather_strided");
  strided_copy(out, x + offset, s, n, device, "gather_strided");
}

void scatter_strided(float* dst, const float* src, int64_t offset, const int64_t* shape, const int64_t* strides,
                     int ndim, int device) {
  int64_t n;
  const Strides s = view_strides(shape, strides, ndim, &n, "scatter_strided");
  strided_copy<true>(dst + offset, src, s, n, device, "scatter_strided");
}

void permute(float* out, const float* x, const int64_t* shape, const int* perm, int ndim, int device) {
  if (ndim > kMaxAxes) throw CudaError("permute: at most 8 axes");
  Strides s{};
  s.ndim = ndim;
  int64_t stride[kMaxAxes], n = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    stride[d] = n;
    n *= shape[d];
  }
  for (int d = 0; d < ndim; ++d) {
    s.out_shape[d] = shape[perm[d]];
    s.in_stride[0][d] = stride[perm[d]];
  }
  strided_copy(out, x, s, n, device, "permute");
}

void expand(float* out, const float* x, const int64_t* out_shape, const int64_t* x_shape, int ndim, int device) {
  const Strides s = broadcast_strides(out_shape, &x_shape, 1, ndim, "expand");
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= out_shape[d];
  strided_copy(out, x, s, n, device, "expand");
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

// f(op) with op as a compile-time constant (std::integral_constant), for the kernel templates.
template <class F>
void with_binary(Binary op, F&& f) {
  switch (op) {
    case Binary::add: return f(std::integral_constant<Binary, Binary::add>{});
    case Binary::sub: return f(std::integral_constant<Binary, Binary::sub>{});
    case Binary::mul: return f(std::integral_constant<Binary, Binary::mul>{});
    case Binary::div: return f(std::integral_constant<Binary, Binary::div>{});
    case Binary::pow: return f(std::integral_constant<Binary, Binary::pow>{});
    case Binary::pow_grad_base: return f(std::integral_constant<Binary, Binary::pow_grad_base>{});
    case Binary::pow_grad_exponent: return f(std::integral_constant<Binary, Binary::pow_grad_exponent>{});
  }
}

void binary(Binary op, float* out, const float* a, const float* b, int64_t n, int64_t b_period, int device) {
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  with_binary(op, [&](auto o) {
    binary_kernel<decltype(o)::value><<<grid_for(n, kThreads), kThreads, 0, s>>>(out, a, b, n, b_period);
  });
  check_launch("binary");
}

void broadcast_binary(Binary op, float* out, const float* a, const float* b, const int64_t* out_shape,
                      const int64_t* a_shape, const int64_t* b_shape, int ndim, int device) {
  const int64_t* shapes[2] = {a_shape, b_shape};
  const Strides st = broadcast_strides(out_shape, shapes, 2, ndim, "broadcast_binary");
  // The contiguous kernel serves when a fills out and b repeats with a period: b contiguous over
  // the inner axes and broadcast over the outer ones (equal shapes, a bias row, a scalar).
  int64_t n = 1, period = 1;
  bool a_fills = true, b_repeats = true;
  for (int d = st.ndim - 1; d >= 0; --d) {
    a_fills = a_fills && st.in_stride[0][d] == n;
    if (st.in_stride[1][d] == n && period == n)
      period *= st.out_shape[d];
    else
      b_repeats = b_repeats && st.in_stride[1][d] == 0;
    n *= st.out_shape[d];
  }
  if (a_fills && b_repeats) return binary(op, out, a, b, n, period, device);
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  with_binary(op, [&](auto o) {
    broadcast_binary_kernel<decltype(o)::value><<<grid_for(n, kThreads), kThreads, 0, s>>>(out, a, b, st, n);
  });
  check_launch("broadcast_binary");
}

template <class F>
void with_unary(Unary op, F&& f) {
  switch (op) {
    case Unary::neg: return f(std::integral_constant<Unary, Unary::neg>{});
    case Unary::exp: return f(std::integral_constant<Unary, Unary::exp>{});
    case Unary::log: return f(std::integral_constant<Unary, Unary::log>{});
    case Unary::sqrt: return f(std::integral_constant<Unary, Unary::sqrt>{});
    case Unary::sigmoid: return f(std::integral_constant<Unary, Unary::sigmoid>{});
    case Unary::tanh: return f(std::integral_constant<Unary, Unary::tanh>{});
    case Unary::leaky_relu: return f(std::integral_constant<Unary, Unary::leaky_relu>{});
    case Unary::gelu: return f(std::integral_constant<Unary, Unary::gelu>{});
    case Unary::gelu_tanh: return f(std::integral_constant<Unary, Unary::gelu_tanh>{});
  }
}

void unary(Unary op, float* y, const float* x, int64_t n, float param, int device) {
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  with_unary(op, [&](auto o) {
    unary_kernel<decltype(o)::value><<<grid_for(n, kThreads), kThreads, 0, s>>>(y, x, n, param);
  });
  check_launch("unary");
}

void unary_backward(Unary op, float* dx, const float* dy, const float* saved, int64_t n, float param, int device) {
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  with_unary(op, [&](auto o) {
    unary_backward_kernel<decltype(o)::value><<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, dy, saved, n, param);
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
