// AVX-512 build of the convolution row loops (conv_kernels_simd.h): 16 floats per vector, the
// partial last vector of a row through a lane mask. Compiled with -mavx512f only; selected at
// run time.
#include <immintrin.h>

#include "cpu/conv_kernels_simd.h"

namespace fastnn {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int width = 16;
  static __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store_n(float* p, reg x, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), x); }
  // Lanes [lo, hi) from p + lane, the others zero (and not read).
  static reg load_range(const float* p, int64_t lo, int64_t hi) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask(hi) & ~mask(lo)), p);
  }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static float sum(reg x) {  // a fixed order: halves, then quarters, ...
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
  }
};

}  // namespace

// Weight-gradient dot tiles of 4x4: the accumulators and one load per row fit the registers.
// Direct blocks of 8 channels x 2 vectors: 16 accumulators of the 32 registers.
// Channels across the lanes: column tiles of up to 14 (14 accumulators, a weight vector, a
// broadcast); weight-gradient tiles of up to 28 taps (5 rows of a 5x5 kernel, 7 of a 3x3).
// Row-dot tiles of 3 channels x 5 taps (15 accumulators, 5 input vectors, a gradient).
const ConvKernels& conv_kernels_avx512() { return conv_kernels_table<Avx512, 4, 4, 8, 14, 28, 3>(); }

}  // namespace fastnn
