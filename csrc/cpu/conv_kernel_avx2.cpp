// AVX2 + FMA build of the convolution row loops (conv_kernels_simd.h): 8 floats per vector, the
// partial last vector of a row through vmaskmovps. Compiled with -mavx2 -mfma only; selected at
// run time.
#include <immintrin.h>

#include "cpu/conv_kernels_simd.h"

namespace fastnn {
namespace {

alignas(32) const int32_t kLaneMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

struct Avx2 {
  using reg = __m256;
  static constexpr int width = 8;
  static __m256i mask(int64_t n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + 8 - n)); }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg x) { _mm256_storeu_ps(p, x); }
  static reg load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store_n(float* p, reg x, int64_t n) { _mm256_maskstore_ps(p, mask(n), x); }
  // Lanes [lo, hi) from p + lane, the others zero (and not read).
  static reg load_range(const float* p, int64_t lo, int64_t hi) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), lane),
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), lane));
    return _mm256_maskload_ps(p, in);
  }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static float sum(reg x) {  // a fixed order: halves, then pairs
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
  }
};

}  // namespace

// Weight-gradient dot tiles of 3x3: the accumulators and one load per row fit the registers.
// Direct blocks of 4 channels x 2 vectors: 8 accumulators of the 16 registers.
// Channels across the lanes: column tiles of up to 12, weight-gradient tiles of up to 12 taps.
// Row-dot tiles of 2 channels x up to 5 taps.
const ConvKernels& conv_kernels_avx2() { return conv_kernels_table<Avx2, 3, 3, 4, 12, 12, 2>(); }

}  // namespace fastnn
