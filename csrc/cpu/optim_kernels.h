// The element loops of the fused optimizer kernels (see optim.h for the rules and the
// threading), written once as plain loops over __restrict pointers and compiled by
// optim_kernel_ref.cpp, optim_kernel_avx2.cpp and optim_kernel_avx512.cpp, each with its own
// ISA flags. Everything here has internal linkage, so every including file gets its own copy;
// including it anywhere else would leak wide instructions into baseline code.
//
// Each loop's options are template parameters, so the vectorized loops carry no branches.
// Arithmetic follows PyTorch's single-tensor CPU path term by term, in float32
// (x.add_(y, alpha=a) is x + a * y, addcdiv_(t1, t2, value=v) is x + v * (t1 / t2),
// lerp_(end, w) is x + w * (end - x)). Compilers may fuse a * b + c into one FMA, so the last
// bit can differ between the ISA builds, but never between thread counts.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/optim.h"

namespace fastnn {
namespace {

// ---- SGD: p -= lr * g', g' = momentum/Nesterov of (+-grad + wd * p) --------------------------
template <bool WD, bool MOM, bool NEST, bool FIRST>
void sgd_loop(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n,
              const SgdOptions& o) {
  const float sign = o.maximize ? -1.0f : 1.0f, lr = o.lr, wd = o.weight_decay;
  const float mom = o.momentum, keep = o.one_minus_dampening;
  for (int64_t i = 0; i < n; ++i) {
    float gi = sign * g[i];
    if (WD) gi = gi + wd * p[i];
    if (MOM) {
      const float b = FIRST ? gi : mom * buf[i] + keep * gi;
      buf[i] = b;
      gi = NEST ? gi + mom * b : b;
    }
    p[i] = p[i] - lr * gi;
  }
}

template <bool WD, bool MOM>
void sgd_pick(float* p, const float* g, float* buf, int64_t n, const SgdOptions& o, bool first) {
  if (!MOM) return sgd_loop<WD, false, false, false>(p, g, buf, n, o);
  if (o.nesterov)
    return first ? sgd_loop<WD, MOM, true, true>(p, g, buf, n, o) : sgd_loop<WD, MOM, true, false>(p, g, buf, n, o);
  return first ? sgd_loop<WD, MOM, false, true>(p, g, buf, n, o) : sgd_loop<WD, MOM, false, false>(p, g, buf, n, o);
}

void sgd_chunk(const OptimTensor& t, int64_t lo, int64_t hi, const SgdOptions& o) {
  float* p = t.param + lo;
  const float* g = t.grad + lo;
  const bool mom = o.momentum != 0.0f, first = t.scalar[0] != 0.0f;
  float* buf = mom ? t.state[0] + lo : nullptr;
  const int64_t n = hi - lo;
  if (o.weight_decay != 0.0f)
    mom ? sgd_pick<true, true>(p, g, buf, n, o, first) : sgd_pick<true, false>(p, g, buf, n, o, first);
  else
    mom ? sgd_pick<false, true>(p, g, buf, n, o, first) : sgd_pick<false, false>(p, g, buf, n, o, first);
}

// ---- Adagrad: sum += g^2; p -= clr * g / (sqrt(sum) + eps) ----------------------------------
template <bool WD>
void adagrad_loop(float* __restrict p, const float* __restrict g, float* __restrict sum, int64_t n,
                  const AdagradOptions& o, float clr) {
  const float sign = o.maximize ? -1.0f : 1.0f, wd = o.weight_decay, eps = o.eps, neg_clr = -clr;
  for (int64_t i = 0; i < n; ++i) {
    float gi = sign * g[i];
    if (WD) gi = gi + wd * p[i];
    const float s = sum[i] + gi * gi;
    sum[i] = s;
    const float std_ = std::sqrt(s) + eps;
    p[i] = p[i] + neg_clr * (gi / std_);
  }
}

void adagrad_chunk(const OptimTensor& t, int64_t lo, int64_t hi, const AdagradOptions& o) {
  if (o.weight_decay != 0.0f)
    adagrad_loop<true>(t.param + lo, t.grad + lo, t.state[0] + lo, hi - lo, o, t.scalar[0]);
  else
    adagrad_loop<false>(t.param + lo, t.grad + lo, t.state[0] + lo, hi - lo, o, t.scalar[0]);
}

// ---- RMSprop: sq = alpha sq + (1-alpha) g^2; avg = sqrt(sq [- ga^2]) + eps; p -= lr g / avg --
template <bool WD, bool CENTERED, bool MOM>
void rmsprop_loop(float* __restrict p, const float* __restrict g, float* __restrict sq, float* __restrict ga,
                  float* __restrict buf, int64_t n, const RmspropOptions& o) {
  const float sign = o.maximize ? -1.0f : 1.0f, wd = o.weight_decay, eps = o.eps, neg_lr = -o.lr;
  const float alpha = o.alpha, oma = o.one_minus_alpha, mom = o.momentum;
  for (int64_t i = 0; i < n; ++i) {
    float gi = sign * g[i];
    if (WD) gi = gi + wd * p[i];
    const float s = alpha * sq[i] + oma * (gi * gi);
    sq[i] = s;
    float avg;
    if (CENTERED) {
      const float a = ga[i] + oma * (gi - ga[i]);
      ga[i] = a;
      avg = std::sqrt(s + -1.0f * (a * a)) + eps;
    } else {
      avg = std::sqrt(s) + eps;
    }
    if (MOM) {
      const float b = mom * buf[i] + gi / avg;
      buf[i] = b;
      p[i] = p[i] + neg_lr * b;
    } else {
      p[i] = p[i] + neg_lr * (gi / avg);
    }
  }
}

template <bool WD>
void rmsprop_pick(const OptimTensor& t, int64_t lo, int64_t hi, const RmspropOptions& o) {
  float* p = t.param + lo;
  const float* g = t.grad + lo;
  float* sq = t.state[0] + lo;
  float* ga = o.centered ? t.state[1] + lo : nullptr;
  float* buf = o.momentum > 0.0f ? t.state[2] + lo : nullptr;
  const int64_t n = hi - lo;
  if (o.centered)
    buf ? rmsprop_loop<WD, true, true>(p, g, sq, ga, buf, n, o) : rmsprop_loop<WD, true, false>(p, g, sq, ga, buf, n, o);
  else
    buf ? rmsprop_loop<WD, false, true>(p, g, sq, ga, buf, n, o) : rmsprop_loop<WD, false, false>(p, g, sq, ga, buf, n, o);
}

void rmsprop_chunk(const OptimTensor& t, int64_t lo, int64_t hi, const RmspropOptions& o) {
  o.weight_decay != 0.0f ? rmsprop_pick<true>(t, lo, hi, o) : rmsprop_pick<false>(t, lo, hi, o);
}

// ---- Adam / AdamW ---------------------------------------------------------------------------
// m = lerp(m, g, 1-beta1); v = beta2 v + (1-beta2) g^2; [vmax = max(vmax, v)];
// p -= step_size * m / (sqrt(v or vmax) / sqrt(bc2) + eps)
template <bool L2, bool DECOUPLED, bool AMSGRAD>
void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
               float* __restrict vmax, int64_t n, const AdamOptions& o, float step_size, float bc2_sqrt) {
  const float sign = o.maximize ? -1.0f : 1.0f, wd = o.weight_decay, decay = o.decay_factor;
  const float b1w = o.one_minus_beta1, beta2 = o.beta2, omb2 = o.one_minus_beta2, eps = o.eps;
  const float neg_step = -step_size;
  for (int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    if (DECOUPLED) pi = pi * decay;
    float gi = sign * g[i];
    if (L2) gi = gi + wd * pi;
    const float mi = m[i] + b1w * (gi - m[i]);
    const float vi = beta2 * v[i] + omb2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    float denom;
    if (AMSGRAD) {
      const float mx = vmax[i] >= vi ? vmax[i] : vi;  // a NaN in v propagates, as torch.maximum
      vmax[i] = mx;
      denom = std::sqrt(mx) / bc2_sqrt + eps;
    } else {
      denom = std::sqrt(vi) / bc2_sqrt + eps;
    }
    p[i] = pi + neg_step * (mi / denom);
  }
}

void adam_chunk(const OptimTensor& t, int64_t lo, int64_t hi, const AdamOptions& o) {
  float* p = t.param + lo;
  const float* g = t.grad + lo;
  float* m = t.state[0] + lo;
  float* v = t.state[1] + lo;
  float* vmax = o.amsgrad ? t.state[2] + lo : nullptr;
  const int64_t n = hi - lo;
  const float ss = t.scalar[0], bc2 = t.scalar[1];
  const bool l2 = !o.decoupled && o.weight_decay != 0.0f;
  if (o.decoupled) {
    o.amsgrad ? adam_loop<false, true, true>(p, g, m, v, vmax, n, o, ss, bc2)
              : adam_loop<false, true, false>(p, g, m, v, vmax, n, o, ss, bc2);
  } else if (l2) {
    o.amsgrad ? adam_loop<true, false, true>(p, g, m, v, vmax, n, o, ss, bc2)
              : adam_loop<true, false, false>(p, g, m, v, vmax, n, o, ss, bc2);
  } else {
    o.amsgrad ? adam_loop<false, false, true>(p, g, m, v, vmax, n, o, ss, bc2)
              : adam_loop<false, false, false>(p, g, m, v, vmax, n, o, ss, bc2);
  }
}

// ---- reductions for the gradient norm: fixed lanes, so the order of additions is fixed ------
constexpr int kLanes = 16;

double sum_squares_loop(const float* __restrict x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const double v = x[i + k];
      acc[k] += v * v;  // exact product: an FMA changes nothing
    }
  double s = 0.0;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  for (int k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

double sum_abs_loop(const float* __restrict x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += std::fabs(static_cast<double>(x[i + k]));
  double s = 0.0;
  for (; i < n; ++i) s += std::fabs(static_cast<double>(x[i]));
  for (int k = 0; k < kLanes; ++k) s += acc[k];
  return s;
}

// |x| as the bits of a float with the sign cleared: for such values the unsigned-integer order is
// the float order, and every NaN sorts above infinity. So an integer max (one instruction per
// vector, exact) finds the largest |x| and returns NaN when any x is NaN.
double max_abs_loop(const float* __restrict x, int64_t n) {
  uint32_t acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      uint32_t u;
      std::memcpy(&u, x + i + k, sizeof u);
      u &= 0x7fffffffu;
      acc[k] = u > acc[k] ? u : acc[k];
    }
  uint32_t m = 0;
  for (; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof u);
    u &= 0x7fffffffu;
    m = u > m ? u : m;
  }
  for (int k = 0; k < kLanes; ++k) m = acc[k] > m ? acc[k] : m;
  float f;
  std::memcpy(&f, &m, sizeof f);
  return static_cast<double>(f);
}

// ---- in-place elementwise ------------------------------------------------------------------
void scale_loop(float* __restrict x, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * factor;
}

void clamp_loop(float* __restrict x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    v = v < lo ? lo : v;  // min(max(x, lo), hi) as torch.clamp: hi wins when lo > hi,
    x[i] = v > hi ? hi : v;  // and comparisons with NaN are false: NaN stays
  }
}

void ema_loop(float* __restrict shadow, const float* __restrict param, int64_t n, float decay,
              float one_minus_decay) {
  for (int64_t i = 0; i < n; ++i) shadow[i] = decay * shadow[i] + one_minus_decay * param[i];
}

constexpr OptimKernels kOptimKernels = {sgd_chunk,     adagrad_chunk,    rmsprop_chunk, adam_chunk,
                                        sum_squares_loop, sum_abs_loop, max_abs_loop,  scale_loop,
                                        clamp_loop,    ema_loop};

}  // namespace
}  // namespace fastnn
