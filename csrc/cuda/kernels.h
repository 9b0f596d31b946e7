// The CUDA kernels' entry points, callable from C++ (no CUDA types). Every function takes the
// device that owns its pointers last, runs on fastnn's stream of that device (runtime.h), returns
// as soon as the work is queued, and throws CudaError when the launch fails. Pointers are device
// pointers; arguments go outputs, inputs, then sizes, as in csrc/cpu. The bindings check shapes.
#pragma once
#include <cstdint>

namespace fastnn {
namespace cuda {

// ---- gemm.cu (M, N, K) ----
// C (M, N) = alpha * op(A) op(B) + beta * C, then + bias_n[j] and max(., 0) when asked; row-major
// with leading dimensions. beta == 0 never reads C (it may hold NaN).
void sgemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
           int64_t K, bool trans_a, bool trans_b, float alpha, float beta, const float* bias_n, bool relu,
           int device);
// Whether sgemm may round its operands to TF32 and use the tensor cores (as PyTorch's
// allow_tf32): off by default; about 3 decimal digits per product instead of 7.
void set_allow_tf32(bool allow);
bool allow_tf32();

// ---- elementwise.cu (n elements) ----
// pow_grad_base: b * a**(b - 1); pow_grad_exponent: a**b * log(a), 0 where a == 0 and b >= 0 (as
// the CPU's Pow): the factors of pow's gradients.
enum class Binary { add = 0, sub = 1, mul = 2, div = 3, pow = 4, pow_grad_base = 5, pow_grad_exponent = 6 };
void fill(float* y, float value, int64_t n, int device);
// out[i] = a[i] op b[i % b_period]: b_period == n for equal shapes, the row width to broadcast a
// bias row over (rows, b_period), 1 for a scalar held on the device.
void binary(Binary op, float* out, const float* a, const float* b, int64_t n, int64_t b_period, int device);
// out = a op b with numpy broadcasting: out_shape has ndim axes (at most 8), a_shape and b_shape
// too (leading 1s added), each size 1 or out's. Runs binary() when its layout allows.
void broadcast_binary(Binary op, float* out, const float* a, const float* b, const int64_t* out_shape,
                      const int64_t* a_shape, const int64_t* b_shape, int ndim, int device);
// out (out_shape) = x broadcast (x_shape: ndim axes, each size 1 or out's; at most 8).
void expand(float* out, const float* x, const int64_t* out_shape, const int64_t* x_shape, int ndim, int device);
// y = f(x); dx = dy * f'(.) from the saved value: the input for log, leaky_relu and the gelus, the
// output for the others (neg saves nothing). param: leaky_relu's negative slope (x for x > 0,
// param * x otherwise), ignored by the others. gelu: x Phi(x) (erf form), gelu_tanh: its tanh
// approximation, both computed in double as on the CPU.
enum class Unary { neg = 0, exp = 1, log = 2, sqrt = 3, sigmoid = 4, tanh = 5, leaky_relu = 6, gelu = 7, gelu_tanh = 8 };
void unary(Unary op, float* y, const float* x, int64_t n, float param, int device);
void unary_backward(Unary op, float* dx, const float* dy, const float* saved, int64_t n, float param, int device);
// y = alpha * x + beta * y (beta == 0 never reads y).
void axpby(float* y, float alpha, const float* x, float beta, int64_t n, int device);
void relu_forward(float* y, const float* x, int64_t n, int device);
void relu_backward(float* dx, const float* dy, const float* y, int64_t n, int device);
// out (cols,) = the sums of x's columns (x is rows x cols, row-major): a bias gradient.
void column_sums(float* out, const float* x, int64_t rows, int64_t cols, int device);
// out (1,) = scale * the sum of x's n elements.
void sum_all(float* out, const float* x, int64_t n, float scale, int device);

// out = x with its axes reordered (out axis i is x's axis perm[i]); at most 8 axes.
void permute(float* out, const float* x, const int64_t* shape, const int* perm, int ndim, int device);
// Basic indexing: out (shape) = the view of x at element `offset` with element `strides` (any sign;
// at most 8 axes of size other than 1), and its gradient, dst's view set from src (dst's other
// elements untouched). The caller checks that the view lies inside x or dst.
void gather_strided(float* out, const float* x, int64_t offset, const int64_t* shape, const int64_t* strides, int ndim,
                    int device);
void scatter_strided(float* dst, const float* src, int64_t offset, const int64_t* shape, const int64_t* strides,
                     int ndim, int device);
// The slab [offset, offset + n) of out's middle axis (out is (A, total, inner), piece (A, n, inner))
// set from piece (to_out) or copied into piece: what cat and its backward do along any axis.
void copy_slab(float* out, float* piece, int64_t A, int64_t n, int64_t inner, int64_t total, int64_t offset,
               bool to_out, int device);

// ---- reduce.cu (x is (outer, R, inner), reduced over R to (outer, inner)) ----
// out = scale * the sums (accumulated in double; scale 1 / R for a mean).
void reduce_sum(float* out, const float* x, int64_t outer, int64_t R, int64_t inner, float scale, int device);
// out = the maxima (NaN wins, as numpy's amax).
void reduce_max(float* out, const float* x, int64_t outer, int64_t R, int64_t inner, int device);
// dx (outer, R, inner) = dy / ties where x equals its maximum out, 0 elsewhere (dy, out: (outer, inner)).
void reduce_max_backward(float* dx, const float* dy, const float* x, const float* out, int64_t outer, int64_t R,
                         int64_t inner, int device);

// ---- loss.cu (N rows, C classes; softmax over x viewed as (outer, C, inner); n elements) ----
// y = softmax (log: log_softmax) of x along its middle axis; dx from dy and the saved output y.
void softmax_forward(float* y, const float* x, int64_t outer, int64_t C, int64_t inner, bool log, int device);
void softmax_backward(float* dx, const float* dy, const float* y, int64_t outer, int64_t C, int64_t inner, bool log,
                      int device);

enum class Reduction { none = 0, mean = 1, sum = 2 };
// Cross-entropy of logits (N, C) as the CPU's (cpu/loss.h), or nll_loss with log_probs (the
// input is log-probabilities: no log-softmax). The target is one of: labels, int64 class indices;
// labels_f32, whole numbers held as float32 (a fastnn tensor of labels); probs (N, C) class
// probabilities. A label neither in [0, C) nor ignore_index gives NaN.
struct CrossEntropyArgs {
  const float* logits;
  const int64_t* labels;
  const float* labels_f32;
  const float* probs;
  const float* weight;  // (C,) or null
  int64_t ignore_index;
  float label_smoothing;
  bool log_probs;
  int64_t N, C;
};
// loss: (N,) for none, (1,) otherwise (mean: divided by weight_sum); weight_sum (1,): the summed
// weights of the non-ignored index targets (N for probabilities), what mean divides by.
void cross_entropy_forward(float* loss, float* weight_sum, const CrossEntropyArgs& a, Reduction reduction,
                           int device);
// dlogits (N, C), and dprobs (N, C) unless null; grad_loss (N,) for none, (1,) otherwise; weight_sum
// as the forward wrote it (read for mean).
void cross_entropy_backward(float* dlogits, float* dprobs, const float* grad_loss, const float* weight_sum,
                            const CrossEntropyArgs& a, Reduction reduction, int device);

// Losses of input x and target y of n elements, times weight[i % weight_period] (when not null);
// pos_weight[i % pos_weight_period] weighs bce_logits' positive term; delta is huber's.
enum class ElementwiseLoss { mse = 0, l1 = 1, huber = 2, bce = 3, bce_logits = 4 };
struct ElementwiseLossArgs {
  ElementwiseLoss kind;
  const float* x;
  const float* y;
  const float* weight;
  int64_t weight_period;
  const float* pos_weight;
  int64_t pos_weight_period;
  float delta;
  int64_t n;
};
// loss: (n,) for none, (1,) the sum or mean otherwise (the mean of nothing is NaN).
void elementwise_loss_forward(float* loss, const ElementwiseLossArgs& a, Reduction reduction, int device);
// dx, dy (n,) where not null; grad_loss (n,) for none, (1,) otherwise.
void elementwise_loss_backward(float* dx, float* dy, const float* grad_loss, const ElementwiseLossArgs& a,
                               Reduction reduction, int device);

// ---- optim.cu: all parameters in one launch per 64 of them ----
// The state buffers (null where the option that needs one is off): SGD: state0 momentum buffer;
// Adam: state0 first moment, state1 second moment, state2 its running maximum (amsgrad);
// RMSprop: state0 square_avg, state1 grad_avg (centered), state2 momentum buffer; Adagrad: state0 sum.
struct ParamSlot {
  float* param;
  const float* grad;
  float* state0;
  float* state1;
  float* state2;
  int64_t n;
};
// The same settings, and the same per-element arithmetic, as the CPU kernels (cpu/optim.h).
struct AdamSettings {
  float step_size, bc2_sqrt;  // lr / (1 - beta1^step) and sqrt(1 - beta2^step), from adam_bias_corrections
  float one_minus_beta1, beta2, one_minus_beta2, eps;
  float weight_decay;  // Adam: added to the gradient (L2); AdamW: see decay_factor
  float decay_factor;  // AdamW: 1 - lr * weight_decay, applied to the weights; Adam: 1
  bool decoupled, maximize;
  bool amsgrad;  // the denominator uses max(state2, second moment), kept in state2
};
void adam_step(const ParamSlot* slots, int count, const AdamSettings& s, int device);
// The same with the step count held on the device (for CUDA-graph capture, where host values
// are frozen into the graph): adds 1 to *step, then updates with the bias corrections of the new
// count, computed on the device in float (step_size and bc2_sqrt of s are not used).
void adam_step_capturable(const ParamSlot* slots, int count, const AdamSettings& s, float lr, float beta1,
                          float beta2, float* step, int device);
struct SgdSettings {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize;
  bool first_step;  // the momentum buffer starts as the gradient
};
void sgd_step(const ParamSlot* slots, int count, const SgdSettings& s, int device);
struct RmspropSettings {
  float lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};
void rmsprop_step(const ParamSlot* slots, int count, const RmspropSettings& s, int device);
struct AdagradSettings {
  float clr;  // this step's rate, lr / (1 + (step - 1) * lr_decay), from adagrad_rate
  float eps, weight_decay;
  bool maximize;
};
void adagrad_step(const ParamSlot* slots, int count, const AdagradSettings& s, int device);
// EMA and copies: dst and src of one buffer, n floats each.
struct BufferPair {
  float* dst;
  const float* src;
  int64_t n;
};
// dst = decay * dst + one_minus_decay * src (one_minus_decay = 1 - decay computed in double).
void ema_update(const BufferPair* pairs, int count, float decay, float one_minus_decay, int device);
// dst = src.
void copy_buffers(const BufferPair* pairs, int count, int device);

// ---- conv.cu (N, C, H, W input; K, C/groups, R, S weight; OH, OW output) ----
struct ConvShape {
  int64_t N, C, H, W, K, R, S, OH, OW;
  int64_t stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups;
};
void conv2d_forward(float* out, const float* x, const float* w, const float* bias, const ConvShape& s, int device);
// The gradients whose pointers are not null.
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s, int device);
// Transposed convolution, the adjoint of the conv2d of shape s (as cpu/conv.h's): input (N, K, OH, OW),
// weight (K, C/groups, R, S), bias (C,) or null, out (N, C, H, W) = that conv2d's input gradient
// + bias. s.OH, s.OW are the input's size, which may be less than the conv2d's output size for
// H, W (an output_padding of at least the stride: the rows past the input count as zeros).
void conv_transpose2d_forward(float* out, const float* input, const float* w, const float* bias, const ConvShape& s,
                              int device);
// The gradients whose pointers are not null: dx is the conv2d's forward of dy, dw the conv2d's
// weight gradient with input and output exchanged, db the channel sums of dy.
void conv_transpose2d_backward(float* dx, float* dw, float* db, const float* dy, const float* input, const float* w,
                               const ConvShape& s, int device);

// ---- pool.cu (P = N * C planes of H x W; OH x OW outputs) ----
struct PoolShape {
  int64_t P, H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};
// indices: the flat index ih * W + iw of each maximum in its plane, as the CPU kernel writes it.
void max_pool2d_forward(float* out, int64_t* indices, const float* x, const PoolShape& s, int device);
void max_pool2d_backward(float* dx, const float* dy, const int64_t* indices, const PoolShape& s, int device);
// Average pooling (dilation 1) with the CPU's divisor (cpu/pool.h): divisor_override when > 0, else
// the window clipped to the padded input (count_include_pad) or to the input. The backward
// gathers (no atomics): the same results from run to run.
void avg_pool2d_forward(float* out, const float* x, const PoolShape& s, bool count_include_pad,
                        int64_t divisor_override, int device);
void avg_pool2d_backward(float* dx, const float* dy, const PoolShape& s, bool count_include_pad,
                         int64_t divisor_override, int device);
// Adaptive average pooling: output (i, j) averages rows [floor(i H / OH), ceil((i + 1) H / OH)) and
// the same for columns, as the CPU's.
void adaptive_avg_pool2d_forward(float* out, const float* x, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 int device);
void adaptive_avg_pool2d_backward(float* dx, const float* dy, int64_t P, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW, int device);

// ---- norm.cu (N images, C channels, L values per channel of an image) ----
// Training: the batch's per-channel mean and invstd = 1 / sqrt(biased var + eps) (sums in
// double), running statistics (or null) updated in place with momentum and the unbiased
// variance; evaluation: the running statistics. y = (x - mean) * invstd * w + b (w, b may be null).
void batch_norm_forward(float* y, float* mean, float* invstd, const float* x, const float* w, const float* b,
                        float* running_mean, float* running_var, bool training, float momentum, float eps,
                        int64_t N, int64_t C, int64_t L, int device);
// dw, db (C,) always; dx as the CPU kernel (training: through the batch statistics).
void batch_norm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* mean,
                         const float* invstd, const float* w, bool training, int64_t N, int64_t C, int64_t L,
                         int device);

// ---- rnn.cu (T steps, B rows, I inputs, H units; see csrc/cpu/rnn.h for the buffers) ----
// cell: 0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu (the CPU's RnnCell); lengths: device int64 (B,) or null.
struct RnnDims {
  int64_t T, B, I, H;
};
void rnn_forward(int cell, float* y, float* h_n, float* c_n, float* hs, float* cs, float* gates, const float* x,
                 const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh, const float* h0,
                 const float* c0, const int64_t* lengths, bool reverse, const RnnDims& s, int device);
void rnn_backward(int cell, float* dx, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh, float* dh0, float* dc0,
                  const float* dy, const float* dh_n, const float* dc_n, const float* x, const float* w_ih,
                  const float* w_hh, const float* h0, const float* c0, const float* hs, const float* cs,
                  const float* gates, const int64_t* lengths, bool reverse, const RnnDims& s, int device);
// Embedding (V rows of D values, n positions): out (n, D) = weight (V, D) rows indices (n,) (each in
// [0, V)). dw (V, D): row r = the sum of dy (n, D) rows positions[row_starts[r] .. row_starts[r + 1])
// in that order (positions grouped by row, row_starts (V + 1,)), 0 for padding_idx (-1: none);
// every row written, deterministic.
void embedding_forward(float* out, const float* weight, const int64_t* indices, int64_t n, int64_t D, int device);
void embedding_backward(float* dw, const float* dy, const int64_t* row_starts, const int64_t* positions, int64_t V,
                        int64_t D, int64_t padding_idx, int device);
// Host code: the positions k < n grouped by row indices[k] (a stable counting sort) into
// row_starts (V + 1,) and positions (n,), as embedding_backward reads them.
void embedding_row_groups(int64_t* row_starts, int64_t* positions, const int64_t* indices, int64_t n, int64_t V);

// ---- pool.cu: global average pooling (adaptive average pooling to 1 x 1), P planes of L values ----
void global_avg_pool_forward(float* out, const float* x, int64_t P, int64_t L, int device);
void global_avg_pool_backward(float* dx, const float* dy, int64_t P, int64_t L, int device);

// ---- random.cu ----
// The CPU's dropout mask (cpu/random.h) of n elements, draw `offset` under `seed`; with `counter`
// (a device int64) the draw number is read from it instead and then advanced by 1 on the stream.
void dropout_mask(float* mask, int64_t n, double p, uint64_t seed, uint64_t offset, int64_t* counter, int device);

}  // namespace cuda
}  // namespace fastnn
