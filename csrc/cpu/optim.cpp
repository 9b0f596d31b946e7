// Fused optimizer steps, clipping and EMA: the threading over a list of tensors and the ISA
// dispatch. The rules and the threading scheme are stated in optim.h; the element loops live in
// optim_kernels.h. Dimension letters: E = elements of all tensors together, n = one tensor's.
#include "cpu/optim.h"

#include <algorithm>
#include <cmath>

#include "common/threads.h"

namespace fastnn {

const OptimKernels& optim_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::avx512: return optim_kernels_avx512();
    case Isa::avx2: return optim_kernels_avx2();
    default: return optim_kernels_ref();
  }
}

namespace {

// Cuts are multiples of this many elements from the start of their tensor: a multiple of every
// vector width and unroll, so an element's instructions do not depend on where the cuts fall.
constexpr int64_t kAlign = 64;
// Elements of one partial sum of total_norm (fixed, so the sum's order is fixed).
constexpr int64_t kNormChunk = int64_t(1) << 14;
// Work units (about one multiply-add each) per element of a pass, for threads_for_work: each
// element moves 8-28 bytes, so a thread is worth starting from some 16 Ki elements on.
constexpr double kMinWorkPerThread = 1 << 17;

template <class T>
int64_t total_elements(const T* t, int64_t count) {
  int64_t e = 0;
  for (int64_t j = 0; j < count; ++j) e += t[j].n;
  return e;
}

// Where share k of nt begins: k/nt of the way through the E elements, moved down to a
// multiple of kAlign from the start of the tensor it falls in.
template <class T>
int64_t cut(const T* t, int64_t count, int64_t total, int k, int nt) {
  if (k <= 0) return 0;
  if (k >= nt) return total;
  const int64_t raw = static_cast<int64_t>(static_cast<double>(total) * k / nt);
  int64_t off = 0;
  for (int64_t j = 0; j < count; ++j) {
    if (raw < off + t[j].n) return off + (raw - off) / kAlign * kAlign;
    off += t[j].n;
  }
  return total;
}

// Calls body(t[j], lo, hi) for the element ranges [lo, hi) of the tensors, split across threads
// as optim.h says. `cost` is the work per element.
template <class T, class Body>
void for_each_share(const T* t, int64_t count, double cost, Body&& body) {
  const int64_t total = total_elements(t, count);
  if (total == 0) return;
  const int threads = threads_for_work(static_cast<double>(total) * cost, kMinWorkPerThread);
  run_parallel(threads, [&](int tid, int nt) {
    const int64_t begin = cut(t, count, total, tid, nt), end = cut(t, count, total, tid + 1, nt);
    int64_t off = 0;
    for (int64_t j = 0; j < count && off < end; ++j) {
      const int64_t lo = std::max(begin, off), hi = std::min(end, off + t[j].n);
      if (lo < hi) body(t[j], lo - off, hi - off);
      off += t[j].n;
    }
  });
}

}  // namespace

// ---- host-side scalars, in double like PyTorch's Python code, rounded to float once ---------

SgdOptions make_sgd_options(double lr, double momentum, double dampening, double weight_decay, bool nesterov,
                            bool maximize) {
  return {float(lr), float(momentum), float(1.0 - dampening), float(weight_decay), nesterov, maximize};
}

float adagrad_rate(double lr, double lr_decay, int64_t step) {
  return float(lr / (1.0 + double(step - 1) * lr_decay));
}

RmspropOptions make_rmsprop_options(double lr, double alpha, double eps, double weight_decay, double momentum,
                                    bool centered, bool maximize) {
  return {float(lr), float(alpha), float(1.0 - alpha), float(eps), float(weight_decay), float(momentum),
          centered, maximize};
}

AdamOptions make_adam_options(double lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                              bool decoupled, bool maximize) {
  return {float(1.0 - beta1), float(beta2), float(1.0 - beta2), float(eps), float(weight_decay),
          float(1.0 - lr * weight_decay), amsgrad, decoupled, maximize};
}

void adam_bias_corrections(double lr, double beta1, double beta2, int64_t step, float* step_size, float* bc2_sqrt) {
  const double s = double(step);
  *step_size = float(lr / (1.0 - std::pow(beta1, s)));
  *bc2_sqrt = float(std::sqrt(1.0 - std::pow(beta2, s)));
}

void sgd_step(const OptimTensor* tensors, int64_t count, const SgdOptions& o) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  for_each_share(tensors, count, 2.0, [&](const OptimTensor& t, int64_t lo, int64_t hi) { k.sgd(t, lo, hi, o); });
}

void adagrad_step(const OptimTensor* tensors, int64_t count, const AdagradOptions& o) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  for_each_share(tensors, count, 4.0,
                 [&](const OptimTensor& t, int64_t lo, int64_t hi) { k.adagrad(t, lo, hi, o); });
}

void rmsprop_step(const OptimTensor* tensors, int64_t count, const RmspropOptions& o) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  for_each_share(tensors, count, 4.0,
                 [&](const OptimTensor& t, int64_t lo, int64_t hi) { k.rmsprop(t, lo, hi, o); });
}

void adam_step(const OptimTensor* tensors, int64_t count, const AdamOptions& o) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  for_each_share(tensors, count, 4.0, [&](const OptimTensor& t, int64_t lo, int64_t hi) { k.adam(t, lo, hi, o); });
}

// ---- norms ----------------------------------------------------------------------------------

int64_t norm_workspace_size(const FloatSpan* tensors, int64_t count) {
  int64_t chunks = 0;
  for (int64_t j = 0; j < count; ++j) chunks += (tensors[j].n + kNormChunk - 1) / kNormChunk;
  return chunks;
}

double total_norm(const FloatSpan* tensors, int64_t count, double p, double* workspace) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  const bool is_inf = std::isinf(p), is_two = p == 2.0, is_one = p == 1.0;
  const int64_t chunks = norm_workspace_size(tensors, count);
  if (chunks == 0) return 0.0;
  const int64_t total = total_elements(tensors, count);
  // The general power runs std::pow per element: count it as costly work.
  const double cost = (is_inf || is_two || is_one) ? 1.0 : 16.0;
  const int threads = threads_for_work(static_cast<double>(total) * cost, kMinWorkPerThread);

  // Partial c covers elements [c_lo, c_hi) of one tensor; threads take equal runs of chunks.
  run_parallel(threads, [&](int tid, int nt) {
    int64_t first, last;
    split_range(chunks, tid, nt, &first, &last);
    int64_t c = 0;
    for (int64_t j = 0; j < count && c < last; ++j) {
      const FloatSpan& t = tensors[j];
      for (int64_t lo = 0; lo < t.n; lo += kNormChunk, ++c) {
        if (c < first) continue;
        if (c >= last) break;
        const float* x = t.data + lo;
        const int64_t n = std::min(kNormChunk, t.n - lo);
        double s;
        if (is_inf) s = k.max_abs(x, n);
        else if (is_two) s = k.sum_squares(x, n);
        else if (is_one) s = k.sum_abs(x, n);
        else {
          s = 0.0;
          for (int64_t i = 0; i < n; ++i) s += std::pow(std::fabs(static_cast<double>(x[i])), p);
        }
        workspace[c] = s;
      }
    }
  });

  double acc = 0.0;
  if (is_inf) {
    for (int64_t c = 0; c < chunks; ++c) {
      if (std::isnan(workspace[c])) return workspace[c];
      acc = std::max(acc, workspace[c]);
    }
    return acc;
  }
  for (int64_t c = 0; c < chunks; ++c) acc += workspace[c];
  if (is_two) return std::sqrt(acc);
  if (is_one) return acc;
  return std::pow(acc, 1.0 / p);
}

bool clip_grad_norm(const FloatSpan* grads, int64_t count, double max_norm, double p, bool error_if_nonfinite,
                    double* workspace, double* norm) {
  *norm = total_norm(grads, count, p, workspace);
  if (!std::isfinite(*norm) && error_if_nonfinite) return false;
  const double coef = max_norm / (*norm + 1e-6);
  if (!(coef >= 1.0)) scale_buffers(grads, count, static_cast<float>(coef));  // a factor of 1 changes nothing
  return true;
}

// ---- in-place passes ------------------------------------------------------------------------

void scale_buffers(const FloatSpan* tensors, int64_t count, float factor) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  for_each_share(tensors, count, 1.0, [&](const FloatSpan& t, int64_t lo, int64_t hi) {
    k.scale(t.data + lo, hi - lo, factor);
  });
}

void clamp_buffers(const FloatSpan* tensors, int64_t count, float lo_value, float hi_value) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  for_each_share(tensors, count, 1.0, [&](const FloatSpan& t, int64_t lo, int64_t hi) {
    k.clamp(t.data + lo, hi - lo, lo_value, hi_value);
  });
}

void ema_update(const FloatSpan* shadows, const float* const* params, int64_t count, double decay_value) {
  const OptimKernels& k = optim_kernels_for(active_isa());
  const float decay = static_cast<float>(decay_value), one_minus_decay = static_cast<float>(1.0 - decay_value);
  const FloatSpan* base = shadows;
  for_each_share(shadows, count, 2.0, [&](const FloatSpan& t, int64_t lo, int64_t hi) {
    const float* param = params[&t - base];
    k.ema(t.data + lo, param + lo, hi - lo, decay, one_minus_decay);
  });
}

void copy_buffers(const FloatSpan* dst, const float* const* src, int64_t count) {
  const FloatSpan* base = dst;
  for_each_share(dst, count, 1.0, [&](const FloatSpan& t, int64_t lo, int64_t hi) {
    const float* s = src[&t - base];
    std::copy(s + lo, s + hi, t.data + lo);
  });
}

}  // namespace fastnn
