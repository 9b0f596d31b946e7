// SGEMM on the GPU: C (M, N) = alpha * op(A) op(B) + beta * C [+ bias_n] [relu], row-major.
// Dimension letters: M, N, K.
//
// Algorithm: each block of 256 threads computes a BM x BN tile of C; it walks K in slices of
// BK = 8, staging op(A)'s BM x BK slice and op(B)'s BK x BN slice in shared memory (A stored
// k-major, so that a thread reads its TM rows of one k as float4s), and each thread accumulates
// a TM x TN register tile (8 x 8 for the 128 x 128 tile, 4 x 4 for the 64 x 64 one) with
// TM + TN shared loads per TM * TN multiply-adds. The shared slices are double-buffered: while
// the threads multiply out slice k, their global loads of slice k + 1 are in flight into
// registers, stored into the other buffer afterwards, so one barrier per slice suffices.
// Global loads are float4s along each operand's contiguous axis (so a warp's loads coalesce for
// all four transpose combinations) when both leading dimensions are multiples of 4 and the
// pointers 16-byte aligned; otherwise, and for the float4s that cross the matrix edge, single
// floats. Tiles past the edge load zeros and store nothing. The epilogue applies alpha, beta,
// the bias and ReLU while C is in registers. The smaller tile is used when the large one would
// leave most of the GPU's multiprocessors idle (the small matrices of a small network's
// training step).
//
// TF32 (opt-in, set_allow_tf32): blocks of 4 warps compute 64 x 64 tiles with the tensor cores
// through WMMA (16 x 16 x 8 TF32 fragments, each warp a 32 x 32 quarter); the operands' BK = 8
// slices are staged in shared memory through the same float4 loads (rounded to TF32 as they are
// loaded into fragments), and the accumulators go through shared memory for the same epilogue as
// the FP32 kernel.
#include <mma.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256, kBK = 8;

// Elements (r, c .. c + 3) of a row-major rows x cols matrix with leading dimension ld, zeros
// outside it; one float4 load when `vec` (ld % 4 == 0, p 16-byte aligned, c % 4 == 0) and all
// four are inside.
__device__ __forceinline__ float4 load4(const float* __restrict__ p, int64_t ld, int64_t r, int64_t c,
                                        int64_t rows, int64_t cols, bool vec) {
  if (r >= rows) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  const float* row = p + r * ld;
  if (vec && c + 3 < cols) return *reinterpret_cast<const float4*>(row + c);
  return make_float4(c < cols ? row[c] : 0.0f, c + 1 < cols ? row[c + 1] : 0.0f, c + 2 < cols ? row[c + 2] : 0.0f,
                     c + 3 < cols ? row[c + 3] : 0.0f);
}

// One thread's share of a TR x TC tile (TC a multiple of 4) of an operand as it is stored
// (row-major), held in registers between the global load and the shared-memory store: float4
// number e of the tile covers (e / (TC / 4), 4 * (e % (TC / 4)) .. + 3).
template <int TR, int TC, int THREADS>
struct TileShare {
  static constexpr int kVecs = TR * TC / 4, kPerThread = (kVecs + THREADS - 1) / THREADS;
  float4 v[kPerThread];

  __device__ __forceinline__ void load(const float* __restrict__ p, int64_t ld, int64_t r0, int64_t c0, int64_t rows,
                                       int64_t cols, bool vec) {
#pragma unroll
    for (int t = 0; t < kPerThread; ++t) {
      const int e = threadIdx.x + t * THREADS;
      if (kVecs % THREADS == 0 || e < kVecs)
        v[t] = load4(p, ld, r0 + e / (TC / 4), c0 + 4 * (e % (TC / 4)), rows, cols, vec);
    }
  }
  // put(r, c, value): store the float4 at tile row r, columns c .. c + 3.
  template <class Put>
  __device__ __forceinline__ void store(Put put) const {
#pragma unroll
    for (int t = 0; t < kPerThread; ++t) {
      const int e = threadIdx.x + t * THREADS;
      if (kVecs % THREADS == 0 || e < kVecs) put(e / (TC / 4), 4 * (e % (TC / 4)), v[t]);
    }
  }
};

// The four floats of x at dst[0], dst[stride], dst[2 * stride], dst[3 * stride] (a transposing store).
__device__ __forceinline__ void scatter4(float* dst, int stride, float4 x) {
  dst[0] = x.x, dst[stride] = x.y, dst[2 * stride] = x.z, dst[3 * stride] = x.w;
}

// The BK slice at k0 of op(A) (BM x BK) and op(B) (BK x BN) in their stored layouts: A is
// (M, K) or, transposed, (K, M); B is (K, N) or, transposed, (N, K).
template <int BM, int BN, int THREADS, bool TA, bool TB>
struct Slices {
  TileShare<TA ? kBK : BM, TA ? BM : kBK, THREADS> a;
  TileShare<TB ? BN : kBK, TB ? kBK : BN, THREADS> b;

  __device__ __forceinline__ void load(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                                       int64_t K, int64_t m0, int64_t n0, int64_t k0, bool vec) {
    if (TA) a.load(A, lda, k0, m0, K, M, vec); else a.load(A, lda, m0, k0, M, K, vec);
    if (TB) b.load(B, ldb, n0, k0, N, K, vec); else b.load(B, ldb, k0, n0, K, N, vec);
  }
};

// At least two blocks per multiprocessor: the 128 x 128 tile's 8 x 8 accumulators must fit in
// 128 registers a thread (65536 per multiprocessor), or a lone block could not hide its latency.
template <int BM, int BN, bool TA, bool TB>
__global__ void __launch_bounds__(kThreads, 2)
    sgemm_tile(float* __restrict__ C, int64_t ldc, const float* __restrict__ A, int64_t lda,
               const float* __restrict__ B, int64_t ldb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
               const float* __restrict__ bias_n, bool relu, bool vec) {
  constexpr int TM = BM / 16, TN = BN / 16;
  constexpr int kPad = 4;  // keeps float4 alignment; spreads the k-major stores over the banks
  __shared__ __align__(16) float As[2][kBK][BM + kPad];
  __shared__ __align__(16) float Bs[2][kBK][BN + kPad];

  const int tid = threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int row0 = (tid / 16) * TM, col0 = (tid % 16) * TN;

  Slices<BM, BN, kThreads, TA, TB> next;
  // Into shared buffer `buf`: As[buf][k][m] = op(A)(m0 + m, k0 + k), Bs[buf][k][n] = op(B)(k0 + k, n0 + n).
  auto stage = [&](int buf) {
    if (TA)
      next.a.store([&](int k, int m, float4 x) { *reinterpret_cast<float4*>(&As[buf][k][m]) = x; });
    else
      next.a.store([&](int m, int k, float4 x) { scatter4(&As[buf][k][m], BM + kPad, x); });
    if (TB)
      next.b.store([&](int n, int k, float4 x) { scatter4(&Bs[buf][k][n], BN + kPad, x); });
    else
      next.b.store([&](int k, int n, float4 x) { *reinterpret_cast<float4*>(&Bs[buf][k][n]) = x; });
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  next.load(A, lda, B, ldb, M, N, K, m0, n0, 0, vec);
  stage(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kBK, buf ^= 1) {
    const bool more = k0 + kBK < K;
    if (more) next.load(A, lda, B, ldb, M, N, K, m0, n0, k0 + kBK, vec);  // in flight during the products
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 v = *reinterpret_cast<const float4*>(&As[buf][k][row0 + i]);
        a[i] = v.x, a[i + 1] = v.y, a[i + 2] = v.z, a[i + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[buf][k][col0 + j]);
        b[j] = v.x, b[j + 1] = v.y, b[j + 2] = v.z, b[j + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // The other buffer was last read before the previous barrier: safe to overwrite now.
    if (more) stage(buf ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t gm = m0 + row0 + i;
    if (gm >= M) break;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t gn = n0 + col0 + j;
      if (gn >= N) break;
      float v = alpha * acc[i][j];
      if (beta != 0.0f) v = fmaf(beta, C[gm * ldc + gn], v);
      if (bias_n) v += bias_n[gn];
      if (relu) v = fmaxf(v, 0.0f);
      C[gm * ldc + gn] = v;
    }
  }
}

constexpr int kTf32Tile = 64, kTf32Threads = 128;

template <bool TA, bool TB>
__global__ void __launch_bounds__(kTf32Threads)
    sgemm_tf32_tile(float* __restrict__ C, int64_t ldc, const float* __restrict__ A, int64_t lda,
                    const float* __restrict__ B, int64_t ldb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                    const float* __restrict__ bias_n, bool relu, bool vec) {
  using namespace nvcuda;
  constexpr int T = kTf32Tile, kLdA = kBK + 4, kLdB = T + 4;  // leading dimensions: multiples of 4 floats
  __shared__ __align__(32) float As[T * kLdA];                // op(A) slice, row-major (m, k)
  __shared__ __align__(32) float Bs[kBK * kLdB];              // op(B) slice, row-major (k, n)
  __shared__ __align__(32) float Cs[T * T];                   // the accumulators, for the epilogue
  const int tid = threadIdx.x, warp = tid / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * T, n0 = static_cast<int64_t>(blockIdx.x) * T;

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  Slices<T, T, kTf32Threads, TA, TB> slice;
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    slice.load(A, lda, B, ldb, M, N, K, m0, n0, k0, vec);
    if (TA)
      slice.a.store([&](int k, int m, float4 x) { scatter4(&As[m * kLdA + k], kLdA, x); });
    else
      slice.a.store([&](int m, int k, float4 x) { *reinterpret_cast<float4*>(&As[m * kLdA + k]) = x; });
    if (TB)
      slice.b.store([&](int n, int k, float4 x) { scatter4(&Bs[k * kLdB + n], kLdB, x); });
    else
      slice.b.store([&](int k, int n, float4 x) { *reinterpret_cast<float4*>(&Bs[k * kLdB + n]) = x; });
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
    for (int i = 0; i < 2; ++i) {
      wmma::load_matrix_sync(a[i], As + (wm + 16 * i) * kLdA, kLdA);
      for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
      wmma::load_matrix_sync(b[i], Bs + wn + 16 * i, kLdB);
      for (int t = 0; t < b[i].num_elements; ++t) b[i].x[t] = wmma::__float_to_tf32(b[i].x[t]);
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * T + wn + 16 * j, acc[i][j], T, wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < T * T; e += kTf32Threads) {
    const int64_t gm = m0 + e / T, gn = n0 + e % T;
    if (gm >= M || gn >= N) continue;
    float v = alpha * Cs[e];
    if (beta != 0.0f) v = fmaf(beta, C[gm * ldc + gn], v);
    if (bias_n) v += bias_n[gn];
    if (relu) v = fmaxf(v, 0.0f);
    C[gm * ldc + gn] = v;
  }
}

// f(TA, TB) with the transposes as compile-time constants (std::integral_constant<bool, ...>).
template <class F>
void with_transposes(bool ta, bool tb, F f) {
  using T = std::true_type;
  using N = std::false_type;
  if (!ta && !tb) f(N{}, N{});
  else if (!ta && tb) f(N{}, T{});
  else if (ta && !tb) f(T{}, N{});
  else f(T{}, T{});
}

void launch_tf32(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                 int64_t K, bool ta, bool tb, float alpha, float beta, const float* bias, bool relu, bool vec,
                 cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((N + kTf32Tile - 1) / kTf32Tile),
                  static_cast<unsigned>((M + kTf32Tile - 1) / kTf32Tile));
  with_transposes(ta, tb, [&](auto TA, auto TB) {
    sgemm_tf32_tile<TA.value, TB.value>
        <<<grid, kTf32Threads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu, vec);
  });
}

std::atomic<bool> tf32_allowed{false};

template <int BM, int BN>
void launch(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
            int64_t K, bool ta, bool tb, float alpha, float beta, const float* bias, bool relu, bool vec,
            cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((N + BN - 1) / BN), static_cast<unsigned>((M + BM - 1) / BM));
  with_transposes(ta, tb, [&](auto TA, auto TB) {
    sgemm_tile<BM, BN, TA.value, TB.value>
        <<<grid, kThreads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu, vec);
  });
}

int multiprocessors(int device) {
  static int cached[64] = {};  // a benign race: every thread writes the same value
  if (device < 0 || device >= 64) return 1;
  if (!cached[device]) {
    int n = 0;
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    cached[device] = n > 0 ? n : 1;
  }
  return cached[device];
}

}  // namespace

void sgemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
           int64_t K, bool trans_a, bool trans_b, float alpha, float beta, const float* bias_n, bool relu,
           int device) {
  if (M == 0 || N == 0) return;
  cudaStream_t s = stream_of(device);
  const bool vec = lda % 4 == 0 && ldb % 4 == 0 && reinterpret_cast<uintptr_t>(A) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(B) % 16 == 0;
  if (tf32_allowed.load(std::memory_order_relaxed)) {
    launch_tf32(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, vec, s);
    check_launch("sgemm (tf32)");
    return;
  }
  const int64_t large_tiles = ((M + 127) / 128) * ((N + 127) / 128);
  if (large_tiles >= 2 * multiprocessors(device))
    launch<128, 128>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, vec, s);
  else
    launch<64, 64>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, vec, s);
  check_launch("sgemm");
}

void set_allow_tf32(bool allow) { tf32_allowed.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return tf32_allowed.load(std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace fastnn
