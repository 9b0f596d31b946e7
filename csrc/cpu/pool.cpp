// 2-D pooling: max (with argmax indices), average and adaptive average; forward and backward.
//
// Algorithm: each plane (one image of one channel) is pooled on its own, one output row at a
// time, with three paths:
//  - fixed windows (2x2 and 3x3, stride 1 or 2, column dilation 1; backward of average pooling:
//    kernel == stride) on the outputs whose window lies inside the plane: the window is unrolled
//    at compile time and computed in registers per output, the loop over output columns
//    vectorizes. Max pooling selects with bit masks (no branch), 3x3 stride 2 first splits its
//    three input rows into even and odd columns (unit-stride loads), and a row tail of n % 4 is
//    done by redoing the last four outputs, so no output runs in a slow scalar loop;
//  - the outputs next to the borders of those rows: one window at a time, element by element;
//  - any other window: for each window row kh and column kw, one branch-free loop over the
//    output columns whose input lies inside the plane updates the whole output row.
// Every path sees a window in row-major order: PyTorch's order, so the same ties (first
// maximum), NaNs (always win) and sums. Backward passes scatter (max: to the saved index) or
// spread (average) gradients into a plane zeroed by the same thread. Adaptive windows differ
// per output and are summed per row with eight partial sums (a fixed order).
// Threading: the N * C planes are split into one contiguous range per thread above a work
// threshold; a plane is always done by one thread in one order, so results do not depend on
// the thread count. Workspace: one row (or six split rows) per thread, kept between calls.
#include "cpu/pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/threads.h"

namespace fastnn {
namespace {

// floor(a / b) for b > 0 and any sign of a.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output columns [lo, hi) of an axis whose input o * stride + off lies in [0, in).
void valid_outputs(int64_t in, int64_t out, int64_t stride, int64_t off, int64_t* lo, int64_t* hi) {
  *lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *hi = std::min(out, floor_div(in - 1 - off, stride) + 1);
  if (*hi < *lo) *hi = *lo;
}

// body(p, tid) for every plane p in [0, P), the planes split in contiguous ranges among the team.
template <class Body>
void for_each_plane(int threads, int64_t P, const Body& body) {
  run_parallel(threads, [&](int tid, int nt) {
    int64_t p0, p1;
    split_range(P, tid, nt, &p0, &p1);
    for (int64_t p = p0; p < p1; ++p) body(p, tid);
  });
}

// ---- max ----------------------------------------------------------------------------------

// best[j], idx[j] <- src[j * s] (flat index flat0 + j * s) where it is larger, or a NaN.
template <int S>
void max_update(float* __restrict best, int32_t* __restrict idx, const float* __restrict src, int64_t n,
                int64_t stride, int32_t flat0) {
  const int64_t s = S > 0 ? S : stride;
  const int32_t s32 = static_cast<int32_t>(s);
  for (int64_t j = 0; j < n; ++j) {
    const float v = src[j * s], b = best[j];
    const int32_t i = idx[j];
    const bool take = (v > b) | (v != v);
    best[j] = take ? v : b;
    idx[j] = take ? flat0 + static_cast<int32_t>(j) * s32 : i;
  }
}

int32_t to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
float from_bits(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// Fixed windows (kernel KH x KW, column stride S, column dilation 1: all known at compile time,
// so the loads of one output row form whole groups and no iteration is peeled off the vector
// loop) fully inside the plane: out[j], idx[j] for the windows starting at x + j * S, j < n,
// rows W apart, row dilation dh. Each output is computed in registers in window order, so the
// loop over j vectorizes.
template <int KH, int KW, int S>
void max_interior(float* __restrict out, int32_t* __restrict idx, const float* __restrict x, int64_t n, int64_t W,
                  int64_t dh, int32_t flat0) {
  for (int64_t j = 0; j < n; ++j) {
    const float* p = x + j * S;
    float best = p[0];
    int32_t at = 0;
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) {
        if (kh == 0 && kw == 0) continue;
        const float v = p[kh * dh * W + kw];
        // Selects as bit masks: the vector loop is the same, and the scalar remainder has no
        // branch to mispredict on random data.
        const int32_t take = -static_cast<int32_t>((v > best) | (v != v));
        best = from_bits((to_bits(v) & take) | (to_bits(best) & ~take));
        at = (static_cast<int32_t>(kh * dh * W + kw) & take) | (at & ~take);
      }
    out[j] = best;
    idx[j] = flat0 + static_cast<int32_t>(j * S) + at;
  }
}

// 3 x 3 windows with stride 2 read columns 2j, 2j + 1, 2j + 2: a stride-2 pattern with a gap that
// makes the compiler peel iterations off the vector loop into a slow scalar tail (most of a
// short output row). So each of the three input rows is first split into its even and odd
// columns; then every load is unit-stride.
void split_columns(float* __restrict even, float* __restrict odd, const float* __restrict row, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    even[j] = row[2 * j];
    odd[j] = row[2 * j + 1];
  }
  even[n] = row[2 * n];
}

void max_3x3s2_rows(float* __restrict out, int32_t* __restrict idx, const float* __restrict e0,
                    const float* __restrict o0, const float* __restrict e1, const float* __restrict o1,
                    const float* __restrict e2, const float* __restrict o2, int64_t n, int32_t row1, int32_t row2,
                    int32_t flat0) {
  for (int64_t j = 0; j < n; ++j) {
    const float v[9] = {e0[j], o0[j], e0[j + 1], e1[j], o1[j], e1[j + 1], e2[j], o2[j], e2[j + 1]};
    const int32_t off[9] = {0, 1, 2, row1, row1 + 1, row1 + 2, row2, row2 + 1, row2 + 2};
    float best = v[0];
    int32_t at = 0;
    for (int k = 1; k < 9; ++k) {
      const int32_t take = -static_cast<int32_t>((v[k] > best) | (v[k] != v[k]));
      best = from_bits((to_bits(v[k]) & take) | (to_bits(best) & ~take));
      at = (off[k] & take) | (at & ~take);
    }
    out[j] = best;
    idx[j] = flat0 + static_cast<int32_t>(2 * j) + at;
  }
}

void max_interior_3x3s2(float* out, int32_t* idx, const float* x, int64_t n, int64_t W, int64_t dh, int32_t flat0) {
  // Outputs go in chunks whose de-interleaved rows fit a buffer on the stack: nothing is
  // allocated inside the parallel region that calls this.
  constexpr int64_t kChunk = 256;
  if (n > kChunk) {
    for (int64_t j0 = 0; j0 < n; j0 += kChunk)
      max_interior_3x3s2(out + j0, idx + j0, x + 2 * j0, std::min(kChunk, n - j0), W, dh,
                         flat0 + static_cast<int32_t>(2 * j0));
    return;
  }
  float buffer[6 * (kChunk + 1)];
  const int64_t m = n + 1;
  float* b = buffer;
  for (int kh = 0; kh < 3; ++kh) split_columns(b + 2 * kh * m, b + (2 * kh + 1) * m, x + kh * dh * W, n);
  const int32_t row1 = static_cast<int32_t>(dh * W), row2 = static_cast<int32_t>(2 * dh * W);
  // A tail of n % 4 outputs: the last four redone (same values), so all run in the vector loop.
  const int64_t tail = n > 4 ? n % 4 : 0;
  max_3x3s2_rows(out, idx, b, b + m, b + 2 * m, b + 3 * m, b + 4 * m, b + 5 * m, n - tail, row1, row2, flat0);
  if (tail) {
    const int64_t t = n - 4;
    max_3x3s2_rows(out + t, idx + t, b + t, b + m + t, b + 2 * m + t, b + 3 * m + t, b + 4 * m + t, b + 5 * m + t, 4,
                   row1, row2, flat0 + static_cast<int32_t>(2 * t));
  }
}

template <int KH, int KW, int S>
void avg_interior(float* __restrict out, const float* __restrict x, int64_t n, int64_t W, float divisor) {
  for (int64_t j = 0; j < n; ++j) {
    const float* p = x + j * S;
    float sum = 0.0f;
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) sum += p[kh * W + kw];
    out[j] = sum / divisor;
  }
}

// Backward of avg_interior for windows as wide as the stride (K == S): each g[j] / divisor is
// added to its K x K block of the rows starting at gx, W apart.
template <int K>
void avg_interior_backward(float* __restrict gx, const float* __restrict g, int64_t n, int64_t W, float divisor) {
  for (int64_t j = 0; j < n; ++j) {
    const float v = g[j] / divisor;
    for (int kh = 0; kh < K; ++kh)
      for (int kw = 0; kw < K; ++kw) gx[kh * W + j * K + kw] += v;
  }
}

using AvgInteriorBackward = void (*)(float*, const float*, int64_t, int64_t, float);

AvgInteriorBackward avg_interior_backward_for(const PoolAxis& ah, const PoolAxis& aw) {
  if (ah.kernel == 2 && aw.kernel == 2 && aw.stride == 2) return avg_interior_backward<2>;
  if (ah.kernel == 3 && aw.kernel == 3 && aw.stride == 3) return avg_interior_backward<3>;
  return nullptr;
}

using MaxInterior = void (*)(float*, int32_t*, const float*, int64_t, int64_t, int64_t, int32_t);
using AvgInterior = void (*)(float*, const float*, int64_t, int64_t, float);

// The compiled fixed-window kernels: the usual shapes (2x2 and 3x3, stride 1 or 2).
MaxInterior max_interior_for(const PoolAxis& ah, const PoolAxis& aw) {
  if (aw.dilation != 1) return nullptr;
  if (ah.kernel == 2 && aw.kernel == 2) {
    if (aw.stride == 2) return max_interior<2, 2, 2>;
    if (aw.stride == 1) return max_interior<2, 2, 1>;
  }
  if (ah.kernel == 3 && aw.kernel == 3) {
    if (aw.stride == 2) return max_interior_3x3s2;
    if (aw.stride == 1) return max_interior<3, 3, 1>;
  }
  return nullptr;
}

AvgInterior avg_interior_for(const PoolAxis& ah, const PoolAxis& aw) {
  if (ah.kernel == 2 && aw.kernel == 2) {
    if (aw.stride == 2) return avg_interior<2, 2, 2>;
    if (aw.stride == 1) return avg_interior<2, 2, 1>;
  }
  if (ah.kernel == 3 && aw.kernel == 3) {
    if (aw.stride == 2) return avg_interior<3, 3, 2>;
    if (aw.stride == 1) return avg_interior<3, 3, 1>;
  }
  return nullptr;
}

// fast() over n outputs; a tail of n % 4 is done by redoing the last four outputs (same values),
// so it runs in the vector loop instead of a scalar one. Not for windows wider than the stride
// (3 x 3, stride 2): there the compiler peels the last iteration off the vector loop anyway.
void run_max_interior(MaxInterior fast, float* out, int32_t* idx, const float* x, int64_t n, int64_t W, int64_t dh,
                      int32_t flat0, int64_t stride, int64_t kernel) {
  const int64_t tail = n % 4;
  if (n <= 4 || tail == 0 || (stride > 1 && kernel > stride)) {
    fast(out, idx, x, n, W, dh, flat0);
    return;
  }
  fast(out, idx, x, n - tail, W, dh, flat0);
  const int64_t t = n - 4;
  fast(out + t, idx + t, x + t * stride, 4, W, dh, flat0 + static_cast<int32_t>(t * stride));
}

void run_avg_interior(AvgInterior fast, float* out, const float* x, int64_t n, int64_t W, float divisor,
                      int64_t stride, int64_t kernel) {
  const int64_t tail = n % 4;
  if (n <= 4 || tail == 0 || (stride > 1 && kernel > stride)) {
    fast(out, x, n, W, divisor);
    return;
  }
  fast(out, x, n - tail, W, divisor);
  fast(out + n - 4, x + (n - 4) * stride, 4, W, divisor);
}

// The outputs [lo, hi) along an axis whose whole window lies inside [0, in).
void interior_outputs(int64_t in, int64_t out, const PoolAxis& a, int64_t* lo, int64_t* hi) {
  valid_outputs(in, out, a.stride, -a.pad, lo, hi);  // first element inside
  int64_t lo2, hi2;
  valid_outputs(in, out, a.stride, (a.kernel - 1) * a.dilation - a.pad, &lo2, &hi2);  // last element inside
  *lo = std::max(*lo, lo2);
  *hi = std::max(*lo, std::min(*hi, hi2));
}

// One output of max pooling, window checked element by element (the borders).
void max_one(float* out, int32_t* idx, const float* x, int64_t H, int64_t W, int64_t oh, int64_t ow,
             const PoolAxis& ah, const PoolAxis& aw) {
  float best = -std::numeric_limits<float>::infinity();
  int32_t at = -1, first = -1;
  for (int64_t kh = 0; kh < ah.kernel; ++kh) {
    const int64_t ih = oh * ah.stride - ah.pad + kh * ah.dilation;
    if (ih < 0 || ih >= H) continue;
    for (int64_t kw = 0; kw < aw.kernel; ++kw) {
      const int64_t iw = ow * aw.stride - aw.pad + kw * aw.dilation;
      if (iw < 0 || iw >= W) continue;
      const int32_t flat = static_cast<int32_t>(ih * W + iw);
      if (first < 0) first = flat;
      const float v = x[flat];
      if (v > best || v != v) {
        best = v;
        at = flat;
      }
    }
  }
  *out = best;
  *idx = at >= 0 ? at : first;  // only -inf: the first element, as PyTorch; empty window: -1
}

template <int S>
void max_pool_plane(float* out, int32_t* indices, const float* x, int64_t H, int64_t W, int64_t OH, int64_t OW,
                    const PoolAxis& ah, const PoolAxis& aw) {
  const float lowest = -std::numeric_limits<float>::infinity();
  const MaxInterior fast = max_interior_for(ah, aw);
  int64_t oh_lo = 0, oh_hi = 0, ow_lo = 0, ow_hi = 0;
  if (fast) {
    interior_outputs(H, OH, ah, &oh_lo, &oh_hi);
    interior_outputs(W, OW, aw, &ow_lo, &ow_hi);
  }
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* orow = out + oh * OW;
    int32_t* irow = indices + oh * OW;
    if (fast && oh >= oh_lo && oh < oh_hi && ow_lo < ow_hi) {
      const int64_t ih = oh * ah.stride - ah.pad, iw = ow_lo * aw.stride - aw.pad;
      run_max_interior(fast, orow + ow_lo, irow + ow_lo, x + ih * W + iw, ow_hi - ow_lo, W, ah.dilation,
                       static_cast<int32_t>(ih * W + iw), aw.stride, aw.kernel);
      for (int64_t ow = 0; ow < ow_lo; ++ow) max_one(orow + ow, irow + ow, x, H, W, oh, ow, ah, aw);
      for (int64_t ow = ow_hi; ow < OW; ++ow) max_one(orow + ow, irow + ow, x, H, W, oh, ow, ah, aw);
      continue;
    }
    std::fill(orow, orow + OW, lowest);
    std::fill(irow, irow + OW, -1);
    const int64_t h0 = oh * ah.stride - ah.pad;
    int64_t first_ih = -1;
    for (int64_t kh = 0; kh < ah.kernel; ++kh) {
      const int64_t ih = h0 + kh * ah.dilation;
      if (ih < 0 || ih >= H) continue;
      if (first_ih < 0) first_ih = ih;
      for (int64_t kw = 0; kw < aw.kernel; ++kw) {
        const int64_t off = kw * aw.dilation - aw.pad;
        int64_t lo, hi;
        valid_outputs(W, OW, aw.stride, off, &lo, &hi);
        if (lo == hi) continue;
        const int64_t iw = lo * aw.stride + off;
        max_update<S>(orow + lo, irow + lo, x + ih * W + iw, hi - lo, aw.stride, static_cast<int32_t>(ih * W + iw));
      }
    }
    // Windows of -inf only (or empty): PyTorch's index is the window's first input element.
    if (first_ih < 0) continue;
    for (int64_t ow = 0; ow < OW; ++ow) {
      if (irow[ow] >= 0) continue;
      for (int64_t kw = 0; kw < aw.kernel; ++kw) {
        const int64_t iw = ow * aw.stride - aw.pad + kw * aw.dilation;
        if (iw >= 0 && iw < W) {
          irow[ow] = static_cast<int32_t>(first_ih * W + iw);
          break;
        }
      }
    }
  }
}

// ---- average ------------------------------------------------------------------------------

template <int S>
void add_strided_src(float* __restrict acc, const float* __restrict src, int64_t n, int64_t stride) {
  const int64_t s = S > 0 ? S : stride;
  for (int64_t j = 0; j < n; ++j) acc[j] += src[j * s];
}

template <int S>
void add_strided_dst(float* __restrict dst, const float* __restrict g, int64_t n, int64_t stride) {
  const int64_t s = S > 0 ? S : stride;
  for (int64_t j = 0; j < n; ++j) dst[j * s] += g[j];
}

// The window [start, end) of output o along an axis (dilation 1): the rows it covers in the
// input (clipped), and the divisor's factor: the window clipped to the padded input.
struct Window {
  int64_t begin, end, padded;
};
Window avg_window(int64_t o, int64_t in, const PoolAxis& a) {
  const int64_t start = o * a.stride - a.pad;
  const int64_t end = std::min(start + a.kernel, in + a.pad);
  return {std::max<int64_t>(start, 0), std::min(end, in), end - start};
}

float avg_divisor(const Window& h, const Window& w, const AvgPoolOptions& opt) {
  if (opt.divisor_override > 0) return static_cast<float>(opt.divisor_override);
  if (opt.count_include_pad) return static_cast<float>(h.padded * w.padded);
  return static_cast<float>((h.end - h.begin) * (w.end - w.begin));
}

// The outputs whose windows lie inside the input, [oh_lo, oh_hi) x [ow_lo, ow_hi) (empty without
// a fast interior path), and their divisor: a window inside the input has the full kernel as
// divisor whatever count_include_pad says.
struct InteriorOutputs {
  int64_t oh_lo = 0, oh_hi = 0, ow_lo = 0, ow_hi = 0;
  float divisor;
};

InteriorOutputs interior_outputs_2d(bool fast, int64_t H, int64_t W, int64_t OH, int64_t OW, const PoolAxis& ah,
                                    const PoolAxis& aw, const AvgPoolOptions& opt) {
  InteriorOutputs in;
  if (fast) {
    interior_outputs(H, OH, ah, &in.oh_lo, &in.oh_hi);
    interior_outputs(W, OW, aw, &in.ow_lo, &in.ow_hi);
  }
  in.divisor = opt.divisor_override > 0 ? static_cast<float>(opt.divisor_override)
                                        : static_cast<float>(ah.kernel * aw.kernel);
  return in;
}

// One output of average pooling (the borders), summed in window order.
float avg_one(const float* x, int64_t W, const Window& wh, const Window& ww, const AvgPoolOptions& opt) {
  float sum = 0.0f;
  for (int64_t r = wh.begin; r < wh.end; ++r)
    for (int64_t c = ww.begin; c < ww.end; ++c) sum += x[r * W + c];
  return sum / avg_divisor(wh, ww, opt);
}

template <int S>
void avg_pool_plane(float* out, const float* x, int64_t H, int64_t W, int64_t OH, int64_t OW, const PoolAxis& ah,
                    const PoolAxis& aw, const AvgPoolOptions& opt) {
  const AvgInterior fast = avg_interior_for(ah, aw);
  const InteriorOutputs in = interior_outputs_2d(fast != nullptr, H, W, OH, OW, ah, aw, opt);
  const int64_t oh_lo = in.oh_lo, oh_hi = in.oh_hi, ow_lo = in.ow_lo, ow_hi = in.ow_hi;
  const float interior_divisor = in.divisor;
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* orow = out + oh * OW;
    const Window wh = avg_window(oh, H, ah);
    if (fast && oh >= oh_lo && oh < oh_hi && ow_lo < ow_hi) {
      const int64_t ih = oh * ah.stride - ah.pad;
      run_avg_interior(fast, orow + ow_lo, x + ih * W + ow_lo * aw.stride - aw.pad, ow_hi - ow_lo, W,
                       interior_divisor, aw.stride, aw.kernel);
      for (int64_t ow = 0; ow < ow_lo; ++ow) orow[ow] = avg_one(x, W, wh, avg_window(ow, W, aw), opt);
      for (int64_t ow = ow_hi; ow < OW; ++ow) orow[ow] = avg_one(x, W, wh, avg_window(ow, W, aw), opt);
      continue;
    }
    std::fill(orow, orow + OW, 0.0f);
    for (int64_t ih = wh.begin; ih < wh.end; ++ih) {
      for (int64_t kw = 0; kw < aw.kernel; ++kw) {
        const int64_t off = kw - aw.pad;
        int64_t lo, hi;
        valid_outputs(W, OW, aw.stride, off, &lo, &hi);
        if (lo < hi) add_strided_src<S>(orow + lo, x + ih * W + lo * aw.stride + off, hi - lo, aw.stride);
      }
    }
    for (int64_t ow = 0; ow < OW; ++ow) orow[ow] /= avg_divisor(wh, avg_window(ow, W, aw), opt);
  }
}

template <int S>
void avg_pool_plane_backward(float* gx, const float* g, float* scaled, int64_t H, int64_t W, int64_t OH, int64_t OW,
                             const PoolAxis& ah, const PoolAxis& aw, const AvgPoolOptions& opt) {
  std::fill(gx, gx + H * W, 0.0f);
  // Windows that do not overlap along a row (kernel == stride: 2 x 2 stride 2, 3 x 3 stride 3)
  // take a vectorized path inside the plane; an input element then receives at most one
  // contribution per output row, in the same order (output rows ascending) on both paths.
  const AvgInteriorBackward fast = avg_interior_backward_for(ah, aw);
  const InteriorOutputs in = interior_outputs_2d(fast != nullptr, H, W, OH, OW, ah, aw, opt);
  const int64_t oh_lo = in.oh_lo, oh_hi = in.oh_hi, ow_lo = in.ow_lo, ow_hi = in.ow_hi;
  const float interior_divisor = in.divisor;
  for (int64_t oh = 0; oh < OH; ++oh) {
    const Window wh = avg_window(oh, H, ah);
    if (fast && oh >= oh_lo && oh < oh_hi && ow_lo < ow_hi) {
      const int64_t ih = oh * ah.stride - ah.pad;
      fast(gx + ih * W + ow_lo * aw.stride - aw.pad, g + oh * OW + ow_lo, ow_hi - ow_lo, W, interior_divisor);
      for (int64_t ow = 0; ow < OW; ++ow) {
        if (ow == ow_lo) ow = ow_hi;
        if (ow >= OW) break;
        const Window ww = avg_window(ow, W, aw);
        const float v = g[oh * OW + ow] / avg_divisor(wh, ww, opt);
        for (int64_t r = wh.begin; r < wh.end; ++r)
          for (int64_t c = ww.begin; c < ww.end; ++c) gx[r * W + c] += v;
      }
      continue;
    }
    for (int64_t ow = 0; ow < OW; ++ow) scaled[ow] = g[oh * OW + ow] / avg_divisor(wh, avg_window(ow, W, aw), opt);
    for (int64_t ih = wh.begin; ih < wh.end; ++ih) {
      for (int64_t kw = 0; kw < aw.kernel; ++kw) {
        const int64_t off = kw - aw.pad;
        int64_t lo, hi;
        valid_outputs(W, OW, aw.stride, off, &lo, &hi);
        if (lo < hi) add_strided_dst<S>(gx + ih * W + lo * aw.stride + off, scaled + lo, hi - lo, aw.stride);
      }
    }
  }
}

// Calls body.template operator()<S>() with S = 1, 2 or 0 (any stride) for the column stride.
template <class Body>
void by_stride(int64_t stride, Body&& body) {
  if (stride == 1)
    body(std::integral_constant<int, 1>());
  else if (stride == 2)
    body(std::integral_constant<int, 2>());
  else
    body(std::integral_constant<int, 0>());
}

// ---- adaptive average ---------------------------------------------------------------------

int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

// Sum of n floats with eight partial sums, combined in a fixed order (vectorizes, deterministic).
float sum_row(const float* __restrict p, int64_t n) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) lane[u] += p[j + u];
  for (int u = 0; j < n; ++j, ++u) lane[u] += p[j];
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

void add_scalar(float* __restrict dst, float v, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] += v;
}

}  // namespace

int64_t pool_output_size(int64_t in, const PoolAxis& a, bool ceil_mode) {
  const int64_t span = in + 2 * a.pad - a.dilation * (a.kernel - 1) - 1 + (ceil_mode ? a.stride - 1 : 0);
  int64_t out = floor_div(span, a.stride) + 1;
  if (ceil_mode && (out - 1) * a.stride >= in + a.pad) --out;
  return out;
}

void max_pool2d_forward(float* out, int32_t* indices, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH,
                        int64_t OW, const PoolAxis& ah, const PoolAxis& aw) {
  const double work = static_cast<double>(P) * (OH * OW * ah.kernel * aw.kernel + H * W);
  by_stride(aw.stride, [&](auto s) {
    for_each_plane(threads_for_items(work, P), P, [&](int64_t p, int) {
      max_pool_plane<decltype(s)::value>(out + p * OH * OW, indices + p * OH * OW, x + p * H * W, H, W, OH, OW, ah, aw);
    });
  });
}

bool max_pool2d_backward(float* grad_x, const float* grad_out, const int32_t* indices, int64_t P, int64_t H,
                         int64_t W, int64_t OH, int64_t OW) {
  const int64_t HW = H * W, OHW = OH * OW;
  std::atomic<bool> bad{false};  // set by a thread that met a bad index; no exception inside the region
  for_each_plane(threads_for_items(static_cast<double>(P) * (HW + 2 * OHW), P), P, [&](int64_t p, int) {
    float* gx = grad_x + p * HW;
    const float* g = grad_out + p * OHW;
    const int32_t* idx = indices + p * OHW;
    std::fill(gx, gx + HW, 0.0f);
    bool flag = false;
    for (int64_t o = 0; o < OHW; ++o) {
      const int64_t i = idx[o];
      if (static_cast<uint64_t>(i) < static_cast<uint64_t>(HW))
        gx[i] += g[o];
      else if (i != -1)
        flag = true;
    }
    if (flag) bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

void avg_pool2d_forward(float* out, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                        const PoolAxis& ah, const PoolAxis& aw, const AvgPoolOptions& opt) {
  const double work = static_cast<double>(P) * (OH * OW * ah.kernel * aw.kernel + H * W);
  by_stride(aw.stride, [&](auto s) {
    for_each_plane(threads_for_items(work, P), P, [&](int64_t p, int) {
      avg_pool_plane<decltype(s)::value>(out + p * OH * OW, x + p * H * W, H, W, OH, OW, ah, aw, opt);
    });
  });
}

void avg_pool2d_backward(float* grad_x, const float* grad_out, int64_t P, int64_t H, int64_t W, int64_t OH,
                         int64_t OW, const PoolAxis& ah, const PoolAxis& aw, const AvgPoolOptions& opt) {
  const double work = static_cast<double>(P) * (OH * OW * ah.kernel * aw.kernel + H * W);
  const int threads = threads_for_items(work, P);
  // One row of scaled gradients per thread, the only workspace: allocated here, outside the
  // parallel region, where a failed allocation can still become a Python MemoryError.
  std::vector<float> rows(static_cast<size_t>(threads) * static_cast<size_t>(OW));
  by_stride(aw.stride, [&](auto s) {
    for_each_plane(threads, P, [&](int64_t p, int tid) {
      float* row = rows.data() + static_cast<size_t>(tid) * static_cast<size_t>(OW);
      avg_pool_plane_backward<decltype(s)::value>(grad_x + p * H * W, grad_out + p * OH * OW, row, H, W, OH, OW, ah,
                                                  aw, opt);
    });
  });
}

void adaptive_avg_pool2d_forward(float* out, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH,
                                 int64_t OW) {
  // Each input element is read about (OH / H + 1) (OW / W + 1) times.
  const double work = static_cast<double>(P) * (H * W + OH * OW) * 2;
  for_each_plane(threads_for_items(work, P), P, [&](int64_t p, int) {
    const float* xp = x + p * H * W;
    float* op = out + p * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
        float sum = 0.0f;
        if (w0 == 0 && w1 == W)  // whole rows: one contiguous run
          sum = sum_row(xp + h0 * W, (h1 - h0) * W);
        else
          for (int64_t ih = h0; ih < h1; ++ih) sum += sum_row(xp + ih * W + w0, w1 - w0);
        op[oh * OW + ow] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
      }
    }
  });
}

void adaptive_avg_pool2d_backward(float* grad_x, const float* grad_out, int64_t P, int64_t H, int64_t W,
                                  int64_t OH, int64_t OW) {
  const double work = static_cast<double>(P) * (H * W + OH * OW) * 2;
  for_each_plane(threads_for_items(work, P), P, [&](int64_t p, int) {
    float* gx = grad_x + p * H * W;
    const float* g = grad_out + p * OH * OW;
    std::fill(gx, gx + H * W, 0.0f);
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
        const float v = g[oh * OW + ow] / static_cast<float>((h1 - h0) * (w1 - w0));
        if (w0 == 0 && w1 == W)
          add_scalar(gx + h0 * W, v, (h1 - h0) * W);
        else
          for (int64_t ih = h0; ih < h1; ++ih) add_scalar(gx + ih * W + w0, v, w1 - w0);
      }
    }
  });
}

}  // namespace fastnn
