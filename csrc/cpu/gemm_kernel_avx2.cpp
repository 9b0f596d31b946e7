// AVX2 + FMA micro-kernels: 12 ymm accumulators each, shaped 6 x 16 (6 rows x 2
// vectors of 8; the general tile), 4 x 24 (for M = 4, 8, 16) and 12 x 8 (for
// N <= 8), plus the B vectors and 1 ymm for the broadcast of A; 12 independent FMA chains cover the
// 4-5 cycle FMA latency on two FMA ports (Haswell .. Zen 4).
// Blocking for a 32 KiB L1 / 512 KiB-1 MiB L2 core: the 256 x 16 B sliver (16 KiB)
// stays in L1, the 144 x 256 A block (144 KiB) in L2, the 256 x 4080 B panel in L3.
// Compiled with -mavx2 -mfma only; selected at run time.
#include <immintrin.h>

#include "cpu/gemm_ukernel_simd.h"

namespace fastnn {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int width = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg x) { _mm256_storeu_ps(p, x); }
  static reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static bool any_nan(reg x) { return _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0; }
};

double fma_loop_avx2(int64_t iters) {
  alignas(32) float sink[8];
  return simd_fma_loop<Avx2, 12>(iters, sink) + sink[0] * 0.0;
}

}  // namespace

GemmKernelTable gemm_kernels_avx2() {
  //                                      MR  NR   MC   KC    NC
  static const GemmKernelInfo rows[] = {
      {Isa::avx2, 6, 16, 144, 256, 4080, simd_tile_kernels<Avx2, 6, 2>(), fma_loop_avx2},
      {Isa::avx2, 4, 24, 144, 192, 4080, simd_tile_kernels<Avx2, 4, 3>(), nullptr},
      {Isa::avx2, 12, 8, 144, 256, 4080, simd_tile_kernels<Avx2, 12, 1>(), nullptr}};
  return {rows, 3};
}

}  // namespace fastnn
