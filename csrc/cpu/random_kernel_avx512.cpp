// AVX-512F build of the dropout-mask generator (random_simd.h): 16 Philox counters per group.
// Compiled with -mavx512f only; selected at run time.
#include <immintrin.h>

#include "cpu/random.h"
#include "cpu/random_simd.h"

namespace fastnn {
namespace {

struct Avx512 {
  using ireg = __m512i;
  static constexpr int width = 16;
  static ireg set1(uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
  static ireg add(ireg a, ireg b) { return _mm512_add_epi32(a, b); }
  static ireg lane_index() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static ireg xor3(ireg a, ireg b, ireg c) { return _mm512_xor_si512(_mm512_xor_si512(a, b), c); }
  // Each lane's 64-bit product with m, split: even lanes multiply in place, odd lanes shifted down.
  static void mul_wide(ireg x, ireg m, ireg* hi, ireg* lo) {
    const ireg even = _mm512_mul_epu32(x, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  }
  // w[q] holds word q of blocks 0..15; afterwards w[q] holds all four words of blocks 4q..4q+3.
  static void interleave4(ireg w[4]) {
    const ireg a = _mm512_unpacklo_epi32(w[0], w[1]), b = _mm512_unpackhi_epi32(w[0], w[1]);
    const ireg c = _mm512_unpacklo_epi32(w[2], w[3]), d = _mm512_unpackhi_epi32(w[2], w[3]);
    // e, f, g, h: blocks 4j, 4j + 1, 4j + 2, 4j + 3 in 128-bit lane j; then a 4 x 4 lane transpose.
    const ireg e = _mm512_unpacklo_epi64(a, c), f = _mm512_unpackhi_epi64(a, c);
    const ireg g = _mm512_unpacklo_epi64(b, d), h = _mm512_unpackhi_epi64(b, d);
    const ireg ef01 = _mm512_shuffle_i32x4(e, f, 0x44), gh01 = _mm512_shuffle_i32x4(g, h, 0x44);
    const ireg ef23 = _mm512_shuffle_i32x4(e, f, 0xEE), gh23 = _mm512_shuffle_i32x4(g, h, 0xEE);
    w[0] = _mm512_shuffle_i32x4(ef01, gh01, 0x88);
    w[1] = _mm512_shuffle_i32x4(ef01, gh01, 0xDD);
    w[2] = _mm512_shuffle_i32x4(ef23, gh23, 0x88);
    w[3] = _mm512_shuffle_i32x4(ef23, gh23, 0xDD);
  }
  static void store_mask(float* out, ireg words, float p, float scale) {
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(words, 8)), _mm512_set1_ps(1.0f / 16777216.0f));
    _mm512_storeu_ps(out, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, _mm512_set1_ps(p), _CMP_GE_OQ), _mm512_set1_ps(scale)));
  }
};

}  // namespace

const RandomKernels& random_kernels_avx512() {
  static const RandomKernels k{Avx512::width, simd_dropout_groups<Avx512>};
  return k;
}

}  // namespace fastnn
