// Portable reference micro-kernel: a 4 x 8 tile of C in plain loops. It is the
// fallback for CPUs without AVX2/FMA (and FASTNN_ISA=ref), and the slow twin the
// tests compare the SIMD kernels with. Compiled with the baseline flags only.
#include <cmath>

#include "cpu/gemm.h"

namespace fastnn {
namespace {

constexpr int MR = 4, NR = 8;

// The first M rows of the 4 x 8 tile (GemmKernelInfo::kernels[M]).
template <int M>
void ukernel_ref_4x8(int64_t k, const float* a, const float* b, int64_t rs_b, float* c, int64_t ldc,
                     const GemmTile& tile) {
  const float alpha = tile.alpha, beta = tile.beta;
  float acc[M][NR] = {};
  for (int64_t p = 0; p < k; ++p, a += M, b += rs_b)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];

  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < NR; ++j) {
      float x = alpha * acc[i][j];
      if (beta != 0.0f) x += beta * c[i * ldc + j];
      if (tile.last) {
        if (tile.bias_n) x += tile.bias_n[j];
        if (tile.bias_m) x += tile.bias_m[i];
        if (!std::isfinite(x)) *tile.nonfinite = 1;
        if (tile.relu && !(x > 0.0f)) x = 0.0f;
      }
      c[i * ldc + j] = x;
    }
  }
}

double fma_loop_ref(int64_t iters) {
  float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int64_t it = 0; it < iters; ++it)
    for (float& x : acc) x = x * 0.999999f + 1e-7f;
  volatile float sink = acc[0] + acc[7];
  (void)sink;
  return 2.0 * 8 * static_cast<double>(iters);
}

}  // namespace

GemmKernelTable gemm_kernels_ref() {
  static const GemmMicroKernel kernels[] = {nullptr, ukernel_ref_4x8<1>, ukernel_ref_4x8<2>, ukernel_ref_4x8<3>,
                                            ukernel_ref_4x8<4>};
  static const GemmKernelInfo rows[] = {{Isa::ref, MR, NR, 128, 256, 2048, kernels, fma_loop_ref}};
  return {rows, 1};
}

}  // namespace fastnn
