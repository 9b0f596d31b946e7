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
// TODO(issue 6): double-buffered shared memory, vectorized global loads and the TF32 tensor-core
// path; measured only once a GPU is lent to the project (bench/gpu.py).
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
  const int64_t large_tiles = ((M + 127) / 128) * ((N + 127) / 128);
  if (large_tiles >= 2 * multiprocessors(device))
    launch<128, 128>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, s);
  else
    launch<64, 64>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, bias_n, relu, s);
  check_launch("sgemm");
}

}  // namespace cuda
}  // namespace fastnn
