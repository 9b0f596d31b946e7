// Reductions over one axis on the GPU. Dimension letters: x is (outer, R, inner), reduced over R
// to (outer, inner); several adjacent axes arrive merged into R (the Python permutes non-adjacent
// ones next to each other first).
//
// inner == 1 (rows): one block per output (a grid-stride loop over the outputs), its threads
// striding over the row so loads coalesce, partials combined by warp shuffles, then across warps
// through shared memory. The block is as wide as the row, rounded up to a warp, up to 256
// threads, so short rows leave no idle warps. inner > 1 (columns): one thread per output, looping
// over R; neighbouring threads read neighbouring inner positions, so a warp's loads coalesce.
// Sums accumulate in double: within 1e-7 of float64 at any R, with a fixed order (no atomics) so
// results repeat bit for bit. Max compares in float and lets NaN win, as numpy's amax.
// max backward, in the same two layouts: each output's ties are counted in a first pass over R,
// then dx = dy / ties where x equals the maximum and 0 elsewhere, as the CPU's Max.
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

struct SumOp {
  using T = double;
  __device__ static T identity() { return 0.0; }
  __device__ static T combine(T a, T b) { return a + b; }
};

struct MaxOp {
  using T = float;
  __device__ static T identity() { return -INFINITY; }
  __device__ static T combine(T a, T b) { return b > a || b != b ? b : a; }  // NaN wins
};

// v combined over the block (blockDim.x a multiple of 32, at most kThreads); every thread gets the
// result. Ends with a barrier, so a block may call it again at once.
template <class Op>
__device__ typename Op::T block_reduce(typename Op::T v) {
  __shared__ typename Op::T warp_partial[kThreads / 32];
  v = warp_all_reduce(v, [](typename Op::T a, typename Op::T b) { return Op::combine(a, b); });
  if (threadIdx.x % 32 == 0) warp_partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = warp_partial[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) v = Op::combine(v, warp_partial[w]);
  __syncthreads();
  return v;
}

// x (outer, R): out[o] = scale * (x[o, 0] op ... op x[o, R - 1]).
template <class Op>
__global__ void reduce_rows_kernel(float* out, const float* x, int64_t outer, int64_t R, float scale) {
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    const float* row = x + o * R;
    typename Op::T acc = Op::identity();
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) acc = Op::combine(acc, row[r]);
    acc = block_reduce<Op>(acc);
    if (threadIdx.x == 0) out[o] = static_cast<float>(acc * scale);
  }
}

// x (outer, R, inner): out[o, i] = scale * (x[o, 0, i] op ... op x[o, R - 1, i]).
template <class Op>
__global__ void reduce_columns_kernel(float* out, const float* x, int64_t outer, int64_t R, int64_t inner,
                                      float scale) {
  GRID_STRIDE(k, outer * inner) {
    const float* column = x + (k / inner) * R * inner + k % inner;
    typename Op::T acc = Op::identity();
    for (int64_t r = 0; r < R; ++r) acc = Op::combine(acc, column[r * inner]);
    out[k] = static_cast<float>(acc * scale);
  }
}

// dx, x (outer, R); dy, out (outer,): dx[o, r] = dy[o] / ties[o] where x[o, r] == out[o], else 0.
__global__ void max_backward_rows_kernel(float* dx, const float* dy, const float* x, const float* out, int64_t outer,
                                         int64_t R) {
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    const float* row = x + o * R;
    const float m = out[o];
    double ties = 0.0;
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) ties += row[r] == m;
    const float share = dy[o] / static_cast<float>(block_reduce<SumOp>(ties));
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) dx[o * R + r] = row[r] == m ? share : 0.0f;
  }
}

// dx, x (outer, R, inner); dy, out (outer, inner): the same per column.
__global__ void max_backward_columns_kernel(float* dx, const float* dy, const float* x, const float* out,
                                            int64_t outer, int64_t R, int64_t inner) {
  GRID_STRIDE(k, outer * inner) {
    const int64_t first = (k / inner) * R * inner + k % inner;
    const float m = out[k];
    double ties = 0.0;
    for (int64_t r = 0; r < R; ++r) ties += x[first + r * inner] == m;
    const float share = dy[k] / static_cast<float>(ties);
    for (int64_t r = 0; r < R; ++r) dx[first + r * inner] = x[first + r * inner] == m ? share : 0.0f;
  }
}

// A block per row, as wide as the row rounded up to a warp, at most kThreads.
int row_threads(int64_t R) { return R >= kThreads ? kThreads : R <= 32 ? 32 : static_cast<int>((R + 31) / 32 * 32); }

template <class Op>
void reduce(float* out, const float* x, int64_t outer, int64_t R, int64_t inner, float scale, int device,
            const char* fn) {
  if (outer * inner == 0) return;
  cudaStream_t s = stream_of(device);
  if (inner == 1) {
    reduce_rows_kernel<Op><<<grid_for(outer, 1), row_threads(R), 0, s>>>(out, x, outer, R, scale);
  } else {
    reduce_columns_kernel<Op><<<grid_for(outer * inner, kThreads), kThreads, 0, s>>>(out, x, outer, R, inner, scale);
  }
  check_launch(fn);
}

}  // namespace

void reduce_sum(float* out, const float* x, int64_t outer, int64_t R, int64_t inner, float scale, int device) {
  reduce<SumOp>(out, x, outer, R, inner, scale, device, "reduce_sum");
}

void reduce_max(float* out, const float* x, int64_t outer, int64_t R, int64_t inner, int device) {
  reduce<MaxOp>(out, x, outer, R, inner, 1.0f, device, "reduce_max");
}

void reduce_max_backward(float* dx, const float* dy, const float* x, const float* out, int64_t outer, int64_t R,
                         int64_t inner, int device) {
  if (outer * R * inner == 0) return;
  cudaStream_t s = stream_of(device);
  if (inner == 1) {
    max_backward_rows_kernel<<<grid_for(outer, 1), row_threads(R), 0, s>>>(dx, dy, x, out, outer, R);
  } else {
    max_backward_columns_kernel<<<grid_for(outer * inner, kThreads), kThreads, 0, s>>>(dx, dy, x, out, outer, R,
                                                                                       inner);
  }
  check_launch("reduce_max_backward");
}

}  // namespace cuda
}  // namespace fastnn
