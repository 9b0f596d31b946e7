// SGEMM on the GPU: C (M, N) = alpha * op(A) op(B) + beta * C [+ bias_n] [relu], row-major.
// Dimension letters: M, N, K.
//
// Algorithm: each block of 256 threads computes a BM x BN tile of C; it walks K in slices of
// BK = 8, staging op(A)'s BM x BK slice and op(B)'s BK x BN slice in shared memory (A stored
// k-major, so that a thread reads its TM rows of one k as float4s), and each thread accumulates
// a TM x TN register tile (8 x 8 for the 128 x 128 tile, 4 x 4 for the 64 x 64 one) with
// TM + TN shared loads per TM * TN multiply-adds. Global loads go along each operand's
// contiguous axis, so a warp's loads coalesce for all four transpose combinations. Tiles past the
// matrix edge load zeros and store nothing. The epilogue applies alpha, beta, the bias and ReLU
// while C is in registers. The smaller tile is used when the large one would leave most of the
// GPU's multiprocessors idle (the small matrices of a small network's training step).
//
// TF32 (opt-in, set_allow_tf32): blocks of 4 warps compute 64 x 64 tiles with the tensor cores
// through WMMA (16 x 16 x 8 TF32 fragments, each warp a 32 x 32 quarter); the operands' BK = 8
// slices are staged in shared memory (rounded to TF32 as they are loaded into fragments), and the
// accumulators go through shared memory for the same epilogue as the FP32 kernel.
// TODO(issue 6): double-buffered shared memory and vectorized global loads; measured only once a
// GPU is lent to the project (bench/gpu.py).
#include <mma.h>

#include <atomic>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256, kBK = 8;

template <int BM, int BN, bool TA, bool TB>
__global__ void __launch_bounds__(kThreads)
    sgemm_tile(float* __restrict__ C, int64_t ldc, const float* __restrict__ A, int64_t lda,
               const float* __restrict__ B, int64_t ldb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
               const float* __restrict__ bias_n, bool relu) {
  constexpr int TM = BM / 16, TN = BN / 16;
  constexpr int kPad = 4;  // keeps float4 alignment; spreads the k-major stores over the banks
  __shared__ __align__(16) float As[kBK][BM + kPad];
  __shared__ __align__(16) float Bs[kBK][BN + kPad];

  const int tid = threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM, n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int row0 = (tid / 16) * TM, col0 = (tid % 16) * TN;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
#pragma unroll
    for (int e = tid; e < BM * kBK; e += kThreads) {
      // op(A)(m, k) is A[m * lda + k], or A[k * lda + m] when transposed: the thread index runs
      // along the contiguous axis.
      const int m = TA ? e % BM : e / kBK, k = TA ? e / BM : e % kBK;
      const int64_t gm = m0 + m, gk = k0 + k;
      As[k][m] = (gm < M && gk < K) ? (TA ? A[gk * lda + gm] : A[gm * lda + gk]) : 0.0f;
    }
#pragma unroll
    for (int e = tid; e < BN * kBK; e += kThreads) {
      // op(B)(k, n) is B[k * ldb + n], or B[n * ldb + k] when transposed.
      const int n = TB ? e / kBK : e % BN, k = TB ? e % kBK : e / BN;
      const int64_t gn = n0 + n, gk = k0 + k;
      Bs[k][n] = (gn < N && gk < K) ? (TB ? B[gn * ldb + gk] : B[gk * ldb + gn]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 v = *reinterpret_cast<const float4*>(&As[k][row0 + i]);
        a[i] = v.x, a[i + 1] = v.y, a[i + 2] = v.z, a[i + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[k][col0 + j]);
        b[j] = v.x, b[j + 1] = v.y, b[j + 2] = v.z, b[j + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
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
                    const float* __restrict__ bias_n, bool relu) {
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

  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    for (int e = tid; e < T * kBK; e += kTf32Threads) {
      const int m = TA ? e % T : e / kBK, k = TA ? e / T : e % kBK;
      const int64_t gm = m0 + m, gk = k0 + k;
      As[m * kLdA + k] = (gm < M && gk < K) ? (TA ? A[gk * lda + gm] : A[gm * lda + gk]) : 0.0f;
    }
    for (int e = tid; e < T * kBK; e += kTf32Threads) {
      const int n = TB ? e / kBK : e % T, k = TB ? e % kBK : e / T;
      const int64_t gn = n0 + n, gk = k0 + k;
      Bs[k * kLdB + n] = (gn < N && gk < K) ? (TB ? B[gn * ldb + gk] : B[gk * ldb + gn]) : 0.0f;
    }
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

void launch_tf32(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                 int64_t K, bool ta, bool tb, float alpha, float beta, const float* bias, bool relu, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((N + kTf32Tile - 1) / kTf32Tile),
                  static_cast<unsigned>((M + kTf32Tile - 1) / kTf32Tile));
  if (!ta && !tb)
    sgemm_tf32_tile<false, false><<<grid, kTf32Threads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
  else if (!ta && tb)
    sgemm_tf32_tile<false, true><<<grid, kTf32Threads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
  else if (ta && !tb)
    sgemm_tf32_tile<true, false><<<grid, kTf32Threads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
  else
    sgemm_tf32_tile<true, true><<<grid, kTf32Threads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
}

std::atomic<bool> tf32_allowed{false};

template <int BM, int BN>
void launch(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
            int64_t K, bool ta, bool tb, float alpha, float beta, const float* bias, bool relu, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((N + BN - 1) / BN), static_cast<unsigned>((M + BM - 1) / BM));
  if (!ta && !tb)
    sgemm_tile<BM, BN, false, false><<<grid, kThreads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
  else if (!ta && tb)
    sgemm_tile<BM, BN, false, true><<<grid, kThreads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
  else if (ta && !tb)
    sgemm_tile<BM, BN, true, false><<<grid, kThreads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
  else
    sgemm_tile<BM, BN, true, true><<<grid, kThreads, 0, s>>>(C, ldc, A, lda, B, ldb, M, N, K, alpha, beta, bias, relu);
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
  if (tf32_allowed.load(std::memory_order_relaxed)) {
    launch_tf32(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, s);
    check_launch("sgemm (tf32)");
    return;
  }
  const int64_t large_tiles = ((M + 127) / 128) * ((N + 127) / 128);
  if (large_tiles >= 2 * multiprocessors(device))
    launch<128, 128>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, s);
  else
    launch<64, 64>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, s);
  check_launch("sgemm");
}

void set_allow_tf32(bool allow) { tf32_allowed.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return tf32_allowed.load(std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace fastnn
