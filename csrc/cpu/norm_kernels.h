// The element loops of batch normalization (see norm.cpp for the algorithm and the threading),
// written once and compiled by norm_kernel_ref.cpp, norm_kernel_avx2.cpp and
// norm_kernel_avx512.cpp, each with its own ISA flags. Everything here has internal linkage, so
// every including file gets its own copy; including it anywhere else would leak wide
// instructions into baseline code.
//
// Shapes: a channel of an (N, C, L) input is N runs of L values, `stride` = C * L apart; an
// (N, C) input (L == 1) is walked by rows: channels [0, n) of N rows `stride` = C apart.
// Double sums use eight lanes (lane u takes the elements j % 8 == u of each run, a run's tail
// goes into lane 0), combined in a fixed order, so the order of every sum is fixed. Compilers
// may fuse a * b + c into one FMA in the wide builds, so the last bit can differ between the
// ISA builds, never between thread counts.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu/norm.h"

namespace fastnn {
namespace {

// Eight double lanes as two vectors of four (GCC/Clang vector extensions, lowered to what the
// target has: two SSE2 registers, one AVX register). Plain loops over a lane array are not
// vectorized by GCC: a reduction without -ffast-math's reassociation, and its SLP pass keeps
// such accumulators in memory, a load and a store per step.
typedef double Double4 __attribute__((vector_size(32)));
typedef float Float4 __attribute__((vector_size(16)));

inline void load4(Double4& out, const float* p) {  // by reference: no vector crosses a call ABI
  Float4 f;
  std::memcpy(&f, p, sizeof f);
  out = __builtin_convertvector(f, Double4);
}

inline double combine(const Double4* v) {
  return ((v[0][0] + v[1][0]) + (v[0][1] + v[1][1])) + ((v[0][2] + v[1][2]) + (v[0][3] + v[1][3]));
}

// s1 = sum(x - k), s2 = sum((x - k)^2) over the channel.
void channel_stats(double* s1, double* s2, const float* x, int64_t N, int64_t stride, int64_t L, double k) {
  Double4 a[2] = {}, b[2] = {};
  const Double4 kk = {k, k, k, k};
  for (int64_t n = 0; n < N; ++n) {
    const float* __restrict p = x + n * stride;
    int64_t j = 0;
    for (; j + 8 <= L; j += 8) {
      Double4 d0, d1;
      load4(d0, p + j);
      load4(d1, p + j + 4);
      d0 -= kk;
      d1 -= kk;
      a[0] += d0;
      b[0] += d0 * d0;
      a[1] += d1;
      b[1] += d1 * d1;
    }
    for (; j < L; ++j) {
      const double d = static_cast<double>(p[j]) - k;
      a[0][0] += d;
      b[0][0] += d * d;
    }
  }
  *s1 = combine(a);
  *s2 = combine(b);
}

// y = (x - mean) * scale + shift over the channel.
void channel_affine(float* y, const float* x, int64_t N, int64_t stride, int64_t L, float mean, float scale,
                    float shift) {
  for (int64_t n = 0; n < N; ++n) {
    float* __restrict yo = y + n * stride;
    const float* __restrict xi = x + n * stride;
    for (int64_t j = 0; j < L; ++j) yo[j] = (xi[j] - mean) * scale + shift;
  }
}

// sg = sum(g), sgx = sum(g * (x - mean)) over the channel.
void channel_grad_sums(double* sg, double* sgx, const float* g, const float* x, int64_t N, int64_t stride, int64_t L,
                       double mean) {
  Double4 a[2] = {}, b[2] = {};
  const Double4 mm = {mean, mean, mean, mean};
  for (int64_t n = 0; n < N; ++n) {
    const float* __restrict gp = g + n * stride;
    const float* __restrict xp = x + n * stride;
    int64_t j = 0;
    for (; j + 8 <= L; j += 8) {
      Double4 g0, g1, x0, x1;
      load4(g0, gp + j);
      load4(g1, gp + j + 4);
      load4(x0, xp + j);
      load4(x1, xp + j + 4);
      a[0] += g0;
      b[0] += g0 * (x0 - mm);
      a[1] += g1;
      b[1] += g1 * (x1 - mm);
    }
    for (; j < L; ++j) {
      const double gv = gp[j];
      a[0][0] += gv;
      b[0][0] += gv * (static_cast<double>(xp[j]) - mean);
    }
  }
  *sg = combine(a);
  *sgx = combine(b);
}

// Training: gx = (g - mg - (x - mean) * k) * cg; evaluation: gx = g * cg.
void channel_grad(float* gx, const float* g, const float* x, int64_t N, int64_t stride, int64_t L, float mean,
                  float mg, float k, float cg, bool training) {
  for (int64_t n = 0; n < N; ++n) {
    float* __restrict o = gx + n * stride;
    const float* __restrict gi = g + n * stride;
    const float* __restrict xi = x + n * stride;
    if (training)
      for (int64_t j = 0; j < L; ++j) o[j] = (gi[j] - mg - (xi[j] - mean) * k) * cg;
    else
      for (int64_t j = 0; j < L; ++j) o[j] = gi[j] * cg;
  }
}

// ---- (N, C) inputs: n channels of N rows, the per-channel sums in arrays ----------------------

void rows_stats(double* s1, double* s2, const float* x, const float* k, int64_t N, int64_t stride, int64_t n) {
  for (int64_t c = 0; c < n; ++c) s1[c] = s2[c] = 0.0;
  for (int64_t r = 0; r < N; ++r) {
    double* __restrict a = s1;
    double* __restrict b = s2;
    const float* __restrict xr = x + r * stride;
    const float* __restrict kr = k;
    for (int64_t c = 0; c < n; ++c) {
      const double d = static_cast<double>(xr[c]) - static_cast<double>(kr[c]);
      a[c] += d;
      b[c] += d * d;
    }
  }
}

void rows_affine(float* y, const float* x, const float* mean, const float* scale, const float* shift, int64_t N,
                 int64_t stride, int64_t n) {
  for (int64_t r = 0; r < N; ++r) {
    float* __restrict yr = y + r * stride;
    const float* __restrict xr = x + r * stride;
    const float* __restrict m = mean;
    const float* __restrict s = scale;
    const float* __restrict t = shift;
    for (int64_t c = 0; c < n; ++c) yr[c] = (xr[c] - m[c]) * s[c] + t[c];
  }
}

void rows_grad_sums(double* sg, double* sgx, const float* g, const float* x, const float* mean, int64_t N,
                    int64_t stride, int64_t n) {
  for (int64_t c = 0; c < n; ++c) sg[c] = sgx[c] = 0.0;
  for (int64_t r = 0; r < N; ++r) {
    double* __restrict a = sg;
    double* __restrict b = sgx;
    const float* __restrict gr = g + r * stride;
    const float* __restrict xr = x + r * stride;
    const float* __restrict m = mean;
    for (int64_t c = 0; c < n; ++c) {
      const double gv = gr[c];
      a[c] += gv;
      b[c] += gv * (static_cast<double>(xr[c]) - static_cast<double>(m[c]));
    }
  }
}

void rows_grad(float* gx, const float* g, const float* x, const float* mean, const float* mg, const float* k,
               const float* cg, int64_t N, int64_t stride, int64_t n, bool training) {
  for (int64_t r = 0; r < N; ++r) {
    float* __restrict o = gx + r * stride;
    const float* __restrict gr = g + r * stride;
    const float* __restrict xr = x + r * stride;
    const float* __restrict m = mean;
    const float* __restrict mgr = mg;
    const float* __restrict kr = k;
    const float* __restrict cgr = cg;
    if (training)
      for (int64_t c = 0; c < n; ++c) o[c] = (gr[c] - mgr[c] - (xr[c] - m[c]) * kr[c]) * cgr[c];
    else
      for (int64_t c = 0; c < n; ++c) o[c] = gr[c] * cgr[c];
  }
}

constexpr NormKernels kNormKernels = {channel_stats, channel_affine, channel_grad_sums, channel_grad,
                                      rows_stats,    rows_affine,    rows_grad_sums,    rows_grad};

}  // namespace
}  // namespace fastnn
