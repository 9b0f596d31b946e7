// The convolution row loops (conv_kernels.h), written once over a small vector interface V
// (width, load/store, load_n/store_n for the first n < width lanes, fma, max, sum) and
// instantiated by conv_kernel_<isa>.cpp, each compiled with its own ISA flags. Everything here
// has internal linkage; including it anywhere else would leak wide instructions into baseline
// code.
//
// Rows are walked in vectors of V::width output columns, the last one partial through the
// masked load_n/store_n (masked lanes are neither read nor written), so a 10- or 16-wide row
// costs one or two vector operations instead of a call to memcpy or a scalar tail. Strided
// columns (sw > 1) take the plain scalar loops.
#pragma once
#include <array>
#include <cstdint>
#include <utility>

#include "cpu/conv_kernels.h"

namespace fastnn {
namespace {

template <class V>
void gather_rows_simd(float* dst, int64_t dst_step, const float* src, int64_t src_step, int64_t sw, int64_t rows,
                      int64_t Q) {
  constexpr int W = V::width;
  for (int64_t p = 0; p < rows; ++p, dst += dst_step, src += src_step) {
    if (sw == 1) {
      int64_t q = 0;
      for (; q + W <= Q; q += W) V::store(dst + q, V::load(src + q));
      if (q < Q) V::store_n(dst + q, V::load_n(src + q, Q - q), Q - q);
    } else {
      for (int64_t q = 0; q < Q; ++q) dst[q] = src[q * sw];
    }
  }
}

template <class V>
void scatter_add_rows_simd(float* dst, const float* src, int64_t row_step, int64_t sw, int64_t rows, int64_t Q) {
  constexpr int W = V::width;
  for (int64_t p = 0; p < rows; ++p, dst += row_step, src += Q) {
    if (sw == 1) {
      int64_t q = 0;
      for (; q + W <= Q; q += W) V::store(dst + q, V::add(V::load(dst + q), V::load(src + q)));
      if (q < Q) {
        const int64_t n = Q - q;
        V::store_n(dst + q, V::add(V::load_n(dst + q, n), V::load_n(src + q, n)), n);
      }
    } else {
      for (int64_t q = 0; q < Q; ++q) dst[q * sw] += src[q];
    }
  }
}

template <class V>
void col2im_plane_simd(float* dx, int64_t H, int64_t W, const float* col, int64_t tap_step, int64_t P, int64_t Q,
                       int64_t R, int64_t S, int64_t dh, int64_t dw, int64_t oy, int64_t ox, bool accumulate) {
  constexpr int VW = V::width;
  for (int64_t ih = 0; ih < H; ++ih, dx += W) {
    for (int64_t j = 0; j < W; j += VW) {
      const int64_t n = W - j < VW ? W - j : VW;
      typename V::reg acc = !accumulate ? V::zero() : n == VW ? V::load(dx + j) : V::load_n(dx + j, n);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t p = ih + oy - r * dh;
        if (p < 0 || p >= P) continue;
        const float* row = col + r * S * tap_step + p * Q;
        for (int64_t s = 0; s < S; ++s) {
          const int64_t off = j + ox - s * dw;  // q of the first lane
          const int64_t lo = off < 0 ? -off : 0, hi = Q - off < n ? Q - off : n;
          if (lo >= hi) continue;
          acc = V::add(acc, lo == 0 && hi == VW ? V::load(row + s * tap_step + off)
                                                : V::load_range(row + s * tap_step + off, lo, hi));
        }
      }
      if (n == VW)
        V::store(dx + j, acc);
      else
        V::store_n(dx + j, acc, n);
    }
  }
}

template <class V, int MR, int NR>
void dot_tile_simd(float* c, int64_t ldc, int m, int n, const float* a, int64_t lda, int64_t a_seg, const float* b,
                   int64_t ldb, int64_t b_seg, int64_t segments, int64_t len, bool accumulate) {
  constexpr int W = V::width;
  typename V::reg acc[MR][NR];
  const float* ar[MR];
  const float* br[NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    ar[i] = a + (i < m ? i : m - 1) * lda;  // rows past the edge repeat the last one, unstored
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = V::zero();
  }
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) br[j] = b + (j < n ? j : n - 1) * ldb;
  for (int64_t g = 0; g < segments; ++g) {
    int64_t l = 0;
    for (; l + W <= len; l += W) {
      typename V::reg bv[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) bv[j] = V::load(br[j] + l);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const typename V::reg av = V::load(ar[i] + l);
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
      }
    }
    if (l < len) {
      const int64_t k = len - l;
      typename V::reg bv[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) bv[j] = V::load_n(br[j] + l, k);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const typename V::reg av = V::load_n(ar[i] + l, k);
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) ar[i] += a_seg;
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) br[j] += b_seg;
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      const float sum = V::sum(acc[i][j]);
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
    }
}

// Stride 1 with an R x S kernel known at compile time: the taps' weights stay in registers.
template <class V, int R, int S>
void depthwise_forward_fixed(float* o, const float* padded, const float* w, float bias, bool relu, bool accumulate,
                             const ConvTaps& t) {
  constexpr int W = V::width;
  typename V::reg wv[R * S];
#pragma GCC unroll 49
  for (int j = 0; j < R * S; ++j) wv[j] = V::set1(w[j]);
  for (int64_t p = 0; p < t.P; ++p, o += t.Q) {
    const float* row0 = padded + p * t.sh * t.Wp;
    for (int64_t q = 0; q < t.Q; q += W) {
      const int64_t n = t.Q - q < W ? t.Q - q : W;
      typename V::reg acc = !accumulate ? V::set1(bias) : n == W ? V::load(o + q) : V::load_n(o + q, n);
#pragma GCC unroll 7
      for (int r = 0; r < R; ++r) {
        const float* x = row0 + r * t.dh * t.Wp + q;
#pragma GCC unroll 7
        for (int s = 0; s < S; ++s)
          acc = V::fma(wv[r * S + s], n == W ? V::load(x + s * t.dw) : V::load_n(x + s * t.dw, n), acc);
      }
      if (relu) acc = V::max(acc, V::zero());
      if (n == W)
        V::store(o + q, acc);
      else
        V::store_n(o + q, acc, n);
    }
  }
}

template <class V>
void depthwise_forward_simd(float* o, const float* padded, const float* w, float bias, bool relu, bool accumulate,
                            const ConvTaps& t) {
  constexpr int W = V::width;
  if (t.sw == 1 && t.R == 3 && t.S == 3) return depthwise_forward_fixed<V, 3, 3>(o, padded, w, bias, relu, accumulate, t);
  if (t.sw == 1 && t.R == 5 && t.S == 5) return depthwise_forward_fixed<V, 5, 5>(o, padded, w, bias, relu, accumulate, t);
  for (int64_t p = 0; p < t.P; ++p, o += t.Q) {
    const float* row0 = padded + p * t.sh * t.Wp;
    if (t.sw == 1) {
      for (int64_t q = 0; q < t.Q; q += W) {  // one vector of outputs, kept in a register over the taps
        const int64_t n = t.Q - q < W ? t.Q - q : W;
        typename V::reg acc = !accumulate ? V::set1(bias) : n == W ? V::load(o + q) : V::load_n(o + q, n);
        for (int64_t r = 0; r < t.R; ++r) {
          const float* x = row0 + r * t.dh * t.Wp + q;
          for (int64_t s = 0; s < t.S; ++s) {
            const typename V::reg in = n == W ? V::load(x + s * t.dw) : V::load_n(x + s * t.dw, n);
            acc = V::fma(V::set1(w[r * t.S + s]), in, acc);
          }
        }
        if (relu) acc = V::max(acc, V::zero());
        if (n == W)
          V::store(o + q, acc);
        else
          V::store_n(o + q, acc, n);
      }
    } else {
      for (int64_t q = 0; q < t.Q; ++q) {
        float acc = accumulate ? o[q] : bias;
        for (int64_t r = 0; r < t.R; ++r)
          for (int64_t s = 0; s < t.S; ++s) acc += w[r * t.S + s] * row0[r * t.dh * t.Wp + q * t.sw + s * t.dw];
        o[q] = relu && !(acc > 0.0f) ? 0.0f : acc;
      }
    }
  }
}

template <class V>
void depthwise_backward_input_simd(float* padded, const float* dy, const float* w, const ConvTaps& t) {
  constexpr int W = V::width;
  for (int64_t p = 0; p < t.P; ++p, dy += t.Q) {
    float* row0 = padded + p * t.sh * t.Wp;
    if (t.sw == 1) {
      for (int64_t q = 0; q < t.Q; q += W) {
        const int64_t n = t.Q - q < W ? t.Q - q : W;
        const typename V::reg g = n == W ? V::load(dy + q) : V::load_n(dy + q, n);
        for (int64_t r = 0; r < t.R; ++r) {
          float* x = row0 + r * t.dh * t.Wp + q;
          for (int64_t s = 0; s < t.S; ++s) {
            float* d = x + s * t.dw;
            if (n == W)
              V::store(d, V::fma(V::set1(w[r * t.S + s]), g, V::load(d)));
            else
              V::store_n(d, V::fma(V::set1(w[r * t.S + s]), g, V::load_n(d, n)), n);
          }
        }
      }
    } else {
      for (int64_t q = 0; q < t.Q; ++q)
        for (int64_t r = 0; r < t.R; ++r)
          for (int64_t s = 0; s < t.S; ++s) row0[r * t.dh * t.Wp + q * t.sw + s * t.dw] += w[r * t.S + s] * dy[q];
    }
  }
}

template <class V>
void depthwise_backward_weight_simd(double* acc, const float* dy, const float* padded, const ConvTaps& t) {
  constexpr int W = V::width;
  for (int64_t r = 0; r < t.R; ++r) {
    for (int64_t s = 0; s < t.S; ++s) {
      if (t.sw == 1) {
        typename V::reg sum = V::zero();
        for (int64_t p = 0; p < t.P; ++p) {
          const float* g = dy + p * t.Q;
          const float* x = padded + (p * t.sh + r * t.dh) * t.Wp + s * t.dw;
          int64_t q = 0;
          for (; q + W <= t.Q; q += W) sum = V::fma(V::load(g + q), V::load(x + q), sum);
          if (q < t.Q) sum = V::fma(V::load_n(g + q, t.Q - q), V::load_n(x + q, t.Q - q), sum);
        }
        acc[r * t.S + s] += static_cast<double>(V::sum(sum));
      } else {
        float sum = 0.0f;
        for (int64_t p = 0; p < t.P; ++p) {
          const float* x = padded + (p * t.sh + r * t.dh) * t.Wp + s * t.dw;
          for (int64_t q = 0; q < t.Q; ++q) sum += dy[p * t.Q + q] * x[q * t.sw];
        }
        acc[r * t.S + s] += static_cast<double>(sum);
      }
    }
  }
}

// KB output channels x NV vectors of output columns, in registers over all the taps; the last
// vector holds n_last columns (masked when fewer than the width).
template <class V, int KB, int NV>
void direct_block(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, int64_t K,
                  const float* bias, int64_t C, int64_t n_last, bool relu, const ConvTaps& t) {
  constexpr int W = V::width;
  typename V::reg acc[KB][NV];
#pragma GCC unroll 8
  for (int kk = 0; kk < KB; ++kk) {
    const typename V::reg b = bias ? V::set1(bias[kk]) : V::zero();
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[kk][v] = b;
  }
  const bool full = n_last == W;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t r = 0; r < t.R; ++r) {
      const float* xr = x + c * x_step + r * t.dh * t.Wp;
      const float* wr = wt + (c * t.R + r) * t.S * K;
      for (int64_t s = 0; s < t.S; ++s) {
        const float* xs = xr + s * t.dw;
        typename V::reg xv[NV];
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v)
          xv[v] = v < NV - 1 || full ? V::load(xs + v * W) : V::load_n(xs + v * W, n_last);
        const float* ws = wr + s * K;
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; ++kk) {
          const typename V::reg wv = V::set1(ws[kk]);
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) acc[kk][v] = V::fma(wv, xv[v], acc[kk][v]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int kk = 0; kk < KB; ++kk) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const typename V::reg y = relu ? V::max(acc[kk][v], V::zero()) : acc[kk][v];
      if (v < NV - 1 || full)
        V::store(o + kk * o_step + v * W, y);
      else
        V::store_n(o + kk * o_step + v * W, y, n_last);
    }
  }
}

template <class V, int KB>
void direct_channels(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, int64_t K,
                     const float* bias, int64_t C, int nv, int64_t n_last, bool relu, const ConvTaps& t) {
  if (nv == 2)
    direct_block<V, KB, 2>(o, o_step, x, x_step, wt, K, bias, C, n_last, relu, t);
  else
    direct_block<V, KB, 1>(o, o_step, x, x_step, wt, K, bias, C, n_last, relu, t);
}

// One output row: column blocks of two vectors (one for a short remainder), channel blocks of
// KB_MAX, then 4, 2, 1 for the rest.
template <class V, int KB_MAX>
void direct_row_simd(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, const float* bias,
                     int64_t K, int64_t C, bool relu, const ConvTaps& t) {
  constexpr int W = V::width;
  for (int64_t q = 0; q < t.Q; q += 2 * W) {
    const int64_t rem = t.Q - q;
    const int nv = rem > W ? 2 : 1;
    const int64_t n_last = nv == 2 ? (rem - W < W ? rem - W : W) : rem;
    for (int64_t k = 0; k < K;) {
      const int64_t left = K - k;
      float* ok = o + k * o_step + q;
      const float* bk = bias ? bias + k : nullptr;
      if (left >= KB_MAX) {
        direct_channels<V, KB_MAX>(ok, o_step, x + q, x_step, wt + k, K, bk, C, nv, n_last, relu, t);
        k += KB_MAX;
      } else if (KB_MAX > 4 && left >= 4) {
        direct_channels<V, 4>(ok, o_step, x + q, x_step, wt + k, K, bk, C, nv, n_last, relu, t);
        k += 4;
      } else if (left >= 2) {
        direct_channels<V, 2>(ok, o_step, x + q, x_step, wt + k, K, bk, C, nv, n_last, relu, t);
        k += 2;
      } else {
        direct_channels<V, 1>(ok, o_step, x + q, x_step, wt + k, K, bk, C, nv, n_last, relu, t);
        k += 1;
      }
    }
  }
}

// ---- output channels across the lanes ---------------------------------------------------
// NQ columns of one output row x one vector of kb channels, in registers over every tap; each
// tap is one vector of weights and NQ broadcasts of input values. The lanes are transposed into
// the NCHW rows at the end (a store per output, against C * R * S FMAs for it).
template <class V, int NQ>
void pixels_block(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, int64_t K, int64_t kb,
                  const float* bias, int64_t C, bool relu, const ConvTaps& t) {
  constexpr int W = V::width;
  const bool full = kb == W;
  typename V::reg acc[NQ];
  const typename V::reg b = !bias ? V::zero() : full ? V::load(bias) : V::load_n(bias, kb);
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) acc[j] = b;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t r = 0; r < t.R; ++r) {
      const float* xr = x + c * x_step + r * t.dh * t.Wp;
      const float* wr = wt + (c * t.R + r) * t.S * K;
      for (int64_t s = 0; s < t.S; ++s) {
        const float* xs = xr + s * t.dw;
        const typename V::reg wv = full ? V::load(wr + s * K) : V::load_n(wr + s * K, kb);
#pragma GCC unroll 16
        for (int j = 0; j < NQ; ++j) acc[j] = V::fma(wv, V::set1(xs[j]), acc[j]);
      }
    }
  }
  alignas(64) float lanes[W];
#pragma GCC unroll 16
  for (int j = 0; j < NQ; ++j) {
    V::store(lanes, relu ? V::max(acc[j], V::zero()) : acc[j]);
    for (int64_t kk = 0; kk < kb; ++kk) o[kk * o_step + j] = lanes[kk];
  }
}

using PixelsBlock = void (*)(float*, int64_t, const float*, int64_t, const float*, int64_t, int64_t, const float*,
                             int64_t, bool, const ConvTaps&);

template <class V, size_t... I>
constexpr std::array<PixelsBlock, sizeof...(I)> pixels_blocks(std::index_sequence<I...>) {
  return {pixels_block<V, static_cast<int>(I) + 1>...};
}

// One output row in column tiles as even as possible (28 = 14 + 14, 10 = 10), at most NQ_MAX
// each, then vectors of channels, the last one masked.
template <class V, int NQ_MAX>
void pixels_row_simd(float* o, int64_t o_step, const float* x, int64_t x_step, const float* wt, const float* bias,
                     int64_t K, int64_t C, bool relu, const ConvTaps& t) {
  constexpr int W = V::width;
  static constexpr std::array<PixelsBlock, NQ_MAX> blocks = pixels_blocks<V>(std::make_index_sequence<NQ_MAX>());
  const int64_t tiles = (t.Q + NQ_MAX - 1) / NQ_MAX;
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t q0 = t.Q * i / tiles, nq = t.Q * (i + 1) / tiles - q0;
    for (int64_t k = 0; k < K; k += W)
      blocks[nq - 1](o + k * o_step + q0, o_step, x + q0, x_step, wt + k, K, K - k < W ? K - k : W,
                     bias ? bias + k : nullptr, C, relu, t);
  }
}

// Kernel rows [r0, r0 + RT) x the S taps of each, all in registers over every pixel of the plane.
template <class V, int S, int RT>
void weight_rows_block(float* dwt, const float* x, const float* dyt, int64_t K, int64_t kb, int64_t r0,
                       bool accumulate, const ConvTaps& t) {
  constexpr int W = V::width;
  const bool full = kb == W;
  typename V::reg acc[RT][S];
#pragma GCC unroll 8
  for (int rr = 0; rr < RT; ++rr)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      float* d = dwt + ((r0 + rr) * S + s) * K;
      acc[rr][s] = !accumulate ? V::zero() : full ? V::load(d) : V::load_n(d, kb);
    }
  for (int64_t p = 0; p < t.P; ++p) {
    const float* xr[RT];
#pragma GCC unroll 8
    for (int rr = 0; rr < RT; ++rr) xr[rr] = x + (p * t.sh + (r0 + rr) * t.dh) * t.Wp;
    const float* dy = dyt + p * t.Q * K;
    for (int64_t q = 0; q < t.Q; ++q) {
      const typename V::reg g = full ? V::load(dy + q * K) : V::load_n(dy + q * K, kb);
#pragma GCC unroll 8
      for (int rr = 0; rr < RT; ++rr)
#pragma GCC unroll 8
        for (int s = 0; s < S; ++s) acc[rr][s] = V::fma(g, V::set1(xr[rr][q + s]), acc[rr][s]);
    }
  }
#pragma GCC unroll 8
  for (int rr = 0; rr < RT; ++rr)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      float* d = dwt + ((r0 + rr) * S + s) * K;
      if (full)
        V::store(d, acc[rr][s]);
      else
        V::store_n(d, acc[rr][s], kb);
    }
}

using WeightRowsBlock = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                                 const ConvTaps&);

template <class V, int S, size_t... I>
constexpr std::array<WeightRowsBlock, sizeof...(I)> weight_rows_blocks(std::index_sequence<I...>) {
  return {weight_rows_block<V, S, static_cast<int>(I) + 1>...};
}

// As many kernel rows at a time as ACC accumulators hold (ACC / S, at most 7).
template <class V, int S, int ACC>
void weight_channel_fixed(float* dwt, const float* x, const float* dyt, int64_t K, int64_t kb, bool accumulate,
                          const ConvTaps& t) {
  constexpr int RT_MAX = ACC / S < 7 ? ACC / S : 7;
  static_assert(RT_MAX >= 1, "too few accumulators for a row of taps");
  static constexpr std::array<WeightRowsBlock, RT_MAX> blocks =
      weight_rows_blocks<V, S>(std::make_index_sequence<RT_MAX>());
  for (int64_t r0 = 0; r0 < t.R; r0 += RT_MAX) {
    const int64_t rt = t.R - r0 < RT_MAX ? t.R - r0 : RT_MAX;
    blocks[rt - 1](dwt, x, dyt, K, kb, r0, accumulate, t);
  }
}

template <class V, int ACC>
void weight_channel_simd(float* dwt, const float* x, const float* dyt, int64_t K, int64_t kb, bool accumulate,
                         const ConvTaps& t) {
  if (t.S == 3)
    weight_channel_fixed<V, 3, ACC>(dwt, x, dyt, K, kb, accumulate, t);
  else
    weight_channel_fixed<V, 5, ACC>(dwt, x, dyt, K, kb, accumulate, t);  // the caller allows only 3 and 5
}

// ---- weight gradient, columns across the lanes, no im2col ------------------------------------
// KB output channels x the S taps of one kernel row r, each a vector of partial sums along the
// output rows, in registers over the image; then each sum's lanes added into dw. Channels past
// kb repeat the last one, unstored.
// One vector of columns: the S shifted input vectors, then each channel's gradient vector
// against them. FULL: all lanes (else the first n, the others zero). A separate function per
// FULL, so that the accumulators stay in registers (with a load chosen per vector inside the
// loop, gcc kept them in memory).
template <class V, int S, int KB, bool FULL>
inline void row_dots_step(typename V::reg (&acc)[KB][S], const float* x, const float* const (&dk)[KB], int64_t off,
                          int64_t n) {
  typename V::reg xv[S];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s) xv[s] = FULL ? V::load(x + s) : V::load_n(x + s, n);
#pragma GCC unroll 8
  for (int i = 0; i < KB; ++i) {
    const typename V::reg g = FULL ? V::load(dk[i] + off) : V::load_n(dk[i] + off, n);
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) acc[i][s] = V::fma(g, xv[s], acc[i][s]);
  }
}

template <class V, int S, int KB>
void weight_row_dots_fixed(float* dw, int64_t dw_step, const float* dy, int64_t dy_step, int64_t kb, const float* x,
                           int64_t r, const ConvTaps& t) {
  constexpr int W = V::width;
  typename V::reg acc[KB][S];
#pragma GCC unroll 8
  for (int i = 0; i < KB; ++i)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) acc[i][s] = V::zero();
  const float* dk[KB];
#pragma GCC unroll 8
  for (int i = 0; i < KB; ++i) dk[i] = dy + (i < kb ? i : kb - 1) * dy_step;
  // The full vectors of every row, then the partial last vectors of every row: two passes, so
  // that no row switches between the two loads (gcc then spilled the accumulators every row).
  const int64_t q_full = t.Q / W * W, q_tail = t.Q - q_full;
  for (int64_t p = 0; p < t.P; ++p) {
    const float* xr = x + (p * t.sh + r * t.dh) * t.Wp;
    for (int64_t q = 0; q < q_full; q += W) row_dots_step<V, S, KB, true>(acc, xr + q, dk, p * t.Q + q, W);
  }
  if (q_tail)
    for (int64_t p = 0; p < t.P; ++p)
      row_dots_step<V, S, KB, false>(acc, x + (p * t.sh + r * t.dh) * t.Wp + q_full, dk, p * t.Q + q_full, q_tail);
  for (int64_t i = 0; i < kb; ++i)
    for (int s = 0; s < S; ++s) dw[i * dw_step + s] += V::sum(acc[i][s]);
}

template <class V, int KB>
void weight_row_dots_simd(float* dw, int64_t dw_step, const float* dy, int64_t dy_step, int64_t kb, const float* x,
                          int64_t r, const ConvTaps& t) {
  if (t.S == 3)
    weight_row_dots_fixed<V, 3, KB>(dw, dw_step, dy, dy_step, kb, x, r, t);
  else
    weight_row_dots_fixed<V, 5, KB>(dw, dw_step, dy, dy_step, kb, x, r, t);  // the caller allows only 3 and 5
}

// PIXELS_NQ: the widest column tile of pixels_row; WEIGHT_ACC: the accumulators of
// weight_channel's tiles (0: no weight_channel).
// ROW_DOTS_KB: weight_row_dots' channels per tile.
template <class V, int DOT_MR, int DOT_NR, int DIRECT_KB, int PIXELS_NQ, int WEIGHT_ACC, int ROW_DOTS_KB>
const ConvKernels& conv_kernels_table() {
  static const ConvKernels k = {gather_rows_simd<V>,
                                scatter_add_rows_simd<V>,
                                col2im_plane_simd<V>,
                                dot_tile_simd<V, DOT_MR, DOT_NR>,
                                DOT_MR,
                                DOT_NR,
                                direct_row_simd<V, DIRECT_KB>,
                                DIRECT_KB,
                                depthwise_forward_simd<V>,
                                depthwise_backward_input_simd<V>,
                                depthwise_backward_weight_simd<V>,
                                pixels_row_simd<V, PIXELS_NQ>,
                                PIXELS_NQ,
                                WEIGHT_ACC > 0 ? weight_channel_simd<V, (WEIGHT_ACC > 0 ? WEIGHT_ACC : 5)> : nullptr,
                                V::width,
                                WEIGHT_ACC > 0 ? weight_row_dots_simd<V, ROW_DOTS_KB> : nullptr,
                                ROW_DOTS_KB};
  return k;
}

}  // namespace
}  // namespace fastnn
