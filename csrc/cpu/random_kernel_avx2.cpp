// AVX2 build of the dropout-mask generator (random_simd.h): 8 Philox counters per group.
// Compiled with -mavx2 -mfma only; selected at run time.
#include <immintrin.h>

#include "cpu/random.h"
#include "cpu/random_simd.h"

namespace fastnn {
namespace {

struct Avx2 {
  using ireg = __m256i;
  static constexpr int width = 8;
  static ireg set1(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
  static ireg add(ireg a, ireg b) { return _mm256_add_epi32(a, b); }
  static ireg lane_index() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static ireg xor3(ireg a, ireg b, ireg c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
  // Each lane's 64-bit product with m, split: even lanes multiply in place, odd lanes shifted down.
  static void mul_wide(ireg x, ireg m, ireg* hi, ireg* lo) {
    const ireg even = _mm256_mul_epu32(x, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  }
  // w[q] holds word q of blocks 0..7; afterwards w[q] holds all four words of blocks 2q, 2q + 1.
  static void interleave4(ireg w[4]) {
    const ireg a = _mm256_unpacklo_epi32(w[0], w[1]), b = _mm256_unpackhi_epi32(w[0], w[1]);
    const ireg c = _mm256_unpacklo_epi32(w[2], w[3]), d = _mm256_unpackhi_epi32(w[2], w[3]);
    // e, f, g, h: blocks 4j, 4j + 1, 4j + 2, 4j + 3 in 128-bit lane j.
    const ireg e = _mm256_unpacklo_epi64(a, c), f = _mm256_unpackhi_epi64(a, c);
    const ireg g = _mm256_unpacklo_epi64(b, d), h = _mm256_unpackhi_epi64(b, d);
    w[0] = _mm256_permute2x128_si256(e, f, 0x20);
    w[1] = _mm256_permute2x128_si256(g, h, 0x20);
    w[2] = _mm256_permute2x128_si256(e, f, 0x31);
    w[3] = _mm256_permute2x128_si256(g, h, 0x31);
  }
  static void store_mask(float* out, ireg words, float p, float scale) {
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words, 8)), _mm256_set1_ps(1.0f / 16777216.0f));
    _mm256_storeu_ps(out, _mm256_and_ps(_mm256_cmp_ps(u, _mm256_set1_ps(p), _CMP_GE_OQ), _mm256_set1_ps(scale)));
  }
};

}  // namespace

const RandomKernels& random_kernels_avx2() {
  static const RandomKernels k{Avx2::width, simd_dropout_groups<Avx2>};
  return k;
}

}  // namespace fastnn
