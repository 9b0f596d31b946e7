// The register-tile micro-kernel, written once over a small vector interface V
// (load, store, broadcast, fma, ...) and instantiated by gemm_kernel_avx2.cpp and
// gemm_kernel_avx512.cpp, each compiled with its own ISA flags. Including this
// header in any other file would leak wide instructions into baseline code.
//
// Tile: MR rows x NV vectors of V::width floats. Per k step: NV loads of B,
// MR broadcasts of A, MR*NV FMAs into MR*NV accumulator registers.
#pragma once
#include <cstdint>
#include <utility>

#include "cpu/gemm.h"

namespace fastnn {

template <class V, int MR, int NV>
inline void simd_ukernel(int64_t k, const float* a, const float* b, int64_t rs_b, float* c, int64_t ldc,
                         const GemmTile& tile) {
  constexpr int W = V::width;
  // C rows are far apart in memory: start fetching them now, not at the store.
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NV * W - 1, 1);
  }
  typename V::reg acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();

#pragma GCC unroll 2
  for (int64_t p = 0; p < k; ++p) {
    typename V::reg bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * W);
    __builtin_prefetch(a + 8 * MR);  // the A sliver streams from L2
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      typename V::reg ai = V::broadcast(a + i);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
    }
    a += MR;
    b += rs_b;
  }

  const float beta = tile.beta;
  const typename V::reg va = V::set1(tile.alpha), vb = V::set1(beta);
  typename V::reg bias_n[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) bias_n[v] = (tile.last && tile.bias_n) ? V::load(tile.bias_n + v * W) : V::zero();
  typename V::reg bad = V::zero();  // x * 0 is 0 for finite x and NaN otherwise
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    const typename V::reg bias_m = (tile.last && tile.bias_m) ? V::set1(tile.bias_m[i]) : V::zero();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      typename V::reg x = V::mul(va, acc[i][v]);
      if (beta != 0.0f) x = V::fma(vb, V::load(ci + v * W), x);
      if (tile.last) {
        x = V::add(V::add(x, bias_n[v]), bias_m);
        bad = V::add(bad, V::mul(x, V::zero()));
        if (tile.relu) x = V::max(x, V::zero());
      }
      V::store(ci + v * W, x);
    }
  }
  if (tile.last && V::any_nan(bad)) *tile.nonfinite = 1;
}

// A tile's kernels for 1 .. MR rows (GemmKernelInfo::kernels): kernels[m] is simd_ukernel with
// m rows, so its packed A has m values per k step.
template <class V, int NV, int... M>
const GemmMicroKernel* simd_tile_kernel_array(std::integer_sequence<int, M...>) {
  static const GemmMicroKernel kernels[] = {nullptr, &simd_ukernel<V, M + 1, NV>...};
  return kernels;
}

template <class V, int MR, int NV>
const GemmMicroKernel* simd_tile_kernels() {
  return simd_tile_kernel_array<V, NV>(std::make_integer_sequence<int, MR>());
}

// Peak probe: 2 * NACC independent FMA chains, enough to cover FMA latency
// on both FMA ports. Returns the FLOPs done.
template <class V, int NACC>
inline double simd_fma_loop(int64_t iters, float* sink) {
  typename V::reg acc[NACC];
  const typename V::reg m = V::set1(0.999999f), s = V::set1(1e-7f);
#pragma GCC unroll 16
  for (int i = 0; i < NACC; ++i) acc[i] = V::set1(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < NACC; ++i) acc[i] = V::fma(acc[i], m, s);
  }
  typename V::reg total = V::zero();
#pragma GCC unroll 16
  for (int i = 0; i < NACC; ++i) total = V::add(total, acc[i]);
  V::store(sink, total);
  return 2.0 * V::width * NACC * static_cast<double>(iters);
}

}  // namespace fastnn
