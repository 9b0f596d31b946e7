// Batch normalization: training forward (batch statistics, running-statistics update),
// evaluation forward, and the fused backward. The threading and the ISA dispatch live here; the
// element loops in norm_kernels.h (one build per ISA).
//
// Algorithm: per channel, one pass accumulates in double the shifted sums S1 = sum(x - K) and
// S2 = sum((x - K)^2), K being the channel's first value (the shift keeps S2 - S1^2 / M accurate
// when the mean is large against the spread); a second pass writes
// y = (x - mean) * (gamma * invstd) + beta in float32. The backward accumulates sum(g) and
// sum(g * (x - mean)) in double in one pass and writes grad_x in a second. The double sums use
// eight lanes in a fixed order.
// Layouts: for L > 1 a channel is N contiguous runs of L values (its N * L values, a few
// hundred KiB at most for usual shapes, stay in cache between the two passes); for L == 1 (an
// (N, C) input) a channel is a column, so the passes walk whole rows over a range of channels,
// with per-channel sums in a workspace kept per thread.
// Threading: channels (L > 1) or ranges of 16 channels (L == 1) are split among the threads
// above a work threshold; a channel is always reduced by one thread in one order, so results do
// not depend on the thread count.
#include "cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/threads.h"

namespace fastnn {

const NormKernels& norm_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::avx512: return norm_kernels_avx512();
    case Isa::avx2: return norm_kernels_avx2();
    default: return norm_kernels_ref();
  }
}

namespace {

// Mean, invstd (rounded to float) and the running-statistics update of channel c from its sums.
void finish_stats(int64_t c, double k, double s1, double s2, int64_t M, double eps, double momentum, float* save_mean,
                  float* save_invstd, float* running_mean, float* running_var) {
  const double m = static_cast<double>(M);
  const double mean = k + s1 / m;
  const double var = std::max((s2 - s1 * s1 / m) / m, 0.0);
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
  if (running_mean) {
    const double unbiased = M > 1 ? var * m / (m - 1.0) : var;
    running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
    running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
  }
}

// ---- (N, C) inputs: a thread owns the channels [c0, c1) and walks whole rows --------------------

constexpr int64_t kChannelAlign = 16;

template <class Body>
void by_channel_ranges(int64_t N, int64_t C, Body&& body) {
  const int64_t chunks = (C + kChannelAlign - 1) / kChannelAlign;
  const int threads = threads_for_items(3.0 * static_cast<double>(N) * static_cast<double>(C), chunks);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t k0, k1;
    split_range(chunks, tid, nt, &k0, &k1);
    const int64_t c0 = k0 * kChannelAlign, c1 = std::min(C, k1 * kChannelAlign);
    if (c0 < c1) body(c0, c1);
  });
}

// Per-thread workspace of the rows path, kept between calls: two double sums and three float
// factors per channel of the thread's range.
struct RowWorkspace {
  double *s1, *s2;
  float *f1, *f2, *f3;
};
RowWorkspace row_workspace(int64_t n) {
  static thread_local std::vector<double> buffer;
  const size_t doubles = static_cast<size_t>(2 * n + (3 * n + 1) / 2);
  if (buffer.size() < doubles) buffer.resize(doubles);
  double* d = buffer.data();
  float* f = reinterpret_cast<float*>(d + 2 * n);
  return {d, d + n, f, f + n, f + 2 * n};
}

// scale, shift (indexed from c0) for the channels [c0, c1): gamma * invstd and beta.
void scale_shift(float* scale, float* shift, const float* invstd, const float* gamma, const float* beta, int64_t c0,
                 int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    scale[c - c0] = (gamma ? gamma[c] : 1.0f) * invstd[c];
    shift[c - c0] = beta ? beta[c] : 0.0f;
  }
}

}  // namespace

void batch_norm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                              float* running_var, const float* x, const float* gamma, const float* beta, int64_t N,
                              int64_t C, int64_t L, double eps, double momentum) {
  const int64_t M = N * L;
  if (M == 0) {  // nothing to normalize: statistics of an empty batch are undefined (NaN)
    for (int64_t c = 0; c < C; ++c) save_mean[c] = save_invstd[c] = std::nanf("");
    return;
  }
  const NormKernels& k = norm_kernels_for(active_isa());
  if (L == 1) {
    by_channel_ranges(N, C, [&](int64_t c0, int64_t c1) {
      const int64_t n = c1 - c0;
      const RowWorkspace ws = row_workspace(n);
      const float* shift0 = x + c0;  // row 0 is the shift
      k.rows_stats(ws.s1, ws.s2, x + c0, shift0, N, C, n);
      for (int64_t c = c0; c < c1; ++c)
        finish_stats(c, shift0[c - c0], ws.s1[c - c0], ws.s2[c - c0], M, eps, momentum, save_mean, save_invstd,
                     running_mean, running_var);
      scale_shift(ws.f1, ws.f2, save_invstd, gamma, beta, c0, c1);
      k.rows_affine(y + c0, x + c0, save_mean + c0, ws.f1, ws.f2, N, C, n);
    });
    return;
  }
  run_parallel(threads_for_items(3.0 * N * C * L, C), [&](int tid, int nt) {
    int64_t c0, c1;
    split_range(C, tid, nt, &c0, &c1);
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = x + c * L;
      const double shift0 = xc[0];
      double s1, s2;
      k.channel_stats(&s1, &s2, xc, N, C * L, L, shift0);
      finish_stats(c, shift0, s1, s2, M, eps, momentum, save_mean, save_invstd, running_mean, running_var);
      const float scale = (gamma ? gamma[c] : 1.0f) * save_invstd[c];
      k.channel_affine(y + c * L, xc, N, C * L, L, save_mean[c], scale, beta ? beta[c] : 0.0f);
    }
  });
}

void batch_norm_forward_eval(float* y, float* save_mean, float* save_invstd, const float* x,
                             const float* running_mean, const float* running_var, const float* gamma,
                             const float* beta, int64_t N, int64_t C, int64_t L, double eps) {
  for (int64_t c = 0; c < C; ++c) {
    save_mean[c] = running_mean[c];
    save_invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
  }
  const NormKernels& k = norm_kernels_for(active_isa());
  if (L == 1) {
    by_channel_ranges(N, C, [&](int64_t c0, int64_t c1) {
      const RowWorkspace ws = row_workspace(c1 - c0);
      scale_shift(ws.f1, ws.f2, save_invstd, gamma, beta, c0, c1);
      k.rows_affine(y + c0, x + c0, save_mean + c0, ws.f1, ws.f2, N, C, c1 - c0);
    });
    return;
  }
  run_parallel(threads_for_items(2.0 * N * C * L, C), [&](int tid, int nt) {
    int64_t c0, c1;
    split_range(C, tid, nt, &c0, &c1);
    for (int64_t c = c0; c < c1; ++c) {
      const float scale = (gamma ? gamma[c] : 1.0f) * save_invstd[c];
      k.channel_affine(y + c * L, x + c * L, N, C * L, L, save_mean[c], scale, beta ? beta[c] : 0.0f);
    }
  });
}

void batch_norm_backward(float* grad_x, float* grad_gamma, float* grad_beta, const float* grad_y, const float* x,
                         const float* mean, const float* invstd, const float* gamma, int64_t N, int64_t C, int64_t L,
                         bool training) {
  const int64_t M = N * L;
  const float inv_m = M > 0 ? 1.0f / static_cast<float>(M) : 0.0f;
  const NormKernels& k = norm_kernels_for(active_isa());
  if (L == 1) {
    by_channel_ranges(N, C, [&](int64_t c0, int64_t c1) {
      const int64_t n = c1 - c0;
      const RowWorkspace ws = row_workspace(n);
      k.rows_grad_sums(ws.s1, ws.s2, grad_y + c0, x + c0, mean + c0, N, C, n);
      float* cg = ws.f1;
      float* mg = ws.f2;
      float* kk = ws.f3;
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t j = c - c0;
        if (grad_beta) grad_beta[c] = static_cast<float>(ws.s1[j]);
        if (grad_gamma) grad_gamma[c] = static_cast<float>(ws.s2[j] * invstd[c]);
        const float is = invstd[c];
        cg[j] = (gamma ? gamma[c] : 1.0f) * is;
        mg[j] = static_cast<float>(ws.s1[j]) * inv_m;
        kk[j] = static_cast<float>(ws.s2[j]) * is * is * inv_m;
      }
      k.rows_grad(grad_x + c0, grad_y + c0, x + c0, mean + c0, mg, kk, cg, N, C, n, training);
    });
    return;
  }
  run_parallel(threads_for_items(4.0 * N * C * L, C), [&](int tid, int nt) {
    int64_t c0, c1;
    split_range(C, tid, nt, &c0, &c1);
    for (int64_t c = c0; c < c1; ++c) {
      double s_g, s_gx;
      k.channel_grad_sums(&s_g, &s_gx, grad_y + c * L, x + c * L, N, C * L, L, mean[c]);
      if (grad_beta) grad_beta[c] = static_cast<float>(s_g);
      if (grad_gamma) grad_gamma[c] = static_cast<float>(s_gx * invstd[c]);
      const float is = invstd[c];
      const float cg = (gamma ? gamma[c] : 1.0f) * is;
      k.channel_grad(grad_x + c * L, grad_y + c * L, x + c * L, N, C * L, L, mean[c], static_cast<float>(s_g) * inv_m,
                     static_cast<float>(s_gx) * is * is * inv_m, cg, training);
    }
  });
}

}  // namespace fastnn
