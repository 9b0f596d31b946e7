// Portable build of the convolution row loops (conv_kernels_simd.h) with a one-float "vector":
// baseline flags only, the fallback on any CPU and the slow twin the tests compare the wide
// builds with (FASTNN_ISA=ref).
#include "cpu/conv_kernels_simd.h"

namespace fastnn {
namespace {

struct Scalar {
  using reg = float;
  static constexpr int width = 1;
  static reg zero() { return 0.0f; }
  static reg set1(float x) { return x; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg x) { *p = x; }
  static reg load_n(const float* p, int64_t) { return *p; }  // never called: width 1 leaves no tail
  static void store_n(float* p, reg x, int64_t) { *p = x; }
  static reg load_range(const float* p, int64_t lo, int64_t hi) { return lo <= 0 && 0 < hi ? *p : 0.0f; }
  static reg add(reg a, reg b) { return a + b; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static float sum(reg x) { return x; }
};

}  // namespace

// Weight-gradient dot tiles of 2x2: the accumulators and one load per row fit the registers.
// With one-float vectors, channels across the lanes gain nothing: no weight_channel or
// weight_row_dots.
const ConvKernels& conv_kernels_ref() { return conv_kernels_table<Scalar, 2, 2, 4, 4, 0, 1>(); }

}  // namespace fastnn
