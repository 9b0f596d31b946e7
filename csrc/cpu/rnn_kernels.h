// The pointwise loops of the recurrent kernels (see rnn.h for the algorithm and the threading),
// written once as plain branch-free loops over __restrict pointers and compiled by
// rnn_kernel_ref.cpp, rnn_kernel_avx2.cpp and rnn_kernel_avx512.cpp, each with its own ISA
// flags. Everything here has internal linkage, so every including file gets its own copy;
// including it anywhere else would leak wide instructions into baseline code. The three files
// are compiled with -fno-trapping-math: without it gcc keeps the clamps and selects below as
// branches unless AVX-512 masks are available, and the loops stay scalar (4-10x slower).
//
// exp is our own: a libm call would stop the vectorizer. x = n ln2 + r with n = round(x / ln2)
// (by the 1.5 * 2^23 shifter), |r| <= ln2 / 2, e^r by its Taylor polynomial to degree 7
// (truncation error < 1e-8 relative), 2^n built in the exponent bits. The argument is clamped to
// [-87, 80], so 2^n stays a normal number and 1 + e^x cannot overflow; NaN passes through.
// sigmoid(x) = 1 / (1 + e^-x) and tanh(x) = 1 - 2 / (1 + e^2x) follow (absolute error a few
// 1e-8; tanh of a tiny x is accurate to ~1e-7 absolute, not relative).
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu/rnn.h"

namespace fastnn {
namespace {

inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;  // comparisons are false for NaN: it passes through
  x = x > 80.0f ? 80.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693145751953125f;   // ln2, high part (exact in float)
  r = r - n * 1.42860682030941723e-6f;     // ln2, low part
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) * (1 << 23);
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_approx(float x) { return 1.0f - 2.0f / (1.0f + exp_approx(2.0f * x)); }

// ---- LSTM ----------------------------------------------------------------------------------
// a = x part (g, gate stride H) + recurrent part (hg, gate stride hs); g gets the activations.
template <bool Y>
void lstm_forward_loop(float* __restrict gi, float* __restrict gf, float* __restrict gg, float* __restrict go,
                       const float* __restrict hi, const float* __restrict hf, const float* __restrict hgg,
                       const float* __restrict ho, float* __restrict c, float* __restrict h, float* __restrict y,
                       const float* __restrict c_prev, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float i = sigmoid_approx(gi[j] + hi[j]), f = sigmoid_approx(gf[j] + hf[j]);
    const float g = tanh_approx(gg[j] + hgg[j]), o = sigmoid_approx(go[j] + ho[j]);
    const float cj = f * c_prev[j] + i * g;
    const float hj = o * tanh_approx(cj);
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    c[j] = cj;
    h[j] = hj;
    if (Y) y[j] = hj;
  }
}

void lstm_forward_row(float* g, const float* hg, int64_t hs, float* c, float* h, float* y, const float* c_prev,
                      int64_t H, int64_t j0, int64_t j1) {
  const int64_t n = j1 - j0;
  g += j0;
  hg += j0;
  if (y != h)
    lstm_forward_loop<true>(g, g + H, g + 2 * H, g + 3 * H, hg, hg + hs, hg + 2 * hs, hg + 3 * hs, c + j0, h + j0,
                            y + j0, c_prev + j0, n);
  else
    lstm_forward_loop<false>(g, g + H, g + 2 * H, g + 3 * H, hg, hg + hs, hg + 2 * hs, hg + 3 * hs, c + j0, h + j0,
                             nullptr, c_prev + j0, n);
}

void lstm_backward_loop(float* __restrict dgi, float* __restrict dgf, float* __restrict dgg, float* __restrict dgo,
                        float* __restrict dh, const float* __restrict dhg, float* __restrict dc,
                        const float* __restrict dy, const float* __restrict gi, const float* __restrict gf,
                        const float* __restrict gg, const float* __restrict go, const float* __restrict c,
                        const float* __restrict c_prev, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float i = gi[j], f = gf[j], g = gg[j], o = go[j];
    const float tc = tanh_approx(c[j]);
    const float dht = dh[j] + dhg[j] + dy[j];
    const float dct = dc[j] + dht * o * (1.0f - tc * tc);
    dgo[j] = dht * tc * (o * (1.0f - o));
    dgi[j] = dct * g * (i * (1.0f - i));
    dgg[j] = dct * i * (1.0f - g * g);
    dgf[j] = dct * c_prev[j] * (f * (1.0f - f));
    dc[j] = dct * f;
    dh[j] = 0.0f;
  }
}

void lstm_backward_row(float* dg, float* dh, const float* dhg, float* dc, const float* dy, const float* g,
                       const float* c, const float* c_prev, int64_t H, int64_t j0, int64_t j1) {
  dg += j0;
  g += j0;
  lstm_backward_loop(dg, dg + H, dg + 2 * H, dg + 3 * H, dh + j0, dhg + j0, dc + j0, dy + j0, g, g + H, g + 2 * H,
                     g + 3 * H, c + j0, c_prev + j0, j1 - j0);
}

// ---- GRU ----------------------------------------------------------------------------------
template <bool Y>
void gru_forward_loop(float* __restrict gr, float* __restrict gz, float* __restrict gn, float* __restrict ghn,
                      const float* __restrict hr, const float* __restrict hz, const float* __restrict hn,
                      float* __restrict h, float* __restrict y, const float* __restrict h_prev, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float r = sigmoid_approx(gr[j] + hr[j]);
    const float z = sigmoid_approx(gz[j] + hz[j]);
    const float hnj = hn[j];
    const float nj = tanh_approx(gn[j] + r * hnj);
    const float hj = nj + z * (h_prev[j] - nj);  // (1 - z) n + z h, as PyTorch evaluates it
    gr[j] = r;
    gz[j] = z;
    gn[j] = nj;
    ghn[j] = hnj;
    h[j] = hj;
    if (Y) y[j] = hj;
  }
}

void gru_forward_row(float* g, const float* hg, int64_t hs, float* h, float* y, const float* h_prev, int64_t H,
                     int64_t j0, int64_t j1) {
  const int64_t n = j1 - j0;
  g += j0;
  hg += j0;
  if (y != h)
    gru_forward_loop<true>(g, g + H, g + 2 * H, g + 3 * H, hg, hg + hs, hg + 2 * hs, h + j0, y + j0, h_prev + j0, n);
  else
    gru_forward_loop<false>(g, g + H, g + 2 * H, g + 3 * H, hg, hg + hs, hg + 2 * hs, h + j0, nullptr, h_prev + j0,
                            n);
}

void gru_backward_loop(float* __restrict dxr, float* __restrict dxz, float* __restrict dxn, float* __restrict dhr,
                       float* __restrict dhz, float* __restrict dhn, float* __restrict dh,
                       const float* __restrict dhg, const float* __restrict dy, const float* __restrict gr,
                       const float* __restrict gz, const float* __restrict gn, const float* __restrict ghn,
                       const float* __restrict h_prev, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float r = gr[j], z = gz[j], nj = gn[j];
    const float dht = dh[j] + dhg[j] + dy[j];
    const float dan = dht * (1.0f - z) * (1.0f - nj * nj);
    const float dar = dan * ghn[j] * (r * (1.0f - r));
    const float daz = dht * (h_prev[j] - nj) * (z * (1.0f - z));
    dxr[j] = dar;
    dxz[j] = daz;
    dxn[j] = dan;
    dhr[j] = dar;
    dhz[j] = daz;
    dhn[j] = dan * r;
    dh[j] = dht * z;
  }
}

void gru_backward_row(float* dgx, float* dgh, float* dh, const float* dhg, const float* dy, const float* g,
                      const float* h_prev, int64_t H, int64_t j0, int64_t j1) {
  dgx += j0;
  dgh += j0;
  g += j0;
  gru_backward_loop(dgx, dgx + H, dgx + 2 * H, dgh, dgh + H, dgh + 2 * H, dh + j0, dhg + j0, dy + j0, g, g + H,
                    g + 2 * H, g + 3 * H, h_prev + j0, j1 - j0);
}

// ---- RNN ----------------------------------------------------------------------------------
template <bool RELU, bool Y>
void rnn_forward_loop(float* __restrict h, const float* __restrict hg, float* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float a = h[j] + hg[j];
    const float hj = RELU ? (a < 0.0f ? 0.0f : a) : tanh_approx(a);  // relu keeps NaN, as torch
    h[j] = hj;
    if (Y) y[j] = hj;
  }
}

void rnn_forward_row(float* h, const float* hg, float* y, bool relu, int64_t j0, int64_t j1) {
  const int64_t n = j1 - j0;
  if (y != h)
    relu ? rnn_forward_loop<true, true>(h + j0, hg + j0, y + j0, n)
         : rnn_forward_loop<false, true>(h + j0, hg + j0, y + j0, n);
  else
    relu ? rnn_forward_loop<true, false>(h + j0, hg + j0, nullptr, n)
         : rnn_forward_loop<false, false>(h + j0, hg + j0, nullptr, n);
}

template <bool RELU>
void rnn_backward_loop(float* __restrict da, float* __restrict dh, const float* __restrict dhg,
                       const float* __restrict dy, const float* __restrict h, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float dht = dh[j] + dhg[j] + dy[j], hj = h[j];
    da[j] = RELU ? (hj > 0.0f ? dht : 0.0f) : dht * (1.0f - hj * hj);
    dh[j] = 0.0f;
  }
}

void rnn_backward_row(float* da, float* dh, const float* dhg, const float* dy, const float* h, bool relu, int64_t j0,
                      int64_t j1) {
  relu ? rnn_backward_loop<true>(da + j0, dh + j0, dhg + j0, dy + j0, h + j0, j1 - j0)
       : rnn_backward_loop<false>(da + j0, dh + j0, dhg + j0, dy + j0, h + j0, j1 - j0);
}

// ---- one row of a step's product (batches of one or two rows) -------------------------------
// c[j] = sum_p a[p * a_stride] b[p * NR + j] (+ bias[j]), j < NR: a row of A against one packed
// B sliver. GCC's generic vectors of W floats become SSE, AVX or AVX-512 registers in each build
// (W = 16 where NR allows: AVX-512 without VL has only 16 ymm registers); two sets of
// accumulators, over even and odd p, hide the FMA latency.
template <int W>
struct GenericVec {
  typedef float type __attribute__((vector_size(4 * W)));
};

// By reference: a generic vector passed or returned by value would change the ABI in the
// baseline build (-Wpsabi).
template <class V>
inline void load_vec(V& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}

template <int W, int NV>
void row_product_fixed(float* c, const float* a, int64_t a_stride, const float* b, int64_t K, const float* bias) {
  using V = typename GenericVec<W>::type;
  constexpr int NR = W * NV;
  V even[NV], odd[NV], x, y;
  for (int v = 0; v < NV; ++v) {
    even[v] = V{};
    if (bias) load_vec(even[v], bias + W * v);
    odd[v] = V{};
  }
  int64_t p = 0;
  for (; p + 2 <= K; p += 2) {
    const float a0 = a[p * a_stride], a1 = a[(p + 1) * a_stride];
    for (int v = 0; v < NV; ++v) {
      load_vec(x, b + p * NR + W * v);
      load_vec(y, b + (p + 1) * NR + W * v);
      even[v] += a0 * x;
      odd[v] += a1 * y;
    }
  }
  if (p < K)
    for (int v = 0; v < NV; ++v) {
      load_vec(x, b + p * NR + W * v);
      even[v] += a[p * a_stride] * x;
    }
  for (int v = 0; v < NV; ++v) {
    const V sum = even[v] + odd[v];
    std::memcpy(c + W * v, &sum, sizeof sum);
  }
}

void row_product(float* c, const float* a, int64_t a_stride, const float* b, int64_t K, int64_t nr,
                 const float* bias) {
  switch (nr) {  // every register tile's NR (gemm_kernel_*.cpp)
    case 8: return row_product_fixed<8, 1>(c, a, a_stride, b, K, bias);
    case 16: return row_product_fixed<16, 1>(c, a, a_stride, b, K, bias);
    case 24: return row_product_fixed<8, 3>(c, a, a_stride, b, K, bias);
    case 32: return row_product_fixed<16, 2>(c, a, a_stride, b, K, bias);
    case 48: return row_product_fixed<16, 3>(c, a, a_stride, b, K, bias);
    case 64: return row_product_fixed<16, 4>(c, a, a_stride, b, K, bias);
    default:
      for (int64_t j = 0; j < nr; ++j) {
        float sum = bias ? bias[j] : 0.0f;
        for (int64_t p = 0; p < K; ++p) sum += a[p * a_stride] * b[p * nr + j];
        c[j] = sum;
      }
  }
}

void accumulate(float* __restrict acc, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

constexpr RnnPointwise kRnnPointwise = {lstm_forward_row,  gru_forward_row,  rnn_forward_row, lstm_backward_row,
                                        gru_backward_row, rnn_backward_row, row_product, accumulate};

}  // namespace
}  // namespace fastnn
