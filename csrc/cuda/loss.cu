// Softmax, log-softmax and the losses on the GPU. Dimension letters: N rows, C classes
// (cross-entropy, nll); softmax runs over the middle axis of x viewed as (outer, C, inner); n
// elements (the elementwise losses).
//
// A line of C values (a row, or one (outer, inner) position's values along the class axis):
//   inner == 1 (the class axis is the last one; every cross-entropy row): one warp per line, 8
//     lines a block; the lanes stride over the line and reduce its max and sums by shuffles.
//   inner > 1: one thread per line, looping over C with stride inner, so that neighbouring
//     threads read neighbouring addresses (coalesced).
// Softmax: y = exp(x - max) / sum exp(x - max); log-softmax: y = (x - max) - log(sum exp(x - max)),
// as on the CPU; backward dx = y * (dy - sum(dy * y)) and dx = dy - exp(y) * sum(dy).
//
// Cross-entropy (the CPU's formulas, csrc/cpu/loss.cpp; nll_loss is the same with the input taken
// as log-probabilities: lse = 0 and no softmax term in the gradient): one warp per row writes the
// row's loss (reduction 'none') or adds it to the reduced loss, and adds the row's weight (w_t of a
// non-ignored index target, 1 for probabilities) to the mean's denominator, both by atomicAdd; a
// one-thread kernel divides for 'mean' (0 / 0 = NaN, as on the CPU). The denominator stays on the
// device for the backward, so nothing waits for the GPU (CUDA graphs can capture it). Why not
// log_softmax + an nll kernel: label smoothing and probability targets need sums over each row of
// the log-probabilities, so that nll kernel would be this row kernel anyway, plus an (N, C) buffer.
// lse - x_c is computed as (max - x_c) + log(sum), which stays exact for logits of 1e4 (the CPU
// keeps lse in double for the same reason). A label that is neither a class index nor
// ignore_index (labels from a device tensor, which the host cannot check without waiting) gives
// a NaN loss and NaN gradients instead of reading out of bounds.
//
// Elementwise losses (mse, l1, huber, binary cross-entropy on probabilities or on logits): one
// thread per element in a grid-stride loop, the CPU's formulas (binary cross-entropy's logs
// clamped at -100, its gradient's denominator at least 1e-12); 'mean' and 'sum' reduce the
// element losses with sum_all. An input outside [0, 1] gives binary_cross_entropy a NaN loss
// and gradient (the CPU raises; the device cannot without waiting).
//
// Sums are float (the CPU sums cross-entropy rows in double); atomicAdd makes the order of the
// additions, and so the last bits of a reduced loss, vary between runs.
#include <type_traits>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kRowsPerBlock = 8;
constexpr int kThreads = 256;

// The threads that share a line: a warp (lane 0..31 of 32) or a single thread.
struct WarpLine {
  int lane;
  static constexpr int width = 32;
  __device__ float max(float v) const { return warp_all_reduce(v, [](float a, float b) { return fmaxf(a, b); }); }
  __device__ float sum(float v) const { return warp_all_reduce(v, [](float a, float b) { return a + b; }); }
};
struct ThreadLine {
  static constexpr int lane = 0, width = 1;
  __device__ float max(float v) const { return v; }
  __device__ float sum(float v) const { return v; }
};

// The line's max and sum of exp(x - max) (x[c * stride], c < C), in every thread of the line.
template <class Line>
__device__ void line_stats(Line g, const float* x, int64_t C, int64_t stride, float* max_out, float* sum_out) {
  float m = -INFINITY;
  for (int64_t c = g.lane; c < C; c += g.width) m = fmaxf(m, x[c * stride]);
  m = g.max(m);
  float s = 0.0f;
  for (int64_t c = g.lane; c < C; c += g.width) s += expf(x[c * stride] - m);
  *max_out = m;
  *sum_out = g.sum(s);
}

template <bool log>
struct SoftmaxForward {
  float* y;
  const float* x;
  int64_t C;
  template <class Line>
  __device__ void operator()(Line g, int64_t start, int64_t stride) const {
    const float* xl = x + start;
    float* yl = y + start;
    float m, s;
    line_stats(g, xl, C, stride, &m, &s);
    const float log_s = logf(s);
    for (int64_t c = g.lane; c < C; c += g.width) {
      const int64_t j = c * stride;
      yl[j] = log ? (xl[j] - m) - log_s : expf(xl[j] - m) / s;
    }
  }
};

template <bool log>
struct SoftmaxBackward {
  float* dx;
  const float* dy;
  const float* y;
  int64_t C;
  template <class Line>
  __device__ void operator()(Line g, int64_t start, int64_t stride) const {
    const float *dyl = dy + start, *yl = y + start;
    float* dxl = dx + start;
    float total = 0.0f;  // log: sum(dy); softmax: sum(dy * y)
    for (int64_t c = g.lane; c < C; c += g.width) total += log ? dyl[c * stride] : dyl[c * stride] * yl[c * stride];
    total = g.sum(total);
    for (int64_t c = g.lane; c < C; c += g.width) {
      const int64_t j = c * stride;
      dxl[j] = log ? dyl[j] - expf(yl[j]) * total : yl[j] * (dyl[j] - total);
    }
  }
};

// op(line, start, stride) over the lines of (outer, C, 1): one warp each.
template <class Op>
__global__ void rows_kernel(Op op, int64_t rows, int64_t C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row < rows) op(WarpLine{static_cast<int>(threadIdx.x % 32)}, row * C, 1);
}

// op(line, start, stride) over the lines of (outer, C, inner): one thread each, grid-stride.
template <class Op>
__global__ void lines_kernel(Op op, int64_t outer, int64_t C, int64_t inner) {
  GRID_STRIDE(line, outer * inner)
    op(ThreadLine{}, (line / inner) * C * inner + line % inner, inner);
}

unsigned row_blocks(int64_t N) { return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock); }

template <class Op>
void launch_lines(Op op, int64_t outer, int64_t C, int64_t inner, int device, const char* name) {
  if (outer * C * inner == 0) return;
  cudaStream_t s = stream_of(device);
  if (inner == 1)
    rows_kernel<<<row_blocks(outer), 32 * kRowsPerBlock, 0, s>>>(op, outer, C);
  else
    lines_kernel<<<grid_for(outer * inner, kThreads), kThreads, 0, s>>>(op, outer, C, inner);
  check_launch(name);
}

// ---- cross-entropy and nll ----

__device__ float class_weight(const CrossEntropyArgs& a, int64_t c) { return a.weight ? a.weight[c] : 1.0f; }

// The label of a row, from int64 labels or from float32 ones; false when a float is not whole.
__device__ bool label_at(const CrossEntropyArgs& a, int64_t row, int64_t* label) {
  if (a.labels) {
    *label = a.labels[row];
    return true;
  }
  const float v = a.labels_f32[row];
  if (!(v == floorf(v) && fabsf(v) < 16777216.0f)) return false;  // NaN and infinities too
  *label = static_cast<int64_t>(v);
  return true;
}

// lse = m + log_s of a row (0 for log-probabilities), kept in two parts: lse - x = (m - x) + log_s.
__device__ void row_lse(WarpLine g, const CrossEntropyArgs& a, const float* x, float* m, float* log_s) {
  *m = 0.0f;
  *log_s = 0.0f;
  if (a.log_probs) return;
  float s;
  line_stats(g, x, a.C, 1, m, &s);
  *log_s = logf(s);
}

__global__ void cross_entropy_forward_kernel(float* loss, float* weight_sum, CrossEntropyArgs a, bool per_row) {
  const WarpLine g{static_cast<int>(threadIdx.x % 32)};
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= a.N) return;
  const int64_t C = a.C;
  const float* x = a.logits + row * C;
  const float eps = a.label_smoothing;
  float m, log_s;
  row_lse(g, a, x, &m, &log_s);
  float value, row_weight;
  if (a.probs) {
    const float* q = a.probs + row * C;
    float sum = 0.0f;
    for (int64_t c = g.lane; c < C; c += 32)
      sum += class_weight(a, c) * ((1.0f - eps) * q[c] + eps / C) * ((m - x[c]) + log_s);
    value = g.sum(sum);
    row_weight = 1.0f;
  } else {
    int64_t t;
    const bool whole = label_at(a, row, &t);
    if (whole && t == a.ignore_index) {
      value = row_weight = 0.0f;
    } else if (!whole || t < 0 || t >= C) {
      value = row_weight = NAN;
    } else {
      row_weight = class_weight(a, t);
      value = (1.0f - eps) * row_weight * ((m - x[t]) + log_s);
      if (eps > 0.0f) {
        float smooth = 0.0f;
        for (int64_t c = g.lane; c < C; c += 32) smooth += class_weight(a, c) * ((m - x[c]) + log_s);
        value += eps / C * g.sum(smooth);
      }
    }
  }
  if (g.lane != 0) return;
  if (per_row)
    loss[row] = value;
  else
    atomicAdd(loss, value);
  atomicAdd(weight_sum, row_weight);
}

__global__ void divide_kernel(float* x, const float* divisor) { x[0] /= divisor[0]; }

// grad_stride: 1 for one gradient per row, 0 for one for all; divisor: the mean's, or null.
__global__ void cross_entropy_backward_kernel(float* dlogits, float* dprobs, const float* grad, int64_t grad_stride,
                                              const float* divisor, CrossEntropyArgs a) {
  const WarpLine g{static_cast<int>(threadIdx.x % 32)};
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= a.N) return;
  const int64_t C = a.C;
  const float* x = a.logits + row * C;
  float* dx = dlogits + row * C;
  const float eps = a.label_smoothing, spread = eps / C;
  const float gr = divisor ? grad[row * grad_stride] / divisor[0] : grad[row * grad_stride];
  float m, log_s;
  row_lse(g, a, x, &m, &log_s);
  // p_c, the softmax (its term is absent for log-probabilities)
  auto p = [&](int64_t c) { return a.log_probs ? 0.0f : expf((x[c] - m) - log_s); };
  if (a.probs) {
    const float* q = a.probs + row * C;
    float mass = 0.0f;  // sum_k w_k q'_k
    for (int64_t c = g.lane; c < C; c += 32) mass += class_weight(a, c) * ((1.0f - eps) * q[c] + spread);
    const float coef = gr * g.sum(mass);
    for (int64_t c = g.lane; c < C; c += 32) {
      const float wq = class_weight(a, c) * ((1.0f - eps) * q[c] + spread);
      dx[c] = coef * p(c) - gr * wq;
      if (dprobs) dprobs[row * C + c] = -(1.0f - eps) * gr * class_weight(a, c) * ((x[c] - m) - log_s);
    }
    return;
  }
  int64_t t;
  const bool whole = label_at(a, row, &t);
  if (whole && t == a.ignore_index) {
    for (int64_t c = g.lane; c < C; c += 32) dx[c] = 0.0f;
    return;
  }
  if (!whole || t < 0 || t >= C) {
    for (int64_t c = g.lane; c < C; c += 32) dx[c] = NAN;
    return;
  }
  const float wt = class_weight(a, t);
  float weight_total = static_cast<float>(C);  // sum_c w_c, needed with label smoothing only
  if (a.weight && eps > 0.0f) {
    float sum = 0.0f;
    for (int64_t c = g.lane; c < C; c += 32) sum += a.weight[c];
    weight_total = g.sum(sum);
  }
  const float coef = gr * ((1.0f - eps) * wt + eps * weight_total / C), smooth = gr * spread;
  const float hit = gr * (1.0f - eps) * wt;
  for (int64_t c = g.lane; c < C; c += 32) dx[c] = coef * p(c) - smooth * class_weight(a, c) - (c == t ? hit : 0.0f);
}

// ---- elementwise losses ----

template <ElementwiseLoss kind>
struct Element {
  // x: input, y: target, pw: pos_weight (1 when absent), delta: huber's
  __device__ static float loss(float x, float y, float pw, float delta) {
    if (kind == ElementwiseLoss::mse) return (x - y) * (x - y);
    if (kind == ElementwiseLoss::l1) return fabsf(x - y);
    if (kind == ElementwiseLoss::huber) {
      const float d = x - y, a = fabsf(d);
      return a < delta ? 0.5f * d * d : delta * (a - 0.5f * delta);
    }
    if (kind == ElementwiseLoss::bce) {
      if (!(x >= 0.0f && x <= 1.0f)) return NAN;
      return -(y * fmaxf(logf(x), -100.0f) + (1.0f - y) * fmaxf(log1pf(-x), -100.0f));
    }
    return (1.0f - y) * x + (1.0f + (pw - 1.0f) * y) * softplus_neg(x);  // bce_logits
  }

  // d(loss)/dx and d(loss)/dy.
  __device__ static void grads(float x, float y, float pw, float delta, float* dx, float* dy) {
    if (kind == ElementwiseLoss::bce) {
      if (!(x >= 0.0f && x <= 1.0f)) {
        *dx = *dy = NAN;
        return;
      }
      *dx = (x - y) / fmaxf((1.0f - x) * x, 1e-12f);
      *dy = fmaxf(log1pf(-x), -100.0f) - fmaxf(logf(x), -100.0f);
      return;
    }
    if (kind == ElementwiseLoss::bce_logits) {
      const float e = expf(-fabsf(x)), s = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);  // sigmoid(x)
      *dx = s * (pw * y + 1.0f - y) - pw * y;
      *dy = (pw - 1.0f) * softplus_neg(x) - x;
      return;
    }
    // the losses of the difference d = x - y: l1's sign is 0 where d is, huber's clip passes NaN, as numpy's
    const float d = x - y;
    *dx = kind == ElementwiseLoss::mse ? 2.0f * d
        : kind == ElementwiseLoss::l1  ? (d > 0.0f ? 1.0f : d < 0.0f ? -1.0f : d)
                                       : (d < -delta ? -delta : d > delta ? delta : d);
    *dy = -*dx;
  }

  // softplus(-x) = -log(sigmoid(x)), without overflow.
  __device__ static float softplus_neg(float x) { return fmaxf(-x, 0.0f) + log1pf(expf(-fabsf(x))); }
};

__device__ float weight_at(const float* w, int64_t period, int64_t i) { return w ? w[i % period] : 1.0f; }

template <ElementwiseLoss kind>
__global__ void elementwise_loss_forward_kernel(float* loss, ElementwiseLossArgs a) {
  GRID_STRIDE(i, a.n)
    loss[i] = Element<kind>::loss(a.x[i], a.y[i], weight_at(a.pos_weight, a.pos_weight_period, i), a.delta) *
              weight_at(a.weight, a.weight_period, i);
}

// g = grad[i * grad_stride] / divisor * weight; dx and dy where not null.
template <ElementwiseLoss kind>
__global__ void elementwise_loss_backward_kernel(float* dx, float* dy, const float* grad, int64_t grad_stride,
                                                 float divisor, ElementwiseLossArgs a) {
  GRID_STRIDE(i, a.n) {
    const float g = grad[i * grad_stride] / divisor * weight_at(a.weight, a.weight_period, i);
    float gx, gy;
    Element<kind>::grads(a.x[i], a.y[i], weight_at(a.pos_weight, a.pos_weight_period, i), a.delta, &gx, &gy);
    if (dx) dx[i] = g * gx;
    if (dy) dy[i] = g * gy;
  }
}

// f(kind) with kind as a compile-time constant (std::integral_constant), for the kernel templates.
template <class F>
void with_kind(ElementwiseLoss kind, F&& f) {
  switch (kind) {
    case ElementwiseLoss::mse: return f(std::integral_constant<ElementwiseLoss, ElementwiseLoss::mse>{});
    case ElementwiseLoss::l1: return f(std::integral_constant<ElementwiseLoss, ElementwiseLoss::l1>{});
    case ElementwiseLoss::huber: return f(std::integral_constant<ElementwiseLoss, ElementwiseLoss::huber>{});
    case ElementwiseLoss::bce: return f(std::integral_constant<ElementwiseLoss, ElementwiseLoss::bce>{});
    case ElementwiseLoss::bce_logits:
      return f(std::integral_constant<ElementwiseLoss, ElementwiseLoss::bce_logits>{});
  }
}

}  // namespace

void softmax_forward(float* y, const float* x, int64_t outer, int64_t C, int64_t inner, bool log, int device) {
  if (log)
    launch_lines(SoftmaxForward<true>{y, x, C}, outer, C, inner, device, "softmax_forward");
  else
    launch_lines(SoftmaxForward<false>{y, x, C}, outer, C, inner, device, "softmax_forward");
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t outer, int64_t C, int64_t inner, bool log,
                      int device) {
  if (log)
    launch_lines(SoftmaxBackward<true>{dx, dy, y, C}, outer, C, inner, device, "softmax_backward");
  else
    launch_lines(SoftmaxBackward<false>{dx, dy, y, C}, outer, C, inner, device, "softmax_backward");
}

void cross_entropy_forward(float* loss, float* weight_sum, const CrossEntropyArgs& a, Reduction reduction,
                           int device) {
  cudaStream_t s = stream_of(device);
  const bool per_row = reduction == Reduction::none;
  if (!per_row) check(cudaMemsetAsync(loss, 0, sizeof(float), s), "cross_entropy_forward");
  check(cudaMemsetAsync(weight_sum, 0, sizeof(float), s), "cross_entropy_forward");
  if (a.N > 0) {
    cross_entropy_forward_kernel<<<row_blocks(a.N), 32 * kRowsPerBlock, 0, s>>>(loss, weight_sum, a, per_row);
    check_launch("cross_entropy_forward");
  }
  if (reduction == Reduction::mean) {
    divide_kernel<<<1, 1, 0, s>>>(loss, weight_sum);
    check_launch("cross_entropy_forward");
  }
}

void cross_entropy_backward(float* dlogits, float* dprobs, const float* grad_loss, const float* weight_sum,
                            const CrossEntropyArgs& a, Reduction reduction, int device) {
  if (a.N == 0) return;
  cross_entropy_backward_kernel<<<row_blocks(a.N), 32 * kRowsPerBlock, 0, stream_of(device)>>>(
      dlogits, dprobs, grad_loss, reduction == Reduction::none ? 1 : 0,
      reduction == Reduction::mean ? weight_sum : nullptr, a);
  check_launch("cross_entropy_backward");
}

void elementwise_loss_forward(float* loss, const ElementwiseLossArgs& a, Reduction reduction, int device) {
  cudaStream_t s = stream_of(device);
  if (reduction == Reduction::mean && a.n == 0) return fill(loss, NAN, 1, device);  // the mean of nothing
  if (reduction == Reduction::none) {
    if (a.n == 0) return;
    with_kind(a.kind, [&](auto k) {
      elementwise_loss_forward_kernel<decltype(k)::value><<<grid_for(a.n, kThreads), kThreads, 0, s>>>(loss, a);
    });
    check_launch("elementwise_loss_forward");
    return;
  }
  Scratch elements(a.n, device);
  elementwise_loss_forward(elements.ptr, a, Reduction::none, device);
  sum_all(loss, elements.ptr, a.n, reduction == Reduction::mean ? 1.0f / static_cast<float>(a.n) : 1.0f, device);
}

void elementwise_loss_backward(float* dx, float* dy, const float* grad_loss, const ElementwiseLossArgs& a,
                               Reduction reduction, int device) {
  if (a.n == 0) return;
  const int64_t stride = reduction == Reduction::none ? 1 : 0;
  const float divisor = reduction == Reduction::mean ? static_cast<float>(a.n) : 1.0f;
  cudaStream_t s = stream_of(device);
  with_kind(a.kind, [&](auto k) {
    elementwise_loss_backward_kernel<decltype(k)::value><<<grid_for(a.n, kThreads), kThreads, 0, s>>>(
        dx, dy, grad_loss, stride, divisor, a);
  });
  check_launch("elementwise_loss_backward");
}

}  // namespace cuda
}  // namespace fastnn
