// Fused cross-entropy: log-softmax + negative log-likelihood in one pass per row.
//
// Algorithm, per row x (C logits), with class weights w (1 when absent) and smoothing eps:
//   forward:  m = max_c x_c;  lse = m + log(sum_c exp(x_c - m))   (no overflow for any finite x)
//             index target t:  loss = (1 - eps) * w_t * (lse - x_t) + eps / C * sum_c w_c (lse - x_c)
//             probabilities q: q' = (1 - eps) q + eps / C;  loss = sum_c w_c q'_c (lse - x_c)
//   backward: p_c = exp(x_c - lse)
//             index target t:  dx_c = g * [((1 - eps) w_t + eps W / C) p_c - (eps / C) w_c - (1 - eps) w_t [c == t]]
//                              with W = sum_c w_c
//             probabilities q: dx_c = g * [(sum_k w_k q'_k) p_c - w_c q'_c]
//   Rows whose target is ignore_index give loss 0 and gradient 0. `mean` divides by the summed
//   weights w_t of the non-ignored rows (index targets) or by R (probabilities), as PyTorch does.
//   Row sums are accumulated in double; lse is kept in double for the backward, so that x - lse
//   is exact even for logits of 1e4.
//
// Threading: rows are independent; above a work threshold they are split into one contiguous
// range per OpenMP thread (run_parallel). The reduction over rows is a sequential double sum of
// the per-row losses in row order after the parallel part, so the result is bitwise identical for
// any thread count. Nothing is allocated here: the caller passes row_loss and lse.
#include "cpu/loss.h"

#include <cmath>
#include <limits>

#include "common/threads.h"

namespace fastnn {
namespace {

// About eight multiply-adds of work per element (one exp, a few adds).
constexpr double kWorkPerElement = 8.0;

inline float weight_of(const CrossEntropyProblem& p, int64_t c) { return p.weight ? p.weight[c] : 1.0f; }

// log(sum_c exp(x_c)) of one row, in double. NaN propagates; a row of -inf gives -inf.
double row_log_sum_exp(const float* x, int64_t C) {
  float m = x[0];
  for (int64_t c = 1; c < C; ++c) m = x[c] > m ? x[c] : m;
  if (std::isinf(m)) return m;  // +inf: the loss is inf or nan anyway; -inf: every logit is -inf
  double s = 0.0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(x[c] - m);
  return static_cast<double>(m) + std::log(s);
}

double forward_row(const CrossEntropyProblem& p, int64_t r, double lse) {
  const float* x = p.logits + r * p.ld_logits;
  const int64_t C = p.C;
  const double eps = p.label_smoothing;
  if (p.targets) {
    const int64_t t = p.targets[r];
    if (t == p.ignore_index) return 0.0;
    double loss = (1.0 - eps) * weight_of(p, t) * (lse - x[t]);
    if (eps > 0.0) {
      double smooth = 0.0;
      for (int64_t c = 0; c < C; ++c) smooth += weight_of(p, c) * (lse - x[c]);
      loss += eps / C * smooth;
    }
    return loss;
  }
  const float* q = p.probs + r * p.ld_probs;
  double loss = 0.0;
  for (int64_t c = 0; c < C; ++c) loss += weight_of(p, c) * ((1.0 - eps) * q[c] + eps / C) * (lse - x[c]);
  return loss;
}

// What `mean` divides by.
double mean_denominator(const CrossEntropyProblem& p) {
  if (!p.targets) return static_cast<double>(p.R);
  double total = 0.0;
  for (int64_t r = 0; r < p.R; ++r)
    if (p.targets[r] != p.ignore_index) total += weight_of(p, p.targets[r]);
  return total;
}

}  // namespace

float cross_entropy_forward(float* row_loss, double* lse, const CrossEntropyProblem& p) {
  const int threads = threads_for_work(static_cast<double>(p.R) * p.C * kWorkPerElement);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t begin, end;
    split_range(p.R, tid, nt, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
      lse[r] = row_log_sum_exp(p.logits + r * p.ld_logits, p.C);
      row_loss[r] = static_cast<float>(forward_row(p, r, lse[r]));
    }
  });
  double total = 0.0;  // sequential, in row order: the same sum for any thread count
  for (int64_t r = 0; r < p.R; ++r) total += row_loss[r];
  if (p.reduction == Reduction::mean) total /= mean_denominator(p);  // 0 / 0 = nan, as in PyTorch
  return static_cast<float>(total);
}

void cross_entropy_backward(float* grad, const float* grad_loss, const double* lse, const CrossEntropyProblem& p) {
  const int64_t C = p.C;
  const double eps = p.label_smoothing;
  double g_all = grad_loss[0];
  if (p.reduction == Reduction::mean) g_all /= mean_denominator(p);
  double weight_total = static_cast<double>(C);
  if (p.weight) {
    weight_total = 0.0;
    for (int64_t c = 0; c < C; ++c) weight_total += p.weight[c];
  }
  const int threads = threads_for_work(static_cast<double>(p.R) * C * kWorkPerElement);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t begin, end;
    split_range(p.R, tid, nt, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
      const float* x = p.logits + r * p.ld_logits;
      float* dx = grad + r * C;
      const double g = p.reduction == Reduction::none ? static_cast<double>(grad_loss[r]) : g_all;
      const double l = lse[r];
      if (p.targets) {
        const int64_t t = p.targets[r];
        if (t == p.ignore_index) {
          for (int64_t c = 0; c < C; ++c) dx[c] = 0.0f;
          continue;
        }
        const double wt = weight_of(p, t);
        const float coef = static_cast<float>(g * ((1.0 - eps) * wt + eps * weight_total / C));
        const float smooth = static_cast<float>(g * eps / C);
        if (smooth == 0.0f) {
          for (int64_t c = 0; c < C; ++c) dx[c] = coef * std::exp(static_cast<float>(x[c] - l));
        } else {
          for (int64_t c = 0; c < C; ++c)
            dx[c] = coef * std::exp(static_cast<float>(x[c] - l)) - smooth * weight_of(p, c);
        }
        dx[t] -= static_cast<float>(g * (1.0 - eps) * wt);
      } else {
        const float* q = p.probs + r * p.ld_probs;
        const float keep = static_cast<float>(1.0 - eps), spread = static_cast<float>(eps / C);
        double mass = 0.0;  // sum_k w_k q'_k
        for (int64_t c = 0; c < C; ++c) mass += weight_of(p, c) * (keep * q[c] + spread);
        const float coef = static_cast<float>(g * mass), gf = static_cast<float>(g);
        for (int64_t c = 0; c < C; ++c)
          dx[c] = coef * std::exp(static_cast<float>(x[c] - l)) - gf * weight_of(p, c) * (keep * q[c] + spread);
      }
    }
  });
}

}  // namespace fastnn
