// SGEMM: C = alpha * op(A) @ op(B) + beta * C  [+ bias] [ReLU], float32, row-major.
//
// Dimension letters: op(A) is (M, K), op(B) is (K, N), C is (M, N).
// A is stored (M, K) with row stride lda, or (K, M) when trans_a; B likewise.
// The framework (gemm.cpp) packs and blocks; one micro-kernel per ISA
// (gemm_kernel_<isa>.cpp) computes an MR x NR tile of C in registers.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"

namespace fastnn {

// Applied once, to the finished tile, while it is still in registers.
struct GemmEpilogue {
  const float* bias_n = nullptr;  // (N,): added to every row (Linear)
  const float* bias_m = nullptr;  // (M,): added to every column (convolution)
  bool relu = false;
};

// Returns true when C holds a NaN or an infinity before the ReLU (the caller
// uses it to find and name a non-finite input without scanning on the fast path).
bool sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, const GemmEpilogue& epilogue = GemmEpilogue());

// ---- what the framework needs from a micro-kernel -------------------------
//
// kernels[m](k, a, b, rs_b, c, ldc, tile), m = 1 .. MR, computes the first m rows
// of the MR x NR tile (m = MR: the whole tile)
//   c[i*ldc + j] = alpha * sum_p a[p*m + i] * b[p*rs_b + j] + beta * c[i*ldc + j]
// (beta == 0: c is not read), then, if tile.last, adds tile.bias_n[j] and
// tile.bias_m[i] (either may be null), records a non-finite value in
// *tile.nonfinite and applies the ReLU. `a` is packed with m rows to a k step, `b`
// is packed (rs_b = NR) or read in place from a row-major op(B) (rs_b = ldb). Each
// element of C is the same FMA chain over k whatever m, so a tile cut short (the
// bottom edge of C in sgemm, a recurrent step's row tiles of any height) gives the
// bits the whole tile would, without paying for MR rows.
// alpha and beta travel in this struct, not in registers: as arguments they would
// stay live across the k loop and push an accumulator out of the 16 ymm registers.
struct GemmTile {
  float alpha, beta;
  const float* bias_n;  // NR values or null
  const float* bias_m;  // MR values or null
  bool relu;
  bool last;            // the last K block: apply the epilogue
  int* nonfinite;
};
using GemmMicroKernel = void (*)(int64_t k, const float* a, const float* b, int64_t rs_b, float* c,
                                 int64_t ldc, const GemmTile& tile);

// One row of the block-size table (BLIS style): register tile MR x NR, cache
// blocks MC (A block in L2), KC (slivers in L1), NC (B panel in L3).
struct GemmKernelInfo {
  Isa isa;
  int mr, nr;
  int64_t mc, kc, nc;
  const GemmMicroKernel* kernels;  // kernels[1 .. MR], see above
  double (*fma_loop)(int64_t iters);  // a pure FMA loop on one thread; returns the FLOPs done (may be null in rows after the first)
};

// The block-size table of one ISA: one row per register tile, the general tile
// first. sgemm takes the row whose tiles cover C with the least padding, so a
// convolution's 6 or 16 output channels do not run half-empty 12-row tiles.
struct GemmKernelTable {
  const GemmKernelInfo* rows;
  int count;
};
GemmKernelTable gemm_kernels_ref();
GemmKernelTable gemm_kernels_avx2();
GemmKernelTable gemm_kernels_avx512();
GemmKernelTable gemm_kernels_for(Isa isa);
const GemmKernelInfo& gemm_kernel_for(Isa isa);  // the general row
// The row for M x N, where N may be `blocks` blocks of N columns each padded on its own (the
// gates of a recurrent step's product: ng blocks of H units).
const GemmKernelInfo& gemm_kernel_for_shape(Isa isa, int64_t M, int64_t N, int64_t blocks = 1);

// dst[p * dst_stride + r] = src[r * ld + p] for r < rows, p < len: a transposing copy (rows of
// src become columns of dst), by 4 x 4 register transposes.
void transpose_copy(const float* src, int64_t ld, int64_t rows, int64_t len, float* dst, int64_t dst_stride);

// Machine peak by the active ISA's FMA loop, run on `threads` threads at once.
double measure_fma_peak_gflops(int threads, double seconds);

}  // namespace fastnn
