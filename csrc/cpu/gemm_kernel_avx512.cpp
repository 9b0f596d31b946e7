// AVX-512F micro-kernels: 24 zmm accumulators each, shaped 12 x 32 (12 rows x 2
// vectors of 16; the general tile), 8 x 48 and 6 x 64 (for M = 8, 16 or 6, 12:
// the output channels of small convolutions), 24 x 16 (for N <= 16: a classifier's
// 10 outputs), plus the B vectors and 1 zmm for the broadcast of A.
// Blocking for a 32-48 KiB L1 / 1-2 MiB L2 core. The small-M tiles (8 x 48, 6 x 64,
// 24 x 16): the KC x NR B sliver (24-32 KiB) stays in L1, the MC x KC A block
// (120-180 KiB) in L2, the KC x NC B panel in L3. The general 12 x 32 tile takes
// K in blocks of 512: each block loads and stores C once, so fewer blocks move less
// C (a 12 x 512 A sliver is 24 KiB of L1 in the tall-C order, see gemm.cpp), and N
// in panels of 2048, so a tall C's A blocks, packed once per panel, are packed once up
// to that width. On a Zen 5 core, KC 192 -> 512 and NC 3072 -> 1024 took n = 2048 from
// 373-375 to 403-426 GFLOP/s on 2 threads (the LSTM's weight-gradient shape,
// 192 x 512 x 6400, from 306-342 to 326-357); NC 1024 -> 2048 then added 2-3% at
// n = 2048 (one packing of A instead of two).
// Compiled with -mavx512f only; selected at run time.
#include <immintrin.h>

#include "cpu/gemm_ukernel_simd.h"

namespace fastnn {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int width = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static bool any_nan(reg x) { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) != 0; }
};

double fma_loop_avx512(int64_t iters) {
  alignas(64) float sink[16];
  return simd_fma_loop<Avx512, 16>(iters, sink) + sink[0] * 0.0;
}

}  // namespace

GemmKernelTable gemm_kernels_avx512() {
  //                                        MR  NR   MC   KC    NC
  static const GemmKernelInfo rows[] = {
      {Isa::avx512, 12, 32, 240, 512, 2048, simd_tile_kernels<Avx512, 12, 2>(), fma_loop_avx512},
      {Isa::avx512, 8, 48, 240, 160, 3072, simd_tile_kernels<Avx512, 8, 3>(), nullptr},
      {Isa::avx512, 6, 64, 240, 128, 3072, simd_tile_kernels<Avx512, 6, 4>(), nullptr},
      {Isa::avx512, 24, 16, 240, 256, 3072, simd_tile_kernels<Avx512, 24, 1>(), nullptr}};
  return {rows, 4};
}

}  // namespace fastnn
