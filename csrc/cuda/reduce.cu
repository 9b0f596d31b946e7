// Reductions over one axis on the GPU. Dimension letters: x is (outer, R, inner), reduced over R
// to (outer, inner); several adjacent axes arrive merged into R (the Python permutes non-adjacent
// ones next to each other first).
//
// inner == 1 (rows): one block per output (a grid-stride loop over the outputs), its threads
// striding over the row so loads coalesce, partials combined by warp shuffles, then across warps
// through shared memory. The block is as wide as the row, rounded up to a warp, up to 256
// threads, so short rows leave no idle warps. inner > 1 (columns): one thread per output, looping
// over R; neighbouring threads read neighbouring inner positions, so a warp's loads coalesce.
// Few outputs over a long R (a sum of everything, a batch axis over 10 features) would leave the
// GPU nearly idle that way, so R is then cut into `chunks` pieces: a first pass reduces each
// piece into a scratch (outer, chunks, inner) of partials, a second reduces the partials. The
// cut depends only on the shape.
// Sums accumulate in double (partials too): within 1e-7 of float64 at any R, with a fixed order
// (no atomics) so results repeat bit for bit. Max compares in float and lets NaN win, as numpy's
// amax.
// max backward: dx marks where x equals its output's maximum (1, else 0), those marks are summed
// per output (the ties), then dx = dy / ties at the marks: as the CPU's Max, which splits the
// gradient between tied maxima; every pass is spread over all elements.
#include <algorithm>
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

// x (outer, R) with each row cut into `chunks` pieces of `len`: out[o * chunks + c] = scale * (the op
// over piece c of row o). One block per piece.
template <class Op, class In, class Out>
__global__ void reduce_rows_kernel(Out* out, const In* x, int64_t outer, int64_t R, int64_t chunks, int64_t len,
                                   float scale) {
  for (int64_t b = blockIdx.x; b < outer * chunks; b += gridDim.x) {
    const In* row = x + (b / chunks) * R;
    const int64_t end = min(R, (b % chunks + 1) * len);
    typename Op::T acc = Op::identity();
    for (int64_t r = (b % chunks) * len + threadIdx.x; r < end; r += blockDim.x) acc = Op::combine(acc, row[r]);
    acc = block_reduce<Op>(acc);
    if (threadIdx.x == 0) out[b] = static_cast<Out>(acc * scale);
  }
}

// x (outer, R, inner) with R cut into `chunks` pieces of `len`: out[(o * chunks + c) * inner + i] =
// scale * (the op over x[o, r, i] for r in piece c). One thread per output.
template <class Op, class In, class Out>
__global__ void reduce_columns_kernel(Out* out, const In* x, int64_t outer, int64_t R, int64_t inner, int64_t chunks,
                                      int64_t len, float scale) {
  GRID_STRIDE(k, outer * chunks * inner) {
    const int64_t c = (k / inner) % chunks;
    const In* column = x + (k / (inner * chunks)) * R * inner + k % inner;
    const int64_t end = min(R, (c + 1) * len);
    typename Op::T acc = Op::identity();
    for (int64_t r = c * len; r < end; ++r) acc = Op::combine(acc, column[r * inner]);
    out[k] = static_cast<Out>(acc * scale);
  }
}

// A block per row, as wide as the row rounded up to a warp, at most kThreads.
int row_threads(int64_t R) { return R >= kThreads ? kThreads : R <= 32 ? 32 : static_cast<int>((R + 31) / 32 * 32); }

// Pieces per reduced line: enough that some 1024 blocks (rows) or 64 Ki threads (columns) have
// work, each piece still long enough (2048 elements for a block, 64 for a thread) to be worth a
// partial.
int64_t chunks_for(int64_t outer, int64_t R, int64_t inner) {
  const int64_t outputs = outer * inner;
  const int64_t wanted = inner == 1 ? 1024 : 65536, min_len = inner == 1 ? 2048 : 64;
  const int64_t chunks = std::min((R + min_len - 1) / min_len, std::max<int64_t>(1, wanted / outputs));
  return std::max<int64_t>(1, chunks);
}

// One pass: x (outer, R, inner) -> out (outer, chunks, inner), R cut into `chunks` pieces.
template <class Op, class In, class Out>
void reduce_pass(Out* out, const In* x, int64_t outer, int64_t R, int64_t inner, int64_t chunks, float scale,
                 cudaStream_t s) {
  const int64_t len = (R + chunks - 1) / chunks;
  if (inner == 1) {
    reduce_rows_kernel<Op><<<grid_for(outer * chunks, 1), row_threads(len), 0, s>>>(out, x, outer, R, chunks, len,
                                                                                     scale);
  } else {
    reduce_columns_kernel<Op><<<grid_for(outer * chunks * inner, kThreads), kThreads, 0, s>>>(out, x, outer, R, inner,
                                                                                               chunks, len, scale);
  }
}

template <class Op>
void reduce(float* out, const float* x, int64_t outer, int64_t R, int64_t inner, float scale, int device,
            const char* fn) {
  using T = typename Op::T;
  if (outer * inner == 0) return;
  cudaStream_t s = stream_of(device);
  const int64_t chunks = chunks_for(outer, R, inner);
  if (chunks == 1) {
    reduce_pass<Op>(out, x, outer, R, inner, 1, scale, s);
  } else {
    Scratch partials((outer * chunks * inner * static_cast<int64_t>(sizeof(T)) + 3) / 4, device);
    T* p = reinterpret_cast<T*>(partials.ptr);
    reduce_pass<Op>(p, x, outer, R, inner, chunks, 1.0f, s);
    check_launch(fn);
    reduce_pass<Op>(out, p, outer, chunks, inner, 1, scale, s);
  }
  check_launch(fn);
}

// dx, x (outer, R, inner); out (outer, inner): dx = 1 where x equals its output, else 0.
__global__ void mark_maxima_kernel(float* dx, const float* x, const float* out, int64_t outer, int64_t R,
                                   int64_t inner) {
  GRID_STRIDE(k, outer * R * inner) dx[k] = x[k] == out[(k / (R * inner)) * inner + k % inner] ? 1.0f : 0.0f;
}

// dx (outer, R, inner) of marks; dy, ties (outer, inner): dx = dy / ties at the marks.
__global__ void share_gradient_kernel(float* dx, const float* dy, const float* ties, int64_t outer, int64_t R,
                                      int64_t inner) {
  GRID_STRIDE(k, outer * R * inner) {
    const int64_t j = (k / (R * inner)) * inner + k % inner;
    dx[k] = dx[k] != 0.0f ? dy[j] / ties[j] : 0.0f;
  }
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
  const int64_t n = outer * R * inner;
  if (n == 0) return;
  cudaStream_t s = stream_of(device);
  mark_maxima_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, x, out, outer, R, inner);
  check_launch("reduce_max_backward");
  Scratch ties(outer * inner, device);
  reduce<SumOp>(ties.ptr, dx, outer, R, inner, 1.0f, device, "reduce_max_backward");
  share_gradient_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, dy, ties.ptr, outer, R, inner);
  check_launch("reduce_max_backward");
}

}  // namespace cuda
}  // namespace fastnn
