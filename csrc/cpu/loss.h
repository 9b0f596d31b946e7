// Cross-entropy of logits, fused: log-softmax + NLL, with class weights, ignore_index and label
// smoothing, against class indices or class probabilities. PyTorch's semantics.
//
// Dimension letters: R rows (N, or N*d1*...*dk once an (N, C, d1, ..., dk) input has its class
// axis moved last), C classes. logits and probs are (R, C) with row stride ld (>= C).
#pragma once
#include <cstdint>

namespace fastnn {

enum class Reduction { none = 0, mean = 1, sum = 2 };

// The problem, read by both directions. Exactly one of `targets` and `probs` is set.
struct CrossEntropyProblem {
  const float* logits;     // (R, C), row stride ld_logits
  int64_t ld_logits;
  const int64_t* targets;  // (R,) class indices in [0, C) or ignore_index; or null
  const float* probs;      // (R, C) target probabilities, row stride ld_probs; or null
  int64_t ld_probs;
  const float* weight;     // (C,) class weights; or null (all 1)
  int64_t R, C;
  int64_t ignore_index;
  float label_smoothing;   // in [0, 1]
  Reduction reduction;
};

// row_loss (R,): the unreduced loss of each row (0 for ignored rows); lse (R,): the log-sum-exp
// of each row in double (so that x - lse stays exact for large logits), kept for the backward.
// Returns the reduced loss (mean or sum; for `none`, the sum).
// mean divides by the summed weights of the non-ignored targets (by R for probabilities): nan when
// that is 0, as in PyTorch.
float cross_entropy_forward(float* row_loss, double* lse, const CrossEntropyProblem& p);

// grad (R, C), contiguous: d(loss)/d(logits) given grad_loss, which holds R values for
// reduction `none` and one value otherwise. Ignored rows get 0.
void cross_entropy_backward(float* grad, const float* grad_loss, const double* lse, const CrossEntropyProblem& p);

}  // namespace fastnn
